//! One group-commit transaction on SQLite in a handful of statements, whatever the batch size: multi-row inserts
//! of the records (`ON CONFLICT DO NOTHING`; outcomes are read back only for a statement where some rows did not
//! go in), one update of the touched records per timestamp, multi-row inserts of the subject links. Each
//! statement is a round trip to the connection's worker thread, and each row it returns one more message back,
//! so a statement per row would cost a thread hop per row.

use std::collections::BTreeMap;

use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::shape::{padded, pow2_chunks, shape};
use super::{lookup, unavailable, COLUMNS};
use crate::store::{Fingerprint, Inserted, Record, SealedId, StoreError, Write};

/// Records per insert statement (a power of two, see `shape`). SQLite would take 3,200 (ten bound parameters
/// each), but a statement keeps a journal of the pages it changed (in memory) and a compiled program that grows
/// with its rows: bounded here.
const INSERT_CHUNK: usize = 64;
/// Keys per update or link statement (two or three bound parameters each; a power of two).
const KEY_CHUNK: usize = 128;

/// Applies `writes` in one `BEGIN IMMEDIATE` transaction; on any failure it is rolled back and nothing is kept.
pub(super) async fn transact(conn: &mut SqliteConnection, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError> {
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await.map_err(unavailable)?;
    match apply(&mut tx, writes).await {
        Ok(out) => {
            // On a failed COMMIT the transaction guard rolls back when dropped.
            tx.commit().await.map_err(unavailable)?;
            Ok(out)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn apply(tx: &mut Transaction<'_, Sqlite>, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError> {
    // Each record with the subject its write links it to: a new record's row names it as its first subject
    // (schema V4) when it goes in, so linking it below writes that row no second time.
    let records: Vec<(&Record, Option<&Fingerprint>)> =
        writes.iter().flat_map(|w| w.records.iter().map(|r| (r, w.subject.as_ref()))).collect();
    let mut outcomes = insert(tx, &records).await?.into_iter();
    let per_write: Vec<Vec<Inserted>> =
        writes.iter().map(|w| outcomes.by_ref().take(w.records.len()).collect()).collect();

    // Touched records, grouped by the time they were used (one statement per distinct `now`).
    let mut touch: BTreeMap<i64, Vec<(&str, &str)>> = BTreeMap::new();
    for w in writes {
        let keys = touch.entry(w.now).or_default();
        keys.extend(w.touch.iter().map(|(c, t)| (c.as_str(), t.as_str())));
    }
    for (now, keys) in &touch {
        for chunk in keys.chunks(KEY_CHUNK).filter(|c| !c.is_empty()) {
            let sql = touch_sql(shape(chunk.len()));
            let mut q = sqlx::query(&sql).bind(*now);
            for (class, token) in padded(chunk) {
                q = q.bind(*class).bind(*token);
            }
            q.execute(&mut **tx).await.map_err(unavailable)?;
        }
    }

    // Subject links: every record's token (the winner's where another value won) and every touched token.
    let mut links: Vec<(&Fingerprint, Option<i64>, &str, &str)> = Vec::new();
    // The sealed id of each linked subject (once per subject of the batch).
    let mut sealed_ids: Vec<(&Fingerprint, i64, &SealedId)> = Vec::new();
    for (w, out) in writes.iter().zip(&per_write) {
        let Some(subject) = &w.subject else { continue };
        let version = w.subject_version.map(i64::from);
        let before = links.len();
        for (rec, o) in w.records.iter().zip(out) {
            match o {
                Inserted::New => links.push((subject, version, &rec.class, &rec.token)),
                Inserted::Existing(win) => links.push((subject, version, &rec.class, &win.token)),
                Inserted::TokenTaken => {}
            }
        }
        links.extend(w.touch.iter().map(|(c, t)| (subject, version, c.as_str(), t.as_str())));
        if let (Some(id), Some(v), true) = (&w.subject_sealed, version, links.len() > before) {
            if !sealed_ids.iter().any(|(s, _, _)| *s == subject) {
                sealed_ids.push((subject, v, id));
            }
        }
    }
    for chunk in links.chunks(KEY_CHUNK) {
        let sql = format!(
            "INSERT INTO subject_tokens (subject_fp, fp_version, class, token) VALUES {} ON CONFLICT DO NOTHING",
            vec!["(?, ?, ?, ?)"; shape(chunk.len())].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (subject, version, class, token) in padded(chunk) {
            q = q.bind(&subject[..]).bind(*version).bind(*class).bind(*token);
        }
        q.execute(&mut **tx).await.map_err(unavailable)?;
    }
    // A subject's id kept sealed the first time it is linked under this version (one row per new subject).
    for chunk in sealed_ids.chunks(KEY_CHUNK) {
        let sql = format!(
            "INSERT INTO subjects (subject_fp, fp_version, key_version, sealed_id) VALUES {} ON CONFLICT DO NOTHING",
            vec!["(?, ?, ?, ?)"; shape(chunk.len())].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (subject, version, id) in padded(chunk) {
            q = q.bind(&subject[..]).bind(*version).bind(i64::from(id.key_version)).bind(&id.sealed);
        }
        q.execute(&mut **tx).await.map_err(unavailable)?;
    }
    Ok(per_write)
}

/// Moves `last_used_at` of `n` live (class, token) records up to the first parameter (the subquery makes each key
/// a primary-key seek).
pub(super) fn touch_sql(n: usize) -> String {
    format!(
        "UPDATE tokens SET last_used_at = MAX(last_used_at, ?)
         WHERE (class, token) IN (SELECT column1, column2 FROM (VALUES {})) AND gone_at IS NULL",
        vec!["(?, ?)"; n].join(", ")
    )
}

/// Inserts `records` in order (a later record loses to an earlier one of the same value or token, unless it is
/// the very same record); one outcome each.
async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[(&Record, Option<&Fingerprint>)],
) -> Result<Vec<Inserted>, StoreError> {
    // Per record: `Some(New)` once the row holding its token is known to be the record; `None`: it lost (resolved
    // below).
    let mut out: Vec<Option<Inserted>> = Vec::with_capacity(records.len());
    // Every record once: cut into runs of a few lengths rather than padded.
    for chunk in pow2_chunks(records, INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO tokens ({COLUMNS}, first_subject) VALUES {} ON CONFLICT DO NOTHING",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (rec, subject) in chunk {
            q = q
                .bind(&rec.class)
                .bind(&rec.token)
                .bind(&rec.value_fp[..])
                .bind(rec.fp_version.map(i64::from))
                .bind(i64::from(rec.key_version))
                .bind(&rec.sealed)
                .bind(rec.created_at)
                .bind(rec.last_used_at)
                .bind(rec.gone_at)
                .bind(subject.map(|s| &s[..]));
        }
        let inserted = q.execute(&mut **tx).await.map_err(unavailable)?.rows_affected();
        // Every row went in as offered: nothing to read back. (Rows returned by the statement would each be a
        // message from the connection's worker thread, and a wake-up.)
        if inserted == chunk.len() as u64 {
            out.extend(chunk.iter().map(|_| Some(Inserted::New)));
            continue;
        }
        // Some did not: a record is new if the row now holding its token is the record itself.
        let keys: Vec<(String, String)> = chunk.iter().map(|(r, _)| (r.class.clone(), r.token.clone())).collect();
        for ((rec, _), row) in chunk.iter().zip(lookup::by_tokens(tx, &keys).await?) {
            out.push((row.as_ref() == Some(*rec)).then_some(Inserted::New));
        }
    }
    let lost: Vec<(String, Fingerprint)> = records
        .iter()
        .zip(&out)
        .filter(|(_, o)| o.is_none())
        .map(|((rec, _), _)| (rec.class.clone(), rec.value_fp))
        .collect();
    if lost.is_empty() {
        return Ok(out.into_iter().flatten().collect());
    }
    // The others: the value already has a token (this batch's or an earlier one), or else the token was taken.
    let mut winners = lookup::by_values(tx, &lost).await?.into_iter();
    Ok(out
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| match winners.next().flatten() {
                Some(win) => Inserted::Existing(win),
                // The only other uniqueness constraint is the (class, token) primary key.
                None => Inserted::TokenTaken,
            })
        })
        .collect())
}
