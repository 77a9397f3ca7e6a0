//! Key rotation, second half: move every row made under an older master key version to the newest — records
//! re-sealed and re-fingerprinted (the AAD then binds the fingerprint), subject links re-fingerprinted, CVCs of
//! older versions dropped — page by page, while the vault keeps serving.
//!
//! Records: each page is read, opened with its own version, sealed and fingerprinted under the newest, and
//! written back in one transaction that changes a record only if it is still live and still under the versions
//! it was read with — so a concurrent erasure, purge or second rewrap is never undone. A serving vault looks a
//! value up under every version in use in one read, so it finds a record on either side of its move: one token
//! per value holds throughout. Progress is the cursor; a rerun resumes by itself, because records already moved
//! no longer match. Subjects: every sealed subject id (kept since the subject was first linked) is opened and its
//! links under any older version's fingerprint moved to the newest's, a page of subjects per transaction; ids
//! the shop gives (`--subjects FILE`) move legacy links that have no sealed id. Once nothing is left under an
//! older version, those versions are taken off the store's list, and lookups ask under one version again
//! (after a restart). Vaults serving the store must have loaded the new key version (restart them after
//! `keys rotate`) before the pass: one still on the old keyring is refused new records from the moment the pass
//! starts (it fails closed rather than give a moved value a second token).

use super::engine::{Engine, EngineError};
use crate::store::{Resealed, SubjectMove, SubjectRow};

/// Where a rewrap stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The key version rows are moved to.
    pub target_version: u32,
    /// Records re-sealed and re-fingerprinted.
    pub resealed: u64,
    /// Records that changed between read and write (erased, purged, moved elsewhere): left alone.
    pub skipped: u64,
    /// The last (class, token) handled.
    pub cursor: Option<(String, String)>,
    /// No record under an older version is left after the cursor.
    pub done: bool,
    /// Sealed subjects checked, and subject links moved.
    pub subjects: u64,
    pub links: u64,
    /// CVCs bound under an older version, dropped (they expire within minutes anyway).
    pub volatiles: u64,
    /// Older fingerprint versions were taken off the store's list (nothing is left under them).
    pub unlisted: bool,
}

/// Moves up to `max` records (all when `None`) in pages of `page`, reporting each page to `report`; once every
/// record is moved, the subjects (those with sealed ids, and `ids`), the CVCs and the list of versions.
pub async fn rewrap(
    engine: &Engine,
    page: usize,
    max: Option<u64>,
    ids: &[String],
    mut report: impl FnMut(&Progress),
) -> Result<Progress, EngineError> {
    let target = engine.keys().current_version();
    // The target goes on the store's list first: from now on a vault still on an older keyring is refused new
    // records (it would look values up under its own version only and miss the moved ones).
    engine.lookup_versions().await?;
    let mut p = Progress { target_version: target, ..Progress::default() };
    loop {
        let budget = max.map(|m| m.saturating_sub(p.resealed + p.skipped));
        if budget == Some(0) {
            return Ok(p);
        }
        let limit = budget.map_or(page, |b| page.min(usize::try_from(b).unwrap_or(page))).max(1);
        let records = engine.store().stale_before(target, p.cursor.as_ref(), limit).await?;
        let Some(last) = records.last() else { break };
        p.cursor = Some((last.class.clone(), last.token.clone()));
        let mut updates = Vec::with_capacity(records.len());
        for rec in &records {
            let value = engine.open_record(rec)?;
            let fp = engine.stored_fingerprint(&rec.class, value.expose())?;
            let moved = engine.seal_record(&rec.class, rec.token.clone(), fp, value.expose(), rec.created_at)?;
            updates.push(Resealed {
                class: rec.class.clone(),
                token: rec.token.clone(),
                from_version: rec.key_version,
                from_fp_version: rec.fp_version,
                key_version: moved.key_version,
                value_fp: moved.value_fp,
                fp_version: target,
                sealed: moved.sealed,
            });
        }
        let done = engine.store().reseal(&updates).await?;
        p.resealed += done;
        p.skipped += updates.len() as u64 - done;
        report(&p);
    }
    subjects(engine, page, ids, &mut p, &mut report).await?;
    p.volatiles = engine.store().drop_volatile_before(target).await?;
    p.unlisted = engine.store().unlist_fp_versions_below(target).await?;
    p.done = true;
    report(&p);
    Ok(p)
}

/// Every sealed subject, then every id of `ids`: links under older versions' fingerprints moved to the newest's.
async fn subjects(
    engine: &Engine,
    page: usize,
    ids: &[String],
    p: &mut Progress,
    report: &mut impl FnMut(&Progress),
) -> Result<(), EngineError> {
    let target = p.target_version;
    let mut after = None;
    loop {
        let rows = engine.store().subjects_after(after.as_ref(), page.max(1)).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.subject_fp);
        let mut moves = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = engine.open_subject(row)?;
            moves.push(subject_move(engine, id.expose(), Some(row), target)?);
        }
        p.subjects += moves.len() as u64;
        p.links += engine.store().move_subjects(&moves).await?;
        report(p);
    }
    for chunk in ids.chunks(page.max(1)) {
        let moves = chunk.iter().map(|id| subject_move(engine, id, None, target)).collect::<Result<Vec<_>, _>>()?;
        p.subjects += moves.len() as u64;
        p.links += engine.store().move_subjects(&moves).await?;
        report(p);
    }
    Ok(())
}

/// The move of subject `id` to its newest fingerprint (its sealed id `row` kept if already there).
fn subject_move(engine: &Engine, id: &str, row: Option<&SubjectRow>, target: u32) -> Result<SubjectMove, EngineError> {
    let fp = engine.subject_fingerprint(id);
    let sealed = match row {
        Some(r) if r.subject_fp == fp && r.fp_version == target && r.id.key_version == target => r.id.clone(),
        _ => engine.seal_subject(&fp, id)?,
    };
    let to = SubjectRow { subject_fp: fp, fp_version: target, id: sealed };
    Ok(SubjectMove { from: engine.older_subject_fingerprints(id), to })
}
