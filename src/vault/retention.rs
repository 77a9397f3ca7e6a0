//! Retention (storage limitation): per-class maximum age counted from a record's last tokenisation, the purge
//! that tombstones expired records (detokenising them then answers `gone`), and the `veil_tokens{class}` gauge.

use std::time::Duration;

use super::{engine_error, LocalVault, VaultError};
use crate::domain::Class;

/// Per-class retention in seconds; classes without an entry are kept until erased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub classes: Vec<(Class, i64)>,
}

/// Records one purge transaction tombstones at most.
pub const PURGE_PAGE: usize = 1000;

/// How far a purge is with one class: records tombstoned so far of `total` (when the store can count them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeProgress {
    pub class: Class,
    pub done: u64,
    pub total: Option<u64>,
}

/// What one purge did: records tombstoned per class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    pub classes: Vec<(Class, u64)>,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.classes.iter().map(|(_, n)| n).sum()
    }
}

impl LocalVault {
    /// Tombstones every record older than its class's retention, counts them in `veil_purged_total{class}`,
    /// and refreshes `veil_tokens{class}`.
    pub async fn purge_expired(&self) -> Result<Purged, VaultError> {
        self.purge_expired_reporting("vault", |_| {}).await
    }

    /// Like [`LocalVault::purge_expired`], in pages of [`PURGE_PAGE`] records (one transaction each, so a large
    /// purge never holds the store for long), telling `report` how far each class is. Audited as `caller` with
    /// the records tombstoned per class (also what a failed purge did before it failed); a run of the vault's own
    /// that tombstoned nothing is not.
    pub async fn purge_expired_reporting(
        &self,
        caller: &str,
        report: impl FnMut(&PurgeProgress),
    ) -> Result<Purged, VaultError> {
        let mut purged = Purged::default();
        let result = self.purge_classes(&mut purged, report).await;
        let mut event = crate::vault::audit::Event {
            caller: caller.to_owned(),
            op: "purge",
            outcome: if result.is_ok() { "ok" } else { "error" },
            client: Some(super::IN_PROCESS.to_owned()),
            ..Default::default()
        };
        event.counts = purged.classes.iter().map(|(c, n)| (c.name().to_owned(), *n)).collect();
        // The vault's own runs that tombstoned nothing leave no line (one an hour, saying nothing).
        let said_nothing = caller == "vault" && result.is_ok() && purged.total() == 0;
        if !said_nothing && self.append_audit(event).await.is_err() {
            tracing::error!("purge could not be audited");
        }
        result.map(|()| purged)
    }

    async fn purge_classes(
        &self,
        purged: &mut Purged,
        mut report: impl FnMut(&PurgeProgress),
    ) -> Result<(), VaultError> {
        let now = self.engine.now();
        let store = self.engine.store();
        for &(class, secs) in &self.retention.classes {
            let cutoff = now.saturating_sub(secs);
            let total = store.count_expired(class.name(), cutoff).await.map_err(|e| engine_error(e.into()))?;
            let mut n = 0;
            loop {
                let page = store.purge(class.name(), cutoff, now, PURGE_PAGE).await.map_err(|e| engine_error(e.into()));
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        purged.classes.push((class, n));
                        return Err(e);
                    }
                };
                n += page;
                report(&PurgeProgress { class, done: n, total });
                if page < PURGE_PAGE as u64 {
                    break;
                }
            }
            if n > 0 {
                self.engine.known().invalidate();
                tracing::info!(class = class.name(), records = n, "purged expired records");
            }
            self.metrics.purged.with_label_values(&[class.name()]).inc_by(n);
            purged.classes.push((class, n));
        }
        purged.classes.push((Class::Cvc, self.purge_cvcs().await?));
        self.refresh_token_gauge().await
    }

    /// Erases the CVCs whose `[class.cvc] ttl` is up, used or not (counted in `veil_purged_total{class="cvc"}`).
    pub async fn purge_cvcs(&self) -> Result<u64, VaultError> {
        let n = self.engine.purge_volatile().await.map_err(engine_error)?;
        self.metrics.purged.with_label_values(&[Class::Cvc.name()]).inc_by(n);
        Ok(n)
    }

    /// Sets `veil_tokens{class}` to the live records per class.
    pub async fn refresh_token_gauge(&self) -> Result<(), VaultError> {
        let counts = self.engine.store().count_live().await.map_err(|e| engine_error(e.into()))?;
        for class in Class::ALL {
            let n = counts.iter().find(|(c, _)| c == class.name()).map(|(_, n)| *n).unwrap_or(0);
            self.metrics.tokens.with_label_values(&[class.name()]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}

/// How often expired CVCs are erased, at least: a CVC's time is counted in minutes, not purge intervals.
const CVC_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs [`LocalVault::purge_expired`] every `interval`, and [`LocalVault::purge_cvcs`] every minute between,
/// until `stop` turns true (a failed run is logged and retried at the next tick).
pub async fn purge_task(
    vault: std::sync::Arc<LocalVault>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tick = interval.min(CVC_PURGE_EVERY);
    let mut last_full: Option<std::time::Instant> = None;
    loop {
        let result = match last_full {
            Some(at) if at.elapsed() < interval => vault.purge_cvcs().await.map(|_| ()),
            _ => {
                last_full = Some(std::time::Instant::now());
                vault.purge_expired().await.map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "purge failed; retrying at the next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}
