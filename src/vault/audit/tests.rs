//! The audit log against a real store: chain continued across reopen, torn tails, every way of losing lines
//! detected at open, restarts, two writers on one file, an unwritable log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use super::*;
use crate::store::sqlite::{SqliteOptions, SqliteStore};

fn event(n: usize) -> Event {
    Event {
        caller: "payments".into(),
        op: "detokenize",
        outcome: "ok",
        purpose: Some("payment".into()),
        items: vec![Item { class: "pan".into(), token_fp: format!("{n:032x}"), result: "ok".into() }],
        ..Event::default()
    }
}

fn signer() -> AuditSigner {
    AuditSigner::from_seed(&[9u8; 32])
}

fn setup(path: &Path, new_chain: bool) -> AuditSetup {
    AuditSetup { path: path.to_path_buf(), log_id: "test-log".into(), signer: signer(), new_chain, sequence: None }
}

async fn store(dir: &Path) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.join("vault.db").display());
    Arc::new(SqliteStore::open(&url, SqliteOptions::default()).await.unwrap())
}

async fn open(path: &Path, store: &Arc<dyn Store>, new_chain: bool) -> Result<AuditLog, AuditError> {
    AuditLog::open(setup(path, new_chain), store.clone(), Fingerprinter::new(&[1; 32]), 1_700_000_000).await
}

async fn write_log(path: &Path, store: &Arc<dyn Store>, n: usize) {
    let log = open(path, store, false).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { log.append(event(i), 1_700_000_000).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

async fn check(path: &Path, store: &Arc<dyn Store>) -> Verdict {
    verify_log(path, &signer().verifier(), "test-log", &**store).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_verifies_and_continues_across_reopen_and_the_head_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    write_log(&path, &store, 20).await;
    write_log(&path, &store, 5).await;
    // chain_start + 25 events
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 26, unacknowledged: 0, .. }));
    assert_eq!(store.audit_head("test-log").await.unwrap().unwrap().seq, 26);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "owner only");
    let other = AuditSigner::from_seed(&[8u8; 32]).verifier();
    assert!(matches!(verify_log(&path, &other, "test-log", &*store).await.unwrap(), Verdict::Broken { line: 1, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_rollback_emptying_and_deletion_refuse_the_open_and_a_new_chain_records_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    write_log(&path, &store, 2).await;
    let older = std::fs::read_to_string(&path).unwrap();
    write_log(&path, &store, 4).await;
    let full = std::fs::read_to_string(&path).unwrap();
    let cut: String = full.lines().take(3).map(|l| format!("{l}\n")).collect();
    for (what, text) in
        [("truncated", Some(cut)), ("rolled back", Some(older)), ("emptied", Some(String::new())), ("deleted", None)]
    {
        match &text {
            Some(t) => std::fs::write(&path, t).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        assert!(matches!(check(&path, &store).await, Verdict::Broken { .. }), "{what}");
        let refused = open(&path, &store, false).await.err().unwrap();
        assert!(matches!(refused, AuditError::Broken { .. }), "{what}: {refused}");
        assert!(refused.to_string().contains("--new-audit-chain"));
        std::fs::write(&path, &full).unwrap();
    }
    // A new chain: the old log kept aside, the first line says why and names the old head.
    std::fs::write(&path, full.lines().take(3).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let log = open(&path, &store, true).await.unwrap();
    log.append(event(1), 1_700_000_001).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["op"], "chain_restart");
    assert_eq!(first["previous"]["seq"], 7);
    assert!(first["note"].as_str().unwrap().contains("cut off"), "{first}");
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 2, .. }));
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit.jsonl.broken-"))
        .collect();
    assert_eq!(kept.len(), 1);
    // Deleted, then restarted: the restart names the head.
    drop(log);
    std::fs::remove_file(&path).unwrap();
    open(&path, &store, true).await.unwrap();
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!((first["op"].as_str(), first["previous"]["seq"].as_u64()), (Some("chain_restart"), Some(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_and_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    write_log(&path, &store, 3).await;
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":5,\"ts\":1,\"cal").unwrap();
    drop(f);
    write_log(&path, &store, 2).await;
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 6, torn: false, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_file_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    let a = open(&path, &store, false).await.unwrap();
    let b = open(&path, &store, false).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { log.append(event(i), 1_700_000_000).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 41, unacknowledged: 0, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_file_claiming_the_log_is_a_fork_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    write_log(&path, &store, 2).await;
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&path, &copy).unwrap();
    let a = open(&path, &store, false).await.unwrap();
    let b = open(&copy, &store, false).await.unwrap();
    a.append(event(1), 1).await.unwrap();
    assert!(matches!(b.append(event(2), 1).await, Err(AuditError::Write)));
    // The fork's line was taken back: the copy still ends where it was copied.
    assert_eq!(std::fs::read_to_string(&copy).unwrap().lines().count(), 3);
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 4, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_log_fails_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let log = open(Path::new("/dev/full"), &store, false).await.unwrap();
    assert!(matches!(log.append(event(1), 1).await, Err(AuditError::Write)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_hold_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    let log = open(&path, &store, false).await.unwrap();
    let fp = log.token_fp("pan", "4111118304731111");
    assert!(!fp.contains("4111118304731111"));
    log.append(Event { items: vec![Item { class: "pan".into(), token_fp: fp, result: "ok".into() }], ..event(0) }, 1)
        .await
        .unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().contains("4111118304731111"));
}

/// A group of `n` lines as the writer appends it: only its last line is signed.
async fn append_group(path: &Path, store: &Arc<dyn Store>, n: usize) {
    let log = open(path, store, false).await.unwrap();
    let file = open_file(path).unwrap();
    let head = store.audit_head("test-log").await.unwrap().unwrap();
    let len = file.metadata().unwrap().len();
    let mut tail = Tail { seq: head.seq, hash: head.hash, len };
    let lines = (0..n).map(|i| event(i).into_line(1_700_000_000)).collect();
    writer::commit(&file, &mut tail, &log.shared, lines, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_signs_its_last_line_only_and_the_chain_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    write_log(&path, &store, 1).await;
    append_group(&path, &store, 4).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let signed: Vec<bool> = text.lines().map(|l| l.contains(",\"sig\":\"")).collect();
    assert_eq!(signed, [true, true, false, false, false, true]);
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 6, signed: 3, .. }));
    write_log(&path, &store, 2).await;
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 8, unacknowledged: 0, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_tail_refuses_the_open_and_a_crashed_group_write_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    write_log(&path, &store, 1).await;
    let before = std::fs::read_to_string(&path).unwrap();
    append_group(&path, &store, 4).await;
    let full = std::fs::read_to_string(&path).unwrap();
    let group: Vec<&str> = full[before.len()..].lines().collect();
    // Lines chained on correctly but without a signature (someone without the key): broken, refused.
    let mut prev = line::hash(full.lines().last().unwrap());
    let mut tail_text = full.clone();
    for seq in 7..=8 {
        let l = Line { seq, prev, ..event(seq as usize).into_line(1_700_000_000) };
        let t = line::unsigned(&l).unwrap();
        prev = line::hash(&t);
        tail_text.push_str(&t);
        tail_text.push('\n');
    }
    std::fs::write(&path, &tail_text).unwrap();
    match check(&path, &store).await {
        Verdict::Broken { line, reason } => assert!(line == 7 && reason.contains("without a signature"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let refused = open(&path, &store, false).await.err().unwrap();
    assert!(matches!(refused, AuditError::Broken { .. }), "{refused}");
    // A group's write cut by a crash: three complete unsigned lines and a torn one, never acknowledged (the store's
    // head is still at line 2). The open cuts them and the chain goes on from line 2.
    let crashed = format!("{before}{}\n{}\n{}\n{}", group[0], group[1], group[2], &group[3][..50]);
    std::fs::write(&path, &crashed).unwrap();
    store
        .swap_audit_head("test-log", store.audit_head("test-log").await.unwrap().as_ref(), &line_head(&before), 1)
        .await
        .unwrap();
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 2, torn: true, cut: 3, .. }));
    write_log(&path, &store, 1).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap()[..before.len()], before);
    assert!(matches!(check(&path, &store).await, Verdict::Intact { entries: 3, torn: false, .. }));
}

/// The head naming the last line of `text`.
fn line_head(text: &str) -> AuditHead {
    let last = text.lines().last().unwrap();
    AuditHead { seq: text.lines().count() as u64, hash: line::hash(last) }
}

/// Unawaited lines (tokenisations) linger for more instead of costing a commit each: commits of them start at
/// least `LINGER` apart. A line somebody waits for is committed at once and takes them with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unawaited_lines_share_a_commit_and_an_awaited_line_takes_them_along() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = (dir.path().join("audit.jsonl"), store(dir.path()).await);
    let log = open(&path, &store, false).await.unwrap();
    let before = std::fs::read_to_string(&path).unwrap().lines().count();
    // A line every millisecond or so: without the linger, nearly every line is a commit of its own.
    let started = std::time::Instant::now();
    for i in 0..50 {
        log.record(event(i), 1_700_000_000).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    log.append(event(50), 1_700_000_000).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let added: Vec<&str> = text.lines().skip(before).collect();
    assert_eq!(added.len(), 51, "every line is on disk once the awaited one is");
    let signed = added.iter().filter(|l| l.contains(",\"sig\":\"")).count();
    // One commit a linger at most, the last window's and the awaited line's.
    let bound = (elapsed.as_millis() / writer::LINGER.as_millis()) as usize + 2;
    assert!(signed <= bound, "{signed} commits for 51 lines in {elapsed:?}");
    assert!(matches!(check(&path, &store).await, Verdict::Intact { unacknowledged: 0, .. }));
}
