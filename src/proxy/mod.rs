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
pub mod connect;
pub mod egress;
pub mod error;
pub mod forward;
pub mod pool;
pub mod request;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus::{Histogram, IntCounter};

use crate::config::{Action, ProxyConfig, Route};
use crate::crypto::KeySet;
use crate::domain::Class;
use crate::metrics::{Metrics, Series};
use crate::rewrite::{Edit, Origin};
use crate::token;
use crate::vault::auth::Caller;
use crate::vault::{Vault, VaultError};
use error::{error_response, ProxyError};
pub use forward::ClientAddr;
use forward::{Hop, Upstream};
use request::{field_of, refuse_smuggling, BodyLimits, Gather, Hit};

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
    pub body_limits: BodyLimits,
    pub vault_timeout: Duration,
    pub tls: bool,
    /// Per route (and a last one for requests no route matches), the series its requests count in.
    series: Vec<RouteSeries>,
}

/// A route's metric series that do not depend on the request's outcome, each looked up once.
#[derive(Default)]
struct RouteSeries {
    duration: Series<Histogram>,
    /// By index of the route's fields.
    fields: Vec<Series<IntCounter>>,
    /// By class, in [`Class::ALL`] order.
    detected: [Series<IntCounter>; Class::ALL.len()],
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
        let series = routes
            .iter()
            .map(|r| RouteSeries { fields: r.fields.iter().map(|_| Series::default()).collect(), ..Default::default() })
            .chain([RouteSeries::default()])
            .collect();
        Ok(Proxy {
            series,
            routes,
            vault,
            caller: Caller::proxy(),
            keys,
            upstream,
            metrics,
            body_limits: BodyLimits { max_bytes: cfg.max_body_bytes, timeout: cfg.body_timeout },
            vault_timeout: cfg.vault_timeout,
            tls: cfg.tls.is_some(),
        })
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(
        self: Arc<Self>,
        client: ClientAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let route = self.routes.iter().position(|r| r.matches(req.method(), req.uri().path()));
        let label = route.map(|i| self.routes[i].name.as_str()).unwrap_or("-");
        let resp = match self.serve(route, &client, req).await {
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
        if let Some(s) = self.series.get(route.unwrap_or(self.routes.len())) {
            s.duration.of(&self.metrics.request_duration, &[label]).observe(started.elapsed().as_secs_f64());
        }
        Ok(resp)
    }

    async fn serve(
        &self,
        route: Option<usize>,
        client: &ClientAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        refuse_smuggling(req.headers())?;
        let req = match route {
            // No rule touches this request: stream it through without buffering.
            None => req.map(|b| b.map_err(Into::into).boxed()),
            // Boxed, and one `forward` call below: each awaited future keeps its own room in this future's state,
            // which hyper and every layer move by value per request (32 KiB with the rewrite's and three
            // `forward`s' states inline, pass-through included; 2.7 KiB so).
            Some(index) => Box::pin(self.rewrite(index, req)).await?,
        };
        self.forward(req, client).await
    }

    /// A routed request as it goes upstream: its body read, its fields decided, the edits applied.
    async fn rewrite(&self, index: usize, req: Request<Incoming>) -> Result<Request<ProxyBody>, ProxyError> {
        let (Some(route), Some(series)) = (self.routes.get(index), self.series.get(index)) else {
            return Err(ProxyError::Internal);
        };
        let g = match request::gather(route, req, self.body_limits).await? {
            Gather::Untouched(req) => return Ok(req),
            Gather::Gathered(g) => g,
        };
        let edits = self.decide(route, series, &g.hits, g.subject.as_deref()).await?;
        // Observe mode: counted by `decide`, forwarded exactly as received.
        if route.observe {
            Ok(g.unchanged())
        } else {
            g.apply(edits)
        }
    }

    /// One edit per hit: local actions decided here, tokenisations in one vault batch.
    async fn decide(
        &self,
        route: &Route,
        series: &RouteSeries,
        hits: &[Hit],
        subject: Option<&str>,
    ) -> Result<Vec<Edit>, ProxyError> {
        let mut edits = vec![Edit::Keep; hits.len()];
        let mut batch: Vec<(Class, &str)> = Vec::new();
        let mut batch_slots: Vec<usize> = Vec::new();
        for (n, hit) in hits.iter().enumerate() {
            let (action, class) = match (hit.rule, hit.found.origin) {
                (Some(i), _) => (route.fields[i].action, route.fields[i].class),
                (None, Origin::Detected(c)) => {
                    if let Some(s) = series.detected.get(c.index()) {
                        s.of(&self.metrics.detected, &[&route.name, c.name()]).inc();
                    }
                    (Action::Tokenize, Some(c))
                }
                (None, Origin::Field(_)) => continue, // subject reads
            };
            if let Some(s) = hit.rule.and_then(|i| series.fields.get(i)) {
                let class_label = class.map(Class::name).unwrap_or("-");
                s.of(&self.metrics.fields, &[&route.name, class_label, action.name()]).inc();
            }
            if route.observe {
                continue;
            }
            let value = hit.found.value.as_str();
            let field = || field_of(route, hit);
            match action {
                Action::Reject => return Err(ProxyError::Rejected(field())),
                Action::Drop => edits[n] = Edit::Remove,
                Action::Detokenize => return Err(ProxyError::Internal), // egress routes only
                _ if value.is_empty() => {}                             // an empty field holds nothing to protect
                Action::Mask | Action::Encrypt | Action::Tokenize => {
                    let Some(class) = class else { return Err(ProxyError::Internal) };
                    let invalid = || ProxyError::InvalidValue { field: field(), class: class.name() };
                    match action {
                        Action::Mask => {
                            let p = token::parse(class, value).map_err(|_| invalid())?;
                            token::validate(class, &p.canonical).map_err(|_| invalid())?;
                            edits[n] = Edit::Replace(token::mask(class, &p.canonical, &p.layout));
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
                return Err(request::invalid_item(route, hits, &batch_slots, &batch, index));
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

    async fn forward(&self, req: Request<ProxyBody>, client: &ClientAddr) -> Result<Response<ProxyBody>, ProxyError> {
        let resp = self.upstream.send(req, Hop::Ingress { client, tls: self.tls }).await?;
        Ok(resp.map(|b| b.map_err(Into::into).boxed()))
    }
}
