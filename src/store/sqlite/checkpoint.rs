//! Background WAL checkpoints. The store's writing connections run with `wal_autocheckpoint = 0`, so no commit
//! copies the WAL back into the database file inline (that cost the committing writer a checkpoint every 1,000
//! pages); this task does it on its own connection instead: PASSIVE (never waits, never blocks a writer) on
//! every tick with new commits, RESTART when the WAL has grown past a bound under steady writing (a checkpoint
//! racing steady commits never catches up, so the WAL would never start over), and TRUNCATE once writing has
//! stopped for a tick (the WAL file goes back to zero bytes). Durability is untouched: a commit is on disk once
//! its WAL frames are synced; a checkpoint only moves committed pages into the database file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use tokio::sync::oneshot;

/// Checkpoint schedule.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointOptions {
    /// How often the task looks for new commits.
    pub every: Duration,
    /// WAL pages beyond which a checkpoint waits for the writer (RESTART) so the WAL starts over.
    pub restart_pages: i64,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        // 8,192 pages of 4 KiB: the WAL stays under ~32 MiB.
        Self { every: Duration::from_millis(200), restart_pages: 8192 }
    }
}

/// The mode a tick checkpoints with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Passive,
    Restart,
    Truncate,
}

impl Mode {
    fn sql(self) -> &'static str {
        match self {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
}

/// Stops the task when dropped.
pub(super) struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

/// Starts the task (needs a tokio runtime): `written` counts the transactions committed by the store's writing
/// connections.
pub(super) fn start(opts: SqliteConnectOptions, written: Arc<AtomicU64>, schedule: CheckpointOptions) -> Checkpointer {
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(run(opts, written, schedule, stopped));
    Checkpointer { _stop: stop }
}

async fn run(
    opts: SqliteConnectOptions,
    written: Arc<AtomicU64>,
    schedule: CheckpointOptions,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut conn: Option<SqliteConnection> = None;
    // Commits the last completed TRUNCATE covered, and the count seen at the previous tick.
    let mut settled = written.load(Ordering::Relaxed);
    let mut seen = settled;
    let mut wal_pages: i64 = 0;
    let mut tick = tokio::time::interval(schedule.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {}
        }
        let now = written.load(Ordering::Relaxed);
        if now == settled {
            continue;
        }
        let mode = if now == seen {
            Mode::Truncate
        } else if wal_pages > schedule.restart_pages {
            Mode::Restart
        } else {
            Mode::Passive
        };
        seen = now;
        let started = std::time::Instant::now();
        match checkpoint(&opts, &mut conn, mode).await {
            Ok((busy, log)) => {
                tracing::debug!(mode = ?mode, wal_pages = log, busy, took_ms = started.elapsed().as_millis(), "WAL checkpoint");
                wal_pages = if mode == Mode::Passive { log } else { 0 };
                if mode == Mode::Truncate && !busy {
                    settled = now;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, mode = ?mode, "WAL checkpoint failed");
                if let Some(c) = conn.take() {
                    let _ = c.close().await;
                }
            }
        }
    }
    if let Some(c) = conn.take() {
        let _ = c.close().await;
    }
}

/// Runs one checkpoint; (whether it was blocked from finishing, WAL pages at the time).
async fn checkpoint(
    opts: &SqliteConnectOptions,
    conn: &mut Option<SqliteConnection>,
    mode: Mode,
) -> Result<(bool, i64), sqlx::Error> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(SqliteConnection::connect_with(opts).await?),
    };
    let (busy, log, _done): (i64, i64, i64) = sqlx::query_as(mode.sql()).fetch_one(&mut *c).await?;
    Ok((busy != 0, log))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The schedule end to end is held by the store's tests (sqlite.rs); here, one checkpoint's failure.
    use super::*;
    use std::str::FromStr;

    #[tokio::test]
    async fn a_failed_checkpoint_keeps_no_connection_and_the_next_one_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let opts = SqliteConnectOptions::from_str(&url).unwrap();
        let mut conn = None;
        // No database file yet (and no create_if_missing): the connection fails.
        assert!(checkpoint(&opts, &mut conn, Mode::Passive).await.is_err());
        assert!(conn.is_none());
        let wal = opts.clone().create_if_missing(true).journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let mut c = SqliteConnection::connect_with(&wal).await.unwrap();
        sqlx::query("CREATE TABLE t (x)").execute(&mut c).await.unwrap();
        let (busy, _pages) = checkpoint(&opts, &mut conn, Mode::Truncate).await.unwrap();
        assert!(!busy);
        assert!(conn.is_some());
    }
}
