//! Migration V7 on a database written by the schema before it (V6): rows with no fingerprint version read as
//! legacy, count as the oldest version's, and are found by the rewrap pass; links keep their first subject.

use super::*;

#[tokio::test]
async fn a_version_6_database_is_migrated_and_its_rows_read_as_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v6.db", dir.path().display());
    {
        let mut conn = database_at_version(&url, 6).await;
        for old in [
            "INSERT INTO tokens (class, token, value_fp, key_version, sealed, created_at, last_used_at)
             VALUES ('email', 'old', zeroblob(32), 1, X'01', 5, 6)",
            "INSERT INTO subject_tokens (subject_fp, class, token) VALUES (X'07', 'email', 'old')",
            "INSERT INTO volatile (bind_fp, key_version, sealed, expires_at, uses_left)
             VALUES (X'08', 1, X'01', 9999999999, 1)",
        ] {
            sqlx::query(old).execute(&mut conn).await.unwrap();
        }
    }
    let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
    let old = store.find_by_tokens(&[("email".into(), "old".into())]).await.unwrap().remove(0).unwrap();
    assert_eq!((old.fp_version, old.key_version, old.created_at, old.value_fp), (None, 1, 5, [0; 32]));
    let legacy = KeyUsage { sealed: 1, fingerprints: 1, links: 1, unsealed_subjects: 1, subjects: 0, volatiles: 1 };
    assert_eq!(store.key_usage(1, true).await.unwrap(), legacy);
    assert!(store.key_usage(1, false).await.unwrap().links == 0, "legacy links are the oldest version's only");
    assert_eq!(store.fp_versions(1).await.unwrap(), Some(vec![0, 1]));
    assert_eq!(store.stale_before(1, None, 10).await.unwrap(), vec![old.clone()], "legacy rows need the pass");
    assert_eq!(store.count_stale_before(1).await.unwrap(), Some(1));
    let first: Option<Vec<u8>> = sqlx::query_scalar("SELECT first_subject FROM tokens WHERE token = 'old'")
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert_eq!(first, Some(vec![7]), "the V4 link bookkeeping is kept");
    let version: i64 =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&store.read).await.unwrap();
    assert_eq!(version, super::schema::MIGRATIONS.len() as i64, "every migration applied");
}

/// A rewrap page walks the primary key from its cursor: no sort of the whole table per page.
#[tokio::test]
async fn the_rewrap_page_walks_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db", dir.path().display());
    let store = SqliteStore::open(&url, SqliteOptions::default()).await.unwrap();
    let plan = query_plan(
        &store.read,
        &format!(
            "SELECT {COLUMNS} FROM tokens WHERE gone_at IS NULL AND (key_version < ?1 OR fp_version IS NULL \
             OR fp_version < ?1) AND (class, token) > (?2, ?3) ORDER BY class, token LIMIT ?4"
        ),
        4,
    )
    .await;
    assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "no sort of the whole table per page: {plan:?}");
}
