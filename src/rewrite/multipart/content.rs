//! What a multipart part's body is read as under detection, by its `Content-Type`: every part is read, none is
//! skipped.
//!
//! | part                                                  | read as                                       |
//! |-------------------------------------------------------|-----------------------------------------------|
//! | `application/json`, `application/*+json`             | JSON (keys, strings, numbers)                 |
//! | `application/x-www-form-urlencoded`                   | a form (names and values, decoded)            |
//! | `application/xml`, `text/xml`, `application/*+xml`    | XML (text, attributes, comments…)             |
//! | `multipart/*`                                         | a nested multipart body, [`MAX_NESTING`] deep  |
//! | a binary type ([`is_binary`]: `image/*`, `application/octet-stream`, `application/pdf`…) | its text runs  |
//! | anything else: no `Content-Type`, `text/*`, unknown   | text, which must be UTF-8                     |
//!
//! Fail closed: a part that does not parse as its type is malformed, a part that is neither UTF-8 nor of a binary
//! type is malformed (as a text body that is not UTF-8 is), and a text part in a charset other than UTF-8 (or
//! ASCII) is unsupported, since veil would read other characters than the application does.

use super::super::binary::BinaryDoc;
use super::super::form::FormDoc;
use super::super::json::JsonDoc;
use super::super::text::TextDoc;
use super::super::xml::XmlDoc;
use super::head::{boundary_param, params, Flavor};
use super::{malformed, MultipartDoc};
use crate::domain::Class;
use crate::rewrite::{Edit, Found, RewriteError};

/// Most multipart bodies nested in one another inside a part.
pub const MAX_NESTING: usize = 4;

/// A part's body as the document its content type makes it.
pub enum Inner {
    Json(JsonDoc),
    Form(FormDoc),
    Xml(XmlDoc),
    Text(TextDoc),
    Binary(BinaryDoc),
    Multipart(Box<MultipartDoc>),
}

/// Whether a media type (lowercase, no parameters) is binary: content that is not text as a whole.
pub fn is_binary(media: &str) -> bool {
    const TYPES: [&str; 6] = ["image/", "audio/", "video/", "font/", "model/", "application/vnd."];
    const EXACT: [&str; 22] = [
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-bzip2",
        "application/x-xz",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/java-archive",
        "application/msword",
        "application/wasm",
        "application/protobuf",
        "application/x-protobuf",
        "application/cbor",
        "application/msgpack",
        "application/x-msgpack",
        "application/x-shockwave-flash",
        "application/postscript",
        "application/x-sqlite3",
        "application/x-binary",
    ];
    (TYPES.iter().any(|t| media.starts_with(t)) && !media.ends_with("+json") && !media.ends_with("+xml"))
        || EXACT.contains(&media)
}

/// Whether a `charset` parameter value is one veil reads as the application does.
pub fn utf8_charset(charset: &str) -> bool {
    ["utf-8", "utf8", "us-ascii", "ascii"].iter().any(|c| charset.trim().eq_ignore_ascii_case(c))
}

impl Inner {
    /// Reads a part's `body` by its `content_type` (as written; `None` without one), `depth` levels of multipart
    /// inside the top-level body.
    pub fn read(content_type: Option<&str>, body: &[u8], depth: usize) -> Result<Inner, RewriteError> {
        let content_type = content_type.unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default();
        let rest = &content_type[media.len()..];
        let media = media.trim().to_ascii_lowercase();
        if is_binary(&media) {
            return Ok(Inner::Binary(BinaryDoc::parse(body)));
        }
        let params = params(rest).ok_or(malformed("unparseable part content type"))?;
        let charset = params.iter().filter(|(p, _)| p.eq_ignore_ascii_case("charset")).map(|(_, v)| *v);
        if charset.clone().any(|c| !utf8_charset(c)) {
            return Err(RewriteError::Unsupported("a multipart part in a charset other than UTF-8"));
        }
        let json = media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"));
        let xml = ["application/xml", "text/xml"].contains(&media.as_str())
            || (media.starts_with("application/") && media.ends_with("+xml"));
        Ok(if media.starts_with("multipart/") {
            if depth >= MAX_NESTING {
                return Err(RewriteError::Unsupported("multipart parts nested too deeply"));
            }
            let boundary = boundary_param(rest).ok_or(malformed("multipart part without a valid boundary"))?;
            Inner::Multipart(Box::new(MultipartDoc::parse_in(body, &boundary, Flavor::Nested, depth + 1)?))
        } else if json {
            Inner::Json(JsonDoc::parse(body)?)
        } else if media == "application/x-www-form-urlencoded" {
            Inner::Form(FormDoc::parse(body)?)
        } else if xml {
            Inner::Xml(XmlDoc::parse(body)?)
        } else {
            let text = TextDoc::parse(body)
                .map_err(|_| malformed("a multipart part that is not UTF-8 and not of a binary type"))?;
            Inner::Text(text)
        })
    }

    /// Detection over the whole body (no selector reaches inside a part).
    pub fn find(&mut self, detect: &[Class]) -> Result<Vec<Found>, RewriteError> {
        Ok(match self {
            Inner::Json(d) => d.find(&[], detect)?,
            Inner::Form(d) => d.find(&[], detect),
            Inner::Xml(d) => d.find(&[], detect)?,
            Inner::Text(d) => d.find(detect),
            Inner::Binary(d) => d.find(detect),
            Inner::Multipart(d) => d.find(&[], detect)?,
        })
    }

    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        match self {
            Inner::Json(d) => d.apply(edits),
            Inner::Form(d) => d.apply(edits),
            Inner::Xml(d) => d.apply(edits),
            Inner::Text(d) => d.apply(edits),
            Inner::Binary(d) => d.apply(edits),
            Inner::Multipart(d) => d.apply(edits),
        }
    }
}
