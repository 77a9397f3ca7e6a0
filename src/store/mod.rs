//! Durable token storage: the `Store` trait the vault engine writes through, and its backends.
//!
//! A record maps (class, token) to a sealed value; a keyed fingerprint of the canonical value makes tokens
//! deterministic (one token per value and class). Inserts return only after the record is durably committed,
//! and concurrent inserts share commits (group commit).

mod group;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

/// A keyed fingerprint (HMAC-SHA256) — of a canonical value, or of a subject id.
pub type Fingerprint = [u8; 32];

/// A stored mapping. `sealed` is nonce ‖ AES-GCM-SIV ciphertext; it opens only with the AAD that binds class,
/// token and key version.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub class: String,
    pub token: String,
    pub value_fp: Fingerprint,
    pub key_version: u32,
    pub sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the last time the value was tokenised.
    pub last_used_at: i64,
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
    /// Committed as offered.
    New,
    /// The value already had a token in this class (a concurrent or earlier tokenisation won): use this one.
    Existing(Record),
    /// Another value already holds this token in this class: draw a new candidate and try again.
    TokenTaken,
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
    /// Durably inserts the records (one outcome each, in order); returns only after the commit is on disk.
    /// Concurrent calls are batched into shared transactions.
    async fn insert(&self, records: Vec<Record>) -> Result<Vec<Inserted>, StoreError>;
    /// Answers when the store can serve (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}
