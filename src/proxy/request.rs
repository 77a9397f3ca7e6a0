//! The request side shared by ingress and egress routes: gather every value a route selects (and detects) in a
//! request — body, headers, query — then write the request back with one [`Edit`] per value.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::body::{self, is_body_selector, Doc, Kind};
use super::early_count::EarlyCount;
use super::error::ProxyError;
use super::scan_stream::Scanner;
use super::ProxyBody;
use crate::config::{Route, Selector};
use crate::domain::Class;
use crate::rewrite::form::FormDoc;
use crate::rewrite::text::TextDoc;
use crate::rewrite::{Edit, Found, Origin};

/// How much of a body may be read, and how long it may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Most values the request may send to the vault: a large body that plainly holds more is refused before it
    /// is parsed (`None`: no limit).
    pub max_values: Option<usize>,
}

/// Where a found value sits in the request.
#[derive(Clone, Copy)]
pub enum Place {
    Body,
    /// A selected header's whole value (`header_values[i]`).
    Header(usize),
    /// A value detection found inside a header's text (`header_docs[k]`).
    HeaderText(usize),
    Query,
}

impl Place {
    /// What the place is, for `veil try` and debug logs (never a value).
    pub fn name(self) -> &'static str {
        match self {
            Place::Body => "body",
            Place::Header(_) | Place::HeaderText(_) => "header",
            Place::Query => "query",
        }
    }
}

/// Headers detection never reads: the request's framing and routing, which the proxy itself checks.
const UNSCANNED_HEADERS: [header::HeaderName; 4] =
    [header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION];

/// One value of a header that detection read: as it came, or the text document of it holding found values.
enum HeaderText {
    Kept(HeaderValue),
    Scanned(usize),
}

/// Why a value was gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The route's `fields[i]` selected it.
    Rule(usize),
    /// Detection found a value of this class where no selector looked.
    Detected(Class),
    /// The route's `subject` selector: read to link the request's tokens, never edited.
    Subject,
}

/// One value to decide about: where it is, why it was gathered, and the value (decoded as the app sees it).
pub struct Hit {
    pub place: Place,
    pub target: Target,
    pub value: String,
}

/// A request taken apart: its values to decide about, and what is needed to put it back together.
pub struct Gathered {
    pub parts: Parts,
    pub hits: Vec<Hit>,
    /// The subject id the route's `subject` selector found, if any.
    pub subject: Option<String>,
    doc: Option<Doc>,
    body_bytes: Option<Bytes>,
    /// The body as it streams through a scanner (requests no route takes, too large to hold).
    streamed: Option<ProxyBody>,
    incoming: Option<Incoming>,
    query_doc: Option<FormDoc>,
    header_values: Vec<(HeaderName, String)>,
    /// Headers holding detected values, every value of each in order.
    header_texts: Vec<(HeaderName, Vec<HeaderText>)>,
    header_docs: Vec<TextDoc>,
}

/// What [`gather`] found. Built and taken apart once per request, so the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
pub enum Gather {
    /// Only detection applies and the body is a format detection cannot read (a binary upload): forward as is.
    Untouched(Request<ProxyBody>),
    Gathered(Gathered),
}

/// What a detecting route does with a body it cannot parse (not text in any format veil reads, or larger than
/// `max_body_bytes`).
pub enum Unreadable {
    /// Refuse it (415, 413): a configured route must see every value it forwards.
    Refuse,
    /// Stream it through this scanner (requests no route takes: uploads to the app's other endpoints), for the
    /// client budgeted under this address.
    Stream(Arc<Scanner>, IpAddr),
}

/// Reads what the route needs (the body only when a body selector or detection needs it) and lists every value.
pub async fn gather<A>(
    route: &Route<A>,
    req: Request<Incoming>,
    limits: BodyLimits,
    unreadable: Unreadable,
) -> Result<Gather, ProxyError> {
    let (parts, incoming) = req.into_parts();
    let mut g = Gathered {
        parts,
        hits: Vec::new(),
        subject: None,
        doc: None,
        body_bytes: None,
        streamed: None,
        incoming: Some(incoming),
        query_doc: None,
        header_values: Vec::new(),
        header_texts: Vec::new(),
        header_docs: Vec::new(),
    };
    if !g.gather_body(route, limits, unreadable).await? {
        return Ok(Gather::Untouched(g.unchanged()));
    }
    g.gather_headers(route)?;
    g.gather_query(route)?;
    g.check_subject(route)?;
    Ok(Gather::Gathered(g))
}

impl Gathered {
    /// Returns false when the body cannot be read, only detection wanted it, and `unreadable` lets it through.
    async fn gather_body<A>(
        &mut self,
        route: &Route<A>,
        limits: BodyLimits,
        unreadable: Unreadable,
    ) -> Result<bool, ProxyError> {
        let kind = Kind::of(&self.parts.headers);
        let body_rules: Vec<usize> =
            (0..route.fields.len()).filter(|&i| is_body_selector(&route.fields[i].selector)).collect();
        let subject_in_body = route.subject.as_ref().is_some_and(is_body_selector);
        let needs_body = !body_rules.is_empty() || !route.detect.is_empty() || subject_in_body;
        let has_body = self.incoming.as_ref().is_some_and(|b| incoming_has_body(&self.parts.headers, b));
        if !(needs_body && has_body) {
            return Ok(true);
        }
        if let Some(encoding) = body::content_encoding(&self.parts.headers) {
            return Err(ProxyError::UnsupportedEncoding(encoding.chars().take(32).collect()));
        }
        let kind_rules: Vec<usize> =
            body_rules.iter().copied().filter(|&i| kind.selects(&route.fields[i].selector)).collect();
        if !body_rules.is_empty() && kind_rules.is_empty() {
            // Configured fields may be in this body, in a form veil cannot read: fail closed.
            let ct = match &kind {
                Kind::Other(ct) => ct.clone(),
                other => format!("{other:?}").to_ascii_lowercase(),
            };
            return Err(ProxyError::UnsupportedMediaType(ct.chars().take(64).collect()));
        }
        let incoming = self.incoming.take().ok_or(ProxyError::Internal)?;
        let mut incoming = incoming;
        let count = EarlyCount::new(&route.detect, limits.max_values);
        let bytes = match (&unreadable, kind_rules.is_empty()) {
            // Only detection wants this body: one too large to hold is scanned as it streams.
            (Unreadable::Stream(scanner, client), true) => match read_up_to(&mut incoming, limits, count).await? {
                Read::Complete(bytes) => bytes,
                // JSON, form and XML spell digits in ways a byte scan does not read (`\u0035`, `%35`, `&#53;`):
                // one too large to parse is refused, not streamed.
                Read::Overflow(_) if matches!(kind, Kind::Json | Kind::Form | Kind::Xml) => {
                    return Err(ProxyError::BodyTooLarge(limits.max_bytes));
                }
                Read::Overflow(prefix) => {
                    self.streamed = Some(scanner.wrap(&mut self.parts.headers, prefix, incoming, *client));
                    return Ok(true);
                }
            },
            _ => read_counted(incoming, limits, count).await?,
        };
        // A body of no format veil parses is read as text when it is text (a card in `application/octet-stream`
        // or `text/csv` under another name is still a card); one that is not text is refused or scanned as bytes.
        let kind = match kind {
            Kind::Other(ct) if std::str::from_utf8(&bytes).is_err() => {
                return match unreadable {
                    Unreadable::Stream(scanner, client) => {
                        let rest = http_body_util::Empty::<Bytes>::new();
                        self.streamed = Some(scanner.wrap(&mut self.parts.headers, bytes, rest, client));
                        Ok(true)
                    }
                    Unreadable::Refuse => Err(ProxyError::UnsupportedMediaType(ct.chars().take(64).collect())),
                };
            }
            Kind::Other(_) => Kind::Text,
            kind => kind,
        };
        let mut doc = Doc::parse(&kind, &bytes).map_err(ProxyError::Malformed)?;
        let selectors: Vec<&Selector> = kind_rules.iter().map(|&i| &route.fields[i].selector).collect();
        let subject = route.subject.as_ref().filter(|s| kind.selects(s));
        for f in doc.find(&selectors, subject, &route.detect).map_err(ProxyError::Malformed)? {
            let target = match f.origin {
                // `selectors[k]` is the route's field `kind_rules[k]`.
                Origin::Field(k) => Target::Rule(*kind_rules.get(k).ok_or(ProxyError::Internal)?),
                Origin::Subject => {
                    self.subject_hit(Place::Body, f);
                    continue;
                }
                Origin::Detected(class) => Target::Detected(class),
            };
            self.hits.push(Hit { place: Place::Body, target, value: f.value });
        }
        self.doc = Some(doc);
        self.body_bytes = Some(bytes);
        Ok(true)
    }

    /// The subject selector's value: remembered (the first non-empty one), kept in place.
    fn subject_hit(&mut self, place: Place, f: Found) {
        if self.subject.is_none() && !f.value.is_empty() {
            self.subject = Some(f.value);
        }
        self.hits.push(Hit { place, target: Target::Subject, value: String::new() });
    }

    fn gather_headers<A>(&mut self, route: &Route<A>) -> Result<(), ProxyError> {
        for (i, f) in route.fields.iter().enumerate() {
            let Selector::Header(name) = &f.selector else { continue };
            for v in self.parts.headers.get_all(name) {
                let v = v.to_str().map_err(|_| ProxyError::BadRequest("a selected header is not text"))?;
                self.hits.push(Hit {
                    place: Place::Header(self.header_values.len()),
                    target: Target::Rule(i),
                    value: v.to_owned(),
                });
                self.header_values.push((name.clone(), v.to_owned()));
            }
        }
        if let (None, Some(Selector::Header(h))) = (&self.subject, &route.subject) {
            self.subject = self.parts.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
        }
        if !route.detect.is_empty() {
            self.detect_in_headers(route)?;
        }
        Ok(())
    }

    /// Detection over every other header's text (cookies, custom headers, referer…).
    fn detect_in_headers<A>(&mut self, route: &Route<A>) -> Result<(), ProxyError> {
        // Selected headers are edited whole; the subject's header is read for linking and scanned like the rest.
        let selected: Vec<&HeaderName> = route
            .fields
            .iter()
            .filter_map(|f| if let Selector::Header(h) = &f.selector { Some(h) } else { None })
            .collect();
        // Most headers hold nothing: each is read in place, and only names holding a value are collected.
        let holds_value = |v: &HeaderValue| match std::str::from_utf8(v.as_bytes()) {
            Ok(text) => !crate::detect::find(text, &route.detect).is_empty(),
            Err(_) => true, // looked at closely below
        };
        let mut names: Vec<HeaderName> = Vec::new();
        for (name, value) in &self.parts.headers {
            if !UNSCANNED_HEADERS.contains(name)
                && !selected.contains(&name)
                && !names.contains(name)
                && holds_value(value)
            {
                names.push(name.clone());
            }
        }
        for name in names {
            let mut values = Vec::new();
            let mut scanned = false;
            for v in self.parts.headers.get_all(&name) {
                let found = match TextDoc::parse(v.as_bytes()) {
                    Ok(mut doc) => Some((doc.find(&route.detect), doc)),
                    Err(_) => None,
                };
                let (found, doc) = match found {
                    Some(pair) => pair,
                    None => {
                        // Not UTF-8: its ASCII is still read; a value in it cannot be rewritten, so it is refused.
                        let ascii: String =
                            v.as_bytes().iter().map(|&b| if b.is_ascii() { char::from(b) } else { ' ' }).collect();
                        if !crate::detect::find(&ascii, &route.detect).is_empty() {
                            return Err(ProxyError::BadRequest("a header holding a protected value is not UTF-8"));
                        }
                        values.push(HeaderText::Kept(v.clone()));
                        continue;
                    }
                };
                if found.is_empty() {
                    values.push(HeaderText::Kept(v.clone()));
                    continue;
                }
                let k = self.header_docs.len();
                for f in found {
                    let Origin::Detected(class) = f.origin else { return Err(ProxyError::Internal) };
                    self.hits.push(Hit {
                        place: Place::HeaderText(k),
                        target: Target::Detected(class),
                        value: f.value,
                    });
                }
                self.header_docs.push(doc);
                values.push(HeaderText::Scanned(k));
                scanned = true;
            }
            if scanned {
                self.header_texts.push((name, values));
            }
        }
        Ok(())
    }

    /// The subject id is read, never edited, and it is what the app keys its customer by: on a detecting route
    /// an id that holds a protected value anywhere (`5555555555554444`, `cust-5555555555554444`, a header
    /// `c-1 card 5555…`) is refused, since tokenising part of it would change the id the app and the vault's
    /// subject links agree on, and keeping it would hand the value to the app.
    fn check_subject<A>(&self, route: &Route<A>) -> Result<(), ProxyError> {
        match &self.subject {
            Some(subject) if !route.detect.is_empty() && !crate::detect::find(subject, &route.detect).is_empty() => {
                Err(ProxyError::Rejected(field_of(route, Target::Subject)))
            }
            _ => Ok(()),
        }
    }

    fn gather_query<A>(&mut self, route: &Route<A>) -> Result<(), ProxyError> {
        let rules: Vec<(usize, &str)> = route
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| if let Selector::Query(n) = &f.selector { Some((i, n.as_str())) } else { None })
            .collect();
        let subject = match &route.subject {
            Some(Selector::Query(q)) => Some(q.as_str()),
            _ => None,
        };
        let wanted = !rules.is_empty() || subject.is_some() || !route.detect.is_empty();
        let Some(q) = self.parts.uri.query().filter(|_| wanted) else {
            return Ok(());
        };
        let mut qd = FormDoc::parse(q.as_bytes()).map_err(ProxyError::Malformed)?;
        let mut names: Vec<&str> = rules.iter().map(|&(_, n)| n).collect();
        names.extend(subject);
        for f in qd.find(&names, &route.detect) {
            match f.origin {
                Origin::Detected(class) => {
                    self.hits.push(Hit { place: Place::Query, target: Target::Detected(class), value: f.value })
                }
                // `names[k]` is the route's field `rules[k].0`; the one after them is the subject's name.
                Origin::Field(k) if k < rules.len() => {
                    self.hits.push(Hit { place: Place::Query, target: Target::Rule(rules[k].0), value: f.value })
                }
                Origin::Field(k) if k == rules.len() && subject.is_some() => self.subject_hit(Place::Query, f),
                _ => return Err(ProxyError::Internal),
            }
        }
        self.query_doc = Some(qd);
        Ok(())
    }

    /// The request exactly as received (observe mode).
    pub fn unchanged(self) -> Request<ProxyBody> {
        let body = match (self.body_bytes, self.streamed) {
            (Some(b), _) => Full::new(b).map_err(|never| match never {}).boxed(),
            (None, Some(streamed)) => streamed,
            (None, None) => rest(self.incoming),
        };
        Request::from_parts(self.parts, body)
    }

    /// The request with `edits` (one per hit, in order) applied; Content-Length recomputed for a new body.
    pub fn apply(self, edits: Vec<Edit>) -> Result<Request<ProxyBody>, ProxyError> {
        let Gathered {
            mut parts,
            hits,
            doc,
            body_bytes,
            streamed,
            incoming,
            query_doc,
            header_values,
            header_texts,
            header_docs,
            ..
        } = self;
        if edits.len() != hits.len() {
            return Err(ProxyError::Internal);
        }
        let mut body_edits = Vec::with_capacity(hits.len());
        let mut query_edits = Vec::new();
        let mut header_edits = Vec::new();
        let mut text_edits: Vec<Vec<Edit>> = header_docs.iter().map(|_| Vec::new()).collect();
        for (hit, edit) in hits.iter().zip(edits) {
            match hit.place {
                Place::Body => body_edits.push(edit),
                Place::Query => query_edits.push(edit),
                Place::Header(i) => header_edits.push((i, edit)),
                Place::HeaderText(k) => text_edits.get_mut(k).ok_or(ProxyError::Internal)?.push(edit),
            }
        }
        let mut docs: Vec<Option<TextDoc>> = header_docs.into_iter().map(Some).collect();
        for (name, values) in header_texts {
            parts.headers.remove(&name);
            for v in values {
                let value = match v {
                    HeaderText::Kept(v) => v,
                    HeaderText::Scanned(k) => {
                        let doc = docs.get_mut(k).and_then(Option::take).ok_or(ProxyError::Internal)?;
                        let edits = text_edits.get(k).ok_or(ProxyError::Internal)?;
                        let text = doc.apply(edits).map_err(ProxyError::Malformed)?;
                        HeaderValue::from_bytes(&text).map_err(|_| ProxyError::Internal)?
                    }
                };
                parts.headers.append(name.clone(), value);
            }
        }
        let body: ProxyBody = match doc {
            Some(d) => {
                body::replace(&mut parts.headers, Bytes::from(d.apply(&body_edits).map_err(ProxyError::Malformed)?))
            }
            // Read but not a document (nothing in it to edit): forwarded as it came.
            None => match (body_bytes, streamed) {
                (Some(b), _) => Full::new(b).map_err(|never| match never {}).boxed(),
                (None, Some(streamed)) => streamed,
                (None, None) => rest(incoming),
            },
        };
        for (name, _) in &header_values {
            parts.headers.remove(name);
        }
        for (i, edit) in &header_edits {
            let (name, original) = header_values.get(*i).ok_or(ProxyError::Internal)?;
            let value = match edit {
                Edit::Keep => original,
                Edit::Replace(v) => v,
                Edit::Remove => continue,
            };
            let value = HeaderValue::from_str(value).map_err(|_| ProxyError::Internal)?;
            parts.headers.append(name.clone(), value);
        }
        if let Some(qd) = query_doc {
            let q = qd.apply(&query_edits).map_err(ProxyError::Malformed)?;
            let q = String::from_utf8(q).map_err(|_| ProxyError::Internal)?;
            let pq = if q.is_empty() { parts.uri.path().to_owned() } else { format!("{}?{q}", parts.uri.path()) };
            let mut uri_parts = parts.uri.clone().into_parts();
            uri_parts.path_and_query = Some(pq.parse().map_err(|_| ProxyError::Internal)?);
            parts.uri = http::Uri::from_parts(uri_parts).map_err(|_| ProxyError::Internal)?;
        }
        Ok(Request::from_parts(parts, body))
    }
}

/// Reads a whole body within `limits`.
pub async fn read_body<B>(body: B, limits: BodyLimits) -> Result<Bytes, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read_counted(body, limits, None).await
}

/// Reads a whole body within `limits`, counting its values on the way when `count` is given.
async fn read_counted<B>(mut body: B, limits: BodyLimits, count: Option<EarlyCount<'_>>) -> Result<Bytes, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match read_up_to(&mut body, limits, count).await? {
        Read::Complete(bytes) => Ok(bytes),
        Read::Overflow(_) => Err(ProxyError::BodyTooLarge(limits.max_bytes)),
    }
}

/// A body read whole (`Ok`), or the part read before it passed `limits.max_bytes` (`Err`; the rest is still in
/// `body`).
pub async fn read_prefix<B>(body: &mut B, limits: BodyLimits) -> Result<Result<Bytes, Bytes>, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(match read_up_to(body, limits, None).await? {
        Read::Complete(bytes) => Ok(bytes),
        Read::Overflow(prefix) => Err(prefix),
    })
}

/// A body read whole, or the part read before it passed the limit (the rest is still in the body).
enum Read {
    Complete(Bytes),
    Overflow(Bytes),
}

/// Reads a body whole if it fits `limits.max_bytes`, else stops as soon as it does not. With `count`, a body
/// that plainly holds too many values is refused as soon as a window of it shows so.
async fn read_up_to<B>(body: &mut B, limits: BodyLimits, mut count: Option<EarlyCount<'_>>) -> Result<Read, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = async {
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ProxyError::BadRequest("request body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > limits.max_bytes {
                    return Ok(Read::Overflow(buf.freeze()));
                }
                if let Some(c) = &mut count {
                    c.feed(&buf)?;
                }
            }
        }
        if let Some(c) = &mut count {
            c.finish(&buf)?;
        }
        Ok(Read::Complete(buf.freeze()))
    };
    tokio::time::timeout(limits.timeout, read).await.map_err(|_| ProxyError::BodyTimeout)?
}

/// The body still to forward: the unread request body, or nothing if it was read.
pub fn rest(incoming: Option<Incoming>) -> ProxyBody {
    match incoming {
        Some(b) => b.map_err(Into::into).boxed(),
        None => Full::new(Bytes::new()).map_err(|never| match never {}).boxed(),
    }
}

/// The configured selector, for error messages (config text, never a value).
pub fn describe(s: &Selector) -> String {
    match s {
        Selector::Json(p) => format!("json {p}"),
        Selector::Form(n) => format!("form {n}"),
        Selector::Multipart(n) => format!("multipart {n}"),
        Selector::Xml(p) => format!("xml {p}"),
        Selector::Header(h) => format!("header {h}"),
        Selector::Query(q) => format!("query {q}"),
    }
}

/// Where a hit came from, for error messages: the configured selector, or "detected value".
pub fn field_of<A>(route: &Route<A>, target: Target) -> String {
    match target {
        Target::Rule(i) => route.fields.get(i).map(|f| describe(&f.selector)).unwrap_or_else(|| "a field".into()),
        Target::Detected(_) => "detected value".into(),
        Target::Subject => route.subject.as_ref().map(describe).unwrap_or_else(|| "subject".into()),
    }
}

/// Content-Length together with Transfer-Encoding, or conflicting Content-Lengths: refused (RFC 9112 §6.3).
pub fn refuse_smuggling(headers: &http::HeaderMap) -> Result<(), ProxyError> {
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !lengths.is_empty() && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(ProxyError::BadRequest("Content-Length together with Transfer-Encoding"));
    }
    if lengths.len() > 1 {
        return Err(ProxyError::BadRequest("more than one Content-Length"));
    }
    Ok(())
}

fn incoming_has_body(headers: &http::HeaderMap, body: &Incoming) -> bool {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return false;
    }
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    length != Some(0)
}
