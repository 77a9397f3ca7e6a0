//! [`Gate`]: the vault as served, which may start **sealed** (key provider `shares`): until custodians have given
//! M valid shares (`POST /v1/unseal`, one share a call — the share is the credential, as in HashiCorp Vault),
//! every call is refused with [`VaultError::Sealed`] (API: 503 `sealed`; proxy: 503, fail closed) and readiness
//! is false. At M shares the keyring is recombined, checked, and the vault opened by the app's opener. Wrong
//! shares are rate-limited; a share never reaches a log line or an error text.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::auth::Caller;
use super::{ItemResult, LocalVault, Terms, Vault, VaultError};
use crate::crypto::provider::share::ShareError;
use crate::crypto::provider::shares::Unsealer;
use crate::crypto::{KeyProvider, Keyring, ProviderError};
use crate::domain::{Class, Op};
use crate::metrics::Metrics;

/// Builds the vault once its keyring is known (opens audit log and store, starts its tasks).
pub type Opener =
    Box<dyn Fn(Keyring) -> Pin<Box<dyn Future<Output = Result<Arc<LocalVault>, String>> + Send>> + Send + Sync>;

/// Wrong shares allowed per [`FAILURE_WINDOW`] before `POST /v1/unseal` answers 429.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Where unsealing stands after a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealStatus {
    pub sealed: bool,
    /// Shares given toward the current attempt, and how many unseal.
    pub have: usize,
    pub need: usize,
}

/// Why a share was not taken.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("{0}; the vault stays sealed")]
    Share(#[from] ShareError),
    #[error("the shares given do not open the keyring (a share of another set, or a damaged one); the vault stays sealed and every share given so far was dropped: start over")]
    WrongShares,
    #[error("too many wrong shares; retry in {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("the keyring opened but the vault could not start: {0}")]
    Start(String),
}

struct Pending {
    unsealer: Unsealer,
    opener: Opener,
}

/// The vault behind its seal.
pub struct Gate {
    vault: OnceLock<Arc<LocalVault>>,
    pending: tokio::sync::Mutex<Option<Pending>>,
    need: usize,
    metrics: Arc<Metrics>,
    failures: Mutex<VecDeque<Instant>>,
}

impl Gate {
    /// An open vault (providers that need no custodian).
    pub fn open(vault: Arc<LocalVault>) -> Gate {
        let metrics = vault.metrics().clone();
        let cell = OnceLock::new();
        let _ = cell.set(vault);
        Gate { vault: cell, pending: tokio::sync::Mutex::new(None), need: 0, metrics, failures: Mutex::default() }
    }

    /// A sealed vault waiting for the shares of `unsealer`'s keyring; `opener` builds it then.
    pub fn sealed(unsealer: Unsealer, opener: Opener, metrics: Arc<Metrics>) -> Gate {
        let need = unsealer.progress().1;
        Gate {
            vault: OnceLock::new(),
            pending: tokio::sync::Mutex::new(Some(Pending { unsealer, opener })),
            need,
            metrics,
            failures: Mutex::default(),
        }
    }

    /// The vault, once unsealed.
    pub fn get(&self) -> Result<&Arc<LocalVault>, VaultError> {
        self.vault.get().ok_or(VaultError::Sealed)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Takes one custodian's share.
    pub async fn unseal(&self, share: &str) -> Result<SealStatus, UnsealError> {
        if self.vault.get().is_some() {
            return Ok(SealStatus { sealed: false, have: 0, need: self.need });
        }
        self.check_rate()?;
        let mut pending = self.pending.lock().await;
        let Some(p) = pending.as_mut() else {
            return Ok(SealStatus { sealed: self.vault.get().is_none(), have: 0, need: self.need });
        };
        let (have, need) = match p.unsealer.add(share) {
            Ok(progress) => progress,
            Err(e) => {
                self.fail();
                return Err(e.into());
            }
        };
        if have < need {
            tracing::info!(have, need, "unseal share taken");
            return Ok(SealStatus { sealed: true, have, need });
        }
        let provider = match p.unsealer.unseal() {
            Ok(provider) => provider,
            Err(_) => {
                self.fail();
                tracing::warn!(need, "unseal shares did not open the keyring; every share dropped");
                return Err(UnsealError::WrongShares);
            }
        };
        let ring = provider.keyring().map_err(|e: ProviderError| UnsealError::Start(e.to_string()))?;
        let vault = (p.opener)(ring).await.map_err(UnsealError::Start)?;
        let _ = self.vault.set(vault);
        *pending = None;
        tracing::info!("vault unsealed");
        Ok(SealStatus { sealed: false, have, need })
    }

    fn check_rate(&self) -> Result<(), UnsealError> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while failures.front().is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW) {
            failures.pop_front();
        }
        match failures.front() {
            Some(first) if failures.len() >= MAX_FAILURES => {
                let retry_after = FAILURE_WINDOW.saturating_sub(now.duration_since(*first)).as_secs().max(1);
                Err(UnsealError::TooManyAttempts { retry_after })
            }
            _ => Ok(()),
        }
    }

    fn fail(&self) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).push_back(Instant::now());
    }
}

#[async_trait]
impl Vault for Gate {
    async fn tokenize_on(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        subject: Option<&str>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, VaultError> {
        self.get()?.tokenize_on(caller, items, subject, terms).await
    }

    async fn detokenize(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.get()?.detokenize(caller, items, purpose).await
    }

    async fn mask(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.get()?.mask(caller, items, purpose).await
    }

    async fn reveal_to(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        purpose: Option<&str>,
        audience: &[(Class, &str)],
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.get()?.reveal_to(caller, op, items, purpose, audience).await
    }

    async fn ready(&self) -> bool {
        match self.vault.get() {
            Some(v) => v.ready().await,
            None => false,
        }
    }
}
