//! The audit log: hash-chained JSON lines, appended and fsynced before the audited answer leaves.
//!
//! Each line carries `prev` (the previous line's `mac`) and its own `mac` = HMAC-SHA256 under the audit subkey
//! over the line serialised without `mac`. Editing, removing or reordering a line breaks the chain, and
//! nobody without the key can forge a consistent one. Lines never hold values: tokens appear only as keyed
//! fingerprints. Appends from concurrent requests share one write + fdatasync (group commit) on a dedicated
//! thread; if that fails, the caller gets an error and must refuse the operation.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::crypto::fingerprint::Fingerprinter;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const MAX_GROUP: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("audit log cannot be written")]
    Write,
}

/// One audited event, before it is chained.
#[derive(Debug, Clone)]
pub struct Event {
    pub caller: String,
    pub op: &'static str,
    pub outcome: &'static str,
    pub purpose: Option<String>,
    pub items: Vec<Item>,
}

/// One item of an event: its class, the token's keyed fingerprint, and what happened to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub class: String,
    pub token_fp: String,
    pub result: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    ts: i64,
    caller: String,
    op: String,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    purpose: Option<String>,
    items: Vec<Item>,
    prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

type Request = (Event, i64, oneshot::Sender<Result<(), AuditError>>);

/// Handle to the audit writer thread. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: std_mpsc::Sender<Request>,
    mac: Fingerprinter,
}

impl AuditLog {
    /// Opens (or creates) the log, continues its chain, and starts the writer thread.
    pub fn open(path: &Path, mac: Fingerprinter) -> Result<AuditLog, AuditError> {
        let shown = path.display().to_string();
        let err = |reason: String| AuditError::Open { path: shown.clone(), reason };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
        }
        let mut file =
            OpenOptions::new().create(true).append(true).read(true).open(path).map_err(|e| err(e.to_string()))?;
        let (seq, prev) = if file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            chain_tail(&mut file, path).map_err(err)?
        } else {
            (0, GENESIS.to_owned())
        };
        let (tx, rx) = std_mpsc::channel::<Request>();
        let writer_mac = mac.clone();
        let path_buf = path.to_path_buf();
        std::thread::Builder::new()
            .name("veil-audit".into())
            .spawn(move || writer(file, path_buf, writer_mac, seq, prev, rx))
            .map_err(|e| err(e.to_string()))?;
        Ok(AuditLog { tx, mac })
    }

    /// Keyed fingerprint of a token for audit lines.
    pub fn token_fp(&self, class: &str, token: &str) -> String {
        let mut data = Vec::with_capacity(class.len() + token.len() + 1);
        data.extend_from_slice(class.as_bytes());
        data.push(0);
        data.extend_from_slice(token.as_bytes());
        self.mac.short_hex(&data)
    }

    /// Appends `event`; returns once it is on disk, or an error if it could not be written.
    pub async fn append(&self, event: Event, now: i64) -> Result<(), AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((event, now, reply)).map_err(|_| AuditError::Write)?;
        rx.await.map_err(|_| AuditError::Write)?
    }
}

/// Last sequence number and mac of an existing log; a torn last line (crash mid-write, never acknowledged)
/// is cut off.
fn chain_tail(file: &mut File, path: &Path) -> Result<(u64, String), String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    if !text.is_empty() && !text.ends_with('\n') {
        let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
        tracing::warn!(path = %path.display(), "audit log ends in a torn line; cutting it off");
        file.set_len(keep as u64).map_err(|e| e.to_string())?;
        text.truncate(keep);
    }
    match text.lines().next_back() {
        None => Ok((0, GENESIS.to_owned())),
        Some(last) => {
            let line: Line = serde_json::from_str(last).map_err(|_| "last line is not an audit entry".to_owned())?;
            Ok((line.seq, line.mac.ok_or("last line has no mac")?))
        }
    }
}

fn seal_line(mac: &Fingerprinter, mut line: Line) -> Result<(String, String), serde_json::Error> {
    line.mac = None;
    let body = serde_json::to_vec(&line)?;
    let m = hex::encode(mac.fingerprint(&body));
    line.mac = Some(m.clone());
    Ok((serde_json::to_string(&line)?, m))
}

fn writer(
    mut file: File,
    path: PathBuf,
    mac: Fingerprinter,
    mut seq: u64,
    mut prev: String,
    rx: std_mpsc::Receiver<Request>,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let (start_seq, start_prev) = (seq, prev.clone());
        let mut buf = String::new();
        let mut ok = true;
        for (event, ts, _) in &group {
            seq += 1;
            let line = Line {
                seq,
                ts: *ts,
                caller: event.caller.clone(),
                op: event.op.into(),
                outcome: event.outcome.into(),
                purpose: event.purpose.clone(),
                items: event.items.clone(),
                prev: prev.clone(),
                mac: None,
            };
            match seal_line(&mac, line) {
                Ok((text, m)) => {
                    buf.push_str(&text);
                    buf.push('\n');
                    prev = m;
                }
                Err(_) => ok = false,
            }
        }
        ok = ok && file.write_all(buf.as_bytes()).is_ok() && file.sync_data().is_ok();
        if !ok {
            // Nothing of this group counts: roll the chain back and cut any partial write.
            tracing::error!(path = %path.display(), "audit log write failed; refusing audited operations");
            seq = start_seq;
            prev = start_prev;
            if let Ok(len) = file.metadata().map(|m| m.len()) {
                if file.metadata().map(|m| m.is_file()).unwrap_or(false) {
                    let _ = truncate_to_last_newline(&mut file, len);
                }
            }
        }
        for (_, _, reply) in group {
            let _ = reply.send(if ok { Ok(()) } else { Err(AuditError::Write) });
        }
    }
}

fn truncate_to_last_newline(file: &mut File, len: u64) -> std::io::Result<()> {
    let mut pos = len;
    let mut byte = [0u8; 1];
    while pos > 0 {
        file.seek(SeekFrom::Start(pos - 1))?;
        file.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
        pos -= 1;
    }
    file.set_len(pos)
}

/// Result of checking a whole log.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64 },
    Broken { line: usize, reason: String },
}

/// Checks every line of the log at `path`: sequence, chain and mac.
pub fn verify(path: &Path, mac: &Fingerprinter) -> std::io::Result<Verdict> {
    let reader = BufReader::new(File::open(path)?);
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1u64;
    for (i, text) in reader.lines().enumerate() {
        let text = text?;
        let broken = |reason: &str| Ok(Verdict::Broken { line: i + 1, reason: reason.to_owned() });
        let Ok(line) = serde_json::from_str::<Line>(&text) else {
            return broken("not an audit entry");
        };
        if line.seq != expected_seq {
            return broken("sequence number out of order (a line was removed, added or moved)");
        }
        if line.prev != prev {
            return broken("chain broken: prev does not match the previous line");
        }
        let Some(claimed) = line.mac.clone() else {
            return broken("no mac");
        };
        let Ok((_, computed)) = seal_line(mac, line) else {
            return broken("cannot be re-serialised");
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), claimed.as_bytes())) {
            return broken("mac does not match: the line was edited");
        }
        prev = claimed;
        expected_seq += 1;
    }
    Ok(Verdict::Intact { entries: expected_seq - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Event {
        Event {
            caller: "payments".into(),
            op: "detokenize",
            outcome: "ok",
            purpose: Some("payment".into()),
            items: vec![Item { class: "pan".into(), token_fp: format!("{n:032x}"), result: "ok".into() }],
        }
    }

    fn key() -> Fingerprinter {
        Fingerprinter::new(&[9u8; 32])
    }

    async fn write_log(path: &Path, n: usize) {
        let log = AuditLog::open(path, key()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..n {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.append(event(i), 1_700_000_000).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn chain_verifies_and_continues_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 20).await;
        write_log(&path, 5).await;
        assert_eq!(verify(&path, &key()).unwrap(), Verdict::Intact { entries: 25 });
        assert!(matches!(verify(&path, &Fingerprinter::new(&[8u8; 32])).unwrap(), Verdict::Broken { line: 1, .. }));
    }

    #[tokio::test]
    async fn edited_removed_and_reordered_lines_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 6).await;
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();

        let edited = original.replacen("\"caller\":\"payments\"", "\"caller\":\"paymentz\"", 1);
        std::fs::write(&path, &edited).unwrap();
        assert!(matches!(verify(&path, &key()).unwrap(), Verdict::Broken { line: 1, .. }));

        let removed: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| *l).collect();
        std::fs::write(&path, removed.join("\n") + "\n").unwrap();
        assert!(matches!(verify(&path, &key()).unwrap(), Verdict::Broken { line: 3, .. }));

        let mut swapped = lines.clone();
        swapped.swap(3, 4);
        std::fs::write(&path, swapped.join("\n") + "\n").unwrap();
        assert!(matches!(verify(&path, &key()).unwrap(), Verdict::Broken { line: 4, .. }));
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 3).await;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":4,\"ts\":1,\"cal").unwrap();
        drop(f);
        write_log(&path, 2).await;
        assert_eq!(verify(&path, &key()).unwrap(), Verdict::Intact { entries: 5 });
    }

    #[tokio::test]
    async fn unwritable_log_fails_the_append() {
        let log = AuditLog::open(Path::new("/dev/full"), key()).unwrap();
        assert!(matches!(log.append(event(1), 1).await, Err(AuditError::Write)));
    }

    #[tokio::test]
    async fn lines_hold_no_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, key()).unwrap();
        let fp = log.token_fp("pan", "4111118304731111");
        assert!(!fp.contains("4111118304731111"));
        log.append(
            Event { items: vec![Item { class: "pan".into(), token_fp: fp, result: "ok".into() }], ..event(0) },
            1,
        )
        .await
        .unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("4111118304731111"));
    }
}
