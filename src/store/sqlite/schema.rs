//! The SQLite schema and its migrations, applied in order at open (`schema_version` holds how far a database
//! is).

use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;

use super::unavailable;
use crate::store::StoreError;

/// Schema versions, oldest first: a database at version `n` gets migrations `n..` applied at open.
pub(super) const MIGRATIONS: &[&[&str]] = &[V1, V2, V3, V4, V5, V6, V7, V8];

pub(super) const V1: &[&str] = &[
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

/// Lifecycle: tombstones, subject links.
pub(super) const V2: &[&str] = &[
    "ALTER TABLE tokens ADD COLUMN gone_at INTEGER",
    "CREATE TABLE subject_tokens (
        subject_fp BLOB NOT NULL,
        class TEXT NOT NULL,
        token TEXT NOT NULL,
        PRIMARY KEY (subject_fp, class, token)
    ) WITHOUT ROWID",
    "CREATE INDEX subject_tokens_by_token ON subject_tokens (class, token)",
    "CREATE INDEX tokens_by_last_use ON tokens (class, last_used_at) WHERE gone_at IS NULL",
];

/// Live records per class, kept by triggers in the transaction that changes them: `veil_tokens` reads a few rows
/// instead of counting the whole table (seconds on a large vault, a read transaction held all along, and a
/// reader's page cache filled with index pages nothing else reads). Only the insert trigger is on the hot path:
/// tokenisation's updates (`last_used_at`) and rewrapping (`sealed`) set neither `class` nor `gone_at`.
pub(super) const V3: &[&str] = &[
    "CREATE TABLE live_counts (class TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO live_counts (class, live) SELECT class, COUNT(*) FROM tokens WHERE gone_at IS NULL GROUP BY class",
    LIVE_COUNTS_INSERT,
    LIVE_COUNTS_UPDATE,
    LIVE_COUNTS_DELETE,
];

/// Subject links found by token without an index over every link (`subject_tokens_by_token`: with a new subject
/// per request, four random index leaves per request to write, a fifth of a unique-values request's cost). Who
/// links a token is now `tokens.first_subject` (written in the record's own row, a page the new record dirties
/// anyway) plus, for a token linked by more than one subject, the others in `shared_links` (rare: a card or an
/// email several customers gave). Triggers on `subject_tokens` keep both equal to its rows for that token, in
/// the transaction that changes them: erasure asks whether another subject holds a token, purge finds every
/// link of a purged token, each by key.
pub(super) const V4: &[&str] = &[
    "ALTER TABLE tokens ADD COLUMN first_subject BLOB",
    "CREATE TABLE shared_links (
        class TEXT NOT NULL,
        token TEXT NOT NULL,
        subject_fp BLOB NOT NULL,
        PRIMARY KEY (class, token, subject_fp)
    ) WITHOUT ROWID",
    "UPDATE tokens SET first_subject =
        (SELECT MIN(s.subject_fp) FROM subject_tokens s WHERE s.class = tokens.class AND s.token = tokens.token)
     WHERE (class, token) IN (SELECT class, token FROM subject_tokens)",
    "INSERT INTO shared_links (class, token, subject_fp)
     SELECT s.class, s.token, s.subject_fp FROM subject_tokens s
     JOIN tokens t ON t.class = s.class AND t.token = s.token WHERE s.subject_fp != t.first_subject",
    "DROP INDEX subject_tokens_by_token",
    LINKS_INSERT,
    LINKS_DELETE,
];

/// Volatile secrets (CVCs), each bound to a card token's fingerprint, kept until they expire or are used up.
pub(super) const V5: &[&str] = &["CREATE TABLE volatile (
        bind_fp BLOB PRIMARY KEY,
        key_version INTEGER NOT NULL,
        sealed BLOB NOT NULL,
        expires_at INTEGER NOT NULL,
        uses_left INTEGER NOT NULL
    ) WITHOUT ROWID"];

/// The head of each audit log (sequence number and hash of its last acknowledged line), outside the log file.
pub(super) const V6: &[&str] = &["CREATE TABLE audit_heads (
        log_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID"];

/// Key rotation that retires: each row names the master key version its fingerprint was made under (`NULL`:
/// a row from before, made under the oldest version); subject ids kept sealed so links can be re-fingerprinted;
/// `fp_versions` lists the versions value fingerprints may be under (`0`: legacy rows), so lookups ask under
/// those only. A row offered under an older version than the newest listed is refused: a vault still on the old
/// keyring fails closed instead of giving a value a second token under a fingerprint nobody else asks for.
pub(super) const V7: &[&str] = &[
    "ALTER TABLE tokens ADD COLUMN fp_version INTEGER",
    "ALTER TABLE subject_tokens ADD COLUMN fp_version INTEGER",
    "ALTER TABLE volatile ADD COLUMN fp_version INTEGER",
    "CREATE TABLE subjects (
        subject_fp BLOB PRIMARY KEY,
        fp_version INTEGER NOT NULL,
        key_version INTEGER NOT NULL,
        sealed_id BLOB NOT NULL
    ) WITHOUT ROWID",
    "CREATE TABLE fp_versions (version INTEGER PRIMARY KEY) WITHOUT ROWID",
    "INSERT INTO fp_versions (version) VALUES (0)",
    FP_VERSION_TOKENS,
    "CREATE TRIGGER fp_version_volatile BEFORE INSERT ON volatile
     WHEN NEW.fp_version < (SELECT MAX(version) FROM fp_versions) BEGIN
        SELECT RAISE(ABORT, 'fingerprint key version superseded: load the rotated keyring');
     END",
];

/// The write path of a new record (issue 25; measured in benches/RESULTS.md, "Store write path").
///
/// - The records move from a table clustered on (class, token) to a rowid table with two narrow unique indexes,
///   (class, token) and (class, value fingerprint). Tokens and fingerprints are random by design, so every new
///   record lands on a random leaf of each B-tree keyed by them; in the clustered table that leaf held whole
///   records (~25 of ~160 bytes a page: a page split every dozen inserts), now it holds index entries only
///   (~100 a page), and the records themselves are appended to the rowid table's last pages (a few pages per
///   group commit instead of one per record). Lookups by token or value seek the index, then the row by rowid.
/// - Retention's index over last use goes: with random tokens, the entries of the current second spread over
///   dozens of its leaves (one more page written per new record, an index update per touch) for a purge that
///   runs once an interval and now scans the records in rowid order instead (`purge.rs`).
///
/// Copying the records is one pass over the table at the first open (about a second per 100,000 records).
pub(super) const V8: &[&str] = &[
    "DROP INDEX IF EXISTS tokens_by_last_use",
    // The triggers naming `tokens` go while it is rebuilt, and come back unchanged.
    "DROP TRIGGER live_counts_insert",
    "DROP TRIGGER live_counts_update",
    "DROP TRIGGER live_counts_delete",
    "DROP TRIGGER subject_links_insert",
    "DROP TRIGGER subject_links_delete",
    "DROP TRIGGER fp_version_tokens",
    "CREATE TABLE records (
        class TEXT NOT NULL,
        token TEXT NOT NULL,
        value_fp BLOB NOT NULL,
        key_version INTEGER NOT NULL,
        sealed BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        gone_at INTEGER,
        first_subject BLOB,
        fp_version INTEGER,
        UNIQUE (class, token),
        UNIQUE (class, value_fp)
    )",
    "INSERT INTO records (class, token, value_fp, key_version, sealed, created_at, last_used_at, gone_at,
        first_subject, fp_version)
     SELECT class, token, value_fp, key_version, sealed, created_at, last_used_at, gone_at, first_subject, fp_version
     FROM tokens",
    "DROP TABLE tokens",
    "ALTER TABLE records RENAME TO tokens",
    LIVE_COUNTS_INSERT,
    LIVE_COUNTS_UPDATE,
    LIVE_COUNTS_DELETE,
    LINKS_INSERT,
    LINKS_DELETE,
    FP_VERSION_TOKENS,
];

/// Refuses a record under an older fingerprint version than the newest in use (V7).
const FP_VERSION_TOKENS: &str = "CREATE TRIGGER fp_version_tokens BEFORE INSERT ON tokens
     WHEN NEW.fp_version < (SELECT MAX(version) FROM fp_versions) BEGIN
        SELECT RAISE(ABORT, 'fingerprint key version superseded: load the rotated keyring');
     END";

/// Counts live records per class on insert (V3).
const LIVE_COUNTS_INSERT: &str =
    "CREATE TRIGGER live_counts_insert AFTER INSERT ON tokens WHEN NEW.gone_at IS NULL BEGIN
        INSERT INTO live_counts (class, live) VALUES (NEW.class, 1)
            ON CONFLICT (class) DO UPDATE SET live = live + 1;
     END";
/// Moves the counts when a record changes class or becomes a tombstone (or comes back) (V3).
const LIVE_COUNTS_UPDATE: &str = "CREATE TRIGGER live_counts_update AFTER UPDATE OF class, gone_at ON tokens BEGIN
        UPDATE live_counts SET live = live - 1 WHERE class = OLD.class AND OLD.gone_at IS NULL;
        INSERT INTO live_counts (class, live) SELECT NEW.class, 1 WHERE NEW.gone_at IS NULL
            ON CONFLICT (class) DO UPDATE SET live = live + 1;
     END";
/// Uncounts a live record deleted (V3).
const LIVE_COUNTS_DELETE: &str =
    "CREATE TRIGGER live_counts_delete AFTER DELETE ON tokens WHEN OLD.gone_at IS NULL BEGIN
        UPDATE live_counts SET live = live - 1 WHERE class = OLD.class;
     END";
/// A new link: the token's first subject if it has none, one of its shared ones otherwise. (V4)
const LINKS_INSERT: &str = "CREATE TRIGGER subject_links_insert AFTER INSERT ON subject_tokens BEGIN
        INSERT INTO shared_links (class, token, subject_fp)
            SELECT NEW.class, NEW.token, NEW.subject_fp FROM tokens
            WHERE class = NEW.class AND token = NEW.token
              AND first_subject IS NOT NULL AND first_subject != NEW.subject_fp;
        UPDATE tokens SET first_subject = NEW.subject_fp
            WHERE class = NEW.class AND token = NEW.token AND first_subject IS NULL;
     END";
/// A link gone: out of the shared ones; if it was the first subject, a shared one (if any) takes its place. (V4)
const LINKS_DELETE: &str = "CREATE TRIGGER subject_links_delete AFTER DELETE ON subject_tokens BEGIN
        DELETE FROM shared_links WHERE class = OLD.class AND token = OLD.token AND subject_fp = OLD.subject_fp;
        UPDATE tokens SET first_subject =
                (SELECT subject_fp FROM shared_links WHERE class = OLD.class AND token = OLD.token LIMIT 1)
            WHERE class = OLD.class AND token = OLD.token AND first_subject = OLD.subject_fp;
        DELETE FROM shared_links WHERE class = OLD.class AND token = OLD.token
            AND subject_fp = (SELECT first_subject FROM tokens WHERE class = OLD.class AND token = OLD.token);
     END";

pub(super) async fn init(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await.map_err(unavailable)?;
    let version = usize::try_from(version.unwrap_or(0)).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!("unsupported schema version {version}: written by a newer veil?")));
    }
    for (i, stmts) in MIGRATIONS.iter().enumerate().skip(version) {
        for stmt in *stmts {
            sqlx::query(stmt).execute(&mut *tx).await.map_err(unavailable)?;
        }
        sqlx::query("DELETE FROM schema_version").execute(&mut *tx).await.map_err(unavailable)?;
        sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
            .bind(i as i64 + 1)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)
}
