//! SQLite backend: WAL, `synchronous = FULL`, a read pool, and one writer task that group-commits inserts.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{Fingerprint, Inserted, Record, Store, StoreError};

const SCHEMA_VERSION: i64 = 1;
const READERS: u32 = 4;
/// Keys per read query (two bound parameters each).
const READ_CHUNK: usize = 200;
/// Queued insert requests before `insert` waits for room.
const QUEUE: usize = 4096;
const COLUMNS: &str = "class, token, value_fp, key_version, sealed, created_at, last_used_at";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (
        class TEXT NOT NULL,
        token TEXT NOT NULL,
        value_fp BLOB NOT NULL,
        key_version INTEGER NOT NULL,
        sealed BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        PRIMARY KEY (class, token),
        UNIQUE (class, value_fp)
    ) WITHOUT ROWID",
];

/// Tuning for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most records committed in one group-commit transaction (a single larger request still goes whole).
    pub max_batch: usize,
    /// How long a connection waits on a lock held elsewhere before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { max_batch: 512, busy_timeout: Duration::from_secs(5) }
    }
}

type Reply = oneshot::Sender<Result<Vec<Inserted>, StoreError>>;

struct Request {
    records: Vec<Record>,
    reply: Reply,
}

/// A [`Store`] on one SQLite file. Dropping it lets the writer finish what is queued and close.
pub struct SqliteStore {
    read: SqlitePool,
    writer: mpsc::Sender<Request>,
    commits: Arc<AtomicU64>,
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
        let write_opts = base.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
        let mut conn = SqliteConnection::connect_with(&write_opts).await.map_err(unavailable)?;
        init_schema(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(opts.busy_timeout.max(Duration::from_secs(1)))
            .connect_with(base)
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer =
            Writer { opts: write_opts, conn: Some(conn), max_batch: opts.max_batch.max(1), commits: commits.clone() };
        tokio::spawn(writer.run(rx));
        Ok(SqliteStore { read, writer: tx, commits })
    }

    /// Group-commit transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

async fn init_schema(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
    for stmt in SCHEMA {
        sqlx::query(stmt).execute(&mut *tx).await.map_err(unavailable)?;
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await.map_err(unavailable)?;
    match version {
        None => {
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(SCHEMA_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(v) => return Err(StoreError::Corrupt(format!("unsupported schema version {v}"))),
    }
    tx.commit().await.map_err(unavailable)
}

fn record_from_row(row: &SqliteRow) -> Result<Record, StoreError> {
    let fp: Vec<u8> = row.try_get("value_fp").map_err(unavailable)?;
    let value_fp: Fingerprint =
        fp.try_into().map_err(|_| StoreError::Corrupt("value fingerprint is not 32 bytes".into()))?;
    let key_version: i64 = row.try_get("key_version").map_err(unavailable)?;
    Ok(Record {
        class: row.try_get("class").map_err(unavailable)?,
        token: row.try_get("token").map_err(unavailable)?,
        value_fp,
        key_version: u32::try_from(key_version).map_err(|_| StoreError::Corrupt("key version out of range".into()))?,
        sealed: row.try_get("sealed").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        last_used_at: row.try_get("last_used_at").map_err(unavailable)?,
    })
}

/// `SELECT ... WHERE (class, <col>) IN (VALUES (?, ?), ...)` for `n` keys.
fn lookup_sql(col: &str, n: usize) -> String {
    let values = vec!["(?, ?)"; n].join(", ");
    format!("SELECT {COLUMNS} FROM tokens WHERE (class, {col}) IN (VALUES {values})")
}

struct Writer {
    opts: SqliteConnectOptions,
    /// `None` after a failure left the connection in doubt; reconnected on the next batch.
    conn: Option<SqliteConnection>,
    max_batch: usize,
    commits: Arc<AtomicU64>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut carry: Option<Request> = None;
        loop {
            let first = match carry.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => break,
                },
            };
            let mut total = first.records.len();
            let mut batch = vec![first];
            while total < self.max_batch {
                match rx.try_recv() {
                    Ok(r) if total + r.records.len() > self.max_batch => {
                        carry = Some(r);
                        break;
                    }
                    Ok(r) => {
                        total += r.records.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            tracing::debug!(requests = batch.len(), records = total, "sqlite group commit");
            match self.commit_batch(&batch).await {
                Ok(outcomes) => {
                    for (req, out) in batch.into_iter().zip(outcomes) {
                        let _ = req.reply.send(Ok(out));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = total, "sqlite group commit failed");
                    let msg = e.to_string();
                    for req in batch {
                        let _ = req.reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// One transaction for the whole batch; on any failure it is rolled back and nothing is kept.
    async fn commit_batch(&mut self, batch: &[Request]) -> Result<Vec<Vec<Inserted>>, StoreError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => SqliteConnection::connect_with(&self.opts).await.map_err(unavailable)?,
        };
        let result = Self::transact(&mut conn, batch).await;
        match &result {
            Ok(_) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.conn = Some(conn);
            }
            // A failed BEGIN/statement/COMMIT was rolled back by `transact`; keep the connection only if it
            // still answers and is out of any transaction.
            Err(_) => {
                if sqlx::query("SELECT 1").execute(&mut conn).await.is_ok() {
                    self.conn = Some(conn);
                } else {
                    let _ = conn.close().await;
                }
            }
        }
        result
    }

    async fn transact(conn: &mut SqliteConnection, batch: &[Request]) -> Result<Vec<Vec<Inserted>>, StoreError> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for req in batch {
            let mut out = Vec::with_capacity(req.records.len());
            for rec in &req.records {
                match insert_one(&mut tx, rec).await {
                    Ok(o) => out.push(o),
                    Err(e) => {
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                }
            }
            outcomes.push(out);
        }
        // On a failed COMMIT the transaction guard rolls back when dropped.
        tx.commit().await.map_err(unavailable)?;
        Ok(outcomes)
    }
}

async fn insert_one(tx: &mut Transaction<'_, Sqlite>, rec: &Record) -> Result<Inserted, StoreError> {
    let done = sqlx::query(
        "INSERT INTO tokens (class, token, value_fp, key_version, sealed, created_at, last_used_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&rec.class)
    .bind(&rec.token)
    .bind(&rec.value_fp[..])
    .bind(i64::from(rec.key_version))
    .bind(&rec.sealed)
    .bind(rec.created_at)
    .bind(rec.last_used_at)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    if done.rows_affected() == 1 {
        return Ok(Inserted::New);
    }
    let existing = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE class = ? AND value_fp = ?"))
        .bind(&rec.class)
        .bind(&rec.value_fp[..])
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable)?;
    match existing {
        Some(row) => Ok(Inserted::Existing(record_from_row(&row)?)),
        // The only other uniqueness constraint is the (class, token) primary key.
        None => Ok(Inserted::TokenTaken),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn find_by_values(&self, keys: &[(String, Fingerprint)]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.read.acquire().await.map_err(unavailable)?;
        let mut found: HashMap<(String, Fingerprint), Record> = HashMap::new();
        for chunk in keys.chunks(READ_CHUNK) {
            let sql = lookup_sql("value_fp", chunk.len());
            let mut q = sqlx::query(&sql);
            for (class, fp) in chunk {
                q = q.bind(class.as_str()).bind(&fp[..]);
            }
            for row in q.fetch_all(&mut *conn).await.map_err(unavailable)? {
                let rec = record_from_row(&row)?;
                found.insert((rec.class.clone(), rec.value_fp), rec);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn find_by_tokens(&self, keys: &[(String, String)]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.read.acquire().await.map_err(unavailable)?;
        let mut found: HashMap<(String, String), Record> = HashMap::new();
        for chunk in keys.chunks(READ_CHUNK) {
            let sql = lookup_sql("token", chunk.len());
            let mut q = sqlx::query(&sql);
            for (class, token) in chunk {
                q = q.bind(class.as_str()).bind(token.as_str());
            }
            for row in q.fetch_all(&mut *conn).await.map_err(unavailable)? {
                let rec = record_from_row(&row)?;
                found.insert((rec.class.clone(), rec.token.clone()), rec);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn insert(&self, records: Vec<Record>) -> Result<Vec<Inserted>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let gone = || StoreError::Unavailable("sqlite writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.writer.send(Request { records, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(|_| ()).map_err(unavailable)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn rec(class: &str, token: &str, fp: u8) -> Record {
        Record {
            class: class.into(),
            token: token.into(),
            value_fp: [fp; 32],
            key_version: 3,
            sealed: vec![fp, 1, 2, 3],
            created_at: 1_700_000_000,
            last_used_at: 1_700_000_100,
        }
    }

    async fn open_in(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
        let url = format!("sqlite://{}/sub/dir/vault.db", dir.path().display());
        Arc::new(SqliteStore::open(&url, SqliteOptions::default()).await.unwrap())
    }

    #[tokio::test]
    async fn insert_then_find_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir).await;
        store.ping().await.unwrap();
        let (a, b) = (rec("email", "tokA", 1), rec("card", "tokB", 2));
        assert_eq!(store.insert(vec![a.clone(), b.clone()]).await.unwrap(), vec![Inserted::New, Inserted::New]);
        let by_value = store
            .find_by_values(&[("card".into(), [2; 32]), ("email".into(), [2; 32]), ("email".into(), [1; 32])])
            .await
            .unwrap();
        assert_eq!(by_value, vec![Some(b.clone()), None, Some(a.clone())]);
        let by_token = store
            .find_by_tokens(&[
                ("email".into(), "tokA".into()),
                ("card".into(), "tokA".into()),
                ("card".into(), "tokB".into()),
            ])
            .await
            .unwrap();
        assert_eq!(by_token, vec![Some(a), None, Some(b)]);
        assert!(store.find_by_values(&[]).await.unwrap().is_empty());
        // More keys than one read chunk.
        let many: Vec<(String, Fingerprint)> = (0..450).map(|i| ("email".to_string(), [(i % 3) as u8; 32])).collect();
        let got = store.find_by_values(&many).await.unwrap();
        assert_eq!(got.iter().filter(|r| r.is_some()).count(), 150);
        assert!(got[1].is_some() && got[0].is_none() && got[2].is_none());
    }

    #[tokio::test]
    async fn same_value_twice_in_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir).await;
        let first = rec("email", "t1", 7);
        let out = store.insert(vec![first.clone(), rec("email", "t2", 7), rec("phone", "t3", 7)]).await.unwrap();
        assert_eq!(out, vec![Inserted::New, Inserted::Existing(first), Inserted::New]);
    }

    #[tokio::test]
    async fn concurrent_same_value_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { (i, store.insert(vec![rec("email", &format!("tok{i}"), 9)]).await.unwrap()) })
            })
            .collect();
        let mut winners = Vec::new();
        let mut existing = Vec::new();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            match out.as_slice() {
                [Inserted::New] => winners.push(format!("tok{i}")),
                [Inserted::Existing(r)] => existing.push(r.token.clone()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1);
        assert_eq!(existing.len(), 49);
        assert!(existing.iter().all(|t| *t == winners[0]));
    }

    #[tokio::test]
    async fn token_collision_is_token_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir).await;
        let a = rec("email", "same", 1);
        store.insert(vec![a.clone()]).await.unwrap();
        assert_eq!(store.insert(vec![rec("email", "same", 2)]).await.unwrap(), vec![Inserted::TokenTaken]);
        assert_eq!(store.find_by_tokens(&[("email".into(), "same".into())]).await.unwrap(), vec![Some(a)]);
        assert_eq!(store.find_by_values(&[("email".into(), [2; 32])]).await.unwrap(), vec![None]);
    }

    #[tokio::test]
    async fn group_commit_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir).await;
        let before = store.commits();
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut r = rec("email", &format!("tok{i}"), 0);
                    r.value_fp[..4].copy_from_slice(&i.to_be_bytes());
                    store.insert(vec![r]).await.unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), vec![Inserted::New]);
        }
        let commits = store.commits() - before;
        assert!(commits < 200, "{commits} commits for 200 inserts");
    }

    #[tokio::test]
    async fn durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = rec("email", "tokA", 5);
        {
            let store = open_in(&dir).await;
            store.insert(vec![a.clone()]).await.unwrap();
        }
        let store = open_in(&dir).await;
        assert_eq!(store.find_by_values(&[("email".into(), [5; 32])]).await.unwrap(), vec![Some(a)]);
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

    #[tokio::test]
    async fn unusable_path_is_an_error() {
        let res = SqliteStore::open("sqlite:///proc/nope/x.db", SqliteOptions::default()).await;
        assert!(matches!(res, Err(StoreError::Unavailable(_))));
        assert!(SqliteStore::open("sqlite::memory:", SqliteOptions::default()).await.is_err());
    }

    /// `cargo test --release -- --ignored --nocapture bench_inserts`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore]
    async fn bench_inserts() {
        let dir = tempfile::tempdir_in(".").unwrap();
        let store = open_in(&dir).await;
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= 10_000 {
                            break;
                        }
                        let mut r = rec("email", &format!("tok{i}"), 0);
                        r.value_fp[..8].copy_from_slice(&i.to_be_bytes());
                        assert_eq!(store.insert(vec![r]).await.unwrap(), vec![Inserted::New]);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!("10000 inserts in {secs:.3}s = {:.0}/s, {} commits", 10_000.0 / secs, store.commits());
    }
}
