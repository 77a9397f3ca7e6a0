//! A vault written by the store before the write-path redesign (schema V6, as main wrote it: records inserted
//! with their first subject in the row, links through `subject_tokens` and its triggers, tombstones, volatile
//! secrets, an audit head) opens with this code: every record is found by value and by token, counted, exported,
//! erasable and purgeable, and new records go in beside the old ones.

use std::collections::BTreeMap;

use sqlx::Row;

use super::*;

const CLASSES: [&str; 3] = ["email", "pan", "iban"];

fn fp(class: usize, i: usize) -> Fingerprint {
    let mut fp = [0u8; 32];
    fp[0] = class as u8;
    fp[1..9].copy_from_slice(&(i as u64).to_be_bytes());
    fp
}

fn token(class: usize, i: usize) -> String {
    format!("{}-{i:04}", CLASSES[class])
}

fn subject(i: usize) -> Fingerprint {
    [100 + (i % 7) as u8; 32]
}

/// What main's store did for a group commit, statement for statement (batch.rs at schema V6).
async fn write_like_v6(conn: &mut SqliteConnection, class: usize, i: usize, last_used_at: i64) {
    let s = subject(i);
    sqlx::query(
        "INSERT INTO tokens (class, token, value_fp, key_version, sealed, created_at, last_used_at, gone_at,
         first_subject) VALUES (?, ?, ?, 1, ?, 1000, ?, NULL, ?) ON CONFLICT DO NOTHING",
    )
    .bind(CLASSES[class])
    .bind(token(class, i))
    .bind(&fp(class, i)[..])
    .bind(vec![class as u8, i as u8, 7, 7])
    .bind(last_used_at)
    .bind(&s[..])
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO subject_tokens (subject_fp, class, token) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .bind(&s[..])
        .bind(CLASSES[class])
        .bind(token(class, i))
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_version_6_vault_is_found_counted_erasable_and_purgeable_after_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db", dir.path().display());
    const N: usize = 300;
    {
        let mut conn = database_at_version(&url, 6).await;
        for class in 0..CLASSES.len() {
            for i in 0..N {
                // Every tenth record last used long ago (purgeable at cutoff 500), the others recently.
                write_like_v6(&mut conn, class, i, if i % 10 == 0 { 100 } else { 2000 }).await;
            }
        }
        // email-0001 is shared: a second subject links it (the trigger records it in shared_links).
        sqlx::query("INSERT INTO subject_tokens (subject_fp, class, token) VALUES (?, 'email', ?)")
            .bind(&[9u8; 32][..])
            .bind(token(0, 1))
            .execute(&mut conn)
            .await
            .unwrap();
        // pan-0002 was erased before: a tombstone, its links gone.
        sqlx::query("UPDATE tokens SET sealed = X'', value_fp = ?, gone_at = 1500 WHERE class = 'pan' AND token = ?")
            .bind(&[0xEE; 32][..])
            .bind(token(1, 2))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("DELETE FROM subject_tokens WHERE class = 'pan' AND token = ?")
            .bind(token(1, 2))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO audit_heads (log_id, seq, hash, updated_at) VALUES ('main', 41, 'abc', 1)")
            .execute(&mut conn)
            .await
            .unwrap();
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'tokens_by_last_use'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(indexes.len(), 1, "the version 6 schema is main's");
    }

    let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
    let version: i64 =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&store.read).await.unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);

    // Found by value and by token, each the record written.
    for (class, name) in CLASSES.iter().enumerate() {
        let values: Vec<(String, Fingerprint)> = (0..N).map(|i| (name.to_string(), fp(class, i))).collect();
        let tokens: Vec<(String, String)> = (0..N).map(|i| (name.to_string(), token(class, i))).collect();
        let by_value = store.find_by_values(&values).await.unwrap();
        let by_token = store.find_by_tokens(&tokens).await.unwrap();
        let (both_v, both_t) = store.find_by_values_and_tokens(&values, &tokens).await.unwrap();
        for i in 0..N {
            let tombstone = class == 1 && i == 2;
            let rec = by_token[i].as_ref().unwrap();
            assert_eq!(rec.gone_at.is_some(), tombstone);
            assert_eq!(by_value[i].is_some(), !tombstone, "{}", token(class, i));
            if let Some(v) = &by_value[i] {
                assert_eq!(
                    (v.token.as_str(), v.sealed.as_slice()),
                    (token(class, i).as_str(), &[class as u8, i as u8, 7, 7][..])
                );
            }
            assert_eq!((&both_v[i], &both_t[i]), (&by_value[i], &by_token[i]));
        }
    }
    // Counted: every live record, per class.
    let live =
        |email: u64, iban: u64, pan: u64| vec![("email".into(), email), ("iban".into(), iban), ("pan".into(), pan)];
    let n = N as u64;
    assert_eq!(store.count_live().await.unwrap(), live(n, n, n - 1));
    assert_eq!(store.audit_head("main").await.unwrap(), Some(AuditHead { seq: 41, hash: "abc".into() }));

    // Exported and erased per subject; the shared record stays for its other subject.
    let s1 = subject(1);
    let held: Vec<String> = store.subject_records(&s1).await.unwrap().into_iter().map(|r| r.token).collect();
    let mut expected: Vec<String> =
        (0..CLASSES.len()).flat_map(|c| (0..N).filter(|i| i % 7 == 1).map(move |i| token(c, i))).collect();
    expected.sort();
    assert_eq!(held, expected);
    let erased = store.erase_subject(&s1, 3000).await.unwrap();
    assert_eq!(erased.len(), expected.len());
    let kept: Vec<&Erased> = erased.iter().filter(|e| !e.erased).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].class.as_str(), kept[0].token.clone()), ("email", token(0, 1)));
    let per_class = expected.len() as u64 / 3;
    assert_eq!(store.count_live().await.unwrap(), live(n - per_class + 1, n - per_class, n - 1 - per_class));
    let gone = store.find_by_tokens(&[("iban".into(), token(2, 8))]).await.unwrap().remove(0).unwrap();
    assert!(gone.gone_at.is_some() && gone.sealed.is_empty());
    assert_eq!(store.find_by_values(&[("iban".into(), fp(2, 8))]).await.unwrap(), vec![None]);

    // Purged by last use, in pages, without the old index; links of purged records dropped.
    let expired_live = |class: usize| (0..N).filter(|i| i % 10 == 0 && i % 7 != 1 && !(class == 1 && *i == 2)).count();
    assert_eq!(store.count_expired("email", 500).await.unwrap(), Some(expired_live(0) as u64));
    let mut purged = 0;
    loop {
        let page = store.purge("email", 500, 3100, 7).await.unwrap();
        purged += page;
        if page < 7 {
            break;
        }
    }
    assert_eq!(purged, expired_live(0) as u64);
    assert_eq!(store.count_expired("email", 500).await.unwrap(), Some(0));
    let links: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM subject_tokens s JOIN tokens t USING (class, token) WHERE t.gone_at IS NOT NULL",
    )
    .fetch_one(&store.read)
    .await
    .unwrap();
    assert_eq!(links, 0, "a tombstone keeps no link");

    // New records go in beside the old ones and are counted; an old value keeps its token.
    let old = Record {
        class: "iban".into(),
        token: "iban-new".into(),
        value_fp: fp(2, 5),
        key_version: 2,
        sealed: vec![1],
        created_at: 4000,
        last_used_at: 4000,
        gone_at: None,
        fp_version: None,
    };
    let new = Record { token: "iban-9999".into(), value_fp: fp(2, 9999), ..old.clone() };
    let out = store.insert(vec![old, new]).await.unwrap();
    assert!(matches!(&out[0], Inserted::Existing(r) if r.token == token(2, 5)), "{out:?}");
    assert_eq!(out[1], Inserted::New);
    let counts: BTreeMap<String, u64> = store.count_live().await.unwrap().into_iter().collect();
    assert_eq!(counts["iban"], n - per_class + 1);
    let full: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE class = 'iban' AND gone_at IS NULL")
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert_eq!(full as u64, counts["iban"]);
    let index: Option<String> = sqlx::query("SELECT name FROM sqlite_master WHERE name = 'tokens_by_last_use'")
        .fetch_optional(&store.read)
        .await
        .unwrap()
        .map(|r| r.get("name"));
    assert_eq!(index, None);
}
