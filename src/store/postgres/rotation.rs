//! Key rotation on PostgreSQL: the rewrap pass's pages and updates (re-seal and re-fingerprint), the list of
//! fingerprint versions in use (migration 6), subject moves, and what still depends on a key version.

use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::Row;

use super::{unavailable, COLUMNS};
use crate::store::{Fingerprint, KeyUsage, Resealed, SealedId, StoreError, SubjectMove, SubjectRow};

/// A live record needing the pass under target `$1`: sealed or fingerprinted under an older version, or legacy.
const STALE: &str = "gone_at IS NULL AND (key_version < $1 OR fp_version IS NULL OR fp_version < $1)";

fn to_db(v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Corrupt("key version out of range".into()))
}

fn from_db(v: i32) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("key version out of range".into()))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) async fn count_stale_before(pool: &PgPool, target: u32) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM tokens WHERE {STALE}"))
        // Every stored version is below one that does not fit the column.
        .bind(i32::try_from(target).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await
        .map_err(unavailable)?;
    Ok(count(n))
}

pub(super) async fn stale_before(
    pool: &PgPool,
    target: u32,
    after: Option<&(String, String)>,
    limit: usize,
) -> Result<Vec<PgRow>, StoreError> {
    let (class, token) = after.cloned().unwrap_or_default();
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tokens WHERE {STALE} AND (class, token) > ($2, $3) ORDER BY class, token LIMIT $4"
    ))
    .bind(i32::try_from(target).unwrap_or(i32::MAX))
    .bind(class)
    .bind(token)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(unavailable)
}

/// One statement: each record moved only if still live and still under the versions it was read with, and if no
/// other row holds its new fingerprint (else it stays, counted as skipped).
pub(super) async fn reseal(pool: &PgPool, records: &[Resealed]) -> Result<u64, StoreError> {
    if records.is_empty() {
        return Ok(0);
    }
    let versions = |f: fn(&Resealed) -> u32| records.iter().map(|r| to_db(f(r))).collect::<Result<Vec<_>, _>>();
    let from_fp = records.iter().map(|r| r.from_fp_version.map(to_db).transpose()).collect::<Result<Vec<_>, _>>()?;
    let done = sqlx::query(
        "UPDATE tokens t SET sealed = u.sealed, key_version = u.key_version, value_fp = u.value_fp,
                             fp_version = u.fp_version
         FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int4[], $5::int4[], $6::int4[], $7::bytea[],
                     $8::bytea[])
              AS u(class, token, from_version, from_fp_version, key_version, fp_version, value_fp, sealed)
         WHERE t.class = u.class AND t.token = u.token AND t.key_version = u.from_version
           AND t.fp_version IS NOT DISTINCT FROM u.from_fp_version AND t.gone_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM tokens o WHERE o.class = u.class AND o.value_fp = u.value_fp
                           AND o.token <> u.token)",
    )
    .bind(records.iter().map(|r| r.class.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.token.clone()).collect::<Vec<_>>())
    .bind(versions(|r| r.from_version)?)
    .bind(from_fp)
    .bind(versions(|r| r.key_version)?)
    .bind(versions(|r| r.fp_version)?)
    .bind(records.iter().map(|r| r.value_fp.to_vec()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.sealed.clone()).collect::<Vec<_>>())
    .execute(pool)
    .await
    .map_err(unavailable)?
    .rows_affected();
    Ok(done)
}

/// Lists `current` (before anything is written under it), then answers every listed version.
pub(super) async fn fp_versions(pool: &PgPool, current: u32) -> Result<Vec<u32>, StoreError> {
    sqlx::query("INSERT INTO fp_versions (version) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(to_db(current)?)
        .execute(pool)
        .await
        .map_err(unavailable)?;
    let rows: Vec<i32> = sqlx::query_scalar("SELECT version FROM fp_versions ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    rows.into_iter().map(from_db).collect()
}

pub(super) async fn unlist_below(pool: &PgPool, target: u32) -> Result<bool, StoreError> {
    let t = to_db(target)?;
    let mut tx = pool.begin().await.map_err(unavailable)?;
    // One taker-off at a time (a retirement, another pass); rows under an older version than the newest listed
    // are refused by the insert triggers, so none appears between the count and the delete.
    sqlx::query("LOCK TABLE fp_versions IN EXCLUSIVE MODE").execute(&mut *tx).await.map_err(unavailable)?;
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM tokens WHERE gone_at IS NULL AND (fp_version IS NULL OR fp_version < $1))
              + (SELECT COUNT(*) FROM volatile WHERE fp_version IS NULL OR fp_version < $1)",
    )
    .bind(t)
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    if left > 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM fp_versions WHERE version < $1").bind(t).execute(&mut *tx).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(true)
}

/// `fp_version` is `$1`, or (`$2` true: the oldest version) legacy.
const UNDER: &str = "(fp_version = $1 OR ($2 AND fp_version IS NULL))";

pub(super) async fn key_usage(conn: &mut PgConnection, v: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT
           (SELECT COUNT(*) FROM tokens WHERE gone_at IS NULL AND key_version = $1) AS sealed,
           (SELECT COUNT(*) FROM tokens WHERE gone_at IS NULL AND {UNDER}) AS fingerprints,
           (SELECT COUNT(*) FROM subject_tokens WHERE {UNDER}) AS links,
           (SELECT COUNT(DISTINCT subject_fp) FROM subject_tokens s WHERE {UNDER}
              AND NOT EXISTS (SELECT 1 FROM subjects x WHERE x.subject_fp = s.subject_fp)) AS unsealed,
           (SELECT COUNT(*) FROM subjects WHERE fp_version = $1 OR key_version = $1) AS subjects,
           (SELECT COUNT(*) FROM volatile WHERE {UNDER} OR key_version = $1) AS volatiles"
    ))
    .bind(to_db(v)?)
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

pub(super) async fn unlist_version(pool: &PgPool, v: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("LOCK TABLE fp_versions IN EXCLUSIVE MODE").execute(&mut *tx).await.map_err(unavailable)?;
    let usage = key_usage(&mut tx, v, oldest).await?;
    if usage.is_unused() {
        sqlx::query("DELETE FROM fp_versions WHERE version = $1 OR ($2 AND version = 0)")
            .bind(to_db(v)?)
            .bind(oldest)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
    }
    Ok(usage)
}

pub(super) async fn subjects_after(
    pool: &PgPool,
    after: Option<&Fingerprint>,
    limit: usize,
) -> Result<Vec<SubjectRow>, StoreError> {
    let rows: Vec<(Vec<u8>, i32, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT subject_fp, fp_version, key_version, sealed_id FROM subjects WHERE subject_fp > $1
         ORDER BY subject_fp LIMIT $2",
    )
    .bind(after.map_or(Vec::new(), |a| a.to_vec()))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    rows.into_iter()
        .map(|(fp, fp_version, key_version, sealed)| {
            Ok(SubjectRow {
                subject_fp: fp
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("subject fingerprint is not 32 bytes".into()))?,
                fp_version: from_db(fp_version)?,
                id: SealedId { key_version: from_db(key_version)?, sealed },
            })
        })
        .collect()
}

/// Every move in one transaction: links inserted under the new fingerprint, the old ones and their sealed ids
/// deleted, the new sealed id kept while the subject has a link.
pub(super) async fn move_subjects(pool: &PgPool, moves: &[SubjectMove]) -> Result<u64, StoreError> {
    if moves.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let mut moved = 0;
    for m in moves {
        let (to, v) = (m.to.subject_fp.to_vec(), to_db(m.to.fp_version)?);
        for from in m.from.iter().filter(|f| f[..] != to[..]) {
            sqlx::query(
                "INSERT INTO subject_tokens (subject_fp, class, token, fp_version)
                 SELECT $1, class, token, $2 FROM subject_tokens WHERE subject_fp = $3 ON CONFLICT DO NOTHING",
            )
            .bind(&to)
            .bind(v)
            .bind(from.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            moved += sqlx::query("DELETE FROM subject_tokens WHERE subject_fp = $1")
                .bind(from.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?
                .rows_affected();
            sqlx::query("DELETE FROM subjects WHERE subject_fp = $1")
                .bind(from.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        sqlx::query(
            "UPDATE subject_tokens SET fp_version = $2 WHERE subject_fp = $1 AND fp_version IS DISTINCT FROM $2",
        )
        .bind(&to)
        .bind(v)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO subjects (subject_fp, fp_version, key_version, sealed_id)
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM subject_tokens WHERE subject_fp = $1)
             ON CONFLICT (subject_fp) DO UPDATE SET fp_version = EXCLUDED.fp_version,
                 key_version = EXCLUDED.key_version, sealed_id = EXCLUDED.sealed_id",
        )
        .bind(&to)
        .bind(v)
        .bind(to_db(m.to.id.key_version)?)
        .bind(&m.to.id.sealed)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "DELETE FROM subjects WHERE subject_fp = $1
             AND NOT EXISTS (SELECT 1 FROM subject_tokens WHERE subject_fp = $1)",
        )
        .bind(&to)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(moved)
}

pub(super) async fn drop_volatile_before(pool: &PgPool, target: u32) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM volatile WHERE fp_version IS NULL OR fp_version < $1 OR key_version < $1")
        .bind(i32::try_from(target).unwrap_or(i32::MAX))
        .execute(pool)
        .await
        .map_err(unavailable)?;
    Ok(done.rows_affected())
}

/// Drops the sealed ids of these subjects that have no link left (a purge took their last token).
pub(super) async fn forget_unlinked_subjects(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    mut subjects: Vec<Vec<u8>>,
) -> Result<(), StoreError> {
    if subjects.is_empty() {
        return Ok(());
    }
    subjects.sort_unstable();
    subjects.dedup();
    sqlx::query(
        "DELETE FROM subjects s WHERE s.subject_fp = ANY($1)
         AND NOT EXISTS (SELECT 1 FROM subject_tokens l WHERE l.subject_fp = s.subject_fp)",
    )
    .bind(subjects)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}
