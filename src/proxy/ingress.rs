//! The ingress flow: clients → veil → the app. Routes are matched by method + path; a matched route's fields are
//! tokenised, encrypted, masked, dropped or rejected, detected values tokenised, in one vault batch as the proxy's
//! own caller; requests no route takes stream through untouched. The phases are [`super::pipeline`]'s.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use super::error::ProxyError;
use super::forward::{ClientAddr, Hop, Upstream, UpstreamBody};
use super::pipeline::{self, Client, Flow, Plan, PublicTerms, Selected, VaultCall, VaultOp};
use super::request::{field_of, BodyLimits, Hit, Target, Unreadable};
use super::reveal::{Revealer, Staff, Viewer};
use super::route::{Compiled, RouteSeries};
use super::scan_stream::Scanner;
use super::ProxyBody;
use crate::budget::{Budgets, Rate};
use crate::config::{Cidr, FieldAction, ProxyConfig, Route, Unmatched};
use crate::crypto::BlobSlot;
use crate::domain::path::{canonical_path, PathPattern};
use crate::domain::Class;
use crate::metrics::Metrics;
use crate::rewrite::Edit;
use crate::token;
use crate::vault::auth::Caller;
use crate::vault::Vault;

/// Everything the ingress proxy needs, shared by every connection.
pub struct Proxy {
    routes: Vec<Compiled<FieldAction>>,
    /// Requests no route takes: streamed through (`pass`, these series), scanned by this route (`detect`), or
    /// refused (`refuse`).
    unmatched: Unmatched,
    /// The series of requests passed through.
    passed: RouteSeries,
    /// `unmatched = "detect"`: every detectable class, in bodies and query strings.
    detect_unmatched: Compiled<FieldAction>,
    max_values: usize,
    /// Scans the bodies of requests no route takes that are too large (or not text) to parse.
    scanner: Arc<Scanner>,
    vault: Arc<dyn Vault>,
    /// The identity the proxy tokenises as (in-process: a built-in caller with `tokenize:*`).
    caller: Caller,
    /// The `encrypt` action's keys (empty while this process's vault is sealed: such fields answer 503).
    blobs: BlobSlot,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    body_limits: BodyLimits,
    vault_timeout: Duration,
    tls: bool,
    /// Each client address's budget of new values (`[proxy] new_values_per_hour`), shared with the scanner.
    budgets: Arc<Budgets<IpAddr>>,
    new_values: Option<Rate>,
    /// Peers whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<Cidr>,
    /// Responses of `reveal` routes, shown to the staff member behind the request.
    revealer: Revealer,
}

impl Proxy {
    pub fn new(
        cfg: &ProxyConfig,
        routes: Vec<Route>,
        vault: Arc<dyn Vault>,
        blobs: BlobSlot,
        metrics: Arc<Metrics>,
        staff: Vec<Staff>,
    ) -> Result<Proxy, crate::tls::TlsError> {
        let upstream = Upstream::new(&cfg.upstream, cfg.upstream_timeout, cfg.upstream_ca.as_deref())?;
        let detectable: Vec<Class> = Class::ALL.into_iter().filter(|c| c.detectable()).collect();
        let budgets = Arc::new(Budgets::default());
        let scanner = Arc::new(Scanner {
            budgets: budgets.clone(),
            rate: cfg.new_values,
            vault: vault.clone(),
            caller: Caller::proxy(),
            classes: detectable.clone(),
            vault_timeout: cfg.vault_timeout,
            read_timeout: cfg.body_timeout,
            max_values: cfg.max_values_per_request,
        });
        let response_limits =
            BodyLimits { max_bytes: cfg.max_body_bytes, timeout: cfg.upstream_timeout, max_values: None };
        let revealer =
            Revealer::new(staff, &routes, vault.clone(), metrics.clone(), cfg.vault_timeout, response_limits);
        Ok(Proxy {
            revealer,
            scanner,
            routes: routes.into_iter().map(Compiled::new).collect(),
            unmatched: cfg.unmatched,
            passed: RouteSeries::default(),
            detect_unmatched: Compiled::new(Route {
                name: "-".into(),
                methods: Vec::new(),
                path: PathPattern::any(),
                fields: Vec::new(),
                detect: detectable,
                subject: None,
                observe: false,
                purpose: None,
                reveal: None,
            }),
            max_values: cfg.max_values_per_request,
            vault,
            caller: Caller::proxy(),
            blobs,
            upstream,
            metrics,
            body_limits: BodyLimits {
                max_bytes: cfg.max_body_bytes,
                timeout: cfg.body_timeout,
                max_values: Some(cfg.max_values_per_request),
            },
            vault_timeout: cfg.vault_timeout,
            tls: cfg.tls.is_some(),
            budgets,
            new_values: cfg.new_values,
            trusted_proxies: cfg.trusted_proxies.clone(),
        })
    }

    /// The address `client`'s new values are budgeted under.
    fn budget_key(&self, client: Client<'_>) -> IpAddr {
        super::client::budget_key(client.addr.ip(), client.headers, &self.trusted_proxies)
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(
        self: Arc<Self>,
        client: ClientAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        pipeline::run(&*self, &client, req).await
    }

    /// The edit of one hit that the proxy makes itself (mask, encrypt), or a refusal.
    fn local_edit(&self, route: &Route, hit: &Hit, action: FieldAction) -> Result<Edit, ProxyError> {
        let invalid =
            |class: Class| ProxyError::InvalidValue { field: field_of(route, hit.target), class: class.name() };
        match action {
            FieldAction::Mask(class) => {
                let p = token::parse(class, &hit.value).map_err(|_| invalid(class))?;
                token::validate(class, &p.canonical).map_err(|_| invalid(class))?;
                Ok(Edit::Replace(token::mask(class, &p.canonical, &p.layout)))
            }
            FieldAction::Encrypt(class) => {
                // Blob keys are missing only while this process's vault is sealed: fail closed, as for tokens.
                let keys = self.blobs.get().ok_or(ProxyError::VaultUnavailable)?;
                // Blob keys hold every class; a missing one is a broken start, refused rather than skipped.
                keys.encrypt_blob(class.name(), &hit.value).map(Edit::Replace).ok_or(ProxyError::Internal)
            }
            FieldAction::Drop(_) => Ok(Edit::Remove),
            FieldAction::Reject(_) => Err(ProxyError::Rejected(field_of(route, hit.target))),
            FieldAction::Tokenize(_) => Err(ProxyError::Internal),
        }
    }
}

impl Flow for Proxy {
    type Action = FieldAction;

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn select(&self, req: &Request<Incoming>) -> Result<Selected<'_, FieldAction>, ProxyError> {
        // Routes match the path an app router sees; the request goes on with its path as sent.
        let path = canonical_path(req.uri().path())?;
        let path = &*path;
        Ok(match (self.routes.iter().find(|c| c.route.matches(req.method(), path)), self.unmatched) {
            (Some(route), _) => Selected::Route(route),
            (None, Unmatched::Pass) => Selected::Pass(&self.passed),
            (None, Unmatched::Detect) => Selected::Route(&self.detect_unmatched),
            (None, Unmatched::Refuse) => return Err(ProxyError::NoRoute),
        })
    }

    fn body_limits(&self) -> BodyLimits {
        self.body_limits
    }

    /// Configured routes refuse what they cannot read; requests no route takes may be uploads of any size and
    /// type, scanned as they stream.
    fn unreadable(&self, route: &Compiled<FieldAction>, client: Client<'_>) -> Unreadable {
        match std::ptr::eq(route, &self.detect_unmatched) {
            true => Unreadable::Stream(self.scanner.clone(), self.budget_key(client)),
            false => Unreadable::Refuse,
        }
    }

    fn max_values(&self) -> Option<usize> {
        Some(self.max_values)
    }

    fn observe(&self, route: &Compiled<FieldAction>) -> bool {
        route.route.observe
    }

    fn decide<'h>(
        &self,
        compiled: &Compiled<FieldAction>,
        hits: &'h [Hit],
        plan: &mut Plan<'h>,
    ) -> Result<(), ProxyError> {
        let (route, series) = (&compiled.route, &compiled.series);
        for (n, hit) in hits.iter().enumerate() {
            let action = match hit.target {
                Target::Rule(i) => {
                    let field = route.fields.get(i).ok_or(ProxyError::Internal)?;
                    if let Some(s) = series.fields.get(i) {
                        let class = field.action.class().map_or("-", |c| c.name());
                        s.of(&self.metrics.fields, &[&route.name, class, field.action.name()]).inc();
                    }
                    field.action
                }
                Target::Detected(class) => {
                    if let Some(s) = series.detected.get(class.index()) {
                        s.of(&self.metrics.detected, &[&route.name, class.name()]).inc();
                    }
                    FieldAction::Tokenize(class)
                }
                Target::Subject => continue,
            };
            // What hit where, with which action: `veil try` shows these; VEIL_LOG=veil::explain=debug logs them.
            // Config text only, never a value.
            tracing::debug!(
                target: "veil::explain",
                route = %route.name,
                place = hit.place.name(),
                field = %field_of(route, hit.target),
                class = action.class().map_or("-", |c| c.name()),
                action = if hit.value.is_empty() { "keep (empty)" } else { action.name() },
            );
            // Observe mode counts, and changes nothing.
            if route.observe {
                continue;
            }
            match action {
                // An empty field holds nothing to protect.
                FieldAction::Tokenize(_) | FieldAction::Mask(_) | FieldAction::Encrypt(_) if hit.value.is_empty() => {}
                FieldAction::Tokenize(class) => {
                    plan.ask(n, class, &hit.value);
                }
                _ => plan.edit(n, self.local_edit(route, hit, action)?)?,
            }
        }
        pipeline::bind_cvcs(route, hits, plan)
    }

    fn vault_call<'a>(
        &'a self,
        _route: &'a Compiled<FieldAction>,
        subject: Option<&'a str>,
        client: Client<'_>,
    ) -> VaultCall<'a> {
        let public = PublicTerms { budgets: &self.budgets, rate: self.new_values, key: self.budget_key(client) };
        VaultCall {
            vault: &*self.vault,
            caller: &self.caller,
            timeout: self.vault_timeout,
            op: VaultOp::Tokenize { subject },
            public: Some(public),
        }
    }

    async fn forward(
        &self,
        req: Request<ProxyBody>,
        client: &ClientAddr,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        self.upstream.send(req, Hop::Ingress { client, tls: self.tls }).await
    }

    /// The staff member a `reveal` route's response is for (and the route, by index).
    type Answer = Option<(Viewer, usize)>;

    fn prepare(
        &self,
        route: Option<&Compiled<FieldAction>>,
        client: &ClientAddr,
        headers: &mut http::HeaderMap,
    ) -> Option<(Viewer, usize)> {
        let rule = route.and_then(|c| c.route.reveal.as_ref());
        let viewer = self.revealer.prepare(rule, client, headers)?;
        let index = self.routes.iter().position(|c| route.is_some_and(|r| std::ptr::eq(c, r)))?;
        Some((viewer, index))
    }

    async fn respond(
        &self,
        resp: Response<UpstreamBody>,
        answer: Option<(Viewer, usize)>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let shown = answer.and_then(|(viewer, i)| {
            let route = &self.routes.get(i)?.route;
            Some((viewer, route, route.reveal.as_ref()?))
        });
        match shown {
            // Boxed: the back office's reveal is rare, and its state would otherwise sit in every request's
            // future (which is moved, whole, as requests start).
            Some((viewer, route, rule)) => Box::pin(self.revealer.respond(resp, viewer, route, rule)).await,
            None => Ok(super::stream(resp)),
        }
    }
}
