//! The one request pipeline every HTTP flow runs (ingress routes, egress routes, and the flows to come). A flow
//! supplies its phases ([`Flow`]); the machinery — metrics, the error → response map, gathering, the one vault
//! call under a deadline, applying edits, forwarding — is written once, here and in `request.rs`.
//!
//! The phases of one request, in order:
//! 1. **admit**: shapes no flow serves are refused (CONNECT, request-smuggling shapes);
//! 2. **match**: the flow picks the route the request takes, or lets it stream through untouched;
//! 3. **gather**: every value the route selects or detects is listed (body read within its limits, parsed
//!    strictly for its content type; headers; query);
//! 4. **decide**: the flow gives one edit per value, local ones (mask, drop, encrypt…) at once, and puts the
//!    values that need the vault into one [`Plan`];
//! 5. **vault**: the plan's values go to the vault in one call under the flow's deadline ([`VaultCall`]); every
//!    refusal maps to one [`ProxyError`] the same way in every flow;
//! 6. **apply**: the request is written back with its edits (Content-Length recomputed);
//! 7. **prepare** (the flow's last word on the request's head), **forward**, then the **response** phase of the
//!    flow.
//!
//! Any failure answers the spec's JSON error and forwards nothing (fail closed).

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;

use super::error::{error_response, ProxyError};
use super::forward::{ClientAddr, UpstreamBody};
use super::request::{self, field_of, refuse_smuggling, BodyLimits, Gather, Hit, Target, Unreadable};
use super::route::{Compiled, RouteSeries};
use super::ProxyBody;
use crate::budget::{Budgets, Rate};
use crate::config::Route;
use crate::domain::{Class, Op};
use crate::metrics::Metrics;
use crate::rewrite::Edit;
use crate::vault::auth::Caller;
use crate::vault::{budget_items, ItemResult, Scope, Terms, Vault, VaultError};

/// What the match phase chose.
pub enum Selected<'a, A> {
    /// The request is served by this route.
    Route(&'a Compiled<A>),
    /// No route takes it: forwarded untouched, counted under the route label `-` in these series.
    Pass(&'a RouteSeries),
}

/// The phases a flow supplies; [`run`] drives them.
pub trait Flow: Send + Sync + 'static {
    /// What the flow's routes do with a selected field.
    type Action: Send + Sync + 'static;

    fn metrics(&self) -> &Metrics;

    /// The route label of requests refused or passed before a route took them.
    fn unrouted_label(&self) -> &str {
        "-"
    }

    /// Phase 2, match. Errors refuse the request (e.g. a path that cannot be matched unambiguously).
    fn select(&self, req: &Request<Incoming>) -> Result<Selected<'_, Self::Action>, ProxyError>;

    /// How much body phase 3 may read, and for how long.
    fn body_limits(&self) -> BodyLimits;

    /// What phase 3 does with a body a detecting route cannot read (sent by `client`).
    fn unreadable(&self, _route: &Compiled<Self::Action>, _client: Client<'_>) -> Unreadable {
        Unreadable::Refuse
    }

    /// Most values one request may send to the vault; more are refused (422 `too_many_values`) before any call.
    fn max_values(&self) -> Option<usize> {
        None
    }

    /// Phase 4, decide: one edit per hit in `plan`, values for the vault added with [`Plan::ask`].
    fn decide<'h>(
        &self,
        route: &Compiled<Self::Action>,
        hits: &'h [Hit],
        plan: &mut Plan<'h>,
    ) -> Result<(), ProxyError>;

    /// Phase 5: the call the plan's values go to. `subject` is the one the request named, if any; `client` is
    /// who sent the request (its peer and headers), for flows that budget their clients.
    fn vault_call<'a>(
        &'a self,
        route: &'a Compiled<Self::Action>,
        subject: Option<&'a str>,
        client: Client<'_>,
    ) -> VaultCall<'a>;

    /// Observe mode: decide and count, then forward the request exactly as received.
    fn observe(&self, _route: &Compiled<Self::Action>) -> bool {
        false
    }

    /// What the response phase needs to know of the request (e.g. who sees the response).
    type Answer: Send;

    /// Before phase 7: the flow's last word on the request's head (`route` is `None` for a request passed
    /// through), and what its response phase needs.
    fn prepare(
        &self,
        route: Option<&Compiled<Self::Action>>,
        client: &ClientAddr,
        headers: &mut HeaderMap,
    ) -> Self::Answer;

    /// Phase 7, forward the (rewritten) request to the flow's upstream.
    fn forward(
        &self,
        req: Request<ProxyBody>,
        client: &ClientAddr,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + Send;

    /// Phase 8, response: what the client gets from the upstream's answer.
    fn respond(
        &self,
        resp: Response<UpstreamBody>,
        answer: Self::Answer,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send;
}

/// Serves one request through `flow`'s phases; never fails (errors become JSON responses, counted).
pub async fn run<F: Flow>(
    flow: &F,
    client: &ClientAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let selected = admit(&req).and_then(|()| flow.select(&req));
    let (label, series) = match &selected {
        Ok(Selected::Route(c)) => (c.name(), Some(&c.series)),
        Ok(Selected::Pass(s)) => (flow.unrouted_label(), Some(*s)),
        Err(_) => (flow.unrouted_label(), None),
    };
    let result = match selected {
        Err(e) => Err(e),
        // No rule touches this request: stream it through without buffering.
        Ok(Selected::Pass(_)) => forward(flow, None, req.map(|b| request::rest(Some(b))), client).await,
        // Boxed: the routed path's state stays out of the pass-through future, which hyper moves per request. The
        // forward is not in the box: a future is moved whole into its box, and the forward's is most of it.
        Ok(Selected::Route(route)) => match Box::pin(routed(flow, route, client, req)).await {
            Ok(req) => forward(flow, Some(route), req, client).await,
            Err(e) => Err(e),
        },
    };
    let metrics = flow.metrics();
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(kind) = e.upstream_kind() {
                metrics.upstream_errors.with_label_values(&[label, kind]).inc();
            }
            // A client's budget ran out (the vault counts its callers'): maybe a tokenisation oracle being walked.
            if let ProxyError::OverBudget { scope: Scope::Client, .. } = e {
                metrics.budget_refusals.with_label_values(&[Scope::Client.name(), "-"]).inc();
            }
            tracing::info!(route = label, error = %e, "request refused");
            error_response(&e)
        }
    };
    metrics.requests.with_label_values(&[label, resp.status().as_str()]).inc();
    let elapsed = started.elapsed().as_secs_f64();
    match series {
        Some(s) => s.duration.of(&metrics.request_duration, &[label]).observe(elapsed),
        None => metrics.request_duration.with_label_values(&[label]).observe(elapsed),
    }
    Ok(resp)
}

/// Phase 1: what no flow serves.
fn admit(req: &Request<Incoming>) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed("CONNECT"));
    }
    refuse_smuggling(req.headers())
}

/// Phases 2 to 4 on a routed request: gathers what the route reads, asks the vault, and gives the request to
/// forward.
async fn routed<F: Flow>(
    flow: &F,
    route: &Compiled<F::Action>,
    client: &ClientAddr,
    req: Request<Incoming>,
) -> Result<Request<ProxyBody>, ProxyError> {
    let unreadable = flow.unreadable(route, Client { addr: client, headers: req.headers() });
    Ok(match request::gather(&route.route, req, flow.body_limits(), unreadable).await? {
        Gather::Untouched(req) => req,
        // Nothing found (most requests a detecting route or `unmatched = "detect"` sees): no plan, no vault call,
        // and the request goes on as it came, its body as read.
        Gather::Gathered(g) if g.hits.is_empty() => g.unchanged(),
        Gather::Gathered(g) => {
            let mut plan = Plan::new(g.hits.len());
            flow.decide(route, &g.hits, &mut plan)?;
            // Bounded work per request, and a refusal that stores nothing: checked before the vault is asked.
            if let Some(max) = flow.max_values().filter(|max| plan.asked() > *max) {
                return Err(ProxyError::TooManyValues(max));
            }
            let call = flow.vault_call(route, g.subject.as_deref(), Client { addr: client, headers: &g.parts.headers });
            let edits = plan.run(&call, &route.route, &g.hits).await?;
            if flow.observe(route) {
                g.unchanged()
            } else {
                g.apply(edits)?
            }
        }
    })
}

async fn forward<F: Flow>(
    flow: &F,
    route: Option<&Compiled<F::Action>>,
    mut req: Request<ProxyBody>,
    client: &ClientAddr,
) -> Result<Response<ProxyBody>, ProxyError> {
    let answer = flow.prepare(route, client, req.headers_mut());
    let resp = flow.forward(req, client).await?;
    flow.respond(resp, answer).await
}

/// Who sent a request: its connection's peer and its headers.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    pub addr: &'a ClientAddr,
    pub headers: &'a HeaderMap,
}

/// The vault call a plan's values go to: who calls, what is asked, and how long the vault may take.
pub struct VaultCall<'a> {
    pub vault: &'a dyn Vault,
    pub caller: &'a Caller,
    pub timeout: Duration,
    pub op: VaultOp<'a>,
    /// Values from the public side (the ingress): tokenised strictly and within the client's budget.
    pub public: Option<PublicTerms<'a>>,
}

/// How the ingress tokenises a client's values: strictly (see [`Terms::strict`]) and, with a `rate`, within
/// the budget of new values the client's address (`key`) has left.
#[derive(Clone, Copy)]
pub struct PublicTerms<'a> {
    pub budgets: &'a Budgets<IpAddr>,
    pub rate: Option<Rate>,
    pub key: IpAddr,
}

/// What a flow asks of the vault.
#[derive(Clone, Copy)]
pub enum VaultOp<'a> {
    /// Tokenise the values, linked to this subject.
    Tokenize { subject: Option<&'a str> },
    /// Reveal the tokens, audited under this purpose.
    Detokenize { purpose: &'a str },
}

impl VaultCall<'_> {
    /// Tokenises `items` under the deadline, each `(cvc, card)` of `binds` kept for its card; any refusal or a
    /// wrong-sized answer is an error.
    pub async fn tokenize(&self, items: &[(Class, &str)], binds: &[(usize, usize)]) -> Result<Vec<String>, CallError> {
        let subject = match self.op {
            VaultOp::Tokenize { subject } => subject,
            VaultOp::Detokenize { .. } => None,
        };
        // The client's budget, taken for every enumerable item before the vault is asked (as the vault takes its
        // callers': see `budget_items`); given back when `reserved` drops unless the tokenisation succeeds.
        let want = budget_items(items);
        let mut reserved = self.public.and_then(|p| Some(p.budgets.reserve(&p.key, p.rate?, want)));
        if let Some(r) = reserved.as_ref().filter(|r| r.granted() < want) {
            return Err(CallError::Vault(VaultError::OverBudget {
                scope: Scope::Client,
                retry_after: r.retry_after(),
            }));
        }
        let terms = Terms { strict: self.public.is_some(), binds, client: self.public.as_ref().map(|p| p.key) };
        let call = self.vault.tokenize_on(self.caller, items, subject, terms);
        let tokens = tokio::time::timeout(self.timeout, call).await.map_err(|_| CallError::Timeout)??;
        if tokens.len() != items.len() {
            return Err(CallError::Vault(VaultError::Internal));
        }
        if let Some(r) = &mut reserved {
            r.spend(want);
        }
        Ok(tokens)
    }

    async fn reveal(&self, items: &[(Class, &str)], purpose: &str) -> Result<Vec<ItemResult>, CallError> {
        let call = self.vault.detokenize(self.caller, items, Some(purpose));
        let values = tokio::time::timeout(self.timeout, call).await.map_err(|_| CallError::Timeout)??;
        if values.len() != items.len() {
            return Err(CallError::Vault(VaultError::Internal));
        }
        Ok(values)
    }

    /// Reveals `items` for a request going to the recipients `audience` names (item indexes): those revealed as
    /// they are, every other item only where it is linked to the recipients' subjects (`not_linked` otherwise;
    /// with no recipient in the request, nothing is).
    async fn reveal_for(
        &self,
        items: &[(Class, &str)],
        audience: &[usize],
        purpose: &str,
    ) -> Result<Vec<ItemResult>, CallError> {
        let (recipients, others): (Vec<usize>, Vec<usize>) = (0..items.len()).partition(|i| audience.contains(i));
        let pick = |which: &[usize]| which.iter().filter_map(|&i| items.get(i).copied()).collect::<Vec<_>>();
        let mut out: Vec<Option<ItemResult>> = (0..items.len()).map(|_| None).collect();
        let to = pick(&recipients);
        if !to.is_empty() {
            for (&i, r) in recipients.iter().zip(self.reveal(&to, purpose).await?) {
                out[i] = Some(r);
            }
        }
        if !others.is_empty() {
            let asked = pick(&others);
            let call = self.vault.reveal_to(self.caller, Op::Detokenize, &asked, Some(purpose), &to);
            let values = tokio::time::timeout(self.timeout, call).await.map_err(|_| CallError::Timeout)??;
            if values.len() != asked.len() {
                return Err(CallError::Vault(VaultError::Internal));
            }
            for (&i, r) in others.iter().zip(values) {
                out[i] = Some(r);
            }
        }
        out.into_iter().map(|r| r.ok_or(CallError::Vault(VaultError::Internal))).collect()
    }
}

/// Why a vault call gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the vault did not answer in time")]
    Timeout,
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl CallError {
    /// The one mapping of a vault refusal to the client's error, for every flow. `field` names the field a batch
    /// item came from (for an invalid value); it is never a value.
    pub fn refusal(self, field: impl FnOnce(usize) -> (String, Class)) -> ProxyError {
        match self {
            CallError::Timeout => ProxyError::VaultUnavailable,
            CallError::Vault(VaultError::Forbidden { class, .. }) => ProxyError::Forbidden(class.name()),
            CallError::Vault(VaultError::ForbiddenOp(_)) => ProxyError::Forbidden("any"),
            CallError::Vault(VaultError::OverBudget { scope, retry_after }) => {
                ProxyError::OverBudget { scope, retry_after }
            }
            CallError::Vault(VaultError::Invalid { index, .. }) => {
                let (field, class) = field(index);
                ProxyError::InvalidValue { field, class: class.name() }
            }
            CallError::Vault(e) => {
                tracing::warn!(error = %e, "the vault refused the call");
                ProxyError::VaultUnavailable
            }
        }
    }
}

/// Binds every CVC the plan asks for to its card's item: the item of the hit found at the CVC field's `bind`
/// selector. A CVC with no card beside it is refused (kept for nothing, or revealed for nothing).
pub fn bind_cvcs<A>(route: &Route<A>, hits: &[Hit], plan: &mut Plan<'_>) -> Result<(), ProxyError> {
    for (n, hit) in hits.iter().enumerate() {
        let Target::Rule(i) = hit.target else { continue };
        let (Some(bind), Some(cvc)) = (route.fields.get(i).and_then(|f| f.bind.as_ref()), plan.item_of(n)) else {
            continue;
        };
        let is_card =
            |h: &Hit| matches!(h.target, Target::Rule(k) if route.fields.get(k).is_some_and(|f| &f.selector == bind));
        let card = hits.iter().enumerate().filter(|(_, h)| is_card(h)).find_map(|(m, _)| plan.item_of(m));
        match card {
            Some(card) => plan.bind(cvc, card),
            None => return Err(ProxyError::CvcWithoutCard(field_of(route, hit.target))),
        }
    }
    Ok(())
}

/// A revealed value and the range of a text it replaces.
type Splice = (std::ops::Range<usize>, String);

/// The edits of one request, and the values that need the vault (each with the hit it came from).
pub struct Plan<'h> {
    edits: Vec<Edit>,
    items: Vec<(Class, &'h str)>,
    slots: Vec<usize>,
    /// `(cvc item, card item)`: CVCs kept for (ingress) or revealed by (egress) their card's token.
    binds: Vec<(usize, usize)>,
    /// Per item: the byte range of its hit's value it was found at, for tokens found inside a text (`None`: the
    /// item is the whole value).
    within: Vec<Option<std::ops::Range<usize>>>,
    /// Items naming whom the request goes to (egress `audience` fields); `None`: the route has no such field.
    audience: Option<Vec<usize>>,
}

impl<'h> Plan<'h> {
    pub fn new(hits: usize) -> Plan<'h> {
        Plan {
            edits: vec![Edit::Keep; hits],
            items: Vec::new(),
            slots: Vec::new(),
            binds: Vec::new(),
            within: Vec::new(),
            audience: None,
        }
    }

    /// The request's tokens are revealed only for its recipients (the items [`Plan::ask_recipient`] adds).
    pub fn for_recipients(&mut self) {
        self.audience.get_or_insert_with(Vec::new);
    }

    /// Like [`Plan::ask`], for a recipient: revealed, and one of whom the request goes to.
    pub fn ask_recipient(&mut self, slot: usize, class: Class, token: &'h str) {
        let item = self.ask(slot, class, token);
        self.audience.get_or_insert_with(Vec::new).push(item);
    }

    /// Hit `slot` gets this edit.
    pub fn edit(&mut self, slot: usize, edit: Edit) -> Result<(), ProxyError> {
        *self.edits.get_mut(slot).ok_or(ProxyError::Internal)? = edit;
        Ok(())
    }

    /// Hit `slot`'s value goes to the vault as a value (or token) of `class`; its edit is the vault's answer.
    /// Returns the item's index in the call.
    pub fn ask(&mut self, slot: usize, class: Class, value: &'h str) -> usize {
        self.items.push((class, value));
        self.slots.push(slot);
        self.within.push(None);
        self.items.len() - 1
    }

    /// A token found at `range` inside hit `slot`'s text goes to the vault to be revealed; its value replaces it
    /// there. One the vault does not know stays as it is (it merely looked like a token).
    pub fn ask_within(&mut self, slot: usize, class: Class, range: std::ops::Range<usize>, token: &'h str) {
        self.ask(slot, class, token);
        if let Some(w) = self.within.last_mut() {
            *w = Some(range);
        }
    }

    /// The vault item asked for hit `slot`, if any.
    pub fn item_of(&self, slot: usize) -> Option<usize> {
        self.slots.iter().position(|s| *s == slot)
    }

    /// Item `cvc` (a CVC) belongs to item `card` (its card) in the call.
    pub fn bind(&mut self, cvc: usize, card: usize) {
        self.binds.push((cvc, card));
    }

    /// How many values go to the vault.
    pub fn asked(&self) -> usize {
        self.items.len()
    }

    /// Phase 5: the one vault call, its answers put in place. Nothing is asked when no value needs the vault.
    async fn run<A>(self, call: &VaultCall<'_>, route: &Route<A>, hits: &[Hit]) -> Result<Vec<Edit>, ProxyError> {
        let Plan { mut edits, items, slots, binds, within, audience } = self;
        if items.is_empty() {
            return Ok(edits);
        }
        let target = |slot: Option<&usize>| slot.and_then(|&s| hits.get(s)).map_or(Target::Subject, |h| h.target);
        let name_item = |index: usize| {
            let field = field_of(route, target(slots.get(index)));
            (field, items.get(index).map_or(Class::Text, |i| i.0))
        };
        let answers: Vec<Result<String, ProxyError>> = match call.op {
            VaultOp::Tokenize { .. } => {
                call.tokenize(&items, &binds).await.map_err(|e| e.refusal(name_item))?.into_iter().map(Ok).collect()
            }
            VaultOp::Detokenize { purpose } => match &audience {
                None => call.reveal(&items, purpose).await,
                Some(audience) => call.reveal_for(&items, audience, purpose).await,
            }
            .map_err(|e| e.refusal(name_item))?
            .into_iter()
            .zip(&slots)
            .map(|(r, slot)| {
                r.map_err(|missing| ProxyError::TokenUnavailable {
                    field: field_of(route, target(Some(slot))),
                    reason: missing.code(),
                })
            })
            .collect(),
        };
        // Answers for tokens inside a text are spliced into it, per hit, in order; the others replace whole values.
        let mut texts: Vec<(usize, Vec<Splice>)> = Vec::new();
        for ((slot, answer), range) in slots.iter().zip(answers).zip(within) {
            match range {
                None => *edits.get_mut(*slot).ok_or(ProxyError::Internal)? = Edit::Replace(answer?),
                Some(range) => {
                    let Ok(value) = answer else { continue };
                    match texts.iter_mut().find(|(s, _)| s == slot) {
                        Some((_, splices)) => splices.push((range, value)),
                        None => texts.push((*slot, vec![(range, value)])),
                    }
                }
            }
        }
        for (slot, mut splices) in texts {
            let text = &hits.get(slot).ok_or(ProxyError::Internal)?.value;
            splices.sort_by_key(|(r, _)| r.start);
            let mut out = String::with_capacity(text.len());
            let mut at = 0;
            for (range, value) in splices {
                out.push_str(text.get(at..range.start).ok_or(ProxyError::Internal)?);
                out.push_str(&value);
                at = range.end;
            }
            out.push_str(text.get(at..).ok_or(ProxyError::Internal)?);
            *edits.get_mut(slot).ok_or(ProxyError::Internal)? = Edit::Replace(out);
        }
        Ok(edits)
    }
}
