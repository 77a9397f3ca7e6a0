//! The vault: the [`Vault`] trait the proxy and the API call, and `LocalVault` (engine + policy + audit) that
//! serves it in-process.

pub mod api;
pub mod audit;
pub mod auth;
pub mod engine;
pub mod known;
pub mod links;
pub mod openapi;
pub mod remote;
pub mod retention;
pub mod rewrap;
pub mod seal;
pub mod subjects;
pub mod wire;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus::{Histogram, IntCounter};

use crate::budget::Budgets;
use crate::domain::permission::{self as policy, Op};
use crate::domain::Class;
use crate::metrics::{Metrics, Series};
use crate::token::Invalid;
use audit::{AuditLog, Event, Item};
use auth::Caller;
pub use engine::Terms;
use engine::{Clock, Engine, EngineError, Missing};

/// What the vault refuses a whole call for. Messages never hold values or tokens.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("caller may not {op} class {class}")]
    Forbidden { op: Op, class: Class },
    #[error("caller may not {0} here")]
    ForbiddenOp(Op),
    #[error("item {index}: {reason}")]
    Invalid { index: usize, reason: Invalid },
    #[error("the vault store is unavailable")]
    StoreUnavailable,
    #[error("the audit log cannot be written, so the operation was refused")]
    AuditUnavailable,
    #[error("internal vault error")]
    Internal,
    /// A remote vault could not be reached, did not answer in time, or failed (split deployment).
    #[error("the vault could not be reached")]
    Unavailable,
    /// The vault's keyring is sealed (key provider `shares`): custodians must unseal it first (`veil unseal`).
    #[error("the vault is sealed: its custodians must unseal it (veil unseal) before it serves")]
    Sealed,
    /// The batch holds more new values of enumerable classes than the caller's or the client's budget has left.
    #[error("over the {scope} budget of new values; retry in {retry_after} s")]
    OverBudget { scope: Scope, retry_after: u64 },
}

/// Whose budget of new values a tokenisation ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The vault caller's `new_values_per_minute`.
    Caller,
    /// The ingress client address's `new_values_per_hour`.
    Client,
    /// New cards of one BIN and last four, from anyone (`[class.pan] new_values_per_range_per_day`).
    Range,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Caller => "caller",
            Scope::Client => "client",
            Scope::Range => "range",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One item's answer from detokenize or mask: the value (or masked value), or why there is none.
pub type ItemResult = Result<String, Missing>;

/// Tokenise / detokenise / mask in batches, as an authenticated caller.
#[async_trait]
pub trait Vault: Send + Sync + 'static {
    /// Tokens for `items`, linked to `subject`, under `terms` (see [`Terms`]).
    async fn tokenize_on(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        subject: Option<&str>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, VaultError>;

    /// Tokens for `items` as the vault API gives them (no terms beyond the caller's own budget).
    async fn tokenize(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        subject: Option<&str>,
    ) -> Result<Vec<String>, VaultError> {
        self.tokenize_on(caller, items, subject, Terms::default()).await
    }
    async fn detokenize(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError>;
    async fn mask(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError>;
    /// Like [`Vault::detokenize`] (`op` detokenize) or [`Vault::mask`], for an answer that goes to the owners of
    /// the `audience` tokens (a mail's recipients): each item is answered only where it is linked to a subject of
    /// every audience token, else `not_linked` — a token planted in what the app sends someone is never revealed
    /// to them. A vault that cannot tell refuses.
    async fn reveal_to(
        &self,
        _caller: &Caller,
        _op: Op,
        _items: &[(Class, &str)],
        _purpose: Option<&str>,
        _audience: &[(Class, &str)],
    ) -> Result<Vec<ItemResult>, VaultError> {
        Err(VaultError::Unavailable)
    }
    /// Answers when the vault can serve (readiness).
    async fn ready(&self) -> bool;
}

/// The vault in this process: token engine over the store, authorisation, audit, metrics.
pub struct LocalVault {
    engine: Engine,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// The audit log's file, read back for subject exports (who revealed what).
    audit_path: Option<PathBuf>,
    retention: retention::Retention,
    /// The series every successful tokenisation counts in (by class, in [`Class::ALL`] order), each looked up once.
    tokenized: [Series<IntCounter>; Class::ALL.len()],
    tokenize_duration: Series<Histogram>,
    /// Each caller's budget of new values (`[[caller]] new_values_per_minute`), by caller name.
    budgets: Budgets<String>,
}

impl LocalVault {
    pub fn new(engine: Engine, audit: AuditLog, metrics: Arc<Metrics>, clock: Clock) -> LocalVault {
        LocalVault {
            engine,
            audit,
            metrics,
            clock,
            audit_path: None,
            retention: retention::Retention::default(),
            tokenized: Default::default(),
            tokenize_duration: Series::default(),
            budgets: Budgets::default(),
        }
    }

    /// Lets subject exports report the reveals recorded in this audit log file.
    pub fn with_audit_path(mut self, path: PathBuf) -> LocalVault {
        self.audit_path = Some(path);
        self
    }

    /// Per-class retention for [`LocalVault::purge_expired`].
    pub fn with_retention(mut self, retention: retention::Retention) -> LocalVault {
        // A purge elsewhere (`veil purge` beside this vault) takes records unused for a retention: known values
        // are trusted for less than that.
        if let Some(shortest) = retention.classes.iter().map(|(_, secs)| *secs).min() {
            self.engine.known().limit_trust(shortest);
        }
        self.retention = retention;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Counts a tokenisation's items under `outcome`.
    fn count_tokenize(&self, items: &[(Class, &str)], outcome: &str) {
        for (class, _) in items {
            match self.tokenized.get(class.index()).filter(|_| outcome == "ok") {
                Some(s) => s.of(&self.metrics.vault_operations, &["tokenize", class.name(), "ok"]).inc(),
                None => self.metrics.vault_operations.with_label_values(&["tokenize", class.name(), outcome]).inc(),
            }
        }
    }

    /// Records an operator's command (`veil keys rotate`, `veil keys rewrap`) as caller `cli`: `outcome` (started,
    /// ok, failed) and its counts. An error means it is not on record (refuse to start the command).
    pub async fn audit_command(
        &self,
        op: &'static str,
        outcome: &'static str,
        counts: Vec<(String, u64)>,
    ) -> Result<(), VaultError> {
        let event = Event { counts, ..self.event(&Caller::operator(), op, outcome, None) };
        self.append_audit(event).await.map_err(|_| VaultError::AuditUnavailable)
    }

    /// Appends `event` to the audit log; a failure is counted (`veil_audit_write_failures_total`).
    async fn append_audit(&self, event: Event) -> Result<(), audit::AuditError> {
        let result = self.audit.append(event, (self.clock)()).await;
        if result.is_err() {
            self.metrics.audit_write_failures.inc();
        }
        result
    }

    /// An event of `caller` (its name and origin; `client`: the ingress client a proxy in this process calls for).
    fn event(&self, caller: &Caller, op: &'static str, outcome: &'static str, client: Option<IpAddr>) -> Event {
        let client = caller.origin.client.clone().or_else(|| client.map(|ip| ip.to_string()));
        Event {
            caller: caller.name.clone(),
            op,
            outcome,
            client: Some(client.unwrap_or_else(|| IN_PROCESS.to_owned())),
            identity: caller.origin.identity.clone(),
            ..Event::default()
        }
    }

    /// The audit item of one token: its class and the keyed fingerprint of its canonical form (so a subject
    /// export matches it however the token was written).
    fn token_item(&self, class: Class, token: &str, result: &'static str) -> Item {
        let canonical = self.engine.canonical_token(class, token);
        Item {
            class: class.name().into(),
            token_fp: self.audit.token_fp(class.name(), canonical.as_deref().unwrap_or(token)),
            result: result.into(),
        }
    }

    /// Deny by default; a refusal is audited (best effort: the call is refused either way), with the
    /// fingerprints of the tokens asked for (a tokenisation's items are values: no fingerprint of those).
    async fn authorize(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        client: Option<IpAddr>,
    ) -> Result<(), VaultError> {
        let Some(&(class, _)) = items.iter().find(|(c, _)| !policy::allowed(&caller.allow, op, *c)) else {
            return Ok(());
        };
        self.metrics.vault_operations.with_label_values(&[op.name(), class.name(), "denied"]).inc();
        if matches!(op, Op::Detokenize) {
            self.metrics.detokenize.with_label_values(&[&caller.name, class.name(), "denied"]).inc();
        }
        let mut event = self.event(caller, op.name(), "denied", client);
        event.items = items
            .iter()
            .map(|&(c, t)| match op {
                Op::Tokenize => Item { class: c.name().into(), token_fp: String::new(), result: "denied".into() },
                _ => self.token_item(c, t, "denied"),
            })
            .collect();
        if self.append_audit(event).await.is_err() {
            tracing::error!(caller = %caller.name, op = op.name(), "denial could not be audited");
        }
        Err(VaultError::Forbidden { op, class })
    }

    async fn reveal(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        purpose: Option<&str>,
        audience: Option<&[(Class, &str)]>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.authorize(caller, op, items, None).await?;
        let started = Instant::now();
        let revealed = async {
            let allowed = match audience {
                Some(audience) => self.engine.within_audience(audience, items).await?,
                None => vec![true; items.len()],
            };
            let subset: Vec<(Class, &str)> =
                items.iter().zip(&allowed).filter(|(_, ok)| **ok).map(|(item, _)| *item).collect();
            // A CVC is taken (used up) only by a detokenisation; a mask never touches it. Nor is one of an item
            // outside the audience.
            let mut got = self.engine.reveal(&subset, op == Op::Detokenize).await?.into_iter();
            Ok(allowed
                .iter()
                .map(|ok| match ok {
                    true => got.next().unwrap_or(Err(Missing::NotFound)),
                    false => Err(Missing::NotLinked),
                })
                .collect::<Vec<_>>())
        };
        let revealed = match revealed.await {
            Ok(r) => r,
            Err(e) => {
                // A reveal that failed (store down, a record that does not open) is evidence too.
                let error = engine_error(e);
                let mut event = self.event(caller, op.name(), "error", None);
                event.purpose = purpose.map(str::to_owned);
                event.items = items.iter().map(|&(c, t)| self.token_item(c, t, error_code(&error))).collect();
                if self.append_audit(event).await.is_err() {
                    tracing::error!(caller = %caller.name, op = op.name(), "failed reveal could not be audited");
                }
                return Err(error);
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut audited = Vec::with_capacity(items.len());
        for ((class, token), r) in items.iter().zip(revealed) {
            let result = r.map(|v| match op {
                Op::Mask => crate::token::mask(*class, v.canonical.expose(), &v.layout),
                _ => v.render(),
            });
            let outcome = match &result {
                Ok(_) => "ok",
                Err(m) => m.code(),
            };
            audited.push(self.token_item(*class, token, outcome));
            out.push(result);
        }
        let all_ok = out.iter().all(|r| r.is_ok());
        let mut event = self.event(caller, op.name(), if all_ok { "ok" } else { "partial" }, None);
        event.purpose = purpose.map(str::to_owned);
        event.items = audited;
        // Fail closed: no value leaves unless its reveal is on disk in the audit log.
        self.append_audit(event).await.map_err(|_| VaultError::AuditUnavailable)?;
        for ((class, _), r) in items.iter().zip(&out) {
            let outcome = match r {
                Ok(_) => "ok",
                Err(m) => m.code(),
            };
            self.metrics.vault_operations.with_label_values(&[op.name(), class.name(), outcome]).inc();
            if matches!(op, Op::Detokenize) {
                self.metrics.detokenize.with_label_values(&[&caller.name, class.name(), outcome]).inc();
            }
        }
        self.metrics.vault_operation_duration.with_label_values(&[op.name()]).observe(started.elapsed().as_secs_f64());
        Ok(out)
    }
}

impl LocalVault {
    /// A tokenisation the caller may make: budget, engine, metrics.
    async fn tokenize_authorized(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        subject: Option<&str>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, VaultError> {
        let started = Instant::now();
        // The caller's budget, taken for every enumerable item before the store is asked (see `budget_items`);
        // given back when `reserved` drops unless the tokenisation succeeds.
        let want = budget_items(items);
        let mut reserved = caller.new_values.map(|rate| self.budgets.reserve(&caller.name, rate, want));
        if let Some(r) = reserved.as_ref().filter(|r| r.granted() < want) {
            self.metrics.budget_refusals.with_label_values(&[Scope::Caller.name(), &caller.name]).inc();
            self.count_tokenize(items, "over_budget");
            return Err(VaultError::OverBudget { scope: Scope::Caller, retry_after: r.retry_after() });
        }
        let subject = subject.map(|s| self.engine.subject(s));
        let result = self.engine.tokenize_on(items, subject, terms).await;
        self.count_tokenize(
            items,
            match &result {
                Ok(_) => "ok",
                Err(EngineError::Invalid { .. }) => "invalid",
                Err(EngineError::OverBudget { .. }) => "over_budget",
                Err(_) => "error",
            },
        );
        let duration = self.tokenize_duration.of(&self.metrics.vault_operation_duration, &["tokenize"]);
        duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(tokens) => {
                if let Some(r) = &mut reserved {
                    r.spend(want);
                }
                Ok(tokens)
            }
            // A card range walked by someone, whoever asks next: counted here.
            Err(EngineError::OverBudget { retry_after }) => {
                self.metrics.budget_refusals.with_label_values(&[Scope::Range.name(), &caller.name]).inc();
                Err(VaultError::OverBudget { scope: Scope::Range, retry_after })
            }
            Err(e) => Err(engine_error(e)),
        }
    }
}

/// What a tokenisation costs a budget of new values: every value of an enumerable class it sends, known or new.
/// (A budget of new values only would tell a caller out of budget, by refusing or not, whether a value is held.)
pub fn budget_items(items: &[(Class, &str)]) -> usize {
    items.iter().filter(|(c, _)| c.enumerable()).count()
}

/// The address recorded for a call made in this process (proxy, egress routes, command line).
pub const IN_PROCESS: &str = "in-process";

/// The audit result of a whole call's refusal.
fn error_code(e: &VaultError) -> &'static str {
    match e {
        VaultError::StoreUnavailable => "store_unavailable",
        VaultError::AuditUnavailable => "audit_unavailable",
        VaultError::Invalid { .. } => "invalid",
        VaultError::OverBudget { .. } => "over_budget",
        VaultError::Forbidden { .. } | VaultError::ForbiddenOp(_) => "denied",
        VaultError::Sealed => "sealed",
        VaultError::Internal | VaultError::Unavailable => "error",
    }
}

fn engine_error(e: EngineError) -> VaultError {
    match e {
        EngineError::Invalid { index, reason } => VaultError::Invalid { index, reason },
        EngineError::Store(e) => {
            tracing::error!(error = %e, "store error");
            VaultError::StoreUnavailable
        }
        EngineError::OverBudget { retry_after } => VaultError::OverBudget { scope: Scope::Range, retry_after },
        EngineError::Exhausted | EngineError::Crypto => {
            tracing::error!(error = %e, "vault engine error");
            VaultError::Internal
        }
    }
}

#[async_trait]
impl Vault for LocalVault {
    async fn tokenize_on(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        subject: Option<&str>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, VaultError> {
        self.authorize(caller, Op::Tokenize, items, terms.client).await?;
        let result = self.tokenize_authorized(caller, items, subject, terms).await;
        // Every tokenisation is on record (an oracle walk shows in the log), in the same chain as the reveals,
        // without waiting for the disk while the log is healthy and keeping up (a tokenisation hands nothing
        // out; waiting would put an fsync into every request the proxy sees). A failing log refuses it.
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => error_code(e),
        };
        let mut event = self.event(caller, Op::Tokenize.name(), outcome, terms.client);
        event.items = match &result {
            Ok(tokens) => items.iter().zip(tokens).map(|(&(c, _), t)| self.token_item(c, t, "ok")).collect(),
            Err(_) => items
                .iter()
                .map(|&(c, _)| Item { class: c.name().into(), token_fp: String::new(), result: outcome.into() })
                .collect(),
        };
        let recorded = self.audit.record(event, (self.clock)()).await;
        if recorded.is_err() {
            self.metrics.audit_write_failures.inc();
        }
        match (recorded, result) {
            (Ok(()), result) => result,
            (Err(_), Ok(_)) => Err(VaultError::AuditUnavailable),
            (Err(_), Err(e)) => Err(e),
        }
    }

    async fn detokenize(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.reveal(caller, Op::Detokenize, items, purpose, None).await
    }

    async fn mask(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.reveal(caller, Op::Mask, items, purpose, None).await
    }

    async fn reveal_to(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        purpose: Option<&str>,
        audience: &[(Class, &str)],
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.reveal(caller, op, items, purpose, Some(audience)).await
    }

    async fn ready(&self) -> bool {
        self.engine.store().ping().await.is_ok()
    }
}
