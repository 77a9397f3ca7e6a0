//! Subject links found by token (migration V4): `tokens.first_subject` and `shared_links`, kept by triggers,
//! always name exactly the subjects `subject_tokens` links a token to; erasure and purge read them by key.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;

use super::*;

fn rec(token: &str, fp: u8, last_used_at: i64) -> Record {
    Record {
        class: "email".into(),
        token: token.into(),
        value_fp: [fp; 32],
        fp_version: None,
        key_version: 1,
        sealed: vec![fp],
        created_at: 0,
        last_used_at,
        gone_at: None,
    }
}

async fn open(dir: &std::path::Path) -> (SqliteStore, String) {
    let url = format!("sqlite://{}/v.db", dir.display());
    (SqliteStore::open(&url, SqliteOptions::default()).await.unwrap(), url)
}

/// Per token, the subjects `subject_tokens` links it to, and the subjects the bookkeeping names; both must agree
/// and the first subject must not be among the shared ones.
async fn links_by_token(
    conn: &mut SqliteConnection,
) -> (BTreeMap<String, BTreeSet<Vec<u8>>>, BTreeMap<String, BTreeSet<Vec<u8>>>) {
    let mut linked: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for row in sqlx::query("SELECT token, subject_fp FROM subject_tokens").fetch_all(&mut *conn).await.unwrap() {
        linked.entry(row.get("token")).or_default().insert(row.get("subject_fp"));
    }
    let mut kept: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let firsts = sqlx::query("SELECT token, first_subject FROM tokens WHERE first_subject IS NOT NULL");
    for row in firsts.fetch_all(&mut *conn).await.unwrap() {
        kept.entry(row.get("token")).or_default().insert(row.get("first_subject"));
    }
    for row in sqlx::query("SELECT token, subject_fp FROM shared_links").fetch_all(&mut *conn).await.unwrap() {
        assert!(kept.entry(row.get("token")).or_default().insert(row.get("subject_fp")), "first subject also shared");
    }
    (linked, kept)
}

/// Random links, erasures and purges against a model of who links what: erasure reports a token erased exactly
/// when no other subject holds it, purge takes every link of what it purged, and the bookkeeping matches
/// `subject_tokens` after every step.
#[tokio::test]
async fn the_links_by_token_follow_every_link_erasure_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = open(dir.path()).await;
    let mut tokens: Vec<String> = (0..24).map(|i| format!("t{i}")).collect();
    store.insert(tokens.iter().enumerate().map(|(i, t)| rec(t, i as u8, i as i64)).collect()).await.unwrap();
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    // The model: subject -> tokens it links; tokens purged or erased.
    let mut model: BTreeMap<u8, BTreeSet<String>> = BTreeMap::new();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let (mut erased_some, mut kept_some, mut purged_shared) = (false, false, false);
    for step in 0..600i64 {
        let subject: u8 = rng.gen_range(0..6);
        match rng.gen_range(0..20) {
            0 | 1 => {
                let erased = store.erase_subject(&[subject; 32], 10_000 + step).await.unwrap();
                let mine = model.remove(&subject).unwrap_or_default();
                let got: BTreeSet<String> = erased.iter().map(|e| e.token.clone()).collect();
                assert_eq!(got, mine, "step {step}: the subject's tokens");
                for e in erased {
                    let shared = model.values().any(|ts| ts.contains(&e.token));
                    assert_eq!(e.erased, !shared, "step {step}: {} erased iff no other subject holds it", e.token);
                    (erased_some, kept_some) = (erased_some || e.erased, kept_some || shared);
                    if e.erased {
                        gone.insert(e.token);
                    }
                }
            }
            2 => {
                // Records not used (inserted, or linked) in the last few steps.
                let cutoff = step - rng.gen_range(5..60);
                let due: Vec<String> =
                    sqlx::query_scalar("SELECT token FROM tokens WHERE last_used_at < ? AND gone_at IS NULL")
                        .bind(cutoff)
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                assert_eq!(store.purge("email", cutoff, 10_000 + step, usize::MAX).await.unwrap(), due.len() as u64);
                purged_shared |= due.iter().any(|t| model.values().filter(|ts| ts.contains(t)).count() > 1);
                for ts in model.values_mut() {
                    ts.retain(|t| !due.contains(t));
                }
                gone.extend(due);
            }
            3..=5 => {
                // A new record, linked as it goes in (its row names the subject) or not linked.
                let token = format!("t{}", tokens.len());
                let record = rec(&token, tokens.len() as u8, step);
                let subject = rng.gen_bool(0.5).then_some([subject; 32]);
                let w = Write { records: vec![record], touch: Vec::new(), subject, now: step, ..Write::default() };
                assert_eq!(store.write(w).await.unwrap(), vec![Inserted::New]);
                if let Some(s) = subject {
                    model.entry(s[0]).or_default().insert(token.clone());
                }
                tokens.push(token);
            }
            _ => {
                let live: Vec<&String> = tokens.iter().filter(|t| !gone.contains(*t)).collect();
                if live.is_empty() {
                    continue;
                }
                let n = rng.gen_range(1..5);
                let touch: Vec<(String, String)> =
                    (0..n).map(|_| ("email".to_string(), live[rng.gen_range(0..live.len())].clone())).collect();
                model.entry(subject).or_default().extend(touch.iter().map(|(_, t)| t.clone()));
                // Marked used now: a purge's cutoff passes them some steps later.
                store
                    .write(Write {
                        records: Vec::new(),
                        touch,
                        subject: Some([subject; 32]),
                        now: step,
                        ..Write::default()
                    })
                    .await
                    .unwrap();
            }
        }
        model.retain(|_, ts| !ts.is_empty());
        let (linked, kept) = links_by_token(&mut conn).await;
        assert_eq!(linked, kept, "step {step}: the bookkeeping names every link, no more");
        let mut expected: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for (s, ts) in &model {
            for t in ts {
                expected.entry(t.clone()).or_default().insert(vec![*s; 32]);
            }
        }
        assert_eq!(linked, expected, "step {step}: the links are the model's");
    }
    assert!(erased_some && kept_some, "erasures both erased tokens and kept shared ones");
    assert!(purged_shared, "a purge took a token several subjects linked");
}

/// A version-3 database's links, shared and not, are brought into the bookkeeping by the migration.
#[tokio::test]
async fn a_version_3_databases_links_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db", dir.path().display());
    {
        let mut conn = database_at_version(&url, 3).await;
        for (i, t) in ["a", "b", "c"].iter().enumerate() {
            sqlx::query(
                "INSERT INTO tokens (class, token, value_fp, key_version, sealed, created_at, last_used_at)
                 VALUES ('email', ?, ?, 1, X'01', 0, 0)",
            )
            .bind(t)
            .bind(&[i as u8; 32][..])
            .execute(&mut conn)
            .await
            .unwrap();
        }
        // a: one subject; b: three; c: none.
        for (s, t) in [(1u8, "a"), (1, "b"), (2, "b"), (3, "b")] {
            sqlx::query("INSERT INTO subject_tokens (subject_fp, class, token) VALUES (?, 'email', ?)")
                .bind(&[s; 32][..])
                .bind(t)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    let (store, _) = open(dir.path()).await;
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let (linked, kept) = links_by_token(&mut conn).await;
    assert_eq!(linked, kept);
    assert_eq!(kept["b"].len(), 3);
    let erased = store.erase_subject(&[2; 32], 5).await.unwrap();
    assert_eq!(erased, vec![Erased { class: "email".into(), token: "b".into(), erased: false }]);
    let erased = store.erase_subject(&[1; 32], 5).await.unwrap();
    assert_eq!(erased.iter().map(|e| (e.token.as_str(), e.erased)).collect::<Vec<_>>(), [("a", true), ("b", false)]);
    assert!(store.erase_subject(&[3; 32], 5).await.unwrap()[0].erased, "b's last subject erases it");
    let (linked, kept) = links_by_token(&mut conn).await;
    assert!(linked.is_empty() && kept.is_empty(), "{linked:?} {kept:?}");
}

/// Erasure's shared check and purge's unlinking seek by key: no statement scans a table (there is no index
/// over every link by token any more).
#[tokio::test]
async fn erasure_and_purge_find_links_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let shared = format!("SELECT s.class, s.token, {SHARED} FROM subject_tokens s WHERE s.subject_fp = ?");
    for (sql, params) in [(shared.as_str(), 1), (UNLINK_TOKEN, 2)] {
        let plan = query_plan(&store.read, sql, params).await;
        assert!(plan.iter().any(|d| d.starts_with("SEARCH")), "{sql}: {plan:?}");
        assert!(!plan.iter().any(|d| d.starts_with("SCAN")), "{sql}: {plan:?}");
    }
}
