//! Known values (the engine's in-memory value → token map): a value tokenised again is answered without a store
//! read, yet never with a token that is no longer live — after an erasure here, a purge elsewhere, or another
//! replica's erasure on a shared PostgreSQL store (followed by LISTEN/NOTIFY; bypassed while not followed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::lifecycle::ManualClock;
use common::pg::Backend;
use veil::crypto::audit_key::AuditSigner;
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::metrics::Metrics;
use veil::store::{AuditHead, Erased, Fingerprint, Inserted, Record, Resealed, Store, StoreError, Write};
use veil::token::ClassFormats;
use veil::vault::audit::{AuditLog, AuditSetup};
use veil::vault::engine::Engine;

use veil::vault::retention::Retention;
use veil::vault::{LocalVault, Vault, VaultError};

common::pg::on_both_stores!(an_erasure_voids_known_values);

const T0: i64 = 1_800_000_000;
const CARD: &str = "4111111111111111";
const EMAIL: &str = "known@example.org";

/// A store that counts value lookups and can be made to fail them.
struct Counting {
    inner: Arc<dyn Store>,
    value_reads: AtomicUsize,
    fail_reads: AtomicBool,
}

impl Counting {
    fn new(inner: Arc<dyn Store>) -> Arc<Counting> {
        Arc::new(Counting { inner, value_reads: AtomicUsize::new(0), fail_reads: AtomicBool::new(false) })
    }
    fn reads(&self) -> usize {
        self.value_reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for Counting {
    async fn find_by_values(&self, keys: &[(String, Fingerprint)]) -> Result<Vec<Option<Record>>, StoreError> {
        self.value_reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("reads switched off by the test".into()));
        }
        self.inner.find_by_values(keys).await
    }
    async fn find_by_tokens(&self, keys: &[(String, String)]) -> Result<Vec<Option<Record>>, StoreError> {
        self.inner.find_by_tokens(keys).await
    }
    async fn write(&self, w: Write) -> Result<Vec<Inserted>, StoreError> {
        self.inner.write(w).await
    }
    fn erasure_epoch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.erasure_epoch()
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
        log_id: &str,
        expected: Option<&AuditHead>,
        new: &AuditHead,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.swap_audit_head(log_id, expected, new, now).await
    }
}

async fn open_store(url: &str) -> Arc<dyn Store> {
    if url.starts_with("sqlite:") {
        Arc::new(veil::store::sqlite::SqliteStore::open(url, Default::default()).await.unwrap())
    } else {
        Arc::new(veil::store::postgres::PostgresStore::open(url, Default::default()).await.unwrap())
    }
}

fn keys() -> KeySet {
    KeySet::derive(&Keyring::from_keys([(1, [42; 32])]), &Class::names()).unwrap()
}

/// A vault over `store` (audit log in `dir`), with `retention`.
async fn vault(dir: &std::path::Path, store: Arc<dyn Store>, clock: &ManualClock, retention: Retention) -> LocalVault {
    let keys = Arc::new(keys());
    let name = format!("audit-{}.log", hex::encode(rand::random::<[u8; 4]>()));
    let setup = AuditSetup {
        path: dir.join(&name),
        log_id: name,
        signer: AuditSigner::from_seed(&[5; 32]),
        new_chain: false,
        sequence: None,
    };
    let audit = AuditLog::open(setup, store.clone(), keys.audit.clone(), 1).await.unwrap();
    let engine = Engine::new(keys, store, ClassFormats::default(), clock.clock());
    LocalVault::new(engine, audit, Arc::new(Metrics::new().unwrap()), clock.clock()).with_retention(retention)
}

/// Tokenises as the ingress does (strictly), the path known values serve. (Through the API a card may also be a
/// token sent back, which only the store can tell, so cards are not answered from memory there.)
async fn tokenize(v: &LocalVault, items: &[(Class, &str)], subject: Option<&str>) -> Vec<String> {
    let terms = veil::vault::Terms { strict: true, ..Default::default() };
    v.tokenize_on(&veil::vault::auth::Caller::operator(), items, subject, terms).await.unwrap()
}

async fn reveal(v: &LocalVault, class: Class, token: &str) -> Result<String, &'static str> {
    let mut out = v.detokenize(&veil::vault::auth::Caller::operator(), &[(class, token)], None).await.unwrap();
    out.pop().unwrap().map_err(|m| m.code())
}

#[tokio::test]
async fn a_value_tokenised_again_is_answered_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Counting::new(open_store(&format!("sqlite://{}/v.db", dir.path().display())).await);
    let clock = ManualClock::at(T0);
    let v = vault(dir.path(), store.clone(), &clock, Retention::default()).await;
    let items = [(Class::Pan, CARD), (Class::Email, EMAIL)];

    let first = tokenize(&v, &items, None).await;
    assert_eq!(
        store.reads(),
        1,
        "a new value is looked up (its drawn token checked against the values in the same call), inserted"
    );
    assert_eq!(tokenize(&v, &items, None).await, first);
    assert_eq!(store.reads(), 2, "its second tokenisation finds it in the store (and remembers it)");
    assert_eq!(tokenize(&v, &items, None).await, first);
    assert_eq!(store.reads(), 2, "the third is answered from memory");
    // Each answer is still written in the value's own layout.
    let spaced = tokenize(&v, &[(Class::Pan, "4111 1111 1111 1111")], None).await;
    assert_eq!(spaced[0].replace(' ', ""), first[0]);
    assert_eq!(spaced[0].matches(' ').count(), 3);
    assert_eq!(store.reads(), 2);

    // A subject link is still written for a known value.
    tokenize(&v, &items, Some("customer-7")).await;
    let subject = v.engine().subject_fingerprint("customer-7");
    let linked: Vec<String> = store.subject_records(&subject).await.unwrap().into_iter().map(|r| r.token).collect();
    assert_eq!(linked.len(), 2, "both tokens linked");
    assert!(first.iter().all(|t| linked.contains(t)));

    // With the store's reads failing, known values still answer (their records are durable); others fail.
    store.fail_reads.store(true, Ordering::SeqCst);
    assert_eq!(tokenize(&v, &items, None).await, first);
    let err = v
        .tokenize(&veil::vault::auth::Caller::operator(), &[(Class::Email, "new@example.org")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::StoreUnavailable), "{err:?}");

    // Past the trust window (an hour since the last use), the store is asked again and the use recorded.
    store.fail_reads.store(false, Ordering::SeqCst);
    clock.advance(3600);
    let reads = store.reads();
    assert_eq!(tokenize(&v, &items, None).await, first);
    assert_eq!(store.reads(), reads + 1);
    let rec = store.find_by_tokens(&[("pan".into(), first[0].clone())]).await.unwrap().pop().unwrap().unwrap();
    assert_eq!(rec.last_used_at, T0 + 3600);
    assert_eq!(tokenize(&v, &items, None).await, first);
    assert_eq!(store.reads(), reads + 1, "known again");
}

async fn an_erasure_voids_known_values(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = backend.store_url(dir.path()).await;
    let store = Counting::new(open_store(&url).await);
    let clock = ManualClock::at(T0);
    let v = vault(dir.path(), store.clone(), &clock, Retention::default()).await;
    if let Some(mut epoch) = store.erasure_epoch() {
        // PostgreSQL: known values are used only once the store's erasures are followed.
        tokio::time::timeout(Duration::from_secs(10), epoch.wait_for(|e| e.is_multiple_of(2))).await.unwrap().unwrap();
    }
    let items = [(Class::Email, EMAIL)];
    let old = tokenize(&v, &items, Some("s1")).await;
    tokenize(&v, &items, Some("s1")).await;
    let reads = store.reads();
    assert_eq!(tokenize(&v, &items, Some("s1")).await, old);
    assert_eq!(store.reads(), reads, "known");

    v.erase_subject(&veil::vault::auth::Caller::operator(), "s1").await.unwrap();
    assert_eq!(reveal(&v, Class::Email, &old[0]).await, Err("gone"));
    let new = tokenize(&v, &items, None).await;
    assert_ne!(new, old, "an erased token is never handed out again");
    assert_eq!(reveal(&v, Class::Email, &new[0]).await.unwrap(), EMAIL);
}

/// `veil purge` may run beside a serving vault: a record it purges was unused for a whole retention, longer
/// than any known value is trusted.
#[tokio::test]
async fn a_purge_by_another_process_is_never_answered_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db", dir.path().display());
    let clock = ManualClock::at(T0);
    let day = Retention { classes: vec![(Class::Email, 86_400)] };
    let serving = vault(dir.path(), open_store(&url).await, &clock, day.clone()).await;
    let items = [(Class::Email, EMAIL)];
    let old = tokenize(&serving, &items, None).await;
    tokenize(&serving, &items, None).await; // now known

    clock.advance(25 * 3600);
    let purger = vault(dir.path(), open_store(&url).await, &clock, day).await;
    assert_eq!(purger.purge_expired().await.unwrap().total(), 1);
    assert_eq!(reveal(&serving, Class::Email, &old[0]).await, Err("gone"));
    let new = tokenize(&serving, &items, None).await;
    assert_ne!(new, old);
    assert_eq!(reveal(&serving, Class::Email, &new[0]).await.unwrap(), EMAIL);
}

/// Waits (bounded) until `epoch` satisfies `ok`.
async fn epoch_until(store: &dyn Store, ok: impl Fn(u64) -> bool) -> u64 {
    let mut rx = store.erasure_epoch().unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|e| ok(*e))).await;
    let epoch = waited.expect("the store's erasure epoch never reached the expected state").map(|e| *e);
    epoch.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_erasure_reaches_known_values() {
    let dir = tempfile::tempdir().unwrap();
    let url = Backend::Postgres.store_url(dir.path()).await;
    let clock = ManualClock::at(T0);
    let a_store = Counting::new(open_store(&url).await);
    let a = vault(dir.path(), a_store.clone(), &clock, Retention::default()).await;
    let b = vault(dir.path(), open_store(&url).await, &clock, Retention::default()).await;
    let listening = epoch_until(a_store.as_ref(), |e| e.is_multiple_of(2)).await;

    let items = [(Class::Pan, CARD)];
    let old = tokenize(&a, &items, Some("s1")).await;
    assert_eq!(tokenize(&b, &items, None).await, old, "one token per value across replicas");
    tokenize(&a, &items, None).await;
    let reads = a_store.reads();
    assert_eq!(tokenize(&a, &items, None).await, old);
    assert_eq!(a_store.reads(), reads, "known on replica a");

    // Replica b erases the subject; a hears of it and asks the store again.
    b.erase_subject(&veil::vault::auth::Caller::operator(), "s1").await.unwrap();
    epoch_until(a_store.as_ref(), |e| e > listening && e.is_multiple_of(2)).await;
    let new = tokenize(&a, &items, None).await;
    assert_ne!(new, old, "replica a does not hand out the token b erased");
    assert_eq!(a_store.reads(), reads + 1, "the value and its new token looked up in one call");
    assert_eq!(reveal(&a, Class::Pan, &old[0]).await, Err("gone"));
    assert_eq!(reveal(&b, Class::Pan, &new[0]).await.unwrap(), CARD);
}

/// While the notification connection is down, nothing is answered from memory; once it is back, everything
/// remembered before is asked again (notifications sent in between were missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_values_are_bypassed_while_erasures_cannot_be_followed() {
    let dir = tempfile::tempdir().unwrap();
    let url = Backend::Postgres.store_url(dir.path()).await;
    let clock = ManualClock::at(T0);
    let store = Counting::new(open_store(&url).await);
    let v = vault(dir.path(), store.clone(), &clock, Retention::default()).await;
    let listening = epoch_until(store.as_ref(), |e| e.is_multiple_of(2)).await;
    let items = [(Class::Pan, CARD)];
    let token = tokenize(&v, &items, None).await;
    tokenize(&v, &items, None).await;
    let reads = store.reads();
    assert_eq!(tokenize(&v, &items, None).await, token);
    assert_eq!(store.reads(), reads, "known");

    // Cut the listener's connection from the server side.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut, vec![true], "one listener connection");
    let back = epoch_until(store.as_ref(), |e| e > listening && e.is_multiple_of(2)).await;
    assert!(back > listening + 1);
    assert_eq!(tokenize(&v, &items, None).await, token);
    assert_eq!(store.reads(), reads + 1, "asked again after the listener came back");
}
