//! The group-commit writer: concurrent appends share one write + fdatasync, under an exclusive lock on the log
//! file, followed by a compare-and-swap of the log's head in the store — all before any of them is answered.
//!
//! Another process may append to the same file meanwhile (`veil keys rewrap` beside a running vault): under the
//! lock, the writer first reads what was appended since its own last write and continues the chain from there.
//! The store's head moves only from the head this writer expects; if another writer moved it (two files claiming
//! one log: a fork), the group's lines are cut off again and its callers refused.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::line::{self, Line};
use super::AuditError;
use crate::crypto::audit_key::{AuditSigner, AuditVerifier};
use crate::store::{AuditHead, Store};

/// Most lines in one group commit.
const MAX_GROUP: usize = 1024;

/// How long a group of lines nobody waits for may wait for more before it is committed: unawaited lines
/// (tokenisations) share a write, fdatasync, signature and head swap per `LINGER` instead of per fsync, so at
/// full load the log costs ~100 commits a second however fast the lines come. A line somebody waits for (a
/// reveal, an erasure) is committed at once and takes the waiting lines with it.
pub(super) const LINGER: Duration = Duration::from_millis(10);

/// A line to append (without `seq` and `prev`, which the writer sets) and where to answer, if anyone waits.
pub(super) type Request = (Line, Option<oneshot::Sender<Result<(), AuditError>>>);

/// What every commit needs and never changes.
pub(super) struct Shared {
    pub path: PathBuf,
    pub log_id: String,
    pub signer: AuditSigner,
    pub verifier: AuditVerifier,
    pub store: Arc<dyn Store>,
    /// `veil_audit_sequence`.
    pub sequence: Option<IntGauge>,
    /// A regular file (locked, read back, its head kept in the store); a device such as `/dev/full` is only
    /// written to.
    pub regular: bool,
}

/// Where the chain in the file ends: last line's sequence number and hash, and the file's length after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tail {
    pub seq: u64,
    pub hash: String,
    pub len: u64,
}

impl Tail {
    pub fn head(&self) -> Option<AuditHead> {
        (self.seq > 0).then(|| AuditHead { seq: self.seq, hash: self.hash.clone() })
    }
}

/// How the writer is doing, for callers that do not wait for it: did its last commit succeed (none yet: no),
/// and how many lines are queued.
#[derive(Debug, Default)]
pub(super) struct State {
    healthy: AtomicBool,
    queued: AtomicUsize,
}

impl State {
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// The last commit succeeded and fewer than `max` lines wait.
    pub fn keeps_up(&self, max: usize) -> bool {
        self.healthy.load(Ordering::Acquire) && self.queued.load(Ordering::Relaxed) < max
    }
}

/// Serves appends until every sender is gone.
pub(super) async fn run(
    file: Arc<File>,
    mut tail: Tail,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    state: Arc<State>,
) {
    // When the last commit ended: an unawaited group lingers until LINGER after it.
    let mut last = Instant::now();
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        drain(&mut rx, &mut group);
        let deadline = last + LINGER;
        while group.len() < MAX_GROUP && group.iter().all(|(_, reply)| reply.is_none()) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => {
                    group.push(r);
                    drain(&mut rx, &mut group);
                }
                // Every sender gone (shutdown) or the time is up: commit what is here.
                Ok(None) | Err(_) => break,
            }
        }
        let (lines, replies): (Vec<Line>, Vec<_>) = group.into_iter().unzip();
        let n = lines.len();
        let result = commit(&file, &mut tail, &shared, lines, None).await;
        last = Instant::now();
        state.healthy.store(result.is_ok(), Ordering::Release);
        state.queued.fetch_sub(n, Ordering::Relaxed);
        if let Err(reason) = &result {
            tracing::error!(path = %shared.path.display(), reason = %reason, "audit log write failed; refusing audited operations");
        }
        for reply in replies.into_iter().flatten() {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(|_| AuditError::Write));
        }
    }
}

/// Moves what is queued into `group`, up to [`MAX_GROUP`] lines.
fn drain(rx: &mut mpsc::UnboundedReceiver<Request>, group: &mut Vec<Request>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
}

/// Appends `lines` after the file's current end and moves the store's head to the last of them — from the head
/// the file ended at, or from `replace` (a restart: the head the store held for the old chain). On any failure
/// nothing of them stays (file cut back, head unchanged) and the reason is returned.
pub(super) async fn commit(
    file: &Arc<File>,
    tail: &mut Tail,
    shared: &Arc<Shared>,
    lines: Vec<Line>,
    replace: Option<Option<AuditHead>>,
) -> Result<(), String> {
    let now = lines.last().map_or(0, |l| l.ts);
    let (f, sh, t) = (file.clone(), shared.clone(), tail.clone());
    let written = tokio::task::spawn_blocking(move || {
        if sh.regular {
            f.lock().map_err(|e| format!("cannot lock: {e}"))?;
        }
        let result = write_locked(&f, t, &sh, lines);
        if result.is_err() && sh.regular {
            let _ = f.unlock();
        }
        result
    })
    .await
    .map_err(|_| "the audit writer failed".to_owned())??;
    let (before, after) = written;
    if !shared.regular {
        *tail = after;
        return Ok(());
    }
    let expected = replace.unwrap_or_else(|| before.head());
    let new = after.head().unwrap_or_default();
    let swapped = shared.store.swap_audit_head(&shared.log_id, expected.as_ref(), &new, now).await;
    let outcome = match swapped {
        Ok(true) => {
            *tail = after;
            if let Some(g) = &shared.sequence {
                g.set(i64::try_from(tail.seq).unwrap_or(i64::MAX));
            }
            tracing::info!(target: "veil::audit", log = %shared.log_id, seq = tail.seq, head = %tail.hash, "audit commit");
            Ok(())
        }
        Ok(false) => Err(
            "the store's head of this log was moved by another writer (a fork: two files or processes claim this log)"
                .to_owned(),
        ),
        Err(e) => Err(format!("cannot record the head in the store: {e}")),
    };
    if outcome.is_err() {
        // Not acknowledged: the lines go again, so the file ends where the store's head says.
        let _ = file.set_len(before.len);
        *tail = before;
    }
    let _ = file.unlock();
    outcome
}

/// Under the lock: continues from what another writer appended since `tail`, then writes and fsyncs `lines`,
/// the last of them signed (the chain up to it covers the others). Returns the tail the lines follow and the
/// new tail.
fn write_locked(file: &File, tail: Tail, shared: &Shared, lines: Vec<Line>) -> Result<(Tail, Tail), String> {
    let before = if shared.regular { catch_up(file, tail, &shared.verifier)? } else { tail };
    let (mut seq, mut prev) = (before.seq, before.hash.clone());
    let mut buf = Vec::with_capacity(lines.len() * 320);
    let last = lines.len();
    for (i, mut l) in lines.into_iter().enumerate() {
        seq += 1;
        l.seq = seq;
        l.prev = prev;
        let start = buf.len();
        if i + 1 == last {
            let text = line::seal(&shared.signer, &l).map_err(|e| format!("cannot write a line: {e}"))?;
            buf.extend_from_slice(text.as_bytes());
        } else {
            serde_json::to_writer(&mut buf, &l).map_err(|e| format!("cannot write a line: {e}"))?;
        }
        prev = line::hash_bytes(&buf[start..]);
        buf.push(b'\n');
    }
    let written = (&*file).write_all(&buf).and_then(|_| file.sync_data());
    if let Err(e) = written {
        if shared.regular {
            let _ = file.set_len(before.len);
        }
        return Err(format!("cannot write: {e}"));
    }
    let len = before.len + buf.len() as u64;
    Ok((before, Tail { seq, hash: prev, len }))
}

/// The tail after lines another writer appended since `tail`. A write of a writer that died is cut: a torn last
/// line and the unsigned lines of its group before it (never acknowledged: a group is answered only once its
/// signed last line is on disk). Complete unsigned lines at the end without a torn line after them are refused:
/// a log ends on a signed line.
fn catch_up(file: &File, tail: Tail, verifier: &AuditVerifier) -> Result<Tail, String> {
    let len = file.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    if len == tail.len {
        return Ok(tail);
    }
    if len < tail.len {
        return Err(format!("the log shrank from {} to {len} bytes under this writer: it was cut", tail.len));
    }
    let size = usize::try_from(len - tail.len).map_err(|_| "the log grew too much to read back".to_owned())?;
    let mut added = vec![0u8; size];
    file.read_exact_at(&mut added, tail.len).map_err(|e| format!("cannot read: {e}"))?;
    let complete = added.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let torn = complete < added.len();
    let text = std::str::from_utf8(&added[..complete]).map_err(|_| "another writer appended non-UTF-8".to_owned())?;
    // The last signed line among the complete ones, and where it ends.
    let mut end = complete;
    let mut found = None;
    for l in text.strip_suffix('\n').unwrap_or(text).rsplit('\n').take_while(|_| complete > 0) {
        let l_start = end - l.len() - 1;
        match line::read(verifier, l) {
            Ok((parsed, true)) => {
                found = Some((parsed, line::hash(l)));
                break;
            }
            Ok((_, false)) if torn => end = l_start,
            Ok((_, false)) => return Err("another writer's lines end without a signature".into()),
            Err(r) => return Err(format!("another writer's line: {r}")),
        }
    }
    if end < added.len() {
        file.set_len(tail.len + end as u64).map_err(|e| format!("cannot cut a torn write: {e}"))?;
    }
    let Some((l, hash)) = found else { return Ok(tail) };
    if l.seq <= tail.seq {
        return Err("another writer's lines do not continue this chain".into());
    }
    Ok(Tail { seq: l.seq, hash, len: tail.len + end as u64 })
}
