//! Which body format a request carries, and one parsed document over the format modules in `rewrite`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::HeaderMap;
use http_body_util::{BodyExt, Full};

use super::ProxyBody;
use crate::config::Selector;
use crate::domain::Class;
use crate::rewrite::form::FormDoc;
use crate::rewrite::json::JsonDoc;
use crate::rewrite::multipart::{self, MultipartDoc};
use crate::rewrite::text::TextDoc;
use crate::rewrite::xml::XmlDoc;
use crate::rewrite::{Edit, Found, Origin, RewriteError};

/// The body formats veil can rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Json,
    Form,
    Multipart(String),
    Xml,
    Text,
    /// Anything else: can be forwarded, never inspected.
    Other(String),
}

/// The content type without parameters, lower case (`text/html`); empty when there is none.
pub fn essence(headers: &HeaderMap) -> String {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

impl Kind {
    pub fn of(headers: &HeaderMap) -> Kind {
        let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = essence(headers);
        match essence.as_str() {
            "application/json" => Kind::Json,
            e if e.starts_with("application/") && e.ends_with("+json") => Kind::Json,
            "application/x-www-form-urlencoded" => Kind::Form,
            "multipart/form-data" => match multipart::boundary(ct) {
                Some(b) => Kind::Multipart(b),
                None => Kind::Other(essence),
            },
            "application/xml" | "text/xml" | "application/soap+xml" => Kind::Xml,
            e if e.starts_with("application/") && e.ends_with("+xml") => Kind::Xml,
            e if e.starts_with("text/") => Kind::Text,
            _ => Kind::Other(essence),
        }
    }

    /// Does a selector address fields of this body format?
    pub fn selects(&self, selector: &Selector) -> bool {
        matches!(
            (self, selector),
            (Kind::Json, Selector::Json(_))
                | (Kind::Form, Selector::Form(_))
                | (Kind::Multipart(_), Selector::Multipart(_))
                | (Kind::Xml, Selector::Xml(_))
        )
    }

    /// Can detection scan this format?
    pub fn scannable(&self) -> bool {
        !matches!(self, Kind::Other(_))
    }
}

/// The body's content coding when it is not `identity` (such a body cannot be inspected), else `None`.
pub fn content_encoding(headers: &HeaderMap) -> Option<&str> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("(not text)"))?;
    (!encoding.eq_ignore_ascii_case("identity")).then_some(encoding)
}

/// A rewritten body in place of the original: Content-Length set to its length, Transfer-Encoding removed.
pub fn replace(headers: &mut HeaderMap, bytes: Bytes) -> ProxyBody {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.remove(header::TRANSFER_ENCODING);
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Is this a selector of the body (as opposed to a header or query parameter)?
pub fn is_body_selector(s: &Selector) -> bool {
    !matches!(s, Selector::Header(_) | Selector::Query(_))
}

/// A parsed body of one format.
pub enum Doc {
    Json(JsonDoc),
    Form(FormDoc),
    Multipart(MultipartDoc),
    Xml(XmlDoc),
    Text(TextDoc),
}

impl Doc {
    pub fn parse(kind: &Kind, body: &[u8]) -> Result<Doc, RewriteError> {
        Ok(match kind {
            Kind::Json => Doc::Json(JsonDoc::parse(body)?),
            Kind::Form => Doc::Form(FormDoc::parse(body)?),
            Kind::Multipart(b) => Doc::Multipart(MultipartDoc::parse(body, b)?),
            Kind::Xml => Doc::Xml(XmlDoc::parse(body)?),
            Kind::Text => Doc::Text(TextDoc::parse(body)?),
            Kind::Other(_) => return Err(RewriteError::Unsupported("this content type cannot be inspected")),
        })
    }

    /// Values at `selectors` (`Origin::Field(i)` for `selectors[i]`) and at the `subject` selector
    /// (`Origin::Subject`), all of this body's format, then detected values elsewhere.
    pub fn find(
        &mut self,
        selectors: &[&Selector],
        subject: Option<&Selector>,
        detect: &[Class],
    ) -> Result<Vec<Found>, RewriteError> {
        let mut all = selectors.to_vec();
        all.extend(subject);
        let mut found = self.find_at(&all, detect)?;
        for f in &mut found {
            match f.origin {
                Origin::Field(i) if i < selectors.len() => {}
                Origin::Field(i) if i == selectors.len() && subject.is_some() => f.origin = Origin::Subject,
                Origin::Field(_) | Origin::Subject => return Err(RewriteError::EditCount),
                Origin::Detected(_) => {}
            }
        }
        Ok(found)
    }

    fn find_at(&mut self, selectors: &[&Selector], detect: &[Class]) -> Result<Vec<Found>, RewriteError> {
        Ok(match self {
            Doc::Json(d) => {
                let paths: Vec<_> =
                    selectors.iter().filter_map(|s| if let Selector::Json(p) = s { Some(p) } else { None }).collect();
                d.find(&paths, detect)?
            }
            Doc::Form(d) => {
                let names: Vec<&str> = selectors
                    .iter()
                    .filter_map(|s| if let Selector::Form(n) = s { Some(n.as_str()) } else { None })
                    .collect();
                d.find(&names, detect)
            }
            Doc::Multipart(d) => {
                let names: Vec<&str> = selectors
                    .iter()
                    .filter_map(|s| if let Selector::Multipart(n) = s { Some(n.as_str()) } else { None })
                    .collect();
                d.find(&names, detect)?
            }
            Doc::Xml(d) => {
                let paths: Vec<_> =
                    selectors.iter().filter_map(|s| if let Selector::Xml(p) = s { Some(p) } else { None }).collect();
                d.find(&paths, detect)?
            }
            Doc::Text(d) => d.find(detect),
        })
    }

    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        match self {
            Doc::Json(d) => d.apply(edits),
            Doc::Form(d) => d.apply(edits),
            Doc::Multipart(d) => d.apply(edits),
            Doc::Xml(d) => d.apply(edits),
            Doc::Text(d) => d.apply(edits),
        }
    }
}
