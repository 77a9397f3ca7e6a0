//! Lookups by value fingerprint and by token on one SQLite connection, a few hundred keys per statement (each
//! statement is one round trip to the connection's worker thread).

use std::collections::HashMap;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;

use super::shape::{padded, padded_to, shape};
use super::{unavailable, COLUMNS};
use crate::store::{Fingerprint, Record, StoreError};

/// Keys per read query (two bound parameters each; a power of two, see `shape`). A read of both kinds in one
/// statement takes up to this many of each.
const READ_CHUNK: usize = 256;

pub(super) fn record_from_row(row: &SqliteRow) -> Result<Record, StoreError> {
    let fp: Vec<u8> = row.try_get("value_fp").map_err(unavailable)?;
    let value_fp: Fingerprint =
        fp.try_into().map_err(|_| StoreError::Corrupt("value fingerprint is not 32 bytes".into()))?;
    let key_version: i64 = row.try_get("key_version").map_err(unavailable)?;
    let fp_version: Option<i64> = row.try_get("fp_version").map_err(unavailable)?;
    let fp_version = fp_version
        .map(u32::try_from)
        .transpose()
        .map_err(|_| StoreError::Corrupt("fingerprint key version out of range".into()))?;
    Ok(Record {
        class: row.try_get("class").map_err(unavailable)?,
        token: row.try_get("token").map_err(unavailable)?,
        value_fp,
        fp_version,
        key_version: u32::try_from(key_version).map_err(|_| StoreError::Corrupt("key version out of range".into()))?,
        sealed: row.try_get("sealed").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        last_used_at: row.try_get("last_used_at").map_err(unavailable)?,
        gone_at: row.try_get("gone_at").map_err(unavailable)?,
    })
}

/// `SELECT ... WHERE (class, <col>) IN (VALUES (?, ?), ...)` for `n` keys.
pub(super) fn lookup_sql(col: &str, n: usize) -> String {
    let values = vec!["(?, ?)"; n].join(", ");
    format!("SELECT {COLUMNS} FROM tokens WHERE (class, {col}) IN (VALUES {values})")
}

/// Both lookups in one statement, `n` keys of each; `by_token` tells which one a row answers.
pub(super) fn both_lookup_sql(n: usize) -> String {
    let pairs = vec!["(?, ?)"; n].join(", ");
    format!(
        "SELECT 0 AS by_token, {COLUMNS} FROM tokens WHERE (class, value_fp) IN (VALUES {pairs}) \
         UNION ALL SELECT 1, {COLUMNS} FROM tokens WHERE (class, token) IN (VALUES {pairs})"
    )
}

/// Records for these (class, value fingerprint) keys, in order.
pub(super) async fn by_values(
    conn: &mut SqliteConnection,
    keys: &[(String, Fingerprint)],
) -> Result<Vec<Option<Record>>, StoreError> {
    let mut found: HashMap<(String, Fingerprint), Record> = HashMap::new();
    for chunk in keys.chunks(READ_CHUNK) {
        let sql = lookup_sql("value_fp", shape(chunk.len()));
        let mut q = sqlx::query(&sql);
        for (class, fp) in padded(chunk) {
            q = q.bind(class.as_str()).bind(&fp[..]);
        }
        for row in q.fetch_all(&mut *conn).await.map_err(unavailable)? {
            let rec = record_from_row(&row)?;
            found.insert((rec.class.clone(), rec.value_fp), rec);
        }
    }
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

/// Records for these (class, canonical token) keys, in order.
pub(super) async fn by_tokens(
    conn: &mut SqliteConnection,
    keys: &[(String, String)],
) -> Result<Vec<Option<Record>>, StoreError> {
    let mut found: HashMap<(String, String), Record> = HashMap::new();
    for chunk in keys.chunks(READ_CHUNK) {
        let sql = lookup_sql("token", shape(chunk.len()));
        let mut q = sqlx::query(&sql);
        for (class, token) in padded(chunk) {
            q = q.bind(class.as_str()).bind(token.as_str());
        }
        for row in q.fetch_all(&mut *conn).await.map_err(unavailable)? {
            let rec = record_from_row(&row)?;
            found.insert((rec.class.clone(), rec.token.clone()), rec);
        }
    }
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

/// Both lookups, in one statement when each key list fits in one chunk (both padded to one shape).
pub(super) async fn both(
    conn: &mut SqliteConnection,
    values: &[(String, Fingerprint)],
    tokens: &[(String, String)],
) -> Result<(Vec<Option<Record>>, Vec<Option<Record>>), StoreError> {
    let n = values.len().max(tokens.len());
    if values.is_empty() || tokens.is_empty() || n > READ_CHUNK {
        return Ok((by_values(conn, values).await?, by_tokens(conn, tokens).await?));
    }
    let sql = both_lookup_sql(shape(n));
    let mut q = sqlx::query(&sql);
    for (class, fp) in padded_to(values, shape(n)) {
        q = q.bind(class.as_str()).bind(&fp[..]);
    }
    for (class, token) in padded_to(tokens, shape(n)) {
        q = q.bind(class.as_str()).bind(token.as_str());
    }
    let mut by_value: HashMap<(String, Fingerprint), Record> = HashMap::new();
    let mut by_token: HashMap<(String, String), Record> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await.map_err(unavailable)? {
        let by_token_row: i64 = row.try_get("by_token").map_err(unavailable)?;
        let rec = record_from_row(&row)?;
        if by_token_row == 0 {
            by_value.insert((rec.class.clone(), rec.value_fp), rec);
        } else {
            by_token.insert((rec.class.clone(), rec.token.clone()), rec);
        }
    }
    Ok((
        values.iter().map(|k| by_value.get(k).cloned()).collect(),
        tokens.iter().map(|k| by_token.get(k).cloned()).collect(),
    ))
}
