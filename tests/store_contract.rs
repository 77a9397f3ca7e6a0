//! The `Store` contract, held against both backends (`sqlite::NAME`, `postgres::NAME`): lookups in order,
//! one token per value under concurrency, token collisions, group commit, durability across reopen; plus
//! PostgreSQL specifics: two stores (replicas) on one database, migrations, connection errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::pg::Backend;
use veil::store::postgres::{PostgresOptions, PostgresStore};
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::{Fingerprint, Inserted, Record, Store, StoreError, Write};

common::pg::on_both_stores!(
    insert_then_find_in_order,
    same_value_twice_in_one_call,
    identical_records_are_new_each_time,
    concurrent_same_value_one_winner,
    token_collision_is_token_taken,
    group_commit_shares_transactions,
    durable_across_reopen,
    large_call_in_order_across_statements,
    both_lookups_at_once_answer_like_each_alone,
    live_counts_follow_inserts_erasures_and_purges,
    subject_peers_are_the_tokens_of_a_tokens_subjects,
);

fn rec(class: &str, token: &str, fp: u8) -> Record {
    Record {
        class: class.into(),
        token: token.into(),
        value_fp: [fp; 32],
        fp_version: Some(3),
        key_version: 3,
        sealed: vec![fp, 1, 2, 3],
        created_at: 1_700_000_000,
        last_used_at: 1_700_000_100,
        gone_at: None,
    }
}

/// A store location that can be opened more than once.
struct Place {
    _dir: tempfile::TempDir,
    url: String,
}

impl Place {
    async fn new(backend: Backend) -> Place {
        let dir = tempfile::tempdir().unwrap();
        let url = backend.store_url(dir.path()).await;
        Place { _dir: dir, url }
    }

    async fn open(&self) -> Arc<dyn Store> {
        self.open_counted().await.0
    }

    /// The store and a function reading its commit counter.
    async fn open_counted(&self) -> (Arc<dyn Store>, Box<dyn Fn() -> u64 + Send + Sync>) {
        if self.url.starts_with("sqlite://") {
            let s = Arc::new(SqliteStore::open(&self.url, SqliteOptions::default()).await.unwrap());
            let c = s.clone();
            (s, Box::new(move || c.commits()))
        } else {
            let s = Arc::new(PostgresStore::open(&self.url, PostgresOptions::default()).await.unwrap());
            let c = s.clone();
            (s, Box::new(move || c.commits()))
        }
    }
}

async fn insert_then_find_in_order(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    store.ping().await.unwrap();
    let (a, b) = (rec("email", "tokA", 1), rec("pan", "tokB", 2));
    assert_eq!(store.insert(vec![a.clone(), b.clone()]).await.unwrap(), vec![Inserted::New, Inserted::New]);
    let by_value = store
        .find_by_values(&[("pan".into(), [2; 32]), ("email".into(), [2; 32]), ("email".into(), [1; 32])])
        .await
        .unwrap();
    assert_eq!(by_value, vec![Some(b.clone()), None, Some(a.clone())]);
    let by_token = store
        .find_by_tokens(&[
            ("email".into(), "tokA".into()),
            ("pan".into(), "tokA".into()),
            ("pan".into(), "tokB".into()),
        ])
        .await
        .unwrap();
    assert_eq!(by_token, vec![Some(a), None, Some(b)]);
    assert!(store.find_by_values(&[]).await.unwrap().is_empty());
    assert!(store.find_by_tokens(&[]).await.unwrap().is_empty());
    assert!(store.insert(vec![]).await.unwrap().is_empty());
    // Many keys, repeated ones included.
    let many: Vec<(String, Fingerprint)> = (0..450).map(|i| ("email".to_string(), [(i % 3) as u8; 32])).collect();
    let got = store.find_by_values(&many).await.unwrap();
    assert_eq!(got.iter().filter(|r| r.is_some()).count(), 150);
    assert!(got[1].is_some() && got[0].is_none() && got[2].is_none());
}

/// The combined lookup the engine uses gives what the two lookups give, in one statement or (large, or one list
/// empty) in two.
async fn both_lookups_at_once_answer_like_each_alone(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let (a, b) = (rec("email", "tokA", 1), rec("pan", "tokB", 2));
    store.insert(vec![a.clone(), b.clone()]).await.unwrap();
    let values: Vec<(String, Fingerprint)> =
        vec![("pan".into(), [2; 32]), ("email".into(), [2; 32]), ("email".into(), [1; 32]), ("pan".into(), [2; 32])];
    let tokens: Vec<(String, String)> =
        vec![("email".into(), "tokA".into()), ("pan".into(), "tokA".into()), ("pan".into(), "tokB".into())];
    let (by_value, by_token) = store.find_by_values_and_tokens(&values, &tokens).await.unwrap();
    assert_eq!(by_value, vec![Some(b.clone()), None, Some(a.clone()), Some(b.clone())]);
    assert_eq!(by_token, vec![Some(a.clone()), None, Some(b.clone())]);
    // A value fingerprint that happens to equal a token key, or the reverse, does not cross over.
    let (by_value, by_token) = store
        .find_by_values_and_tokens(&[("email".into(), [9; 32])], &[("email".into(), "nope".into())])
        .await
        .unwrap();
    assert_eq!((by_value, by_token), (vec![None], vec![None]));
    let (by_value, by_token) = store.find_by_values_and_tokens(&values, &[]).await.unwrap();
    assert_eq!((by_value.len(), by_token.len()), (4, 0));
    let (by_value, by_token) = store.find_by_values_and_tokens(&[], &tokens).await.unwrap();
    assert_eq!((by_value.len(), by_token), (0, vec![Some(a.clone()), None, Some(b.clone())]));
    // More keys than one statement takes.
    let many_values: Vec<(String, Fingerprint)> = (0..300).map(|i| ("email".into(), [(i % 3) as u8; 32])).collect();
    let many_tokens: Vec<(String, String)> =
        (0..300).map(|i| ("pan".into(), format!("tok{}", ["A", "B"][i % 2]))).collect();
    let (by_value, by_token) = store.find_by_values_and_tokens(&many_values, &many_tokens).await.unwrap();
    assert_eq!(by_value, store.find_by_values(&many_values).await.unwrap());
    assert_eq!(by_token, store.find_by_tokens(&many_tokens).await.unwrap());
    assert_eq!(by_token.iter().filter(|r| r.is_some()).count(), 150);
}

async fn same_value_twice_in_one_call(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let first = rec("email", "t1", 7);
    let out = store.insert(vec![first.clone(), rec("email", "t2", 7), rec("phone", "t3", 7)]).await.unwrap();
    assert_eq!(out, vec![Inserted::New, Inserted::Existing(first), Inserted::New]);
}

/// The very same record offered twice, in one statement, across statements of one call, and in a later call:
/// each offer is told the store holds it as offered. A different record of that value is not.
async fn identical_records_are_new_each_time(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let same = rec("email", "twin", 9);
    let mut records = vec![same.clone(), same.clone()];
    records.extend((0..100u8).map(|i| rec("phone", &format!("p{i}"), i)));
    records.push(same.clone());
    let out = store.insert(records).await.unwrap();
    assert!(out.iter().all(|o| *o == Inserted::New), "{out:?}");
    assert_eq!(store.insert(vec![same.clone()]).await.unwrap(), vec![Inserted::New]);
    assert_eq!(store.insert(vec![rec("email", "other", 9)]).await.unwrap(), vec![Inserted::Existing(same.clone())]);
    assert_eq!(store.find_by_tokens(&[("email".into(), "twin".into())]).await.unwrap(), vec![Some(same)]);
}

/// One call larger than a statement takes (SQLite: 64 records): later records lose to earlier ones of the same
/// value, a record whose token is taken gets `TokenTaken` unless its value got a token meanwhile, whichever
/// statement each landed in; every lookup key is answered in order.
async fn large_call_in_order_across_statements(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let fresh = |i: u16, token: &str| {
        let mut r = rec("email", token, 0);
        r.value_fp[..2].copy_from_slice(&i.to_be_bytes());
        r
    };
    let mut records: Vec<Record> = (0..150u16).map(|i| fresh(i, &format!("t{i}"))).collect();
    records.push(fresh(3, "again3")); // value of record 3: loses to it
    records.push(fresh(501, "t71")); // new value, taken token
                                     // A new value on a taken token, then the same value on a free token: the value gets the free one, and the
                                     // first record is told so (losers are answered after the call's inserts, on both backends).
    records.push(fresh(500, "t70"));
    records.push(fresh(500, "t500"));
    let out = store.insert(records.clone()).await.unwrap();
    assert_eq!(out.len(), 154);
    assert!(out[..150].iter().all(|o| *o == Inserted::New));
    assert_eq!(out[150], Inserted::Existing(records[3].clone()));
    assert_eq!(out[151], Inserted::TokenTaken);
    assert_eq!(out[152], Inserted::Existing(records[153].clone()));
    assert_eq!(out[153], Inserted::New);
    let keys: Vec<(String, Fingerprint)> = records.iter().rev().map(|r| (r.class.clone(), r.value_fp)).collect();
    let found = store.find_by_values(&keys).await.unwrap();
    assert_eq!(found[0].as_ref().map(|r| r.token.as_str()), Some("t500"));
    assert_eq!(found.last().unwrap().as_ref(), Some(&records[0]));
    assert!(found[2].is_none()); // value 501 never got a token
    assert_eq!(found.iter().filter(|f| f.is_some()).count(), 153);
}

/// 50 concurrent inserts of one value: exactly one token wins, everybody else is told that one.
async fn concurrent_same_value_one_winner(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
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

async fn token_collision_is_token_taken(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let a = rec("email", "same", 1);
    store.insert(vec![a.clone()]).await.unwrap();
    assert_eq!(store.insert(vec![rec("email", "same", 2)]).await.unwrap(), vec![Inserted::TokenTaken]);
    assert_eq!(store.find_by_tokens(&[("email".into(), "same".into())]).await.unwrap(), vec![Some(a)]);
    assert_eq!(store.find_by_values(&[("email".into(), [2; 32])]).await.unwrap(), vec![None]);
    // The same token in another class is another record.
    assert_eq!(store.insert(vec![rec("phone", "same", 2)]).await.unwrap(), vec![Inserted::New]);
}

async fn group_commit_shares_transactions(backend: Backend) {
    let place = Place::new(backend).await;
    let (store, commits) = place.open_counted().await;
    let before = commits();
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
    let commits = commits() - before;
    assert!(commits < 200, "{commits} commits for 200 inserts");
}

/// `count_live` (the `veil_tokens` gauge) counts each live record once: not the values or tokens that lost, not
/// a tombstone; and it survives a reopen.
async fn live_counts_follow_inserts_erasures_and_purges(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let counts = |pairs: &[(&str, u64)]| pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect::<Vec<_>>();
    assert_eq!(store.count_live().await.unwrap(), counts(&[]));

    let subject = [9u8; 32];
    let mut old = rec("pan", "p-old", 3);
    old.last_used_at = 10;
    let records = vec![rec("email", "e1", 1), rec("email", "e2", 2), old, rec("pan", "p-new", 4)];
    store
        .write(Write { records, touch: Vec::new(), subject: Some(subject), now: 20, ..Write::default() })
        .await
        .unwrap();
    // Losers: the same value again (another token), a taken token (another value).
    let lost = store.insert(vec![rec("email", "e3", 1), rec("email", "e1", 5)]).await.unwrap();
    assert!(!lost.contains(&Inserted::New), "{lost:?}");
    store.insert(vec![rec("iban", "i1", 6)]).await.unwrap();
    assert_eq!(store.count_live().await.unwrap(), counts(&[("email", 2), ("iban", 1), ("pan", 2)]));

    // Purge: only the pan record unused since before the cutoff, counted first, taken in pages.
    assert_eq!(store.count_expired("pan", 11).await.unwrap(), Some(1));
    assert_eq!(store.count_stale_before(4).await.unwrap(), Some(5), "every live record is under version 3");
    assert_eq!(store.count_stale_before(3).await.unwrap(), Some(0));
    assert_eq!(store.purge("pan", 11, 30, 0).await.unwrap(), 0, "a page of none takes none");
    assert_eq!(store.purge("pan", 11, 30, 1).await.unwrap(), 1);
    assert_eq!(store.purge("pan", 11, 30, 1).await.unwrap(), 0);
    assert_eq!(store.count_live().await.unwrap(), counts(&[("email", 2), ("iban", 1), ("pan", 1)]));
    // Erasure: the subject's live records (the purge took the purged one's link).
    let erased = store.erase_subject(&subject, 40).await.unwrap();
    assert_eq!(erased.len(), 3, "{erased:?}");
    assert_eq!(store.count_live().await.unwrap(), counts(&[("iban", 1)]));
    assert!(store.erase_subject(&subject, 50).await.unwrap().is_empty());
    drop(store);
    assert_eq!(place.open().await.count_live().await.unwrap(), counts(&[("iban", 1)]));
}

/// Whose data a message to a token's owner may carry: every token of every subject the token is linked to.
async fn subject_peers_are_the_tokens_of_a_tokens_subjects(backend: Backend) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    let link =
        |records: Vec<Record>, subject: u8| Write { records, subject: Some([subject; 32]), now: 1, ..Write::default() };
    store.write(link(vec![rec("email", "alice", 1), rec("name", "alice-name", 2)], 1)).await.unwrap();
    store.write(link(vec![rec("email", "bob", 3), rec("name", "bob-name", 4)], 2)).await.unwrap();
    // A card both gave (shared), and a record linked to nobody.
    store.write(link(vec![rec("pan", "card", 5)], 1)).await.unwrap();
    store
        .write(Write {
            records: Vec::new(),
            touch: vec![("pan".into(), "card".into())],
            subject: Some([2; 32]),
            now: 2,
            ..Write::default()
        })
        .await
        .unwrap();
    store.insert(vec![rec("name", "nobody", 6)]).await.unwrap();
    let peers = |class: &'static str, token: &'static str| {
        let store = store.clone();
        async move {
            let mut p = store.subject_peers(class, token).await.unwrap();
            p.sort();
            p.into_iter().map(|(c, t)| format!("{c}:{t}")).collect::<Vec<_>>()
        }
    };
    assert_eq!(peers("email", "alice").await, ["email:alice", "name:alice-name", "pan:card"]);
    assert_eq!(peers("email", "bob").await, ["email:bob", "name:bob-name", "pan:card"]);
    assert_eq!(
        peers("pan", "card").await,
        ["email:alice", "email:bob", "name:alice-name", "name:bob-name", "pan:card"]
    );
    assert!(peers("name", "nobody").await.is_empty(), "no subject, no peers");
    assert!(peers("email", "unknown").await.is_empty());
    // Erased: alice's links are gone, so are her peers.
    store.erase_subject(&[1; 32], 3).await.unwrap();
    assert!(peers("email", "alice").await.is_empty());
    assert_eq!(peers("pan", "card").await, ["email:bob", "name:bob-name", "pan:card"]);
}

async fn durable_across_reopen(backend: Backend) {
    let place = Place::new(backend).await;
    let a = rec("email", "tokA", 5);
    {
        let store = place.open().await;
        store.insert(vec![a.clone()]).await.unwrap();
    }
    let store = place.open().await;
    assert_eq!(store.find_by_values(&[("email".into(), [5; 32])]).await.unwrap(), vec![Some(a)]);
}

/// Two stores on one database (two replicas): the same values inserted concurrently through both, in
/// opposite orders and batches (the case that deadlocks without ordered inserts): one token per value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_stores_on_one_database_agree() {
    let place = Place::new(Backend::Postgres).await;
    let (a, b) = (place.open().await, place.open().await);
    let mut tasks = Vec::new();
    for round in 0..20u8 {
        for (n, store) in [(0u8, a.clone()), (1u8, b.clone())] {
            tasks.push(tokio::spawn(async move {
                let mut batch: Vec<Record> =
                    (0..10u8).map(|v| rec("email", &format!("r{round}-s{n}-v{v}"), v)).collect();
                if n == 1 {
                    batch.reverse();
                }
                let out = store.insert(batch.clone()).await.unwrap();
                batch
                    .into_iter()
                    .zip(out)
                    .map(|(r, o)| match o {
                        Inserted::New => (r.value_fp[0], r.token),
                        Inserted::Existing(w) => (r.value_fp[0], w.token),
                        Inserted::TokenTaken => panic!("tokens are unique here"),
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut seen: std::collections::HashMap<u8, String> = std::collections::HashMap::new();
    for t in tasks {
        for (v, token) in t.await.unwrap() {
            let first = seen.entry(v).or_insert_with(|| token.clone());
            assert_eq!(*first, token, "value {v} got two tokens");
        }
    }
    assert_eq!(seen.len(), 10);
    for (v, token) in &seen {
        let found = b.find_by_values(&[("email".into(), [*v; 32])]).await.unwrap();
        assert_eq!(found[0].as_ref().map(|r| &r.token), Some(token));
    }
}

#[tokio::test]
async fn postgres_migrations_run_once_and_refuse_an_unknown_newer_schema() {
    let place = Place::new(Backend::Postgres).await;
    let first = place.open().await;
    first.insert(vec![rec("email", "kept", 1)]).await.unwrap();
    let again = place.open().await; // migrations already applied: nothing to do, data kept
    assert_eq!(
        again.find_by_tokens(&[("email".into(), "kept".into())]).await.unwrap()[0].as_ref().unwrap().token,
        "kept"
    );

    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&place.url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    match PostgresStore::open(&place.url, PostgresOptions::default()).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("9999"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

/// PostgreSQL's live counts are kept by triggers (migration 3): every kind of change keeps them equal to a full
/// count, and the migration counts what a vault held before it.
#[tokio::test]
async fn postgres_live_counts_follow_every_change_and_the_migration_counts_what_was_there() {
    use sqlx::Connection;
    let place = Place::new(Backend::Postgres).await;
    let store = place.open().await;
    let mut records: Vec<Record> = (0..30u8).map(|i| rec("email", &format!("e{i}"), i)).collect();
    records.extend((30..40u8).map(|i| rec("pan", &format!("p{i}"), i)));
    records[5].gone_at = Some(1);
    store.insert(records).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&place.url).await.unwrap();
    let full_count = "SELECT class, COUNT(*) FROM tokens WHERE gone_at IS NULL GROUP BY class ORDER BY class";
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
        let full: Vec<(String, i64)> = sqlx::query_as(full_count).fetch_all(&mut conn).await.unwrap();
        let full: Vec<(String, u64)> = full.into_iter().map(|(c, n)| (c, n as u64)).collect();
        assert_eq!(store.count_live().await.unwrap(), full, "after {change}");
    }
    let expected = vec![("email".to_string(), 27), ("iban".to_string(), 2)];
    assert_eq!(store.count_live().await.unwrap(), expected);
    drop(store);

    // A vault from before migration 3: its records are counted when the migration runs.
    for undo in [
        "DROP TABLE live_counts",
        "DROP TRIGGER live_counts_insert ON tokens",
        "DROP TRIGGER live_counts_update ON tokens",
        "DROP TRIGGER live_counts_delete ON tokens",
        "DROP FUNCTION live_counts_inserted",
        "DROP FUNCTION live_counts_changed",
        "DELETE FROM _sqlx_migrations WHERE version = 3",
    ] {
        sqlx::query(undo).execute(&mut conn).await.unwrap();
    }
    sqlx::query("UPDATE tokens SET gone_at = NULL WHERE token = 'p34'").execute(&mut conn).await.unwrap();
    let store = place.open().await;
    assert_eq!(store.count_live().await.unwrap(), [expected, vec![("pan".to_string(), 1)]].concat());
    store.insert(vec![rec("pan", "p-after", 99)]).await.unwrap();
    assert_eq!(store.count_live().await.unwrap().last(), Some(&("pan".to_string(), 2)));
}

#[tokio::test]
async fn postgres_unreachable_or_bad_url_is_an_error() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let opts = PostgresOptions { acquire_timeout: std::time::Duration::from_secs(2), ..PostgresOptions::default() };
    let url = format!("postgres://veil:secret-pass@127.0.0.1:{port}/veil");
    let err = PostgresStore::open(&url, opts.clone()).await.err().expect("no server there");
    assert!(matches!(err, StoreError::Unavailable(_)));
    assert!(!err.to_string().contains("secret-pass"), "error shows the password: {err}");
    let err = PostgresStore::open("postgres://[::1", opts).await.err().expect("bad url");
    assert!(matches!(err, StoreError::Unavailable(_)));
}

/// `cargo nextest run --run-ignored only -E 'test(bench_inserts)' --no-capture`: 10 000 single-record inserts
/// from 64 concurrent tasks, per backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_inserts() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let place = Place::new(backend).await;
        let (store, commits) = place.open_counted().await;
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        println!("{backend:?}: 10000 inserts in {secs:.3}s = {:.0}/s, {} commits", 10_000.0 / secs, commits());
    }
}
