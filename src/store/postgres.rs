//! PostgreSQL backend for several vault replicas sharing one database: a connection pool, schema migrations
//! run at start (`migrations/postgres/`, embedded in the binary), and one writer task per process that
//! group-commits inserts and answers tokenisation's lookups, those queued together in one query.
//!
//! Uniqueness lives in the database — `(class, token)` and `(class, value_fp)` — so replicas agree without
//! talking to each other: a batch is one `INSERT … ON CONFLICT DO NOTHING RETURNING`, and every record it did
//! not insert is read back inside the same transaction (a concurrent winner from another replica is committed
//! by then: PostgreSQL makes the conflicting insert wait for it). Records are inserted in (class, fingerprint)
//! order so that two replicas' batches lock rows in the same order; a deadlock or serialization failure that
//! still happens is retried. Commits run with `synchronous_commit = on`: a token is returned only once its
//! record is durable.

mod heads;
mod rotation;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use super::erasures::{self, Follower};
use super::group::{Committer, Found, GroupWriter};
use super::{
    AuditHead, Erased, Fingerprint, Inserted, KeyUsage, Record, Resealed, Store, StoreError, SubjectMove, SubjectRow,
    Volatile, Write,
};

const COLUMNS: &str = "class, token, value_fp, fp_version, key_version, sealed, created_at, last_used_at, gone_at";
/// Attempts for a batch that hit a deadlock or serialization failure (another replica's batch).
const RETRIES: u32 = 5;

/// The schema, oldest first; applied in order and recorded in `_sqlx_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tokens", include_str!("../../migrations/postgres/0001_tokens.sql")),
    (2, "lifecycle", include_str!("../../migrations/postgres/0002_lifecycle.sql")),
    (3, "live counts", include_str!("../../migrations/postgres/0003_live_counts.sql")),
    (4, "volatile", include_str!("../../migrations/postgres/0004_volatile.sql")),
    (5, "audit heads", include_str!("../../migrations/postgres/0005_audit_heads.sql")),
    (6, "key versions", include_str!("../../migrations/postgres/0006_key_versions.sql")),
];

/// Tuning for [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Pooled connections (readers and the writer share them).
    pub max_connections: u32,
    /// Most records committed in one group-commit transaction (a single larger request still goes whole).
    pub max_batch: usize,
    /// How long a request waits for a pooled connection.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self { max_connections: 8, max_batch: 512, acquire_timeout: Duration::from_secs(5) }
    }
}

/// A [`Store`] on a PostgreSQL database. Dropping it lets the writer finish what is queued.
pub struct PostgresStore {
    pool: PgPool,
    writer: GroupWriter,
    commits: Arc<AtomicU64>,
    /// Other replicas' erasures, for the engine's known values.
    erasures: Follower,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    // sqlx's messages name the server's error, never bound parameters.
    StoreError::Unavailable(e.to_string())
}

/// The embedded migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(v, d, sql)| {
                    Migration::new(*v, Cow::Borrowed(d), MigrationType::Simple, Cow::Borrowed(sql), false)
                })
                .collect())
        })
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`), runs pending migrations (under PostgreSQL's
    /// advisory lock, so replicas starting together apply them once), and starts the writer task.
    pub async fn open(url: &str, opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Unavailable("the postgres:// URL cannot be parsed".into()))?
            .application_name("veil")
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2) + 1) // + the erasure listener's
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(unavailable)?;
        let migrator = Migrator::new(Embedded).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        migrator.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => {
                StoreError::Corrupt(format!("database has migration {v}, which this veil does not know: newer schema?"))
            }
            other => StoreError::Unavailable(format!("migration failed: {other}")),
        })?;
        let commits = Arc::new(AtomicU64::new(0));
        let committer = Writer { pool: pool.clone(), commits: commits.clone() };
        let writer = GroupWriter::start(committer, opts.max_batch, "postgres");
        let erasures = Follower::start(pool.clone());
        Ok(PostgresStore { pool, writer, commits, erasures })
    }

    /// Group-commit transactions committed so far by this process.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

fn record_from_row(row: &PgRow) -> Result<Record, StoreError> {
    let fp: Vec<u8> = row.try_get("value_fp").map_err(unavailable)?;
    let value_fp: Fingerprint =
        fp.try_into().map_err(|_| StoreError::Corrupt("value fingerprint is not 32 bytes".into()))?;
    let key_version: i32 = row.try_get("key_version").map_err(unavailable)?;
    let fp_version: Option<i32> = row.try_get("fp_version").map_err(unavailable)?;
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

/// A deadlock or serialization failure: the batch can simply run again.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40P01") | Some("40001")))
}

/// Both lookups in one query (one round trip, one statement for the server to run).
async fn find_both(
    pool: &PgPool,
    values: &[(String, Fingerprint)],
    tokens: &[(String, String)],
) -> Result<Found, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT 0 AS by_token, {COLUMNS} FROM tokens
         WHERE (class, value_fp) IN (SELECT * FROM UNNEST($1::text[], $2::bytea[]))
         UNION ALL
         SELECT 1, {COLUMNS} FROM tokens WHERE (class, token) IN (SELECT * FROM UNNEST($3::text[], $4::text[]))"
    ))
    .bind(values.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, f)| f.to_vec()).collect::<Vec<_>>())
    .bind(tokens.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())
    .bind(tokens.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    let (mut by_value, mut by_token) = (Vec::new(), Vec::new());
    for row in rows {
        match row.try_get::<i32, _>("by_token").map_err(unavailable)? {
            0 => by_value.push(row),
            _ => by_token.push(row),
        }
    }
    Ok((in_order(by_value, values, |r| r.value_fp)?, in_order(by_token, tokens, |r| r.token.clone())?))
}

struct Writer {
    pool: PgPool,
    commits: Arc<AtomicU64>,
}

#[async_trait]
impl Committer for Writer {
    async fn commit(&mut self, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError> {
        let records: Vec<&Record> = writes.iter().flat_map(|w| &w.records).collect();
        // Lock order: by (class, fingerprint); the sort is stable, so of two records for one value the first
        // offered wins, as in a sequential insert.
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|&a, &b| {
            (&records[a].class, &records[a].value_fp).cmp(&(&records[b].class, &records[b].value_fp))
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            match transact(&self.pool, writes, &records, &order).await {
                Ok(out) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    return Ok(out);
                }
                Err(e) if attempt < RETRIES && retryable(&e) => {
                    tracing::debug!(attempt, "postgres batch hit a lock conflict; retrying");
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// The lookups queued together, in one query.
    async fn find(
        &mut self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<Found, StoreError> {
        find_both(&self.pool, values, tokens).await
    }

    async fn close(self) {}
}

/// One transaction: insert what is free, read back the winners for the rest, mark re-tokenised records used,
/// link subjects. Dropping the transaction on an error rolls it back.
async fn transact(
    pool: &PgPool,
    writes: &[Write],
    records: &[&Record],
    order: &[usize],
) -> Result<Vec<Vec<Inserted>>, sqlx::Error> {
    // A key version past the column's range cannot be stored as itself: refused, never written as another one.
    let versions = order
        .iter()
        .map(|&i| i32::try_from(records[i].key_version))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let fp_versions = order
        .iter()
        .map(|&i| records[i].fp_version.map(i32::try_from).transpose())
        .collect::<Result<Vec<Option<i32>>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut tx = pool.begin().await?;
    let sorted = || order.iter().map(|&i| &records[i]);
    let inserted: Vec<(String, String, Vec<u8>)> = sqlx::query_as(&format!(
        "INSERT INTO tokens ({COLUMNS})
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $9::int4[], $4::int4[], $5::bytea[], $6::int8[],
                              $7::int8[], $8::int8[])
         ON CONFLICT DO NOTHING
         RETURNING class, token, value_fp"
    ))
    .bind(sorted().map(|r| r.class.clone()).collect::<Vec<_>>())
    .bind(sorted().map(|r| r.token.clone()).collect::<Vec<_>>())
    .bind(sorted().map(|r| r.value_fp.to_vec()).collect::<Vec<_>>())
    .bind(versions)
    .bind(sorted().map(|r| r.sealed.clone()).collect::<Vec<_>>())
    .bind(sorted().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(sorted().map(|r| r.last_used_at).collect::<Vec<_>>())
    .bind(sorted().map(|r| r.gone_at).collect::<Vec<_>>())
    .bind(fp_versions)
    .fetch_all(&mut *tx)
    .await?;
    let new: HashSet<(String, String, Vec<u8>)> = inserted.into_iter().collect();
    let is_new = |r: &Record| new.contains(&(r.class.clone(), r.token.clone(), r.value_fp.to_vec()));

    let rest: Vec<&Record> = records.iter().copied().filter(|r| !is_new(r)).collect();
    let mut winners: HashMap<(String, Fingerprint), Record> = HashMap::new();
    if !rest.is_empty() {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tokens WHERE (class, value_fp) IN (SELECT * FROM UNNEST($1::text[], $2::bytea[]))"
        ))
        .bind(rest.iter().map(|r| r.class.clone()).collect::<Vec<_>>())
        .bind(rest.iter().map(|r| r.value_fp.to_vec()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let rec = record_from_row(row).map_err(|e| sqlx::Error::Decode(e.to_string().into()))?;
            winners.insert((rec.class.clone(), rec.value_fp), rec);
        }
    }
    let outcome = |r: &Record| {
        if is_new(r) {
            Inserted::New
        } else {
            match winners.get(&(r.class.clone(), r.value_fp)) {
                Some(w) if w == r => Inserted::New,
                Some(w) => Inserted::Existing(w.clone()),
                // The only other uniqueness constraint is the (class, token) primary key.
                None => Inserted::TokenTaken,
            }
        }
    };
    let out: Vec<Vec<Inserted>> = writes.iter().map(|w| w.records.iter().map(outcome).collect()).collect();

    let (mut t_class, mut t_token, mut t_now) = (Vec::new(), Vec::new(), Vec::new());
    let (mut l_subject, mut l_class, mut l_token, mut l_version) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The sealed id of each linked subject (once per subject of the batch).
    let (mut s_fp, mut s_version, mut s_key_version, mut s_sealed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (w, o) in writes.iter().zip(&out) {
        for (class, token) in &w.touch {
            t_class.push(class.clone());
            t_token.push(token.clone());
            t_now.push(w.now);
        }
        let Some(subject) = &w.subject else { continue };
        let finals = w.records.iter().zip(o).filter_map(|(r, o)| match o {
            Inserted::New => Some((&r.class, &r.token)),
            Inserted::Existing(win) => Some((&r.class, &win.token)),
            Inserted::TokenTaken => None,
        });
        let version = w.subject_version.map(i32::try_from).transpose().map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let before = l_subject.len();
        for (class, token) in finals.chain(w.touch.iter().map(|(c, t)| (c, t))) {
            l_subject.push(subject.to_vec());
            l_class.push(class.clone());
            l_token.push(token.clone());
            l_version.push(version);
        }
        if let (Some(id), Some(v), true) = (&w.subject_sealed, version, l_subject.len() > before) {
            if !s_fp.contains(&subject.to_vec()) {
                s_fp.push(subject.to_vec());
                s_version.push(v);
                s_key_version.push(i32::try_from(id.key_version).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
                s_sealed.push(id.sealed.clone());
            }
        }
    }
    if !t_class.is_empty() {
        sqlx::query(
            "UPDATE tokens t SET last_used_at = GREATEST(t.last_used_at, u.now)
             FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS u(class, token, now)
             WHERE t.class = u.class AND t.token = u.token AND t.gone_at IS NULL",
        )
        .bind(t_class)
        .bind(t_token)
        .bind(t_now)
        .execute(&mut *tx)
        .await?;
    }
    if !l_subject.is_empty() {
        sqlx::query(
            "INSERT INTO subject_tokens (subject_fp, class, token, fp_version)
             SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::int4[]) ON CONFLICT DO NOTHING",
        )
        .bind(l_subject)
        .bind(l_class)
        .bind(l_token)
        .bind(l_version)
        .execute(&mut *tx)
        .await?;
    }
    if !s_fp.is_empty() {
        // A subject's id kept sealed the first time it is linked under this version (one row per new subject).
        sqlx::query(
            "INSERT INTO subjects (subject_fp, fp_version, key_version, sealed_id)
             SELECT * FROM UNNEST($1::bytea[], $2::int4[], $3::int4[], $4::bytea[]) ON CONFLICT DO NOTHING",
        )
        .bind(s_fp)
        .bind(s_version)
        .bind(s_key_version)
        .bind(s_sealed)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// Deletes the sealed values and unlinks the value fingerprints (random bytes); the tokens stay taken.
async fn tombstone(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    class: &[String],
    token: &[String],
    now: i64,
) -> Result<(), sqlx::Error> {
    let fps: Vec<Vec<u8>> = class.iter().map(|_| rand::random::<[u8; 32]>().to_vec()).collect();
    sqlx::query(
        "UPDATE tokens t SET sealed = ''::bytea, value_fp = u.fp, gone_at = $4
         FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS u(class, token, fp)
         WHERE t.class = u.class AND t.token = u.token",
    )
    .bind(class)
    .bind(token)
    .bind(fps)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if !token.is_empty() {
        // Delivered to every replica's listener when (and only if) this transaction commits.
        sqlx::query("SELECT pg_notify($1, '')").bind(erasures::CHANNEL).execute(&mut **tx).await?;
    }
    Ok(())
}

/// `SELECT` of the records whose (class, `col`) pair is in the two bound arrays.
fn lookup_sql(col: &str, sql_type: &str) -> String {
    format!("SELECT {COLUMNS} FROM tokens WHERE (class, {col}) IN (SELECT * FROM UNNEST($1::text[], $2::{sql_type}))")
}

/// The rows' records arranged in the order of `wanted`.
fn in_order<K: Eq + std::hash::Hash>(
    rows: Vec<PgRow>,
    wanted: &[(String, K)],
    key_of: impl Fn(&Record) -> K,
) -> Result<Vec<Option<Record>>, StoreError> {
    let mut found: HashMap<(String, K), Record> = HashMap::new();
    for row in &rows {
        let rec = record_from_row(row)?;
        found.insert((rec.class.clone(), key_of(&rec)), rec);
    }
    Ok(wanted.iter().map(|k| found.get(k).cloned()).collect())
}

#[async_trait]
impl Store for PostgresStore {
    fn erasure_epoch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.erasures.epoch())
    }

    async fn find_by_values(&self, keys: &[(String, Fingerprint)]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&lookup_sql("value_fp", "bytea[]"))
            .bind(keys.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())
            .bind(keys.iter().map(|(_, f)| f.to_vec()).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        in_order(rows, keys, |r| r.value_fp)
    }

    async fn find_by_tokens(&self, keys: &[(String, String)]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&lookup_sql("token", "text[]"))
            .bind(keys.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())
            .bind(keys.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        in_order(rows, keys, |r| r.token.clone())
    }

    /// Asked for every value the engine does not know, just before it writes the new ones: queued to the writer
    /// so that the lookups of all requests queued together cost the server one query, between two commits.
    async fn find_by_values_and_tokens(
        &self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<Found, StoreError> {
        self.writer.find((values.to_vec(), tokens.to_vec())).await
    }

    async fn write(&self, w: Write) -> Result<Vec<Inserted>, StoreError> {
        self.writer.submit(w).await
    }

    async fn subject_records(&self, subject: &Fingerprint) -> Result<Vec<Record>, StoreError> {
        let cols = COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM subject_tokens s JOIN tokens t ON t.class = s.class AND t.token = s.token
             WHERE s.subject_fp = $1 ORDER BY t.class, t.token"
        ))
        .bind(subject.to_vec())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn subject_peers(&self, class: &str, token: &str) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as(
            "SELECT DISTINCT s.class, s.token FROM subject_tokens s WHERE s.subject_fp IN (
                 SELECT subject_fp FROM subject_tokens WHERE class = $1 AND token = $2)",
        )
        .bind(class)
        .bind(token)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)
    }

    async fn erase_subject(&self, subject: &Fingerprint, now: i64) -> Result<Vec<Erased>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Lock the subject's links (and, through the tokens' rows, concurrent erasures of the same tokens).
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT s.class, s.token,
                    EXISTS (SELECT 1 FROM subject_tokens o
                            WHERE o.class = s.class AND o.token = s.token AND o.subject_fp <> s.subject_fp)
             FROM subject_tokens s WHERE s.subject_fp = $1 ORDER BY s.class, s.token FOR UPDATE",
        )
        .bind(subject.to_vec())
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let (class, token): (Vec<String>, Vec<String>) =
            rows.iter().filter(|(_, _, shared)| !shared).map(|(c, t, _)| (c.clone(), t.clone())).unzip();
        tombstone(&mut tx, &class, &token, now).await.map_err(unavailable)?;
        for table in ["subject_tokens", "subjects"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE subject_fp = $1"))
                .bind(subject.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(rows.into_iter().map(|(class, token, shared)| Erased { class, token, erased: !shared }).collect())
    }

    async fn put_volatile(&self, secrets: Vec<Volatile>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for v in secrets {
            sqlx::query(
                "INSERT INTO volatile (bind_fp, key_version, sealed, expires_at, uses_left, fp_version)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (bind_fp) DO UPDATE SET key_version = EXCLUDED.key_version, sealed = EXCLUDED.sealed,
                     expires_at = EXCLUDED.expires_at, uses_left = EXCLUDED.uses_left,
                     fp_version = EXCLUDED.fp_version",
            )
            .bind(&v.bind_fp[..])
            .bind(i32::try_from(v.key_version).map_err(|_| StoreError::Corrupt("key version out of range".into()))?)
            .bind(&v.sealed)
            .bind(v.expires_at)
            .bind(i32::try_from(v.uses).unwrap_or(i32::MAX))
            .bind(
                v.fp_version
                    .map(i32::try_from)
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("key version out of range".into()))?,
            )
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn take_volatile(&self, bind_fp: &Fingerprint, now: i64) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(
            "UPDATE volatile SET uses_left = uses_left - 1
             WHERE bind_fp = $1 AND expires_at > $2 AND uses_left > 0
             RETURNING key_version, sealed, uses_left",
        )
        .bind(&bind_fp[..])
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("DELETE FROM volatile WHERE bind_fp = $1 AND (uses_left <= 0 OR expires_at <= $2)")
            .bind(&bind_fp[..])
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let version: i32 = row.try_get("key_version").map_err(unavailable)?;
        let version = u32::try_from(version).map_err(|_| StoreError::Corrupt("key version out of range".into()))?;
        Ok(Some((version, row.try_get("sealed").map_err(unavailable)?)))
    }

    async fn purge_volatile(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM volatile WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn count_expired(&self, class: &str, cutoff: i64) -> Result<Option<u64>, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tokens WHERE class = $1 AND last_used_at < $2 AND gone_at IS NULL",
        )
        .bind(class)
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(u64::try_from(n).ok())
    }

    async fn count_stale_before(&self, version: u32) -> Result<Option<u64>, StoreError> {
        rotation::count_stale_before(&self.pool, version).await.map(Some)
    }

    async fn purge(&self, class: &str, cutoff: i64, now: i64, limit: usize) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let tokens: Vec<String> = sqlx::query_scalar(
            "SELECT token FROM tokens WHERE class = $1 AND last_used_at < $2 AND gone_at IS NULL LIMIT $3 FOR UPDATE",
        )
        .bind(class)
        .bind(cutoff)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let classes = vec![class.to_owned(); tokens.len()];
        tombstone(&mut tx, &classes, &tokens, now).await.map_err(unavailable)?;
        let unlinked: Vec<Vec<u8>> =
            sqlx::query_scalar("DELETE FROM subject_tokens WHERE class = $1 AND token = ANY($2) RETURNING subject_fp")
                .bind(class)
                .bind(&tokens)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        rotation::forget_unlinked_subjects(&mut tx, unlinked).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(tokens.len() as u64)
    }

    async fn stale_before(
        &self,
        version: u32,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let rows = rotation::stale_before(&self.pool, version, after, limit).await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn reseal(&self, records: &[Resealed]) -> Result<u64, StoreError> {
        rotation::reseal(&self.pool, records).await
    }

    async fn fp_versions(&self, current: u32) -> Result<Option<Vec<u32>>, StoreError> {
        rotation::fp_versions(&self.pool, current).await.map(Some)
    }

    async fn unlist_fp_versions_below(&self, version: u32) -> Result<bool, StoreError> {
        rotation::unlist_below(&self.pool, version).await
    }

    async fn key_usage(&self, version: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        rotation::key_usage(&mut conn, version, oldest).await
    }

    async fn unlist_fp_version(&self, version: u32, oldest: bool) -> Result<KeyUsage, StoreError> {
        rotation::unlist_version(&self.pool, version, oldest).await
    }

    async fn subjects_after(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<SubjectRow>, StoreError> {
        rotation::subjects_after(&self.pool, after, limit).await
    }

    async fn move_subjects(&self, moves: &[SubjectMove]) -> Result<u64, StoreError> {
        rotation::move_subjects(&self.pool, moves).await
    }

    async fn drop_volatile_before(&self, version: u32) -> Result<u64, StoreError> {
        rotation::drop_volatile_before(&self.pool, version).await
    }

    async fn count_live(&self) -> Result<Vec<(String, u64)>, StoreError> {
        // Trigger-kept (migration 3): a few rows per class, however large the vault.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT class, SUM(live)::BIGINT FROM live_counts GROUP BY class HAVING SUM(live) > 0 ORDER BY class",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(|(c, n)| (c, n.max(0) as u64)).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(unavailable)
    }
    async fn audit_head(&self, log_id: &str) -> Result<Option<AuditHead>, StoreError> {
        heads::get(&self.pool, log_id).await
    }

    async fn swap_audit_head(
        &self,
        log_id: &str,
        expected: Option<&AuditHead>,
        new: &AuditHead,
        now: i64,
    ) -> Result<bool, StoreError> {
        heads::swap(&self.pool, log_id, expected, new, now).await
    }
}
