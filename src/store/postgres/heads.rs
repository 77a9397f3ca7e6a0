//! Audit log heads on PostgreSQL (migration 5): read, and moved compare-and-swap in one autocommit statement.

use sqlx::PgPool;

use super::unavailable;
use crate::store::{seq_of, seq_to, AuditHead, StoreError};

pub(super) async fn get(pool: &PgPool, log_id: &str) -> Result<Option<AuditHead>, StoreError> {
    let row: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE log_id = $1")
        .bind(log_id)
        .fetch_optional(pool)
        .await
        .map_err(unavailable)?;
    row.map(|(seq, hash)| Ok(AuditHead { seq: seq_of(seq)?, hash })).transpose()
}

pub(super) async fn swap(
    pool: &PgPool,
    log_id: &str,
    expected: Option<&AuditHead>,
    new: &AuditHead,
    now: i64,
) -> Result<bool, StoreError> {
    let done = match expected {
        None => sqlx::query(
            "INSERT INTO audit_heads (log_id, seq, hash, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (log_id) DO NOTHING",
        )
        .bind(log_id)
        .bind(seq_to(new.seq)?)
        .bind(&new.hash)
        .bind(now)
        .execute(pool)
        .await
        .map_err(unavailable)?,
        Some(old) => sqlx::query(
            "UPDATE audit_heads SET seq = $1, hash = $2, updated_at = $3 WHERE log_id = $4 AND seq = $5 AND hash = $6",
        )
        .bind(seq_to(new.seq)?)
        .bind(&new.hash)
        .bind(now)
        .bind(log_id)
        .bind(seq_to(old.seq)?)
        .bind(&old.hash)
        .execute(pool)
        .await
        .map_err(unavailable)?,
    };
    Ok(done.rows_affected() == 1)
}
