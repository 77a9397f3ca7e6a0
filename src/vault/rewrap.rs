//! Key rotation, second half: re-seal records sealed under older master key versions under the newest one,
//! page by page in (class, token) order, while the vault keeps serving.
//!
//! Each page is read, opened with its own version, sealed under the newest and written back in one transaction
//! that changes a record only if it is still live and still under the version it was read with — so a
//! concurrent erasure, purge or second rewrap is never undone. Progress is the cursor (the last class and token
//! done); a rerun resumes by itself, because records already re-sealed no longer match "older than newest".
//! Vaults serving the store must have loaded the new key version (restart them after `keys rotate`) before
//! records are re-sealed under it.

use super::engine::{Engine, EngineError};
use crate::store::Resealed;

/// Where a rewrap stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The key version records are re-sealed under.
    pub target_version: u32,
    pub resealed: u64,
    /// Records that changed between read and write (erased, purged, re-sealed elsewhere): left alone.
    pub skipped: u64,
    /// The last (class, token) handled.
    pub cursor: Option<(String, String)>,
    /// No record under an older version is left after the cursor.
    pub done: bool,
}

/// Re-seals up to `max` records (all when `None`) in pages of `page`, reporting each page to `report`.
pub async fn rewrap(
    engine: &Engine,
    page: usize,
    max: Option<u64>,
    mut report: impl FnMut(&Progress),
) -> Result<Progress, EngineError> {
    let target = engine.keys().current_version();
    let mut p = Progress { target_version: target, ..Progress::default() };
    loop {
        let budget = max.map(|m| m.saturating_sub(p.resealed + p.skipped));
        if budget == Some(0) {
            return Ok(p);
        }
        let limit = budget.map_or(page, |b| page.min(usize::try_from(b).unwrap_or(page))).max(1);
        let records = engine.store().sealed_before(target, p.cursor.as_ref(), limit).await?;
        let Some(last) = records.last() else {
            p.done = true;
            report(&p);
            return Ok(p);
        };
        p.cursor = Some((last.class.clone(), last.token.clone()));
        let mut updates = Vec::with_capacity(records.len());
        for rec in &records {
            let value = engine.open_record(rec)?;
            let sealer = engine.keys().sealer(&rec.class, target).ok_or(EngineError::Crypto)?;
            let sealed = sealer
                .seal(&rec.class, &rec.token, target, value.expose().as_bytes())
                .map_err(|_| EngineError::Crypto)?;
            updates.push(Resealed {
                class: rec.class.clone(),
                token: rec.token.clone(),
                from_version: rec.key_version,
                key_version: target,
                sealed,
            });
        }
        let done = engine.store().reseal(&updates).await?;
        p.resealed += done;
        p.skipped += updates.len() as u64 - done;
        report(&p);
    }
}
