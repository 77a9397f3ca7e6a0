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

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::body::{self, Doc, Kind};
use super::error::ProxyError;
use super::forward::{ClientAddr, Hop, Upstream, UpstreamBody};
use super::pipeline::{self, Client, Flow, Plan, Selected, VaultCall, VaultOp};
use super::request::{field_of, read_body, BodyLimits, Hit, Target};
use super::route::Compiled;
use super::ProxyBody;
use crate::config::{EgressConfig, Reveal, Route, Selector};
use crate::domain::Class;
use crate::metrics::Metrics;
use crate::rewrite::{Edit, Origin};
use crate::vault::auth::Caller;
use crate::vault::Vault;

/// One egress route, shared by its connections.
pub struct Egress {
    cfg: EgressConfig,
    route: Compiled<Reveal>,
    /// Reveals as this caller, with its rights.
    caller: Caller,
    /// Tokenises echoed values as the proxy does.
    tokenizer: Caller,
    vault: Arc<dyn Vault>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// Egress hops carry no client (the app's address is never sent on); the pipeline's slot for one.
    no_client: ClientAddr,
}

impl Egress {
    pub fn new(
        cfg: EgressConfig,
        caller: Caller,
        vault: Arc<dyn Vault>,
        metrics: Arc<Metrics>,
    ) -> Result<Egress, crate::tls::TlsError> {
        let upstream = Upstream::new(&cfg.upstream, cfg.upstream_timeout, cfg.ca.as_deref())?;
        let route = Compiled::new(cfg.route.clone());
        let no_client = ClientAddr::new(std::net::Ipv4Addr::LOCALHOST.into());
        Ok(Egress { cfg, route, caller, tokenizer: Caller::proxy(), vault, upstream, metrics, no_client })
    }

    pub fn name(&self) -> &str {
        self.cfg.name()
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        pipeline::run(&*self, &self.no_client, req).await
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
        let found = doc.find(&[], None, detect).map_err(|_| ProxyError::UpstreamResponse("it could not be scanned"))?;
        if found.is_empty() {
            return Ok(None);
        }
        let mut items: Vec<(Class, &str)> = Vec::with_capacity(found.len());
        for f in &found {
            // Nothing but detection looked at this body.
            let Origin::Detected(class) = f.origin else { return Err(ProxyError::Internal) };
            self.metrics.detected.with_label_values(&[self.name(), class.name()]).inc();
            items.push((class, f.value.as_str()));
        }
        let call = VaultCall {
            vault: &*self.vault,
            caller: &self.tokenizer,
            timeout: self.cfg.vault_timeout,
            op: VaultOp::Tokenize { subject: None },
            // The provider is no stranger: it echoes the values it was given.
            public: None,
        };
        let tokens = call.tokenize(&items, &[]).await.map_err(|e| {
            e.refusal(|index| {
                ("a value in the upstream's response".into(), items.get(index).map_or(Class::Text, |i| i.0))
            })
        })?;
        let edits: Vec<Edit> = tokens.into_iter().map(Edit::Replace).collect();
        doc.apply(&edits).map(Some).map_err(|_| ProxyError::UpstreamResponse("it could not be rewritten"))
    }
}

impl Flow for Egress {
    type Action = Reveal;

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Everything on an egress listener counts under the egress route's name.
    fn unrouted_label(&self) -> &str {
        self.name()
    }

    /// One route: every request the app sends here goes to the one upstream.
    fn select(&self, _req: &Request<Incoming>) -> Result<Selected<'_, Reveal>, ProxyError> {
        Ok(Selected::Route(&self.route))
    }

    fn body_limits(&self) -> BodyLimits {
        BodyLimits { max_bytes: self.cfg.max_body_bytes, timeout: self.cfg.body_timeout, max_values: None }
    }

    /// Every selected token is revealed, in one vault call.
    fn decide<'h>(&self, compiled: &Compiled<Reveal>, hits: &'h [Hit], plan: &mut Plan<'h>) -> Result<(), ProxyError> {
        let route = &compiled.route;
        if route.fields.iter().any(|f| matches!(f.action, Reveal::Audience(_))) {
            plan.for_recipients();
        }
        for (n, hit) in hits.iter().enumerate() {
            let Target::Rule(i) = hit.target else { continue };
            let field = route.fields.get(i).ok_or(ProxyError::Internal)?;
            let class = match field.action {
                Reveal::Value(class) => class,
                Reveal::Audience(class) => {
                    self.metrics.fields.with_label_values(&[&route.name, class.name(), "detokenize"]).inc();
                    if !hit.value.is_empty() {
                        plan.ask_recipient(n, class, &hit.value);
                    }
                    continue;
                }
                Reveal::InText(classes) => {
                    // Tokens inside the text: each found one is asked for; one the vault does not know stays.
                    for m in crate::detect::find_tokens(&hit.value, &classes.to_vec()) {
                        self.metrics.fields.with_label_values(&[&route.name, m.class.name(), "detokenize"]).inc();
                        plan.ask_within(n, m.class, m.start..m.end, &hit.value[m.start..m.end]);
                    }
                    continue;
                }
            };
            self.metrics.fields.with_label_values(&[&route.name, class.name(), "detokenize"]).inc();
            // A CVC field's placeholder says nothing: the CVC is revealed by its card's token (bound below).
            let cvc_card = |h: &Hit| field.bind.as_ref().is_some_and(|b| field_selector(route, h) == Some(b));
            match class {
                Class::Cvc => match hits.iter().find(|h| cvc_card(h)).filter(|h| !h.value.is_empty()) {
                    Some(card) => {
                        plan.ask(n, class, &card.value);
                    }
                    None => return Err(ProxyError::CvcWithoutCard(field_of(route, hit.target))),
                },
                _ if !hit.value.is_empty() => {
                    plan.ask(n, class, &hit.value);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn vault_call<'a>(
        &'a self,
        _route: &'a Compiled<Reveal>,
        _subject: Option<&'a str>,
        _client: Client<'_>,
    ) -> VaultCall<'a> {
        VaultCall {
            vault: &*self.vault,
            caller: &self.caller,
            timeout: self.cfg.vault_timeout,
            op: VaultOp::Detokenize { purpose: &self.cfg.purpose },
            public: None,
        }
    }

    /// To the configured upstream only; the response must be readable to be checked for echoed values.
    async fn forward(
        &self,
        mut req: Request<ProxyBody>,
        _client: &ClientAddr,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        req.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        self.upstream.send(req, Hop::Egress).await
    }

    type Answer = ();

    fn prepare(&self, _route: Option<&Compiled<Reveal>>, _client: &ClientAddr, _headers: &mut http::HeaderMap) {}

    /// Tokenises the `response_detect` values in the upstream's response; withholds what cannot be inspected.
    async fn respond(&self, resp: Response<UpstreamBody>, (): ()) -> Result<Response<ProxyBody>, ProxyError> {
        if self.cfg.response_detect.is_empty() {
            return Ok(super::stream(resp));
        }
        let (mut parts, body) = resp.into_parts();
        if body::content_encoding(&parts.headers).is_some() {
            return Err(ProxyError::UpstreamResponse("it is compressed and cannot be inspected"));
        }
        let limits =
            BodyLimits { max_bytes: self.cfg.max_body_bytes, timeout: self.cfg.upstream_timeout, max_values: None };
        let bytes = read_body(body, limits).await.map_err(|e| match e {
            ProxyError::BodyTooLarge(_) => ProxyError::UpstreamResponse("it is larger than max_body_bytes"),
            ProxyError::BodyTimeout => ProxyError::UpstreamTimeout,
            _ => ProxyError::UpstreamResponse("it could not be read"),
        })?;
        let body = match self.scan(&Kind::of(&parts.headers), &bytes).await? {
            Some(rewritten) => body::replace(&mut parts.headers, Bytes::from(rewritten)),
            None => Full::new(bytes).map_err(|never| match never {}).boxed(),
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// The selector of the route field a hit was found by.
fn field_selector<'r>(route: &'r Route<Reveal>, hit: &Hit) -> Option<&'r Selector> {
    match hit.target {
        Target::Rule(k) => route.fields.get(k).map(|f| &f.selector),
        _ => None,
    }
}
