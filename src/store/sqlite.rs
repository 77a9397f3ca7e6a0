//! SQLite backend: WAL, `synchronous = FULL`, a read pool (reveals, subject and lifecycle reads), one writer task
//! that group-commits inserts and answers tokenisation's lookups in batches on its own connection, a filter in
//! memory of the keys it holds (a value never seen is not looked up at all), and a background WAL checkpoint.
//! The layout and why: schema V8 (`schema.rs`) and the README's "The embedded store".

mod batch;
mod checkpoint;
mod fill;
mod heads;
mod lookup;
mod purge;
mod rotation;
mod schema;
mod shape;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use self::checkpoint::CheckpointOptions;
use super::filter::{spread, KeyFilter};
use super::group::{Committer, Found, GroupWriter};
use super::{
    AuditHead, Erased, Fingerprint, Inserted, KeyUsage, Record, Resealed, Store, StoreError, SubjectMove, SubjectRow,
    Volatile, Write,
};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, Transaction};

const READERS: u32 = 4;
const COLUMNS: &str = "class, token, value_fp, fp_version, key_version, sealed, created_at, last_used_at, gone_at";

/// Tuning for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most records committed in one group-commit transaction (a single larger request still goes whole).
    pub max_batch: usize,
    /// How long a connection waits on a lock held elsewhere before failing.
    pub busy_timeout: Duration,
    /// When the background task moves the WAL into the database file.
    pub checkpoint: CheckpointOptions,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { max_batch: 512, busy_timeout: Duration::from_secs(5), checkpoint: CheckpointOptions::default() }
    }
}

/// A [`Store`] on one SQLite file. Dropping it lets the writer finish what is queued and close.
pub struct SqliteStore {
    read: SqlitePool,
    /// For the rare writes outside the group writer (erasure, purge): they wait on its lock (busy timeout).
    write_opts: SqliteConnectOptions,
    writer: GroupWriter,
    commits: Arc<AtomicU64>,
    /// Transactions committed by any writing connection (the checkpoint task watches it).
    written: Arc<AtomicU64>,
    purger: purge::Purger,
    /// Keys the store holds, to answer tokenisation's lookups of new values without a read.
    filter: Arc<KeyFilter>,
    _checkpointer: checkpoint::Checkpointer,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating the file and its parent directory if missing) the database at `url`, e.g.
    /// `sqlite://data/vault.db`; creates the schema, starts the writer task. Needs a tokio runtime.
    pub async fn open(url: &str, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(unavailable)?
            .busy_timeout(opts.busy_timeout)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full);
        let path = base.get_filename().to_path_buf();
        if path.to_string_lossy().starts_with("file:sqlx-in-memory") {
            return Err(StoreError::Unavailable("in-memory databases are not supported".into()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot create database directory: {e}")))?;
        }
        create_private(&path).await?;
        // Commits never checkpoint inline: the checkpoint task does (see `checkpoint`). The statement journal a
        // multi-row insert keeps (to undo just that statement) stays in memory instead of a temporary file.
        // Deleted rows (erasures, purges, used CVCs) are overwritten with zeros, not left in free pages.
        let write_opts = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0")
            .pragma("temp_store", "MEMORY")
            .pragma("secure_delete", "ON");
        let mut conn = SqliteConnection::connect_with(&write_opts).await.map_err(unavailable)?;
        schema::init(&mut conn).await?;
        // No ping before each acquire: it is one more round trip to the connection's worker thread per read, and
        // a local file connection that broke fails its query anyway.
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .acquire_timeout(opts.busy_timeout.max(Duration::from_secs(1)))
            .connect_with(base.clone())
            .await
            .map_err(unavailable)?;
        // Sized for the records there are (two keys each) and some growth; it grows by layers past that.
        let live: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(live), 0) FROM live_counts")
            .fetch_one(&mut conn)
            .await
            .map_err(unavailable)?;
        let filter = Arc::new(KeyFilter::with_capacity(usize::try_from(live).unwrap_or(0) * 5 / 2 + (1 << 16)));
        let (commits, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let committer = Writer {
            opts: write_opts.clone(),
            conn: Some(conn),
            commits: commits.clone(),
            written: written.clone(),
            filter: filter.clone(),
        };
        let writer = GroupWriter::start(committer, opts.max_batch, "sqlite");
        let _checkpointer = checkpoint::start(write_opts.clone(), written.clone(), opts.checkpoint);
        fill::start(base, filter.clone());
        let purger = purge::Purger::default();
        Ok(SqliteStore { read, write_opts, writer, commits, written, purger, filter, _checkpointer })
    }

    /// Group-commit transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// Runs `$body` (a future using the transaction `$tx`) in one `BEGIN IMMEDIATE` transaction on a connection of
/// its own (key rotation's rare writes: they wait on the writer's lock, busy timeout), committed if it succeeds.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut conn = SqliteConnection::connect_with(&$store.write_opts).await.map_err(unavailable)?;
        let mut $tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let out = $body.await?;
        $tx.commit().await.map_err(unavailable)?;
        $store.written.fetch_add(1, Ordering::Relaxed);
        let _ = conn.close().await;
        Ok(out)
    }};
}

/// Creates the database file readable by its owner only (SQLite gives its -wal and -shm files the same mode);
/// an existing file is left as it is.
async fn create_private(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true).mode(0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!("cannot create the database file: {e}"))),
    }
}

struct Writer {
    opts: SqliteConnectOptions,
    /// `None` after a failure left the connection in doubt; reconnected on the next batch.
    conn: Option<SqliteConnection>,
    commits: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    filter: Arc<KeyFilter>,
}

impl Writer {
    /// The writer's connection, opened again if a failure left it in doubt.
    async fn connection(&mut self) -> Result<SqliteConnection, StoreError> {
        match self.conn.take() {
            Some(c) => Ok(c),
            None => SqliteConnection::connect_with(&self.opts).await.map_err(unavailable),
        }
    }

    /// Keeps the connection for the next batch. After a failure (a failed BEGIN/statement/COMMIT was rolled
    /// back by `transact`), only if it still answers and is out of any transaction.
    async fn keep_if_sound(&mut self, mut conn: SqliteConnection, ok: bool) {
        if ok || sqlx::query("SELECT 1").execute(&mut conn).await.is_ok() {
            self.conn = Some(conn);
        } else {
            let _ = conn.close().await;
        }
    }
}

#[async_trait]
impl Committer for Writer {
    /// One transaction for the whole batch; on any failure it is rolled back and nothing is kept.
    async fn commit(&mut self, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError> {
        // Into the filter before the commit: a lookup from then on reads the store for these keys (a record that
        // lost to another, or a failed commit, leaves a key that merely costs a read).
        for r in writes.iter().flat_map(|w| &w.records) {
            self.filter.add_record(&r.class, &r.token, &r.value_fp);
        }
        let mut conn = self.connection().await?;
        let result = batch::transact(&mut conn, writes).await;
        if result.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        self.keep_if_sound(conn, result.is_ok()).await;
        result
    }

    /// On the writer's connection, outside any transaction: it sees every committed batch.
    async fn find(
        &mut self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<Found, StoreError> {
        let mut conn = self.connection().await?;
        let result = lookup::both(&mut conn, values, tokens).await;
        self.keep_if_sound(conn, result.is_ok()).await;
        result
    }

    async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// Whether a link `s` (of `subject_tokens`) has a token another subject links too: the token's first subject
/// or one of its shared ones is not `s`'s (migration V4 keeps them).
const SHARED: &str = "EXISTS (SELECT 1 FROM tokens t WHERE t.class = s.class AND t.token = s.token
                             AND t.first_subject != s.subject_fp)
     OR EXISTS (SELECT 1 FROM shared_links x WHERE x.class = s.class AND x.token = s.token
                AND x.subject_fp != s.subject_fp)";

/// Deletes every link of one (class, token) (`?1`, `?2`): its first subject's and its shared ones', each by key.
/// (The subjects are read before any link goes: the triggers change them as links are deleted.)
const UNLINK_TOKEN: &str = "DELETE FROM subject_tokens WHERE class = ?1 AND token = ?2 AND subject_fp IN (
        SELECT first_subject FROM tokens WHERE class = ?1 AND token = ?2 AND first_subject IS NOT NULL
        UNION ALL SELECT subject_fp FROM shared_links WHERE class = ?1 AND token = ?2)";

/// Deletes the sealed value and unlinks the value fingerprint (random bytes); the token stays taken.
async fn tombstone(tx: &mut Transaction<'_, Sqlite>, class: &str, token: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE tokens SET sealed = X'', value_fp = ?, gone_at = ? WHERE class = ? AND token = ?")
        .bind(&rand::random::<[u8; 32]>()[..])
        .bind(now)
        .bind(class)
        .bind(token)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn find_by_values(&self, keys: &[(String, Fingerprint)]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        lookup::by_values(&mut *self.read.acquire().await.map_err(unavailable)?, keys).await
    }

    async fn find_by_tokens(&self, keys: &[(String, String)]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        lookup::by_tokens(&mut *self.read.acquire().await.map_err(unavailable)?, keys).await
    }

    /// Asked for every value the engine does not know, just before it writes the new ones. Keys the key filter
    /// rules out are answered at once (a new value and its candidate token: usually all of them); the others are
    /// queued to the writer so that the lookups queued together are answered by a few statements on the writer's
    /// connection (hops to its worker thread shared by all of them, and a page cache no other connection's commit
    /// resets) instead of a statement each on a reader.
    async fn find_by_values_and_tokens(
        &self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<(Vec<Option<Record>>, Vec<Option<Record>>), StoreError> {
        let filter = &self.filter;
        // Only the keys the filter cannot rule out are read (none, for a batch of values never seen).
        let (at_v, at_t) = (filter.maybe_values(values), filter.maybe_tokens(tokens));
        if at_v.len() == values.len() && at_t.len() == tokens.len() {
            return self.writer.find((values.to_vec(), tokens.to_vec())).await;
        }
        let keys =
            (at_v.iter().map(|&i| values[i].clone()).collect(), at_t.iter().map(|&i| tokens[i].clone()).collect());
        let (by_value, by_token) = self.writer.find(keys).await?;
        Ok((spread(values.len(), &at_v, by_value), spread(tokens.len(), &at_t, by_token)))
    }

    async fn write(&self, w: Write) -> Result<Vec<Inserted>, StoreError> {
        self.writer.submit(w).await
    }

    async fn subject_records(&self, subject: &Fingerprint) -> Result<Vec<Record>, StoreError> {
        let cols = COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM subject_tokens s JOIN tokens t ON t.class = s.class AND t.token = s.token
             WHERE s.subject_fp = ? ORDER BY t.class, t.token"
        ))
        .bind(&subject[..])
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(lookup::record_from_row).collect()
    }

    async fn subject_peers(&self, class: &str, token: &str) -> Result<Vec<(String, String)>, StoreError> {
        // The token's subjects are its row's first subject and its shared links (no index by token: see V4).
        sqlx::query_as(
            "SELECT DISTINCT s.class, s.token FROM subject_tokens s WHERE s.subject_fp IN (
                 SELECT first_subject FROM tokens WHERE class = ?1 AND token = ?2 AND first_subject IS NOT NULL
                 UNION SELECT subject_fp FROM shared_links WHERE class = ?1 AND token = ?2)",
        )
        .bind(class)
        .bind(token)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)
    }

    async fn erase_subject(&self, subject: &Fingerprint, now: i64) -> Result<Vec<Erased>, StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.write_opts).await.map_err(unavailable)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "SELECT s.class, s.token, {SHARED} FROM subject_tokens s WHERE s.subject_fp = ? ORDER BY s.class, s.token"
        ))
        .bind(&subject[..])
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len());
        for (class, token, shared) in rows {
            if shared == 0 {
                tombstone(&mut tx, &class, &token, now).await?;
            }
            out.push(Erased { class, token, erased: shared == 0 });
        }
        for table in ["subject_tokens", "subjects"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE subject_fp = ?"))
                .bind(&subject[..])
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        self.written.fetch_add(1, Ordering::Relaxed);
        empty_wal(&mut conn, "erasure").await;
        let _ = conn.close().await;
        Ok(out)
    }

    async fn put_volatile(&self, secrets: Vec<Volatile>) -> Result<(), StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.write_opts).await.map_err(unavailable)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        for v in secrets {
            sqlx::query(
                "INSERT OR REPLACE INTO volatile (bind_fp, fp_version, key_version, sealed, expires_at, uses_left)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&v.bind_fp[..])
            .bind(v.fp_version.map(i64::from))
            .bind(i64::from(v.key_version))
            .bind(&v.sealed)
            .bind(v.expires_at)
            .bind(i64::from(v.uses))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        let _ = conn.close().await;
        Ok(())
    }

    async fn take_volatile(&self, bind_fp: &Fingerprint, now: i64) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.write_opts).await.map_err(unavailable)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE volatile SET uses_left = uses_left - 1
             WHERE bind_fp = ? AND expires_at > ? AND uses_left > 0 RETURNING key_version, sealed",
        )
        .bind(&bind_fp[..])
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("DELETE FROM volatile WHERE bind_fp = ? AND (uses_left <= 0 OR expires_at <= ?)")
            .bind(&bind_fp[..])
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let _ = conn.close().await;
        let Some((version, sealed)) = row else { return Ok(None) };
        let version = u32::try_from(version).map_err(|_| StoreError::Corrupt("key version out of range".into()))?;
        Ok(Some((version, sealed)))
    }

    async fn purge_volatile(&self, now: i64) -> Result<u64, StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.write_opts).await.map_err(unavailable)?;
        let done = sqlx::query("DELETE FROM volatile WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut conn)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() > 0 {
            empty_wal(&mut conn, "expired CVCs").await;
        }
        let _ = conn.close().await;
        Ok(done.rows_affected())
    }

    async fn count_expired(&self, class: &str, cutoff: i64) -> Result<Option<u64>, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE class = ? AND last_used_at < ? AND gone_at IS NULL")
                .bind(class)
                .bind(cutoff)
                .fetch_one(&self.read)
                .await
                .map_err(unavailable)?;
        Ok(u64::try_from(n).ok())
    }

    async fn count_stale_before(&self, version: u32) -> Result<Option<u64>, StoreError> {
        rotation::count_stale_before(&self.read, version).await.map(Some)
    }

    async fn purge(&self, class: &str, cutoff: i64, now: i64, limit: usize) -> Result<u64, StoreError> {
        let done = self.purger.purge(&self.read, &self.write_opts, (class, cutoff, now), limit).await?;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }

    async fn stale_before(
        &self,
        version: u32,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        rotation::stale_before(&self.read, version, after, limit).await
    }

    async fn reseal(&self, records: &[Resealed]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        in_transaction!(self, |tx| rotation::reseal(&mut tx, records))
    }

    async fn fp_versions(&self, current: u32) -> Result<Option<Vec<u32>>, StoreError> {
        let listed: Result<Vec<u32>, StoreError> = in_transaction!(self, |tx| rotation::fp_versions(&mut tx, current));
        listed.map(Some)
    }

    async fn unlist_fp_versions_below(&self, version: u32) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| rotation::unlist_below(&mut tx, version))
    }

    async fn key_usage(&self, version: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
        rotation::key_usage(&mut *self.read.acquire().await.map_err(unavailable)?, version, oldest).await
    }

    async fn unlist_fp_version(&self, version: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
        in_transaction!(self, |tx| rotation::unlist_version(&mut tx, version, oldest))
    }

    async fn subjects_after(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<SubjectRow>, StoreError> {
        rotation::subjects_after(&self.read, after, limit).await
    }

    async fn move_subjects(&self, moves: &[SubjectMove]) -> Result<u64, StoreError> {
        if moves.is_empty() {
            return Ok(0);
        }
        in_transaction!(self, |tx| rotation::move_subjects(&mut tx, moves))
    }

    async fn drop_volatile_before(&self, version: u32) -> Result<u64, StoreError> {
        in_transaction!(self, |tx| rotation::drop_volatile_before(&mut tx, version))
    }

    /// From the counts the triggers keep (migration V3).
    async fn count_live(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT class, live FROM live_counts WHERE live > 0 ORDER BY class")
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        Ok(rows.into_iter().map(|(c, n)| (c, n.max(0) as u64)).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(|_| ()).map_err(unavailable)
    }
    async fn audit_head(&self, log_id: &str) -> Result<Option<AuditHead>, StoreError> {
        heads::get(&self.read, log_id).await
    }

    async fn swap_audit_head(
        &self,
        log_id: &str,
        expected: Option<&AuditHead>,
        new: &AuditHead,
        now: i64,
    ) -> Result<bool, StoreError> {
        heads::swap(&self.read, log_id, expected, new, now).await
    }
}

/// Erased ciphertext (`secure_delete` zeroes it in the database) also sits in the write-ahead log's older
/// frames: copy the zeroed pages into the database and empty the log now, not at the next checkpoint (best
/// effort: a busy reader delays it until the checkpointer's next TRUNCATE).
async fn empty_wal(conn: &mut SqliteConnection, after: &str) {
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(conn).await {
        tracing::warn!(error = %e, after, "the write-ahead log could not be emptied yet");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod links_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod migration_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod rotation_tests;

/// A new database at `url` with the schema of `version` only (for migration tests), and a connection to it.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
async fn database_at_version(url: &str, version: usize) -> SqliteConnection {
    let opts = SqliteConnectOptions::from_str(url).unwrap().create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
    for stmt in schema::MIGRATIONS[..version].iter().flat_map(|m| m.iter()) {
        sqlx::query(stmt).execute(&mut conn).await.unwrap();
    }
    sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
        .bind(version as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// The `detail` lines of `EXPLAIN QUERY PLAN` for `sql`, its `params` parameters bound to a placeholder.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
async fn query_plan(read: &SqlitePool, sql: &str, params: usize) -> Vec<String> {
    use sqlx::Row;
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut q = sqlx::query(&explain);
    for _ in 0..params {
        q = q.bind("x");
    }
    q.fetch_all(read).await.unwrap().iter().map(|r| r.get::<String, _>("detail")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! SQLite specifics; the behaviour every store shares is held by tests/store_contract.rs on both backends.
    use super::*;

    fn rec(class: &str, token: &str, fp: u8) -> Record {
        Record {
            class: class.into(),
            token: token.into(),
            value_fp: [fp; 32],
            fp_version: None,
            key_version: 3,
            sealed: vec![fp, 1, 2, 3],
            created_at: 1_700_000_000,
            last_used_at: 1_700_000_100,
            gone_at: None,
        }
    }

    #[tokio::test]
    async fn the_database_is_private_and_an_erasure_leaves_no_ciphertext_in_its_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v.db");
        let store = SqliteStore::open(&format!("sqlite://{}", db.display()), SqliteOptions::default()).await.unwrap();
        // A sealed value no other byte pattern in the file would match.
        let sealed: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
        let record = Record { sealed: sealed.clone(), ..rec("name", "ZqAbcqZ", 9) };
        let write = Write {
            records: vec![record],
            touch: Vec::new(),
            subject: Some([5; 32]),
            now: 1_700_000_000,
            ..Write::default()
        };
        store.write(write).await.unwrap();
        let holds = |sealed: &[u8]| {
            ["v.db", "v.db-wal"]
                .iter()
                .any(|f| std::fs::read(dir.path().join(f)).is_ok_and(|b| b.windows(sealed.len()).any(|w| w == sealed)))
        };
        assert!(holds(&sealed), "the test must see the sealed value on disk first");
        let erased = store.erase_subject(&[5; 32], 1_700_000_100).await.unwrap();
        assert!(erased[0].erased);
        assert!(!holds(&sealed), "the erased value's ciphertext is still in the database or its log");
        // A retention purge (in pages) and expired CVCs likewise.
        let purged: Vec<u8> = sealed.iter().map(|b| b ^ 0x5a).collect();
        let records: Vec<Record> =
            (0..3u8).map(|i| Record { sealed: purged.clone(), ..rec("email", &format!("p{i}"), 20 + i) }).collect();
        store.insert(records).await.unwrap();
        let cvc: Vec<u8> = sealed.iter().map(|b| b ^ 0xa5).collect();
        let volatile = Volatile {
            bind_fp: [7; 32],
            fp_version: Some(3),
            key_version: 3,
            sealed: cvc.clone(),
            expires_at: 10,
            uses: 1,
        };
        store.put_volatile(vec![volatile]).await.unwrap();
        assert!(holds(&purged) && holds(&cvc), "the test must see them on disk first");
        assert_eq!(store.purge("email", 1_800_000_000, 1_800_000_000, 2).await.unwrap(), 2);
        assert_eq!(store.purge("email", 1_800_000_000, 1_800_000_000, 2).await.unwrap(), 1);
        assert!(!holds(&purged), "a purged value's ciphertext is still in the database or its log");
        assert_eq!(store.purge_volatile(11).await.unwrap(), 1);
        assert!(!holds(&cvc), "an expired CVC's ciphertext is still in the database or its log");
        for f in ["v.db", "v.db-wal", "v.db-shm"] {
            if let Ok(meta) = std::fs::metadata(dir.path().join(f)) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
            }
        }
    }

    #[tokio::test]
    async fn writer_survives_failed_batch() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let opts = SqliteOptions { busy_timeout: Duration::from_millis(50), ..SqliteOptions::default() };
        let store = SqliteStore::open(&url, opts).await.unwrap();
        // Another connection holds the write lock: the batch fails as a whole.
        let mut other = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        let err = store.insert(vec![rec("email", "a", 1), rec("email", "b", 2)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        assert_eq!(store.find_by_tokens(&[("email".into(), "a".into())]).await.unwrap(), vec![None]);
        // A statement failing mid-batch rolls back the records before it too.
        let trigger =
            "CREATE TRIGGER boom BEFORE INSERT ON tokens WHEN NEW.token = 'boom' BEGIN SELECT RAISE(ABORT, 'no'); END";
        sqlx::query(trigger).execute(&mut other).await.unwrap();
        assert!(store.insert(vec![rec("email", "a", 1), rec("email", "boom", 2)]).await.is_err());
        assert_eq!(store.find_by_tokens(&[("email".into(), "a".into())]).await.unwrap(), vec![None]);
        sqlx::query("DROP TRIGGER boom").execute(&mut other).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.read).await.unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store.insert(vec![rec("email", "a", 1)]).await.unwrap(), vec![Inserted::New]);
    }

    /// Lookups for tokenisation run on the writer's connection: one that fails is an error for its callers
    /// only, and the writer serves lookups and writes on.
    #[tokio::test]
    async fn a_failed_lookup_on_the_writer_is_an_error_and_the_writer_serves_on() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
        store.insert(vec![rec("email", "a", 1)]).await.unwrap();
        let values = [("email".to_string(), [1; 32])];
        let tokens = [("email".to_string(), "a".to_string())];
        let mut other = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE tokens RENAME TO hidden").execute(&mut other).await.unwrap();
        let err = store.find_by_values_and_tokens(&values, &tokens).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        sqlx::query("ALTER TABLE hidden RENAME TO tokens").execute(&mut other).await.unwrap();
        let (by_value, by_token) = store.find_by_values_and_tokens(&values, &tokens).await.unwrap();
        assert_eq!(by_value[0].as_ref().map(|r| r.token.as_str()), Some("a"));
        assert_eq!(by_token[0].as_ref().map(|r| r.value_fp), Some([1; 32]));
        assert_eq!(store.insert(vec![rec("email", "b", 2)]).await.unwrap(), vec![Inserted::New]);
    }

    #[tokio::test]
    async fn a_version_1_database_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v1.db", dir.path().display());
        {
            let mut conn = database_at_version(&url, 1).await;
            sqlx::query(
                "INSERT INTO tokens (class, token, value_fp, key_version, sealed, created_at, last_used_at)
                 VALUES ('email', 'old', ?, 1, X'01', 5, 6)",
            )
            .bind(&[3u8; 32][..])
            .execute(&mut conn)
            .await
            .unwrap();
        }
        let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
        let old = store.find_by_tokens(&[("email".into(), "old".into())]).await.unwrap().remove(0).unwrap();
        assert_eq!((old.created_at, old.last_used_at, old.gone_at), (5, 6, None));
        assert!(store.subject_records(&[1; 32]).await.unwrap().is_empty());
        // Records from before the counts existed are counted when they are created (V3).
        assert_eq!(store.count_live().await.unwrap(), vec![("email".to_string(), 1)]);
        store.insert(vec![rec("email", "new", 4)]).await.unwrap();
        assert_eq!(store.count_live().await.unwrap(), vec![("email".to_string(), 2)]);
        let version: i64 =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&store.read).await.unwrap();
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
        drop(store);

        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE schema_version SET version = 99").execute(&mut conn).await.unwrap();
        match SqliteStore::open(&url, SqliteOptions::default()).await {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("99"), "{msg}"),
            other => panic!("a newer schema was accepted: {:?}", other.err()),
        }
    }

    /// Whatever changes the table (tombstones, a record brought back, a class changed, deletes, touches), the
    /// kept counts equal a full count.
    #[tokio::test]
    async fn live_counts_equal_a_full_count_after_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
        let mut records: Vec<Record> = (0..30u8).map(|i| rec("email", &format!("e{i}"), i)).collect();
        records.extend((30..40u8).map(|i| rec("pan", &format!("p{i}"), i)));
        records[5].gone_at = Some(1);
        store.insert(records).await.unwrap();
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let changes = [
            "UPDATE tokens SET last_used_at = last_used_at + 1",
            "UPDATE tokens SET gone_at = 7 WHERE token IN ('e1', 'e2', 'p31')",
            "UPDATE tokens SET gone_at = 8 WHERE token = 'e1'",
            "UPDATE tokens SET gone_at = NULL WHERE token IN ('e2', 'e5')",
            "UPDATE tokens SET class = 'iban' WHERE token IN ('e3', 'e1', 'p32')",
            "DELETE FROM tokens WHERE token IN ('e4', 'e1', 'p33')",
            "UPDATE tokens SET gone_at = 9 WHERE class = 'pan'",
        ];
        for change in changes {
            sqlx::query(change).execute(&mut conn).await.unwrap();
            let full: Vec<(String, i64)> = sqlx::query_as(
                "SELECT class, COUNT(*) FROM tokens WHERE gone_at IS NULL GROUP BY class ORDER BY class",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let full: Vec<(String, u64)> = full.into_iter().map(|(c, n)| (c, n as u64)).collect();
            assert_eq!(store.count_live().await.unwrap(), full, "after {change}");
        }
        assert_eq!(store.count_live().await.unwrap(), vec![("email".to_string(), 27), ("iban".to_string(), 2)]);
    }

    /// Every key of a lookup or touch is an index seek: no statement scans the tokens table.
    #[tokio::test]
    async fn lookups_and_touches_seek_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
        let records: Vec<Record> = (0..200u8).map(|i| rec("email", &format!("t{i}"), i)).collect();
        store.insert(records).await.unwrap();

        let lookups = [
            (lookup::lookup_sql("value_fp", 3), 6),
            (lookup::lookup_sql("token", 3), 6),
            (lookup::both_lookup_sql(3), 12),
            (batch::touch_sql(3), 7),
        ];
        for (sql, params) in lookups {
            let plan = query_plan(&store.read, &sql, params).await;
            assert!(plan.iter().any(|d| d.starts_with("SEARCH tokens USING")), "{sql}: {plan:?}");
            assert!(!plan.iter().any(|d| d.starts_with("SCAN tokens")), "{sql}: {plan:?}");
        }
    }

    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("v.db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits never checkpoint inline (SQLite's default would at 1,000 WAL pages); the background task does,
    /// and truncates the WAL once writing stops. Nothing committed is lost on the way.
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background_and_truncated_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let never = CheckpointOptions { every: Duration::from_secs(3600), ..CheckpointOptions::default() };
        let store =
            SqliteStore::open(&url, SqliteOptions { checkpoint: never, ..SqliteOptions::default() }).await.unwrap();
        for i in 0..1000u16 {
            let mut r = rec("email", &format!("t{i}"), 0);
            r.value_fp[..2].copy_from_slice(&i.to_be_bytes());
            assert_eq!(store.insert(vec![r]).await.unwrap(), vec![Inserted::New]);
        }
        // With inline checkpoints (every 1,000 pages) the WAL would start over and stay near 1,000 frames.
        assert!(wal_bytes(dir.path()) > 1500 * 4120, "the WAL was checkpointed inline: {}", wal_bytes(dir.path()));
        drop(store);

        let often = CheckpointOptions { every: Duration::from_millis(10), ..CheckpointOptions::default() };
        let store =
            SqliteStore::open(&url, SqliteOptions { checkpoint: often, ..SqliteOptions::default() }).await.unwrap();
        for i in 1000..1050u16 {
            let mut r = rec("email", &format!("t{i}"), 0);
            r.value_fp[..2].copy_from_slice(&i.to_be_bytes());
            store.insert(vec![r]).await.unwrap();
        }
        let mut waited = 0;
        while wal_bytes(dir.path()) > 0 {
            assert!(waited < 1000, "the WAL was never truncated");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(store.count_live().await.unwrap(), vec![("email".to_string(), 1050)]);
    }

    /// Waits until the key filter's scan at open has finished.
    async fn filter_ready(store: &SqliteStore) {
        for _ in 0..500 {
            if store.filter.is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the key filter never became ready");
    }

    /// Lookups of keys the filter rules out never reach the store; every key it cannot rule out is read, and
    /// records written before the open (the scan) and after it (the writer) are all found.
    #[tokio::test]
    async fn the_key_filter_answers_never_seen_keys_without_a_read_and_misses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let before: Vec<Record> = (0..100u8).map(|i| rec("email", &format!("b{i}"), i)).collect();
        let mut gone = rec("pan", "g", 200);
        gone.gone_at = Some(5);
        SqliteStore::open(&url, SqliteOptions::default())
            .await
            .unwrap()
            .insert([before.clone(), vec![gone.clone()]].concat())
            .await
            .unwrap();
        let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
        filter_ready(&store).await;
        let after: Vec<Record> = (100..150u8).map(|i| rec("email", &format!("a{i}"), i)).collect();
        store.insert(after.clone()).await.unwrap();
        for r in before.iter().chain(&after).chain([&gone]) {
            let (v, t) = store
                .find_by_values_and_tokens(&[(r.class.clone(), r.value_fp)], &[(r.class.clone(), r.token.clone())])
                .await
                .unwrap();
            assert_eq!((v[0].as_ref(), t[0].as_ref()), (Some(r), Some(r)), "{}", r.token);
        }
        // The store cannot answer reads of the tokens table now: keys never written are still answered (absent),
        // from the filter; a key it holds is read, and the failure shows.
        let mut other = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE tokens RENAME TO hidden").execute(&mut other).await.unwrap();
        let fresh: Vec<(String, Fingerprint)> = (0..64u8)
            .map(|i| ("email".to_string(), [i; 32]))
            .map(|(c, mut fp)| {
                fp[31] = 0xAB;
                (c, fp)
            })
            .collect();
        let fresh_tokens: Vec<(String, String)> = (0..64).map(|i| ("email".to_string(), format!("new{i}"))).collect();
        let mut answered = 0;
        for (v, t) in fresh.iter().zip(&fresh_tokens) {
            if let Ok((v, t)) = store.find_by_values_and_tokens(std::slice::from_ref(v), std::slice::from_ref(t)).await
            {
                assert_eq!((v, t), (vec![None], vec![None]));
                answered += 1;
            }
        }
        assert!(answered >= 56, "only {answered} of 64 never-seen keys were answered without a read");
        let held = store.find_by_values_and_tokens(&[("email".into(), before[3].value_fp)], &fresh_tokens[..1]).await;
        assert!(held.is_err(), "a held key must be read");
        sqlx::query("ALTER TABLE hidden RENAME TO tokens").execute(&mut other).await.unwrap();
    }

    #[tokio::test]
    async fn unusable_path_is_an_error() {
        let res = SqliteStore::open("sqlite:///proc/nope/x.db", SqliteOptions::default()).await;
        assert!(matches!(res, Err(StoreError::Unavailable(_))));
        assert!(SqliteStore::open("sqlite::memory:", SqliteOptions::default()).await.is_err());
    }
}
