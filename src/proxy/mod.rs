//! The ingress proxy: route match -> body rewrite (select / detect -> one vault batch) -> forward upstream.
//!
//! The stack for one request, in order:
//! 1. request-smuggling shapes are refused (Content-Length with Transfer-Encoding, repeated Content-Length);
//! 2. the route is chosen by method + path; requests no route matches stream through untouched;
//! 3. for a matched route the body is read (size limit, read deadline) only when a body selector or detection
//!    needs it, parsed strictly for its content type, and every selected / detected value gets an edit;
//! 4. all tokenisations of the request go to the vault as one batch, with a deadline;
//! 5. the rewritten request (Content-Length recomputed) is forwarded; any failure above answers the spec's
//!    JSON error and forwards nothing (fail closed).

pub mod body;
pub mod error;
pub mod forward;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::config::{Action, ProxyConfig, Route, Selector};
use crate::crypto::KeySet;
use crate::metrics::Metrics;
use crate::rewrite::form::FormDoc;
use crate::rewrite::{Edit, Found, Origin};
use crate::vault::auth::Caller;
use crate::vault::class::{self, Class};
use crate::vault::{Vault, VaultError};
use body::{is_body_selector, Doc, Kind};
use error::{error_response, ProxyError};
use forward::Upstream;

/// Body type of everything the proxy sends: upstream responses streamed, or its own small bodies.
pub type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Everything the proxy needs, shared by every connection.
pub struct Proxy {
    pub routes: Vec<Route>,
    pub vault: Arc<dyn Vault>,
    /// The identity the proxy tokenises as (in-process: a built-in caller with `tokenize:*`).
    pub caller: Caller,
    pub keys: Arc<KeySet>,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub vault_timeout: Duration,
    pub tls: bool,
}

/// Where a found value sits in the request.
#[derive(Clone, Copy)]
enum Place {
    Body,
    Header(usize),
    Query,
}

/// One value to decide about: where it is, what it is, and which rule (if any) selected it.
struct Hit {
    place: Place,
    found: Found,
    rule: Option<usize>,
}

impl Proxy {
    pub fn new(
        cfg: &ProxyConfig,
        routes: Vec<Route>,
        vault: Arc<dyn Vault>,
        keys: Arc<KeySet>,
        metrics: Arc<Metrics>,
    ) -> Result<Proxy, crate::tls::TlsError> {
        let upstream = Upstream::new(&cfg.upstream, cfg.upstream_timeout, cfg.upstream_ca.as_deref())?;
        let caller = Caller {
            name: "proxy".into(),
            allow: vec![crate::policy::Permission { op: Some(crate::policy::Op::Tokenize), class: None }],
        };
        Ok(Proxy {
            routes,
            vault,
            caller,
            keys,
            upstream,
            metrics,
            max_body_bytes: cfg.max_body_bytes,
            body_timeout: cfg.body_timeout,
            vault_timeout: cfg.vault_timeout,
            tls: cfg.tls.is_some(),
        })
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let route = self.routes.iter().position(|r| r.matches(req.method(), req.uri().path()));
        let label = route.map(|i| self.routes[i].name.as_str()).unwrap_or("-");
        let resp = match self.serve(route, peer, req).await {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(kind) = e.upstream_kind() {
                    self.metrics.upstream_errors.with_label_values(&[label, kind]).inc();
                }
                tracing::info!(route = label, error = %e, "request refused");
                error_response(&e)
            }
        };
        self.metrics.requests.with_label_values(&[label, resp.status().as_str()]).inc();
        self.metrics.request_duration.with_label_values(&[label]).observe(started.elapsed().as_secs_f64());
        Ok(resp)
    }

    async fn serve(
        &self,
        route: Option<usize>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        refuse_smuggling(req.headers())?;
        let Some(route) = route.map(|i| &self.routes[i]) else {
            // No rule touches this request: stream it through without buffering.
            let req = req.map(|b| b.map_err(Into::into).boxed());
            return self.forward(req, peer).await;
        };
        let (mut parts, incoming) = req.into_parts();
        let mut incoming = Some(incoming);

        let kind = Kind::of(&parts.headers);
        let body_rules: Vec<usize> =
            (0..route.fields.len()).filter(|&i| is_body_selector(&route.fields[i].selector)).collect();
        let subject_in_body = route.subject.as_ref().is_some_and(is_body_selector);
        let needs_body = !body_rules.is_empty() || !route.detect.is_empty() || subject_in_body;
        let has_body = incoming.as_ref().is_some_and(|b| incoming_has_body(&parts.headers, b));

        let mut hits: Vec<Hit> = Vec::new();
        let mut doc = None;
        let mut body_bytes = None;
        let mut subject: Option<String> = None;

        if needs_body && has_body {
            let encoding =
                parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
            if !encoding.eq_ignore_ascii_case("identity") {
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
            if kind.scannable() || !kind_rules.is_empty() {
                let bytes = self.read_body(incoming.take().ok_or(ProxyError::Internal)?).await?;
                let mut d = Doc::parse(&kind, &bytes).map_err(ProxyError::Malformed)?;
                let mut selectors: Vec<&Selector> = kind_rules.iter().map(|&i| &route.fields[i].selector).collect();
                let subject_sel = route.subject.as_ref().filter(|s| kind.selects(s));
                if let Some(s) = subject_sel {
                    selectors.push(s);
                }
                let found = d.find(&selectors, &route.detect).map_err(ProxyError::Malformed)?;
                for f in found {
                    let rule = match f.origin {
                        Origin::Field(k) if k < kind_rules.len() => Some(kind_rules[k]),
                        Origin::Field(_) => {
                            // The subject selector: read, never edited.
                            if subject.is_none() && !f.value.is_empty() {
                                subject = Some(f.value.clone());
                            }
                            hits.push(Hit {
                                place: Place::Body,
                                found: Found { origin: f.origin, value: String::new() },
                                rule: None,
                            });
                            continue;
                        }
                        Origin::Detected(_) => None,
                    };
                    hits.push(Hit { place: Place::Body, found: f, rule });
                }
                doc = Some(d);
                body_bytes = Some(bytes);
            } else {
                // Detection only, on a body it cannot scan (binary upload): stream it through.
                return self.forward_parts(parts, rest(incoming), peer).await;
            }
        }

        // Header selectors.
        let header_rules: Vec<(usize, &HeaderName)> = route
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| if let Selector::Header(h) = &f.selector { Some((i, h)) } else { None })
            .collect();
        let mut header_values: Vec<(HeaderName, String)> = Vec::new();
        for (i, name) in &header_rules {
            for v in parts.headers.get_all(*name) {
                let v = v.to_str().map_err(|_| ProxyError::BadRequest("a selected header is not text"))?;
                hits.push(Hit {
                    place: Place::Header(header_values.len()),
                    found: Found { origin: Origin::Field(*i), value: v.to_owned() },
                    rule: Some(*i),
                });
                header_values.push(((*name).clone(), v.to_owned()));
            }
        }
        if let Some(Selector::Header(h)) = &route.subject {
            subject = subject.or_else(|| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned));
        }

        // Query selectors.
        let query_rules: Vec<usize> =
            (0..route.fields.len()).filter(|&i| matches!(route.fields[i].selector, Selector::Query(_))).collect();
        let subject_query = match &route.subject {
            Some(Selector::Query(q)) => Some(q.as_str()),
            _ => None,
        };
        let mut query_doc = None;
        if !query_rules.is_empty() || subject_query.is_some() {
            if let Some(q) = parts.uri.query() {
                let mut qd = FormDoc::parse(q.as_bytes()).map_err(ProxyError::Malformed)?;
                let mut names: Vec<&str> = query_rules
                    .iter()
                    .filter_map(|&i| {
                        if let Selector::Query(n) = &route.fields[i].selector {
                            Some(n.as_str())
                        } else {
                            None
                        }
                    })
                    .collect();
                names.extend(subject_query);
                for f in qd.find(&names, &[]) {
                    match f.origin {
                        Origin::Field(k) if k < query_rules.len() => {
                            hits.push(Hit { place: Place::Query, found: f, rule: Some(query_rules[k]) })
                        }
                        _ => {
                            if subject.is_none() {
                                subject = Some(f.value.clone());
                            }
                            hits.push(Hit {
                                place: Place::Query,
                                found: Found { origin: f.origin, value: String::new() },
                                rule: None,
                            });
                        }
                    }
                }
                query_doc = Some(qd);
            }
        }

        let edits = self.decide(route, &hits, subject.as_deref()).await?;

        if route.observe {
            // Observe mode: counted above, forwarded exactly as received.
            let body = body_bytes.map(|b| Full::new(b).map_err(|never| match never {}).boxed());
            let body = match body {
                Some(b) => b,
                None => rest(incoming),
            };
            return self.forward_parts(parts, body, peer).await;
        }

        // Apply: body, headers, query.
        let mut body_edits = Vec::new();
        let mut query_edits = Vec::new();
        for (hit, edit) in hits.iter().zip(&edits) {
            match hit.place {
                Place::Body => body_edits.push(edit.clone()),
                Place::Query => query_edits.push(edit.clone()),
                Place::Header(_) => {}
            }
        }
        let new_body: ProxyBody = match doc {
            Some(d) => {
                let bytes = Bytes::from(d.apply(&body_edits).map_err(ProxyError::Malformed)?);
                parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                parts.headers.remove(header::TRANSFER_ENCODING);
                Full::new(bytes).map_err(|never| match never {}).boxed()
            }
            None => rest(incoming),
        };
        if !header_values.is_empty() {
            for (name, _) in &header_values {
                parts.headers.remove(name);
            }
            for (hit, edit) in hits.iter().zip(&edits) {
                if let Place::Header(i) = hit.place {
                    let (name, original) = &header_values[i];
                    let value = match edit {
                        Edit::Keep => Some(original.clone()),
                        Edit::Replace(v) => Some(v.clone()),
                        Edit::Remove => None,
                    };
                    if let Some(v) = value {
                        let v = HeaderValue::from_str(&v).map_err(|_| ProxyError::Internal)?;
                        parts.headers.append(name.clone(), v);
                    }
                }
            }
        }
        if let Some(qd) = query_doc {
            let q = qd.apply(&query_edits).map_err(ProxyError::Malformed)?;
            let q = String::from_utf8(q).map_err(|_| ProxyError::Internal)?;
            let pq = if q.is_empty() { parts.uri.path().to_owned() } else { format!("{}?{q}", parts.uri.path()) };
            let mut uri_parts = parts.uri.clone().into_parts();
            uri_parts.path_and_query = Some(pq.parse().map_err(|_| ProxyError::Internal)?);
            parts.uri = http::Uri::from_parts(uri_parts).map_err(|_| ProxyError::Internal)?;
        }
        self.forward_parts(parts, new_body, peer).await
    }

    /// One edit per hit: local actions decided here, tokenisations in one vault batch.
    async fn decide(&self, route: &Route, hits: &[Hit], subject: Option<&str>) -> Result<Vec<Edit>, ProxyError> {
        let mut edits = vec![Edit::Keep; hits.len()];
        let mut batch: Vec<(Class, &str)> = Vec::new();
        let mut batch_slots: Vec<usize> = Vec::new();
        for (n, hit) in hits.iter().enumerate() {
            let (action, class) = match (hit.rule, hit.found.origin) {
                (Some(i), _) => (route.fields[i].action, route.fields[i].class),
                (None, Origin::Detected(c)) => {
                    self.metrics.detected.with_label_values(&[&route.name, c.name()]).inc();
                    (Action::Tokenize, Some(c))
                }
                (None, Origin::Field(_)) => continue, // subject reads
            };
            if hit.rule.is_some() {
                let class_label = class.map(Class::name).unwrap_or("-");
                self.metrics.fields.with_label_values(&[&route.name, class_label, action.name()]).inc();
            }
            if route.observe {
                continue;
            }
            let value = hit.found.value.as_str();
            let field =
                || hit.rule.map(|i| describe(&route.fields[i].selector)).unwrap_or_else(|| "detected value".into());
            match action {
                Action::Reject => return Err(ProxyError::Rejected(field())),
                Action::Drop => edits[n] = Edit::Remove,
                _ if value.is_empty() => {} // an empty field holds nothing to protect
                Action::Mask | Action::Encrypt | Action::Tokenize => {
                    let Some(class) = class else { return Err(ProxyError::Internal) };
                    let invalid = || ProxyError::InvalidValue { field: field(), class: class.name() };
                    match action {
                        Action::Mask => {
                            let p = class::parse(class, value).map_err(|_| invalid())?;
                            class::validate(class, &p.canonical).map_err(|_| invalid())?;
                            edits[n] = Edit::Replace(class::mask(class, &p.canonical, &p.layout));
                        }
                        Action::Encrypt => {
                            edits[n] =
                                Edit::Replace(self.keys.encrypt_blob(class.name(), value).ok_or(ProxyError::Internal)?);
                        }
                        _ => {
                            batch.push((class, value));
                            batch_slots.push(n);
                        }
                    }
                }
            }
        }
        if batch.is_empty() {
            return Ok(edits);
        }
        let call = self.vault.tokenize(&self.caller, &batch, subject);
        let tokens = match tokio::time::timeout(self.vault_timeout, call).await {
            Err(_) => return Err(ProxyError::VaultUnavailable),
            Ok(Err(VaultError::Invalid { index, .. })) => {
                let hit = &hits[batch_slots.get(index).copied().unwrap_or(0)];
                let field =
                    hit.rule.map(|i| describe(&route.fields[i].selector)).unwrap_or_else(|| "detected value".into());
                return Err(ProxyError::InvalidValue {
                    field,
                    class: batch.get(index).map(|b| b.0.name()).unwrap_or("-"),
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "vault refused the proxy's batch");
                return Err(ProxyError::VaultUnavailable);
            }
            Ok(Ok(tokens)) => tokens,
        };
        if tokens.len() != batch_slots.len() {
            return Err(ProxyError::VaultUnavailable);
        }
        for (slot, token) in batch_slots.into_iter().zip(tokens) {
            edits[slot] = Edit::Replace(token);
        }
        Ok(edits)
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, ProxyError> {
        let collect = Limited::new(body, self.max_body_bytes).collect();
        match tokio::time::timeout(self.body_timeout, collect).await {
            Err(_) => Err(ProxyError::BodyTimeout),
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(ProxyError::BodyTooLarge(self.max_body_bytes))
            }
            Ok(Err(_)) => Err(ProxyError::BadRequest("request body could not be read")),
        }
    }

    async fn forward_parts(
        &self,
        parts: http::request::Parts,
        body: ProxyBody,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.forward(Request::from_parts(parts, body), peer).await
    }

    async fn forward(&self, req: Request<ProxyBody>, peer: SocketAddr) -> Result<Response<ProxyBody>, ProxyError> {
        let resp = self.upstream.send(req, peer, self.tls).await?;
        Ok(resp.map(|b| b.map_err(Into::into).boxed()))
    }
}

/// The body still to forward: the unread request body, or nothing if it was read.
fn rest(incoming: Option<Incoming>) -> ProxyBody {
    match incoming {
        Some(b) => b.map_err(Into::into).boxed(),
        None => Full::new(Bytes::new()).map_err(|never| match never {}).boxed(),
    }
}

/// The configured selector, for error messages (config text, never a value).
fn describe(s: &Selector) -> String {
    match s {
        Selector::Json(p) => format!("json {p}"),
        Selector::Form(n) => format!("form {n}"),
        Selector::Multipart(n) => format!("multipart {n}"),
        Selector::Xml(p) => format!("xml {p:?}"),
        Selector::Header(h) => format!("header {h}"),
        Selector::Query(q) => format!("query {q}"),
    }
}

/// Content-Length together with Transfer-Encoding, or conflicting Content-Lengths: refused (RFC 9112 §6.3).
fn refuse_smuggling(headers: &http::HeaderMap) -> Result<(), ProxyError> {
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
