//! Fills the store's key filter at open: every record's keys, read in rowid order (pages one after the other) on
//! a connection of its own with a small page cache (a scan through the readers would leave each reader's cache
//! full of pages nothing else reads: megabytes of resident memory for good), in the background. Until it is done the filter answers "maybe" for every key (the store is read as before);
//! records written meanwhile are added by the writer before they commit, so none is missed.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

use crate::store::filter::KeyFilter;
use crate::store::Fingerprint;

/// Records read per statement (each page is a short read transaction, so checkpoints are never held back long).
const PAGE: i64 = 1024;

/// Starts the scan (needs a tokio runtime) on a connection opened with `opts` and closed after.
pub(super) fn start(opts: SqliteConnectOptions, filter: Arc<KeyFilter>) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let scanned = match SqliteConnection::connect_with(&opts.pragma("cache_size", "-64")).await {
            Ok(mut conn) => {
                let scanned = scan(&mut conn, &filter).await;
                let _ = conn.close().await;
                scanned
            }
            Err(e) => Err(e),
        };
        match scanned {
            Ok(records) => {
                filter.set_ready();
                tracing::debug!(
                    records,
                    bytes = filter.bytes(),
                    took_ms = started.elapsed().as_millis(),
                    "key filter ready"
                );
            }
            Err(e) => tracing::warn!(error = %e, "key filter not built: every new value is looked up in the store"),
        }
    });
}

/// Adds every record's keys (a tombstone's fingerprint is random bytes: a key nobody looks up); how many.
async fn scan(conn: &mut SqliteConnection, filter: &KeyFilter) -> Result<u64, sqlx::Error> {
    let mut after = i64::MIN;
    let mut records = 0u64;
    loop {
        let rows: Vec<(i64, String, String, Vec<u8>)> =
            sqlx::query_as("SELECT rowid, class, token, value_fp FROM tokens WHERE rowid > ? ORDER BY rowid LIMIT ?")
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut *conn)
                .await?;
        for (_, c, t, fp) in &rows {
            let fp: Fingerprint = fp
                .as_slice()
                .try_into()
                .map_err(|_| sqlx::Error::Decode("a value fingerprint is not 32 bytes".into()))?;
            filter.add_record(c, t, &fp);
        }
        records += rows.len() as u64;
        let full = rows.len() as i64 == PAGE;
        match rows.last() {
            Some((rowid, ..)) if full => after = *rowid,
            _ => return Ok(records),
        }
    }
}
