//! Key rotation on SQLite: the rewrap pass's pages and updates (re-seal and re-fingerprint), the list of
//! fingerprint versions in use (migration V7), subject moves, and what still depends on a key version.

use sqlx::sqlite::SqlitePool;
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};

use super::{lookup, unavailable, COLUMNS};
use crate::store::{Fingerprint, KeyUsage, Record, Resealed, SealedId, StoreError, SubjectMove, SubjectRow};

type Tx<'c> = Transaction<'c, Sqlite>;

/// A live record needing the pass under target `?1`: sealed or fingerprinted under an older version, or legacy.
const STALE: &str = "gone_at IS NULL AND (key_version < ?1 OR fp_version IS NULL OR fp_version < ?1)";

fn version(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("key version out of range".into()))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) async fn count_stale_before(read: &SqlitePool, target: u32) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM tokens WHERE {STALE}"))
        .bind(i64::from(target))
        .fetch_one(read)
        .await
        .map_err(unavailable)?;
    Ok(count(n))
}

pub(super) async fn stale_before(
    read: &SqlitePool,
    target: u32,
    after: Option<&(String, String)>,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let (class, token) = after.cloned().unwrap_or_default();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tokens WHERE {STALE} AND (class, token) > (?2, ?3) ORDER BY class, token LIMIT ?4"
    ))
    .bind(i64::from(target))
    .bind(class)
    .bind(token)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(read)
    .await
    .map_err(unavailable)?;
    rows.iter().map(lookup::record_from_row).collect()
}

/// Each record moved only if still live and still under the versions it was read with (`IS`: legacy is NULL),
/// and if no other row holds its new fingerprint (a value given two tokens by a vault that did not ask under
/// every version: that record stays where it is, counted as skipped, and the old version cannot be retired).
pub(super) async fn reseal(tx: &mut Tx<'_>, records: &[Resealed]) -> Result<u64, StoreError> {
    let mut done = 0;
    for r in records {
        done += sqlx::query(
            "UPDATE tokens SET sealed = ?1, key_version = ?2, value_fp = ?3, fp_version = ?4
             WHERE class = ?5 AND token = ?6 AND key_version = ?7 AND fp_version IS ?8 AND gone_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM tokens o WHERE o.class = ?5 AND o.value_fp = ?3 AND o.token <> ?6)",
        )
        .bind(&r.sealed)
        .bind(i64::from(r.key_version))
        .bind(&r.value_fp[..])
        .bind(i64::from(r.fp_version))
        .bind(&r.class)
        .bind(&r.token)
        .bind(i64::from(r.from_version))
        .bind(r.from_fp_version.map(i64::from))
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
    }
    Ok(done)
}

/// Lists `current` (before anything is written under it), then answers every listed version.
pub(super) async fn fp_versions(tx: &mut Tx<'_>, current: u32) -> Result<Vec<u32>, StoreError> {
    sqlx::query("INSERT INTO fp_versions (version) VALUES (?) ON CONFLICT DO NOTHING")
        .bind(i64::from(current))
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    listed(tx).await
}

async fn listed(tx: &mut Tx<'_>) -> Result<Vec<u32>, StoreError> {
    let rows: Vec<i64> = sqlx::query_scalar("SELECT version FROM fp_versions ORDER BY version")
        .fetch_all(&mut **tx)
        .await
        .map_err(unavailable)?;
    rows.into_iter().map(version).collect()
}

pub(super) async fn unlist_below(tx: &mut Tx<'_>, target: u32) -> Result<bool, StoreError> {
    let t = i64::from(target);
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM tokens WHERE gone_at IS NULL AND (fp_version IS NULL OR fp_version < ?1))
              + (SELECT COUNT(*) FROM volatile WHERE fp_version IS NULL OR fp_version < ?1)",
    )
    .bind(t)
    .fetch_one(&mut **tx)
    .await
    .map_err(unavailable)?;
    if left > 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM fp_versions WHERE version < ?").bind(t).execute(&mut **tx).await.map_err(unavailable)?;
    Ok(true)
}

/// `fp_version` of the table aliased `t` is `?1`, or (`?2` true: the oldest version) legacy.
const UNDER: &str = "(fp_version = ?1 OR (?2 AND fp_version IS NULL))";

pub(super) async fn key_usage(conn: &mut SqliteConnection, v: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT
           (SELECT COUNT(*) FROM tokens WHERE gone_at IS NULL AND key_version = ?1) AS sealed,
           (SELECT COUNT(*) FROM tokens WHERE gone_at IS NULL AND {UNDER}) AS fingerprints,
           (SELECT COUNT(*) FROM subject_tokens WHERE {UNDER}) AS links,
           (SELECT COUNT(DISTINCT subject_fp) FROM subject_tokens s WHERE {UNDER}
              AND NOT EXISTS (SELECT 1 FROM subjects x WHERE x.subject_fp = s.subject_fp)) AS unsealed,
           (SELECT COUNT(*) FROM subjects WHERE fp_version = ?1 OR key_version = ?1) AS subjects,
           (SELECT COUNT(*) FROM volatile WHERE {UNDER} OR key_version = ?1) AS volatiles"
    ))
    .bind(i64::from(v))
    .bind(oldest)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let get = |name: &str| row.try_get::<i64, _>(name).map(count).map_err(unavailable);
    Ok(KeyUsage {
        sealed: get("sealed")?,
        fingerprints: get("fingerprints")?,
        links: get("links")?,
        unsealed_subjects: get("unsealed")?,
        subjects: get("subjects")?,
        volatiles: get("volatiles")?,
    })
}

pub(super) async fn unlist_version(tx: &mut Tx<'_>, v: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
    let usage = key_usage(tx, v, oldest).await?;
    if usage.is_unused() {
        sqlx::query("DELETE FROM fp_versions WHERE version = ?1 OR (?2 AND version = 0)")
            .bind(i64::from(v))
            .bind(oldest)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(usage)
}

pub(super) async fn subjects_after(
    read: &SqlitePool,
    after: Option<&Fingerprint>,
    limit: usize,
) -> Result<Vec<SubjectRow>, StoreError> {
    let rows: Vec<(Vec<u8>, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT subject_fp, fp_version, key_version, sealed_id FROM subjects WHERE subject_fp > ?
         ORDER BY subject_fp LIMIT ?",
    )
    .bind(after.map_or(&[][..], |a| &a[..]))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(read)
    .await
    .map_err(unavailable)?;
    rows.into_iter()
        .map(|(fp, fp_version, key_version, sealed)| {
            Ok(SubjectRow {
                subject_fp: fp
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("subject fingerprint is not 32 bytes".into()))?,
                fp_version: version(fp_version)?,
                id: SealedId { key_version: version(key_version)?, sealed },
            })
        })
        .collect()
}

/// Each move: links inserted under the new fingerprint before the old ones go (the V4 triggers keep each token's
/// first and shared subjects right through both), the old sealed ids dropped, the new one kept while the subject
/// has a link.
pub(super) async fn move_subjects(tx: &mut Tx<'_>, moves: &[SubjectMove]) -> Result<u64, StoreError> {
    let mut moved = 0;
    for m in moves {
        let (to, v) = (&m.to.subject_fp[..], i64::from(m.to.fp_version));
        for from in m.from.iter().filter(|f| f[..] != *to) {
            sqlx::query(
                "INSERT INTO subject_tokens (subject_fp, class, token, fp_version)
                 SELECT ?, class, token, ? FROM subject_tokens WHERE subject_fp = ? ON CONFLICT DO NOTHING",
            )
            .bind(to)
            .bind(v)
            .bind(&from[..])
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
            for table in ["subject_tokens", "subjects"] {
                let done = sqlx::query(&format!("DELETE FROM {table} WHERE subject_fp = ?"))
                    .bind(&from[..])
                    .execute(&mut **tx)
                    .await
                    .map_err(unavailable)?;
                if table == "subject_tokens" {
                    moved += done.rows_affected();
                }
            }
        }
        sqlx::query("UPDATE subject_tokens SET fp_version = ?2 WHERE subject_fp = ?1 AND fp_version IS NOT ?2")
            .bind(to)
            .bind(v)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO subjects (subject_fp, fp_version, key_version, sealed_id)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM subject_tokens WHERE subject_fp = ?1)
             ON CONFLICT (subject_fp) DO UPDATE SET fp_version = excluded.fp_version,
                 key_version = excluded.key_version, sealed_id = excluded.sealed_id",
        )
        .bind(to)
        .bind(v)
        .bind(i64::from(m.to.id.key_version))
        .bind(&m.to.id.sealed)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        forget_unlinked_subjects(tx, vec![to.to_vec()]).await?;
    }
    Ok(moved)
}

pub(super) async fn drop_volatile_before(tx: &mut Tx<'_>, target: u32) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM volatile WHERE fp_version IS NULL OR fp_version < ?1 OR key_version < ?1")
        .bind(i64::from(target))
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(done.rows_affected())
}

/// Drops the sealed ids of these subjects that have no link left (a purge took their last token).
pub(super) async fn forget_unlinked_subjects(tx: &mut Tx<'_>, mut subjects: Vec<Vec<u8>>) -> Result<(), StoreError> {
    subjects.sort_unstable();
    subjects.dedup();
    for fp in subjects {
        sqlx::query(
            "DELETE FROM subjects WHERE subject_fp = ?1
             AND NOT EXISTS (SELECT 1 FROM subject_tokens WHERE subject_fp = ?1)",
        )
        .bind(fp)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}
