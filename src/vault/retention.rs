//! Retention (storage limitation): per-class maximum age counted from a record's last tokenisation, the purge
//! that tombstones expired records (detokenising them then answers `gone`), and the `veil_tokens{class}` gauge.

use std::time::Duration;

use super::class::Class;
use super::{engine_error, LocalVault, VaultError};

/// Per-class retention in seconds; classes without an entry are kept until erased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub classes: Vec<(Class, i64)>,
}

/// Parses `"90s"`, `"30m"`, `"12h"`, `"180d"`, `"8w"`, `"7y"` (a year is 365 days) into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("expected a number and a unit (s, m, h, d, w, y), e.g. \"180d\"; got {s:?}");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (n, unit) = s.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(err()),
    };
    if n == 0 {
        return Err("must be more than zero".into());
    }
    n.checked_mul(secs).filter(|v| *v <= 1000 * 365 * 86_400).ok_or_else(|| "too long".to_owned())
}

/// Seconds written back in the largest unit that divides them exactly (`"7y"`, `"180d"`, `"90s"`).
pub fn format_duration(secs: i64) -> String {
    const UNITS: [(&str, i64); 6] =
        [("y", 365 * 86_400), ("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let (unit, size) = UNITS.into_iter().find(|(_, size)| secs % size == 0).unwrap_or(("s", 1));
    format!("{}{unit}", secs / size)
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
        let now = self.engine.now();
        let mut purged = Purged::default();
        for &(class, secs) in &self.retention.classes {
            let n = self
                .engine
                .store()
                .purge(class.name(), now.saturating_sub(secs), now)
                .await
                .map_err(|e| engine_error(e.into()))?;
            if n > 0 {
                self.engine.known().invalidate();
                tracing::info!(class = class.name(), records = n, "purged expired records");
            }
            self.metrics.purged.with_label_values(&[class.name()]).inc_by(n);
            purged.classes.push((class, n));
        }
        self.refresh_token_gauge().await?;
        Ok(purged)
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

/// Runs [`LocalVault::purge_expired`] every `interval` until `stop` turns true (a failed run is logged and
/// retried at the next tick).
pub async fn purge_task(
    vault: std::sync::Arc<LocalVault>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = vault.purge_expired().await {
            tracing::error!(error = %e, "purge failed; retrying at the next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("180d"), Ok(180 * 86_400));
        assert_eq!(parse_duration("7y"), Ok(7 * 365 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("90s"), Ok(90));
        for s in ["7y", "180d", "12h", "90s", "8w", "30m"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        for bad in ["", "d", "12", "12x", "-3d", "1.5d", "0d", "99999999999y", "12 h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
