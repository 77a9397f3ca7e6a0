//! Retention's purge on SQLite without an index over last use (schema V8 dropped `tokens_by_last_use`: with
//! random tokens, the entries of the current second spread over dozens of its leaves, one more B-tree page
//! written per new record and one more index update per touch, for a purge that runs once an interval).
//!
//! A purge page scans the records in rowid order (the order they were written in: pages read one after the
//! other) on a reader (no write lock held while it reads), from where the previous page of the same run
//! stopped, and tombstones what it found in one write transaction that checks each record again (one used
//! meanwhile stays). A run's pages share a cutoff and a `now`: a record the scan passed was not expired at that
//! cutoff and cannot become so (`last_used_at` only grows; a record written later gets a later rowid), so a run
//! reads every record once, not once per page.

use std::sync::Mutex;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::Connection;

use super::{tombstone, unavailable, UNLINK_TOKEN};
use crate::store::StoreError;

/// Where the last page of a purge run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    class: String,
    cutoff: i64,
    now: i64,
    /// The rowid of the last record the run's scan returned.
    after: i64,
}

/// The scan position of the purge run in progress (one at a time per store; another run starts over).
#[derive(Default)]
pub(super) struct Purger {
    cursor: Mutex<Option<Cursor>>,
}

/// Records of `?1` last used before `?2`, still live, with a rowid after `?3`, in rowid order, at most `?4`
/// (a range scan of the table from `?3` on).
const EXPIRED_AFTER: &str = "SELECT rowid, token FROM tokens WHERE rowid > ?3 AND class = ?1
     AND last_used_at < ?2 AND gone_at IS NULL ORDER BY rowid LIMIT ?4";

impl Purger {
    fn resume(&self, class: &str, cutoff: i64, now: i64) -> i64 {
        let cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        match &*cursor {
            Some(c) if c.class == class && c.cutoff == cutoff && c.now == now => c.after,
            _ => i64::MIN,
        }
    }

    fn remember(&self, at: Option<Cursor>) {
        *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Tombstones up to `limit` live records of `class` last used before `cutoff` and drops their links; fewer
    /// than `limit`: none is left.
    pub(super) async fn purge(
        &self,
        read: &SqlitePool,
        write: &SqliteConnectOptions,
        (class, cutoff, now): (&str, i64, i64),
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut after = self.resume(class, cutoff, now);
        let mut done = 0usize;
        while done < limit {
            let want = limit - done;
            let found: Vec<(i64, String)> = sqlx::query_as(EXPIRED_AFTER)
                .bind(class)
                .bind(cutoff)
                .bind(after)
                .bind(i64::try_from(want).unwrap_or(i64::MAX))
                .fetch_all(read)
                .await
                .map_err(unavailable)?;
            let tokens: Vec<String> = found.iter().map(|(_, t)| t.clone()).collect();
            done += tombstone_expired(write, class, cutoff, now, &tokens).await?;
            match found.last() {
                // The scan reached the end of the table.
                _ if found.len() < want => {
                    self.remember(None);
                    break;
                }
                Some((last, _)) => after = *last,
                None => break,
            }
            let at = Cursor { class: class.to_owned(), cutoff, now, after };
            self.remember(Some(at));
        }
        Ok(done as u64)
    }
}

/// In one write transaction: tombstones those of `tokens` still live and last used before `cutoff`, and drops
/// their subject links; how many.
async fn tombstone_expired(
    write: &SqliteConnectOptions,
    class: &str,
    cutoff: i64,
    now: i64,
    tokens: &[String],
) -> Result<usize, StoreError> {
    if tokens.is_empty() {
        return Ok(0);
    }
    let mut conn = SqliteConnection::connect_with(write).await.map_err(unavailable)?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
    let (mut done, mut unlinked) = (0, Vec::new());
    for token in tokens {
        let expired: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tokens WHERE class = ? AND token = ? AND last_used_at < ? AND gone_at IS NULL",
        )
        .bind(class)
        .bind(token)
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if expired.is_none() {
            continue;
        }
        tombstone(&mut tx, class, token, now).await?;
        let gone: Vec<Vec<u8>> = sqlx::query_scalar(&format!("{UNLINK_TOKEN} RETURNING subject_fp"))
            .bind(class)
            .bind(token)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        unlinked.extend(gone);
        done += 1;
    }
    // A subject left without tokens keeps no sealed id.
    super::rotation::forget_unlinked_subjects(&mut tx, unlinked).await?;
    tx.commit().await.map_err(unavailable)?;
    // What the page took leaves the write-ahead log too, not only the database (`secure_delete`).
    if done > 0 {
        super::empty_wal(&mut conn, "retention purge").await;
    }
    let _ = conn.close().await;
    Ok(done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{SqliteOptions, SqliteStore};
    use crate::store::{Record, Store, Write};

    fn rec(token: &str, fp: u8, last_used_at: i64) -> Record {
        Record {
            class: "email".into(),
            token: token.into(),
            value_fp: [fp; 32],
            key_version: 1,
            sealed: vec![fp],
            created_at: 0,
            last_used_at,
            gone_at: None,
            fp_version: None,
        }
    }

    /// A run's pages resume where the previous one stopped (a record written meanwhile comes after it), a record
    /// used meanwhile is kept, and the run ends with a short page.
    #[tokio::test]
    async fn a_purge_run_pages_through_the_class_once_and_keeps_what_was_used_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
        // t00..t39: even ones expired at cutoff 100, odd ones used recently; and one of another class.
        let records: Vec<Record> =
            (0..40u8).map(|i| rec(&format!("t{i:02}"), i, if i % 2 == 0 { 10 } else { 500 })).collect();
        store.insert(records).await.unwrap();
        store.insert(vec![Record { class: "pan".into(), ..rec("p", 99, 10) }]).await.unwrap();
        assert_eq!(store.purge("email", 100, 1000, 3).await.unwrap(), 3);
        // Written after the run's position (a later rowid, though its token sorts first): a new expired record;
        // ahead of the position: t10, used now.
        store.insert(vec![rec("t00a", 200, 10)]).await.unwrap();
        let touch = vec![("email".to_string(), "t10".to_string())];
        store.write(Write { touch, now: 900, ..Write::default() }).await.unwrap();
        let mut pages = Vec::new();
        loop {
            let page = store.purge("email", 100, 1000, 3).await.unwrap();
            pages.push(page);
            if page < 3 {
                break;
            }
        }
        // 20 expired and t00a, 3 taken before, t10 kept: 17 more, in pages of 3 and a short one.
        assert_eq!(pages, [3, 3, 3, 3, 3, 2]);
        let kept: Vec<String> =
            sqlx::query_scalar("SELECT token FROM tokens WHERE class = 'email' AND gone_at IS NULL ORDER BY token")
                .fetch_all(&store.read)
                .await
                .unwrap();
        let mut expected: Vec<String> = (0..40).filter(|i| i % 2 == 1).map(|i| format!("t{i:02}")).collect();
        expected.push("t10".into());
        expected.sort();
        assert_eq!(kept, expected);
        // The next run (another `now`) starts over and finds nothing left; the other class was never touched.
        assert_eq!(store.purge("email", 100, 1001, 3).await.unwrap(), 0);
        assert_eq!(store.count_expired("email", 100).await.unwrap(), Some(0));
        assert_eq!(store.count_expired("pan", 100).await.unwrap(), Some(1));
        assert_eq!(store.purge("email", 100, 1001, 0).await.unwrap(), 0);
    }
}
