//! Durable token storage: the `Store` trait the vault engine writes through, and its backends.
//!
//! A record maps (class, token) to a sealed value; a keyed fingerprint of the canonical value makes tokens
//! deterministic (one token per value and class). Inserts return only after the record is durably committed,
//! and concurrent inserts share commits (group commit).
//!
//! Lifecycle: records can be linked to data subjects (a keyed fingerprint of the subject id; the id itself is
//! never stored), erased per subject and purged per class after their retention. An erased or purged record
//! becomes a tombstone: its sealed value is deleted and its value fingerprint replaced by random bytes (no
//! longer linkable to the value), while the row keeps the token so it is never issued again.
//!
//! Key rotation: every row names the master key version its fingerprint was made under (`fp_version`; `None`
//! for rows written before rows named it: the oldest version's). The store lists the versions value
//! fingerprints may be under (`fp_versions`), so a lookup asks under each of them in one read (normally one);
//! a row offered under an older version than the newest listed is refused (a vault still on the old keyring
//! fails closed instead of giving a value a second token). Subject ids are kept sealed (`subjects`) so that a
//! subject's links can be moved to a new version's fingerprint.

mod erasures;
mod filter;
mod group;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

/// A keyed fingerprint (HMAC-SHA256) — of a canonical value, or of a subject id.
pub type Fingerprint = [u8; 32];

/// A volatile secret (a card's CVC) bound to a token: sealed like a record, kept until `expires_at` (unix
/// seconds), revealed at most `uses` times, then erased. Never linked to a subject, never in an export.
#[derive(Clone, PartialEq, Eq)]
pub struct Volatile {
    /// Keyed fingerprint of the token it is bound to (class and canonical token).
    pub bind_fp: Fingerprint,
    /// The key version of `bind_fp` (`None`: the oldest, as for legacy rows).
    pub fp_version: Option<u32>,
    pub key_version: u32,
    pub sealed: Vec<u8>,
    pub expires_at: i64,
    pub uses: u32,
}

impl std::fmt::Debug for Volatile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Volatile(<redacted>)")
    }
}

/// A stored mapping. `sealed` is nonce ‖ AES-GCM-SIV ciphertext; it opens only with the AAD that binds class,
/// token and key version — and, for a row with an `fp_version`, its value fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub class: String,
    pub token: String,
    pub value_fp: Fingerprint,
    /// The master key version `value_fp` was made under; `None`: a legacy row (the oldest version's, sealed with
    /// the AAD that does not bind the fingerprint).
    pub fp_version: Option<u32>,
    pub key_version: u32,
    pub sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the last time the value was tokenised.
    pub last_used_at: i64,
    /// Unix seconds: when the record was erased or purged (a tombstone: `sealed` is empty).
    pub gone_at: Option<i64>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("class", &self.class)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// What happened to one record offered to [`Store::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The store holds the record as offered: committed by this call (or stored exactly so before, e.g. the
    /// same record offered twice).
    New,
    /// The value already had a token in this class (a concurrent or earlier tokenisation won): use this one.
    Existing(Record),
    /// Another value already holds this token in this class: draw a new candidate and try again.
    TokenTaken,
}

/// One durable write: new records, re-tokenised records to mark as used, and links to a data subject — all in
/// one transaction.
#[derive(Debug, Default)]
pub struct Write {
    pub records: Vec<Record>,
    /// (class, token) of existing records tokenised again: `last_used_at` moves up to `now`.
    pub touch: Vec<(String, String)>,
    /// Links every record of this write (the winner's token where another value won) and every touched token
    /// to this subject.
    pub subject: Option<Fingerprint>,
    /// The key version `subject` was made under (`None`: the oldest, a legacy link).
    pub subject_version: Option<u32>,
    /// The subject id, sealed: kept (once per subject and version) so its links can be re-fingerprinted.
    pub subject_sealed: Option<SealedId>,
    /// Unix seconds.
    pub now: i64,
}

impl Write {
    /// Rows this write changes (group-commit sizing).
    pub fn size(&self) -> usize {
        self.records.len() + self.touch.len()
    }
}

/// A subject id sealed under a key version (AAD bound to the subject's fingerprint).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedId {
    pub key_version: u32,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedId").field("key_version", &self.key_version).finish_non_exhaustive()
    }
}

/// A subject as the `subjects` table keeps it: its fingerprint, the version that was made under, its sealed id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    pub subject_fp: Fingerprint,
    pub fp_version: u32,
    pub id: SealedId,
}

/// Moves one subject: every link of the `from` fingerprints (the same id under other versions) goes to
/// `to.subject_fp`, the `from` rows of `subjects` go, and `to` is kept (if the subject has any link left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectMove {
    pub from: Vec<Fingerprint>,
    pub to: SubjectRow,
}

/// What still depends on one master key version (`veil keys retire` refuses unless all are zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Live records sealed under it.
    pub sealed: u64,
    /// Live records whose value fingerprint was made under it.
    pub fingerprints: u64,
    /// Subject links made under it.
    pub links: u64,
    /// Subjects of those links with no sealed id (only `veil keys rewrap --subjects FILE` or the subject's next
    /// visit can move them).
    pub unsealed_subjects: u64,
    /// Sealed subject ids fingerprinted or sealed under it.
    pub subjects: u64,
    /// CVCs bound or sealed under it.
    pub volatiles: u64,
}

impl KeyUsage {
    pub fn is_unused(&self) -> bool {
        *self == KeyUsage::default()
    }
}

/// What an erasure did to one token of the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub class: String,
    pub token: String,
    /// `true`: the record is now a tombstone. `false`: another subject holds the token too; it stays.
    pub erased: bool,
}

/// A record sealed and fingerprinted again under a newer key version (key rotation).
#[derive(Clone, PartialEq, Eq)]
pub struct Resealed {
    pub class: String,
    pub token: String,
    /// The versions the record was sealed and fingerprinted under when read: the update applies only if they
    /// still are.
    pub from_version: u32,
    pub from_fp_version: Option<u32>,
    pub key_version: u32,
    pub value_fp: Fingerprint,
    pub fp_version: u32,
    pub sealed: Vec<u8>,
}

/// Where an audit log's chain ends: the sequence number and SHA-256 (hex) of its last acknowledged line. Kept in
/// the store, per log (`log_id`), so a log cut, rolled back, emptied or deleted is told from an intact one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// An audit head's sequence number as a database column holds it (a signed 64-bit integer), and back.
fn seq_of(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt("audit head sequence out of range".into()))
}

fn seq_to(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt("audit head sequence out of range".into()))
}

/// Storage failures. Messages never carry a value, token or key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store corrupted: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records for these (class, value fingerprint) keys, in order.
    async fn find_by_values(&self, keys: &[(String, Fingerprint)]) -> Result<Vec<Option<Record>>, StoreError>;
    /// Records for these (class, canonical token) keys, in order.
    async fn find_by_tokens(&self, keys: &[(String, String)]) -> Result<Vec<Option<Record>>, StoreError>;
    /// Both lookups at once: records for the value keys, and records for the token keys, each in order. A
    /// backend may answer them in one round trip (the engine asks both for every value it does not know).
    async fn find_by_values_and_tokens(
        &self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<(Vec<Option<Record>>, Vec<Option<Record>>), StoreError> {
        Ok((self.find_by_values(values).await?, self.find_by_tokens(tokens).await?))
    }
    /// Durably inserts the records (one outcome each, in order); returns only after the commit is on disk.
    /// Concurrent calls are batched into shared transactions.
    async fn insert(&self, records: Vec<Record>) -> Result<Vec<Inserted>, StoreError> {
        self.write(Write { records, ..Write::default() }).await
    }
    /// Durably applies `w` (one outcome per record, in order), batched like [`Store::insert`].
    async fn write(&self, w: Write) -> Result<Vec<Inserted>, StoreError>;
    /// Stores volatile secrets durably, each replacing any other bound to the same token.
    async fn put_volatile(&self, _secrets: Vec<Volatile>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("this store keeps no volatile secrets".into()))
    }
    /// Takes one use of the live secret bound to `bind_fp` (not expired at `now`): its key version and sealed
    /// bytes; the secret is erased when its last use is taken. `None`: none is live.
    async fn take_volatile(&self, _bind_fp: &Fingerprint, _now: i64) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        Err(StoreError::Unavailable("this store keeps no volatile secrets".into()))
    }
    /// Erases the secrets expired at `now`; how many.
    async fn purge_volatile(&self, _now: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// How this process learns that *other* processes turned records into tombstones (erasure, purge), for
    /// in-memory caches of live records. `None`: nothing else changes the store while this process serves
    /// (the embedded store). `Some`: an epoch that moves on every such change and is odd while changes cannot be
    /// followed (caches must then be bypassed).
    fn erasure_epoch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Every record linked to this subject (tombstones included), ordered by class and token.
    async fn subject_records(&self, subject: &Fingerprint) -> Result<Vec<Record>, StoreError>;
    /// Every (class, token) linked to a subject that this token is linked to (itself included when linked; empty
    /// when it has no subject): whose data a message to this token's owner may carry.
    async fn subject_peers(&self, class: &str, token: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// In one transaction: tombstones the subject's records that no other subject is linked to, and removes the
    /// subject's links and sealed id. Returns what happened to each of its tokens.
    async fn erase_subject(&self, subject: &Fingerprint, now: i64) -> Result<Vec<Erased>, StoreError>;
    /// Tombstones up to `limit` live records of `class` last used before `cutoff` (unix seconds) and drops their
    /// subject links, in one transaction; returns how many (fewer than `limit`: none is left).
    async fn purge(&self, class: &str, cutoff: i64, now: i64, limit: usize) -> Result<u64, StoreError>;
    /// How many live records of `class` were last used before `cutoff` (for progress; `None`: unknown).
    async fn count_expired(&self, _class: &str, _cutoff: i64) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// How many live records are sealed or fingerprinted under a key version older than `version`, or are
    /// legacy rows (for progress; `None`: unknown).
    async fn count_stale_before(&self, _version: u32) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Live (not tombstoned) records per class.
    async fn count_live(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Up to `limit` live records sealed or fingerprinted under a key version older than `version`, or legacy
    /// (no `fp_version`), ordered by (class, token), after the cursor `after` (a page of a rewrap).
    async fn stale_before(
        &self,
        version: u32,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;
    /// In one transaction, replaces the sealed values, fingerprints and versions of records still live and still
    /// under their `from_version` and `from_fp_version`; returns how many were replaced (the others changed
    /// meanwhile and are left alone).
    async fn reseal(&self, records: &[Resealed]) -> Result<u64, StoreError>;
    /// Lists `current` among the versions value fingerprints may be under (before anything is written under
    /// it), then answers the listed versions, `0` standing for legacy rows. `None`: this store does not keep
    /// the list (every version of the keyring is then asked).
    async fn fp_versions(&self, _current: u32) -> Result<Option<Vec<u32>>, StoreError> {
        Ok(None)
    }
    /// Takes versions below `version` (and legacy, `0`) off the list, if no live record or CVC is fingerprinted
    /// under one any more; whether it did.
    async fn unlist_fp_versions_below(&self, _version: u32) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("this store keeps no fingerprint versions".into()))
    }
    /// What depends on key `version` (`oldest`: legacy rows count as its).
    async fn key_usage(&self, _version: u32, _oldest: bool) -> Result<KeyUsage, StoreError> {
        Err(StoreError::Unavailable("this store cannot count what a key version holds".into()))
    }
    /// Takes `version` (and legacy, `0`, if `oldest`) off the list of fingerprint versions, if nothing depends
    /// on it; the usage found (nothing taken off unless it is unused).
    async fn unlist_fp_version(&self, _version: u32, _oldest: bool) -> Result<KeyUsage, StoreError> {
        Err(StoreError::Unavailable("this store keeps no fingerprint versions".into()))
    }
    /// Up to `limit` sealed subject ids, ordered by fingerprint, after `after` (a page of a rewrap).
    async fn subjects_after(&self, _after: Option<&Fingerprint>, _limit: usize) -> Result<Vec<SubjectRow>, StoreError> {
        Err(StoreError::Unavailable("this store keeps no sealed subject ids".into()))
    }
    /// Applies the moves, all in one transaction; how many links moved.
    async fn move_subjects(&self, _moves: &[SubjectMove]) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("this store keeps no sealed subject ids".into()))
    }
    /// Erases the CVCs bound or sealed under a version older than `version` (or legacy); how many.
    async fn drop_volatile_before(&self, _version: u32) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Answers when the store can serve (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The head of the audit log `log_id`, if one was ever recorded.
    async fn audit_head(&self, log_id: &str) -> Result<Option<AuditHead>, StoreError>;
    /// Durably moves the head of `log_id` to `new` if it is still `expected` (`None`: no head recorded yet);
    /// `false`: it was not (another writer moved it — a fork — and nothing changed).
    async fn swap_audit_head(
        &self,
        log_id: &str,
        expected: Option<&AuditHead>,
        new: &AuditHead,
        now: i64,
    ) -> Result<bool, StoreError>;
}
