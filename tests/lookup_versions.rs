//! The hot path's cost under rotation: a new value is looked up with one key per fingerprint version in use, all in
//! the one store read it always had — one key when one version is in use (the normal state, also after a
//! rotation once the rewrap pass is done), two while a pass is under way. A vault whose keyring lacks a version
//! the store uses refuses to tokenise rather than miss its rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::{AuditHead, Erased, Fingerprint, Inserted, Record, Resealed, Store, StoreError, Write};
use veil::token::ClassFormats;
use veil::vault::engine::{system_clock, Engine, EngineError};

/// Counts the store reads of the tokenising path and the value keys they carry.
struct Counting {
    inner: Arc<dyn Store>,
    reads: AtomicUsize,
    value_keys: AtomicUsize,
}

#[async_trait]
impl Store for Counting {
    async fn find_by_values_and_tokens(
        &self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<(Vec<Option<Record>>, Vec<Option<Record>>), StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.value_keys.fetch_add(values.len(), Ordering::SeqCst);
        self.inner.find_by_values_and_tokens(values, tokens).await
    }
    async fn fp_versions(&self, current: u32) -> Result<Option<Vec<u32>>, StoreError> {
        self.inner.fp_versions(current).await
    }
    async fn find_by_values(&self, keys: &[(String, Fingerprint)]) -> Result<Vec<Option<Record>>, StoreError> {
        self.inner.find_by_values(keys).await
    }
    async fn find_by_tokens(&self, keys: &[(String, String)]) -> Result<Vec<Option<Record>>, StoreError> {
        self.inner.find_by_tokens(keys).await
    }
    async fn write(&self, w: Write) -> Result<Vec<Inserted>, StoreError> {
        self.inner.write(w).await
    }
    async fn subject_records(&self, subject: &Fingerprint) -> Result<Vec<Record>, StoreError> {
        self.inner.subject_records(subject).await
    }
    async fn subject_peers(&self, class: &str, token: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.subject_peers(class, token).await
    }
    async fn erase_subject(&self, subject: &Fingerprint, now: i64) -> Result<Vec<Erased>, StoreError> {
        self.inner.erase_subject(subject, now).await
    }
    async fn purge(&self, class: &str, cutoff: i64, now: i64, limit: usize) -> Result<u64, StoreError> {
        self.inner.purge(class, cutoff, now, limit).await
    }
    async fn count_live(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.count_live().await
    }
    async fn stale_before(
        &self,
        version: u32,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.inner.stale_before(version, after, limit).await
    }
    async fn reseal(&self, records: &[Resealed]) -> Result<u64, StoreError> {
        self.inner.reseal(records).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn audit_head(&self, log_id: &str) -> Result<Option<AuditHead>, StoreError> {
        self.inner.audit_head(log_id).await
    }
    async fn swap_audit_head(
        &self,
        id: &str,
        e: Option<&AuditHead>,
        n: &AuditHead,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.swap_audit_head(id, e, n, now).await
    }
}

fn engine(store: &Arc<dyn Store>, versions: &[u32]) -> (Engine, Arc<Counting>) {
    let ring = Keyring::from_keys(versions.iter().map(|v| (*v, [*v as u8; 32])));
    let keys = KeySet::derive(&ring, &Class::names()).unwrap();
    let counting =
        Arc::new(Counting { inner: store.clone(), reads: AtomicUsize::new(0), value_keys: AtomicUsize::new(0) });
    (Engine::new(keys, counting.clone(), ClassFormats::default(), system_clock()), counting)
}

/// Three addresses with long local parts: a token keeps the shape (letters, digits, punctuation), and a short one
/// (`a-0`) has a few hundred tokens, so a candidate could collide with an earlier one and cost a redraw's read.
fn emails(tag: &str) -> Vec<String> {
    (0..3).map(|i| format!("{tag}-customer.number-{i}{i}{i}{i}{i}@example.org")).collect()
}

/// (store reads, value keys) of tokenising three new emails.
async fn cost(engine: &Engine, counting: &Counting, tag: &str) -> (usize, usize) {
    let (r0, k0) = (counting.reads.load(Ordering::SeqCst), counting.value_keys.load(Ordering::SeqCst));
    let values = emails(tag);
    let items: Vec<(Class, &str)> = values.iter().map(|v| (Class::Email, v.as_str())).collect();
    engine.tokenize(&items).await.unwrap();
    (counting.reads.load(Ordering::SeqCst) - r0, counting.value_keys.load(Ordering::SeqCst) - k0)
}

#[tokio::test]
async fn a_new_value_costs_one_key_per_version_in_use_in_the_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url, SqliteOptions::default()).await.unwrap());

    // One version: one read, one key per value and one per drawn candidate — as before rotation existed.
    let (one, counting) = engine(&store, &[1]);
    assert_eq!(cost(&one, &counting, "a").await, (1, 6));
    assert_eq!(one.lookup_versions().await.unwrap(), [1]);

    // Rotated, the pass not yet done: version 1's rows are asked for too, in the same read.
    let (two, counting) = engine(&store, &[1, 2]);
    assert_eq!(cost(&two, &counting, "b").await, (1, 12));
    assert_eq!(two.lookup_versions().await.unwrap(), [2, 1]);
    let values = emails("a");
    let items: Vec<(Class, &str)> = values.iter().map(|v| (Class::Email, v.as_str())).collect();
    let first = one.tokenize(&items).await.unwrap();
    assert_eq!(two.tokenize(&items).await.unwrap(), first, "found under version 1");

    // After the pass (nothing left under version 1, which is then unlisted): one key per value again.
    let ring = Keyring::from_keys([(1, [1; 32]), (2, [2; 32])]);
    let pass = Engine::new(
        KeySet::derive(&ring, &Class::names()).unwrap(),
        store.clone(),
        ClassFormats::default(),
        system_clock(),
    );
    let done = veil::vault::rewrap::rewrap(&pass, 10, None, &[], |_| {}).await.unwrap();
    assert!(done.unlisted && done.resealed == 3, "the \"a\" values: {done:?}");
    let (after, counting) = engine(&store, &[1, 2]);
    assert_eq!(cost(&after, &counting, "c").await, (1, 6));
    assert_eq!(after.lookup_versions().await.unwrap(), [2]);
    assert_eq!(after.tokenize(&items).await.unwrap(), first, "found under version 2 after the pass");

    // A vault still on the old keyring: refused, never a second token under a fingerprint nobody asks for.
    let (old, _) = engine(&store, &[1]);
    let err = old.tokenize(&items).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::Corrupt(ref m)) if m.contains("version 2")), "{err:?}");
}
