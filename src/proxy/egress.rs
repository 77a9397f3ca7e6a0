//! Egress routes: the app sends a payment request holding tokens to veil, veil reveals the configured fields as
//! the route's caller and sends the request to the route's one upstream, then tokenises card numbers and IBANs
//! the upstream echoes back before the app sees the response.
//!
//! The stack for one request, in order:
//! 1. CONNECT and request-smuggling shapes are refused;
//! 2. the configured fields are gathered (body read within its limits, parsed strictly for its content type);
//! 3. their tokens are revealed in one `Vault::detokenize` call, as the route's caller and under its purpose
//!    (audited by the vault); a token the caller may not reveal or the vault cannot give back stops the request;
//! 4. the request goes to the configured upstream only: its URI's authority and Host header are ignored, Host is
//!    set to the upstream's, and the upstream's certificate is verified (system roots + the route's `ca`);
//! 5. the response body (uncompressed: the request asks for identity) is scanned for `response_detect` classes
//!    and what is found is tokenised before the app gets it; a response that cannot be inspected is withheld.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::body::{Doc, Kind};
use super::error::{error_response, ProxyError};
use super::forward::{Hop, Upstream, UpstreamBody};
use super::request::{self, field_of, read_body, refuse_smuggling, BodyLimits, Gather, Hit};
use super::ProxyBody;
use crate::config::EgressConfig;
use crate::domain::Class;
use crate::metrics::Metrics;
use crate::rewrite::{Edit, Origin};
use crate::vault::auth::Caller;
use crate::vault::{Vault, VaultError};

/// One egress route, shared by its connections.
pub struct Egress {
    cfg: EgressConfig,
    /// Reveals as this caller, with its rights.
    caller: Caller,
    /// Tokenises echoed values as the proxy does.
    tokenizer: Caller,
    vault: Arc<dyn Vault>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
}

impl Egress {
    pub fn new(
        cfg: EgressConfig,
        caller: Caller,
        vault: Arc<dyn Vault>,
        metrics: Arc<Metrics>,
    ) -> Result<Egress, crate::tls::TlsError> {
        let upstream = Upstream::new(&cfg.upstream, cfg.upstream_timeout, cfg.ca.as_deref())?;
        Ok(Egress { cfg, caller, tokenizer: Caller::proxy(), vault, upstream, metrics })
    }

    pub fn name(&self) -> &str {
        self.cfg.name()
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let name = self.name();
        let resp = match self.serve(req).await {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(kind) = e.upstream_kind() {
                    self.metrics.upstream_errors.with_label_values(&[name, kind]).inc();
                }
                tracing::info!(egress = name, error = %e, "egress request refused");
                error_response(&e)
            }
        };
        self.metrics.requests.with_label_values(&[name, resp.status().as_str()]).inc();
        self.metrics.request_duration.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
        Ok(resp)
    }

    async fn serve(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        if req.method() == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed("CONNECT"));
        }
        refuse_smuggling(req.headers())?;
        let limits = BodyLimits { max_bytes: self.cfg.max_body_bytes, timeout: self.cfg.body_timeout };
        let mut req = match request::gather(&self.cfg.route, req, limits).await? {
            Gather::Untouched(req) => req,
            Gather::Gathered(g) => {
                let edits = self.reveal(&g.hits).await?;
                g.apply(edits)?
            }
        };
        // The response must be readable to be checked for echoed values.
        req.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let resp = self.upstream.send(req, Hop::Egress).await?;
        self.protect(resp).await
    }

    /// One edit per hit: every selected token revealed in one vault call.
    async fn reveal(&self, hits: &[Hit]) -> Result<Vec<Edit>, ProxyError> {
        let route = &self.cfg.route;
        let mut edits = vec![Edit::Keep; hits.len()];
        let mut items: Vec<(Class, &str)> = Vec::new();
        let mut slots = Vec::new();
        for (n, hit) in hits.iter().enumerate() {
            let Some(class) = hit.rule.and_then(|i| route.fields.get(i)).and_then(|f| f.class) else { continue };
            self.metrics.fields.with_label_values(&[&route.name, class.name(), "detokenize"]).inc();
            if !hit.found.value.is_empty() {
                items.push((class, hit.found.value.as_str()));
                slots.push(n);
            }
        }
        if items.is_empty() {
            return Ok(edits);
        }
        let call = self.vault.detokenize(&self.caller, &items, Some(&self.cfg.purpose));
        let revealed = match tokio::time::timeout(self.cfg.vault_timeout, call).await {
            Err(_) => return Err(ProxyError::VaultUnavailable),
            Ok(Err(VaultError::Forbidden { class, .. })) => return Err(ProxyError::Forbidden(class.name())),
            Ok(Err(VaultError::Invalid { index, .. })) => {
                return Err(request::invalid_item(route, hits, &slots, &items, index));
            }
            Ok(Err(e)) => {
                tracing::warn!(egress = %route.name, error = %e, "vault refused the egress reveal");
                return Err(ProxyError::VaultUnavailable);
            }
            Ok(Ok(revealed)) if revealed.len() == slots.len() => revealed,
            Ok(Ok(_)) => return Err(ProxyError::VaultUnavailable),
        };
        for (slot, result) in slots.into_iter().zip(revealed) {
            match result {
                Ok(value) => edits[slot] = Edit::Replace(value),
                Err(missing) => {
                    let field = hits.get(slot).map(|h| field_of(route, h)).unwrap_or_default();
                    return Err(ProxyError::TokenUnavailable { field, reason: missing.code() });
                }
            }
        }
        Ok(edits)
    }

    /// Tokenises the `response_detect` values in the upstream's response; withholds what cannot be inspected.
    async fn protect(&self, resp: Response<UpstreamBody>) -> Result<Response<ProxyBody>, ProxyError> {
        if self.cfg.response_detect.is_empty() {
            return Ok(resp.map(|b| b.map_err(Into::into).boxed()));
        }
        let (mut parts, body) = resp.into_parts();
        let encoding = parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(ProxyError::UpstreamResponse("it is compressed and cannot be inspected"));
        }
        let limits = BodyLimits { max_bytes: self.cfg.max_body_bytes, timeout: self.cfg.upstream_timeout };
        let bytes = read_body(body, limits).await.map_err(|e| match e {
            ProxyError::BodyTooLarge(_) => ProxyError::UpstreamResponse("it is larger than max_body_bytes"),
            ProxyError::BodyTimeout => ProxyError::UpstreamTimeout,
            _ => ProxyError::UpstreamResponse("it could not be read"),
        })?;
        let bytes = match self.scan(&Kind::of(&parts.headers), &bytes).await? {
            Some(rewritten) => {
                parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
                parts.headers.remove(header::TRANSFER_ENCODING);
                Bytes::from(rewritten)
            }
            None => bytes,
        };
        Ok(Response::from_parts(parts, Full::new(bytes).map_err(|never| match never {}).boxed()))
    }

    /// The response body with detected values tokenised, or `None` when nothing was found. A body that does not
    /// parse as its content type is scanned as text; one that is not text at all cannot hold a readable value.
    async fn scan(&self, kind: &Kind, bytes: &[u8]) -> Result<Option<Vec<u8>>, ProxyError> {
        let text = || Doc::parse(&Kind::Text, bytes).ok();
        let doc = match kind {
            Kind::Other(_) => text(),
            k => Doc::parse(k, bytes).ok().or_else(text),
        };
        let Some(mut doc) = doc else { return Ok(None) };
        let detect = &self.cfg.response_detect;
        let found = doc.find(&[], detect).map_err(|_| ProxyError::UpstreamResponse("it could not be scanned"))?;
        if found.is_empty() {
            return Ok(None);
        }
        let mut items: Vec<(Class, &str)> = Vec::with_capacity(found.len());
        for f in &found {
            let Origin::Detected(class) = f.origin else { return Err(ProxyError::Internal) };
            self.metrics.detected.with_label_values(&[self.name(), class.name()]).inc();
            items.push((class, f.value.as_str()));
        }
        let call = self.vault.tokenize(&self.tokenizer, &items, None);
        let tokens = match tokio::time::timeout(self.cfg.vault_timeout, call).await {
            Ok(Ok(tokens)) if tokens.len() == items.len() => tokens,
            Ok(Err(e)) => {
                tracing::warn!(egress = self.name(), error = %e, "vault refused to tokenise the response");
                return Err(ProxyError::VaultUnavailable);
            }
            _ => return Err(ProxyError::VaultUnavailable),
        };
        let edits: Vec<Edit> = tokens.into_iter().map(Edit::Replace).collect();
        doc.apply(&edits).map(Some).map_err(|_| ProxyError::UpstreamResponse("it could not be rewritten"))
    }
}
