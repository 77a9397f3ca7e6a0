//! The `Store` methods of key rotation, held against both backends: the list of fingerprint versions (and the
//! refusal of rows under a superseded one), the rewrap pass's pages and conditional updates, subject moves,
//! CVCs of older versions, and what still depends on a version; plus PostgreSQL's migration of a database
//! written before rows named their fingerprint version (SQLite's is a unit test beside its schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::pg::Backend;
use veil::store::postgres::{PostgresOptions, PostgresStore};
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::{
    Inserted, KeyUsage, Record, Resealed, SealedId, Store, StoreError, SubjectMove, SubjectRow, Volatile, Write,
};

common::pg::on_both_stores!(
    versions_are_listed_and_rows_under_a_superseded_one_refused,
    stale_rows_come_in_pages_and_move_only_if_unchanged,
    subjects_move_with_their_links_and_sealed_ids,
    usage_counts_what_depends_on_a_version_and_unlisting_waits_for_none,
    a_purge_takes_the_sealed_id_of_a_subject_left_without_tokens,
);

fn rec(token: &str, fp: u8, fp_version: Option<u32>, key_version: u32) -> Record {
    Record {
        class: "email".into(),
        token: token.into(),
        value_fp: [fp; 32],
        fp_version,
        key_version,
        sealed: vec![fp, 1, 2, 3],
        created_at: 1,
        last_used_at: 1,
        gone_at: None,
    }
}

fn volatile(fp: u8, fp_version: Option<u32>) -> Volatile {
    Volatile { bind_fp: [fp; 32], fp_version, key_version: 1, sealed: vec![1, 2], expires_at: i64::MAX, uses: 1 }
}

fn id(fp: u8, version: u32) -> SubjectRow {
    SubjectRow { subject_fp: [fp; 32], fp_version: version, id: SealedId { key_version: version, sealed: vec![fp, 9] } }
}

async fn open(backend: Backend) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = backend.store_url(dir.path()).await;
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open(&url, SqliteOptions::default()).await.unwrap()),
        Backend::Postgres => Arc::new(PostgresStore::open(&url, PostgresOptions::default()).await.unwrap()),
    };
    (dir, store)
}

fn moved(r: &Record, fp: u8, version: u32) -> Resealed {
    Resealed {
        class: r.class.clone(),
        token: r.token.clone(),
        from_version: r.key_version,
        from_fp_version: r.fp_version,
        key_version: version,
        value_fp: [fp; 32],
        fp_version: version,
        sealed: vec![fp, 7],
    }
}

async fn versions_are_listed_and_rows_under_a_superseded_one_refused(backend: Backend) {
    let (_dir, store) = open(backend).await;
    assert_eq!(store.fp_versions(1).await.unwrap(), Some(vec![0, 1]), "legacy (0) is listed until moved");
    assert_eq!(store.insert(vec![rec("a", 1, Some(1), 1)]).await.unwrap(), vec![Inserted::New]);
    store.put_volatile(vec![volatile(1, Some(1))]).await.unwrap();
    // A vault on the rotated keyring lists version 2: one still on version 1 is refused new rows (fails closed).
    assert_eq!(store.fp_versions(2).await.unwrap(), Some(vec![0, 1, 2]));
    let err = store.insert(vec![rec("b", 2, Some(1), 1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("superseded")), "{err:?}");
    assert!(store.put_volatile(vec![volatile(2, Some(1))]).await.is_err());
    assert_eq!(store.find_by_tokens(&[("email".into(), "b".into())]).await.unwrap(), vec![None], "nothing kept");
    assert_eq!(store.insert(vec![rec("b", 2, Some(2), 2)]).await.unwrap(), vec![Inserted::New]);
    // Versions below 2 stay listed while a record or CVC is under one.
    assert!(!store.unlist_fp_versions_below(2).await.unwrap());
    let a = store.find_by_tokens(&[("email".into(), "a".into())]).await.unwrap().remove(0).unwrap();
    assert_eq!(store.reseal(&[moved(&a, 3, 2)]).await.unwrap(), 1);
    assert!(!store.unlist_fp_versions_below(2).await.unwrap(), "the CVC under version 1");
    assert_eq!(store.drop_volatile_before(2).await.unwrap(), 1);
    assert!(store.unlist_fp_versions_below(2).await.unwrap());
    assert_eq!(store.fp_versions(2).await.unwrap(), Some(vec![2]));
}

async fn stale_rows_come_in_pages_and_move_only_if_unchanged(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let mut gone = rec("e", 5, None, 1);
    gone.gone_at = Some(1);
    let rows =
        vec![rec("a", 1, None, 1), rec("b", 2, Some(1), 1), rec("c", 3, Some(2), 2), rec("d", 4, Some(1), 1), gone];
    store.insert(rows).await.unwrap();
    assert_eq!(store.count_stale_before(2).await.unwrap(), Some(3), "legacy and version 1, live ones");
    let page = store.stale_before(2, None, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.token.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(page[0].fp_version, None);
    let rest = store.stale_before(2, Some(&("email".into(), "b".into())), 10).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.token.as_str()).collect::<Vec<_>>(), ["d"]);

    // Moved only if still under the versions read: a second move of the same read changes nothing.
    assert_eq!(store.reseal(&[moved(&page[0], 11, 2), moved(&page[1], 12, 2)]).await.unwrap(), 2);
    assert_eq!(store.reseal(&[moved(&page[0], 21, 2)]).await.unwrap(), 0);
    let a = store.find_by_values(&[("email".into(), [11; 32])]).await.unwrap().remove(0).unwrap();
    assert_eq!((a.token.as_str(), a.fp_version, a.key_version, a.sealed.clone()), ("a", Some(2), 2, vec![11, 7]));
    assert_eq!(store.find_by_values(&[("email".into(), [1; 32])]).await.unwrap(), vec![None], "old fp gone");
    // A new fingerprint another row holds (a value with two tokens): left alone, not an error.
    assert_eq!(store.reseal(&[moved(&rest[0], 3, 2)]).await.unwrap(), 0);
    assert_eq!(store.count_stale_before(2).await.unwrap(), Some(1));
}

async fn subjects_move_with_their_links_and_sealed_ids(backend: Backend) {
    let (_dir, store) = open(backend).await;
    // Subject 1 under version 1 (sealed id kept); subject 3 a legacy one (no sealed id), sharing token "b".
    let w = Write {
        records: vec![rec("a", 1, Some(1), 1), rec("b", 2, Some(1), 1)],
        subject: Some([1; 32]),
        subject_version: Some(1),
        subject_sealed: Some(id(1, 1).id),
        now: 5,
        ..Write::default()
    };
    store.write(w).await.unwrap();
    let legacy =
        Write { touch: vec![("email".into(), "b".into())], subject: Some([3; 32]), now: 5, ..Write::default() };
    store.write(legacy).await.unwrap();
    assert_eq!(store.subjects_after(None, 10).await.unwrap(), vec![id(1, 1)], "one sealed id per subject");
    let usage = store.key_usage(1, true).await.unwrap();
    assert_eq!((usage.links, usage.unsealed_subjects, usage.subjects), (3, 1, 1), "{usage:?}");

    // Subject 1 moves to its version-2 fingerprint (9); subject 3, named by the shop, to 8.
    let moves = [
        SubjectMove { from: vec![[1; 32]], to: id(9, 2) },
        SubjectMove { from: vec![[3; 32], [4; 32]], to: id(8, 2) },
        SubjectMove { from: vec![[5; 32]], to: id(7, 2) }, // an id the store never saw
    ];
    assert_eq!(store.move_subjects(&moves).await.unwrap(), 3);
    let tokens = |s: u8| {
        let store = store.clone();
        async move { store.subject_records(&[s; 32]).await.unwrap().into_iter().map(|r| r.token).collect::<Vec<_>>() }
    };
    assert_eq!(tokens(9).await, ["a", "b"]);
    assert_eq!(tokens(8).await, ["b"]);
    assert!(tokens(1).await.is_empty() && tokens(3).await.is_empty());
    assert_eq!(store.subjects_after(None, 10).await.unwrap(), vec![id(8, 2), id(9, 2)], "none kept without a link");
    let usage = store.key_usage(1, true).await.unwrap();
    assert_eq!((usage.links, usage.unsealed_subjects, usage.subjects), (0, 0, 0), "{usage:?}");
    // Moved links keep sharing: erasing subject 9 keeps "b" (subject 8 holds it) and drops 9's sealed id.
    let erased = store.erase_subject(&[9; 32], 6).await.unwrap();
    assert_eq!(erased.iter().map(|e| (e.token.as_str(), e.erased)).collect::<Vec<_>>(), [("a", true), ("b", false)]);
    assert_eq!(store.subjects_after(None, 10).await.unwrap(), vec![id(8, 2)]);
    // A second move of the same subject is a no-op.
    assert_eq!(store.move_subjects(&moves[1..2]).await.unwrap(), 0);
    assert_eq!(tokens(8).await, ["b"]);
}

async fn usage_counts_what_depends_on_a_version_and_unlisting_waits_for_none(backend: Backend) {
    let (_dir, store) = open(backend).await;
    store.fp_versions(1).await.unwrap();
    let w = Write {
        records: vec![rec("a", 1, None, 1), rec("b", 2, Some(1), 1)],
        subject: Some([1; 32]),
        now: 5,
        ..Write::default()
    };
    store.write(w).await.unwrap();
    store.put_volatile(vec![volatile(1, None)]).await.unwrap();
    store.fp_versions(2).await.unwrap();
    store.insert(vec![rec("c", 3, Some(2), 2)]).await.unwrap();
    let one = KeyUsage { sealed: 2, fingerprints: 2, links: 2, unsealed_subjects: 1, subjects: 0, volatiles: 1 };
    assert_eq!(store.key_usage(1, true).await.unwrap(), one);
    // Not the oldest: legacy rows are not its.
    let not_oldest = KeyUsage { fingerprints: 1, links: 0, unsealed_subjects: 0, volatiles: 1, ..one };
    assert_eq!(store.key_usage(1, false).await.unwrap(), not_oldest);
    assert_eq!(store.unlist_fp_version(1, true).await.unwrap(), one, "refused: nothing unlisted");
    assert_eq!(store.fp_versions(2).await.unwrap(), Some(vec![0, 1, 2]));
    let two = store.key_usage(2, false).await.unwrap();
    assert_eq!((two.sealed, two.fingerprints), (1, 1));

    for r in store.stale_before(2, None, 10).await.unwrap() {
        let fp = r.value_fp[0] + 100;
        store.reseal(&[moved(&r, fp, 2)]).await.unwrap();
    }
    store.move_subjects(&[SubjectMove { from: vec![[1; 32]], to: id(9, 2) }]).await.unwrap();
    store.drop_volatile_before(2).await.unwrap();
    assert!(store.unlist_fp_version(1, true).await.unwrap().is_unused());
    assert_eq!(store.fp_versions(2).await.unwrap(), Some(vec![2]));
}

async fn a_purge_takes_the_sealed_id_of_a_subject_left_without_tokens(backend: Backend) {
    let (_dir, store) = open(backend).await;
    for (subject, token, fp) in [(1u8, "a", 1u8), (2, "b", 2), (2, "c", 3)] {
        let mut r = rec(token, fp, Some(1), 1);
        r.last_used_at = if token == "c" { 100 } else { 10 };
        let w = Write {
            records: vec![r],
            subject: Some([subject; 32]),
            subject_version: Some(1),
            subject_sealed: Some(id(subject, 1).id),
            now: 10,
            ..Write::default()
        };
        store.write(w).await.unwrap();
    }
    assert_eq!(store.subjects_after(None, 10).await.unwrap(), vec![id(1, 1), id(2, 1)]);
    // "a" and "b" expire: subject 1 has nothing left, subject 2 still has "c".
    assert_eq!(store.purge("email", 50, 60, 100).await.unwrap(), 2);
    assert_eq!(store.subjects_after(None, 10).await.unwrap(), vec![id(2, 1)]);
}

/// A PostgreSQL database as migrations 1–5 left it (rows with no fingerprint version, links with no sealed id, a
/// CVC) is migrated: its rows read as legacy, count as the oldest version's, and the pass finds them.
#[tokio::test]
async fn postgres_a_database_from_before_fingerprint_versions_is_migrated() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = Backend::Postgres.store_url(dir.path()).await;
    drop(PostgresStore::open(&url, PostgresOptions::default()).await.unwrap());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for undo in [
        "DROP TRIGGER fp_version_tokens ON tokens",
        "DROP TRIGGER fp_version_volatile ON volatile",
        "DROP FUNCTION fp_version_current",
        "DROP TABLE fp_versions",
        "DROP TABLE subjects",
        "ALTER TABLE tokens DROP COLUMN fp_version",
        "ALTER TABLE subject_tokens DROP COLUMN fp_version",
        "ALTER TABLE volatile DROP COLUMN fp_version",
        "DELETE FROM _sqlx_migrations WHERE version = 6",
    ] {
        sqlx::query(undo).execute(&mut conn).await.unwrap();
    }
    for old in [
        "INSERT INTO tokens (class, token, value_fp, key_version, sealed, created_at, last_used_at)
         VALUES ('email', 'old', decode(repeat('03', 32), 'hex'), 1, '\\x01', 5, 6)",
        "INSERT INTO subject_tokens (subject_fp, class, token) VALUES (decode(repeat('07', 32), 'hex'), 'email', 'old')",
        "INSERT INTO volatile (bind_fp, key_version, sealed, expires_at, uses_left)
         VALUES (decode(repeat('08', 32), 'hex'), 1, '\\x01', 9999999999, 1)",
    ] {
        sqlx::query(old).execute(&mut conn).await.unwrap();
    }
    let store = PostgresStore::open(&url, PostgresOptions::default()).await.unwrap();
    let old = store.find_by_tokens(&[("email".into(), "old".into())]).await.unwrap().remove(0).unwrap();
    assert_eq!((old.fp_version, old.key_version, old.created_at), (None, 1, 5));
    let legacy = KeyUsage { sealed: 1, fingerprints: 1, links: 1, unsealed_subjects: 1, subjects: 0, volatiles: 1 };
    assert_eq!(store.key_usage(1, true).await.unwrap(), legacy);
    assert_eq!(store.fp_versions(1).await.unwrap(), Some(vec![0, 1]));
    assert_eq!(store.stale_before(1, None, 10).await.unwrap(), vec![old], "legacy rows need the pass");
    assert_eq!(store.subject_records(&[7; 32]).await.unwrap().len(), 1);
}
