//! The audit log: signed, hash-chained JSON lines whose head is kept outside the file, appended and fsynced
//! before the audited answer leaves.
//!
//! Each line carries `seq` (1, 2, …) and `prev` (SHA-256 of the line before); the last line of every group commit
//! also `sig` (Ed25519 under the audit key, which is not derived from the data keys: whoever checks the log with
//! the public key cannot rewrite it), which through the chain covers the unsigned lines of its group before it. A
//! log ends on a signed line.
//! After every group commit the head — the last line's `seq` and hash — moves compare-and-swap in the store
//! (per log id: replicas sharing one PostgreSQL keep their own), is exported as `veil_audit_sequence` and logged
//! as a `veil::audit` event. A log edited, reordered, cut short, rolled back to an older copy, emptied or
//! deleted is therefore broken, and a vault refuses to start on one unless told to begin a new chain, whose first
//! line records the restart and the head the store held. Appends take an exclusive lock on the file, so a
//! command-line tool can append beside a running vault without forking the chain. Lines never hold values:
//! tokens appear only as keyed fingerprints. If an append fails, the caller gets an error and must refuse the
//! operation.

pub mod line;
pub mod verify;
mod writer;

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{mpsc, oneshot};

use crate::crypto::audit_key::{AuditSigner, AuditVerifier};
use crate::crypto::fingerprint::Fingerprinter;
use crate::store::{AuditHead, Store};
pub use line::Item;
use line::{Line, Previous, GENESIS, OP_RESTART, OP_START};
pub use verify::Verdict;
use writer::{Shared, Tail};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "audit log {path} is broken: {reason}. Find out what happened to it; then start the vault with \
         --new-audit-chain to begin a new, audited chain (a broken log is kept beside it)"
    )]
    Broken { path: String, reason: String },
    #[error("audit log cannot be written")]
    Write,
}

/// One audited event, before it is chained.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub caller: String,
    pub op: &'static str,
    pub outcome: &'static str,
    pub purpose: Option<String>,
    /// The caller's address (see [`crate::vault::auth::Origin`]).
    pub client: Option<String>,
    /// The caller's verified TLS client identity.
    pub identity: Option<String>,
    pub items: Vec<Item>,
    /// Counts of an operation on many records (per class, or named), never values.
    pub counts: Vec<(String, u64)>,
}

impl Event {
    fn into_line(self, ts: i64) -> Line {
        Line {
            ts,
            caller: self.caller,
            op: self.op.into(),
            outcome: self.outcome.into(),
            purpose: self.purpose,
            client: self.client,
            identity: self.identity,
            items: self.items,
            counts: self.counts.into_iter().collect(),
            ..Line::default()
        }
    }
}

/// Where and how a log is kept.
pub struct AuditSetup {
    pub path: PathBuf,
    /// Names the log's head in the store (see `app::audit_log_id`).
    pub log_id: String,
    pub signer: AuditSigner,
    /// Begin a new chain if the log is broken or missing (`--new-audit-chain`).
    pub new_chain: bool,
    /// `veil_audit_sequence`, set after every commit.
    pub sequence: Option<IntGauge>,
}

/// Handle to the audit writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<writer::Request>,
    mac: Fingerprinter,
    log_id: Arc<str>,
    state: Arc<writer::State>,
    /// The signing key, for evidence handed out beside the log (erasure receipts).
    shared: Arc<Shared>,
}

/// Lines [`AuditLog::record`] may leave queued before it waits for the disk like [`AuditLog::append`].
const UNAWAITED_QUEUE: usize = 4096;

impl AuditLog {
    /// Opens (or creates) the log under its lock, checks it against the store's head — refusing a broken or
    /// missing one unless `setup.new_chain` — and starts the writer. Needs a tokio runtime.
    pub async fn open(
        setup: AuditSetup,
        store: Arc<dyn Store>,
        mac: Fingerprinter,
        now: i64,
    ) -> Result<AuditLog, AuditError> {
        let shown = setup.path.display().to_string();
        let err = |reason: String| AuditError::Open { path: shown.clone(), reason };
        let path = setup.path.clone();
        let (file, existed, regular) = blocking(move || prepare(&path)).await.map_err(err)?;
        let shared = Arc::new(Shared {
            path: setup.path.clone(),
            log_id: setup.log_id.clone(),
            verifier: setup.signer.verifier(),
            signer: setup.signer,
            store: store.clone(),
            sequence: setup.sequence,
            regular,
        });
        let tail = if regular {
            let started = start_chain(file.clone(), existed, &shared, setup.new_chain, now).await;
            let _ = file.unlock();
            started?
        } else {
            Tail { seq: 0, hash: GENESIS.into(), len: 0 }
        };
        if let Some(g) = &shared.sequence {
            g.set(i64::try_from(tail.seq).unwrap_or(i64::MAX));
        }
        // Every line of a restart goes to the new file (`start_chain` may have moved the old one away).
        let file = if regular {
            let path = setup.path.clone();
            blocking(move || open_file(&path)).await.map_err(err)?
        } else {
            file
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(writer::State::default());
        tokio::spawn(writer::run(file, tail, shared.clone(), rx, state.clone()));
        Ok(AuditLog { tx, mac, log_id: setup.log_id.into(), state, shared })
    }

    /// An Ed25519 signature (hex) of `data` under the audit key, and the key's id: evidence anyone holding the
    /// public key can check, and nobody without the private key can forge.
    pub fn sign_evidence(&self, data: &[u8]) -> (String, String) {
        (hex::encode(self.shared.signer.sign(data)), self.shared.verifier.id())
    }

    /// The id the log's head is kept under in the store.
    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// Keyed fingerprint of a token for audit lines.
    pub fn token_fp(&self, class: &str, token: &str) -> String {
        token_fp_with(&self.mac, class, token)
    }
}

/// A token's audit fingerprint under `mac` (an audit key of some key version: older lines were made under
/// older versions).
pub fn token_fp_with(mac: &Fingerprinter, class: &str, token: &str) -> String {
    mac.short_hex_of(&[class.as_bytes(), &[0], token.as_bytes()])
}

impl AuditLog {
    /// Appends `event`; returns once it is on disk and the store's head names it, or an error if not.
    pub async fn append(&self, event: Event, now: i64) -> Result<(), AuditError> {
        let (reply, rx) = oneshot::channel();
        self.state.queued();
        self.tx.send((event.into_line(now), Some(reply))).map_err(|_| AuditError::Write)?;
        rx.await.map_err(|_| AuditError::Write)?
    }

    /// Appends `event` to the same chain without waiting for the disk — while the log's last commit succeeded
    /// and the writer keeps up; otherwise exactly as [`AuditLog::append`] (so a failing log refuses the call, and
    /// a log falling behind slows its callers instead of growing a queue). For events that hand out nothing
    /// (tokenisations): a crash may lose the lines of the last commit (at most ~10 ms of them under load: the
    /// writer lets such lines gather that long), never a reveal's.
    pub async fn record(&self, event: Event, now: i64) -> Result<(), AuditError> {
        if !self.state.keeps_up(UNAWAITED_QUEUE) {
            return self.append(event, now).await;
        }
        self.state.queued();
        self.tx.send((event.into_line(now), None)).map_err(|_| AuditError::Write)
    }
}

/// Checks the log at `path` against the store's head for `log_id` (read first, so lines a running vault
/// appends meanwhile are at worst "not yet acknowledged"), as far as the log reached between two group commits.
pub async fn verify_log(
    path: &Path,
    verifier: &AuditVerifier,
    log_id: &str,
    store: &dyn Store,
) -> Result<Verdict, String> {
    let head = store.audit_head(log_id).await.map_err(|e| format!("cannot read the log's head from the store: {e}"))?;
    let file = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // Only what was written when no group commit was under way (writers hold the file's lock exclusively while
    // they write a group): a log read in the middle of a group's write would end on its unsigned lines. Never
    // waits long: a writer that keeps the lock (its store hanging) leaves the whole file to be read.
    let reader = file.map(|f| {
        let settled = settled_len(&f);
        BufReader::new(f.take(settled.unwrap_or(u64::MAX)))
    });
    verify::verify(reader, verifier, log_id, head.as_ref()).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The file's length while no writer holds its lock, trying for up to a second; `None` if a writer kept it.
fn settled_len(file: &File) -> Option<u64> {
    for _ in 0..50 {
        if file.try_lock_shared().is_ok() {
            let len = file.metadata().map(|m| m.len()).ok();
            let _ = file.unlock();
            return len;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|_| "the audit log task failed".to_owned())?
}

/// Opens the log for appending; a log it creates is readable by its owner only (it names callers, clients and
/// token fingerprints).
fn open_file(path: &Path) -> Result<Arc<File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(path).map_err(|e| e.to_string())?;
    Ok(Arc::new(file))
}

/// Opens the file (creating it and its directory), locked if it is a regular file: (file, existed, regular).
fn prepare(path: &Path) -> Result<(Arc<File>, bool, bool), String> {
    let existed = path.exists();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let file = open_file(path)?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if regular {
        file.lock().map_err(|e| format!("cannot lock: {e}"))?;
    }
    Ok((file, existed, regular))
}

/// Under the lock: checks the log, then continues it, starts it, or (told to) restarts it; the tail to go on from.
async fn start_chain(
    file: Arc<File>,
    existed: bool,
    shared: &Arc<Shared>,
    new_chain: bool,
    now: i64,
) -> Result<Tail, AuditError> {
    let shown = shared.path.display().to_string();
    let open_err = |reason: String| AuditError::Open { path: shown.clone(), reason };
    let head = shared.store.audit_head(&shared.log_id).await.map_err(|e| open_err(format!("store: {e}")))?;
    let (f, verifier, log_id, h) = (file.clone(), shared.verifier, shared.log_id.clone(), head.clone());
    let (verdict, len) = blocking(move || {
        let reader = existed.then(|| BufReader::new(&*f));
        let verdict = verify::verify(reader, &verifier, &log_id, h.as_ref()).map_err(|e| e.to_string())?;
        // A write cut by a crash (never acknowledged) is cut off: the log goes on from its last signed line.
        let len = match verdict {
            Verdict::Intact { torn: true, end, .. } => cut_at(&f, end)?,
            Verdict::Empty => cut_at(&f, 0)?,
            _ => f.metadata().map_err(|e| e.to_string())?.len(),
        };
        Ok((verdict, len))
    })
    .await
    .map_err(&open_err)?;
    match verdict {
        Verdict::Intact { tail, unacknowledged, torn, cut, .. } => {
            if torn {
                tracing::warn!(
                    path = %shown,
                    unsigned_lines = cut,
                    "audit log ended in a write cut by a crash (a torn line and the unsigned lines of its group \
                     before it, never acknowledged); cut it off"
                );
            }
            if new_chain {
                tracing::warn!(path = %shown, "the audit chain is intact: --new-audit-chain ignored");
            }
            if unacknowledged > 0 {
                // Written but never answered (a crash before the store heard of them): the head catches up.
                let moved = shared.store.swap_audit_head(&shared.log_id, head.as_ref(), &tail, now).await;
                if !matches!(moved, Ok(true)) {
                    return Err(open_err("cannot move the store's head to the log's end".into()));
                }
            }
            Ok(Tail { seq: tail.seq, hash: tail.hash, len })
        }
        Verdict::Empty => {
            let first = Line {
                ts: now,
                log: Some(shared.log_id.clone()),
                caller: "vault".into(),
                op: OP_START.into(),
                outcome: "ok".into(),
                ..Line::default()
            };
            let mut tail = Tail { seq: 0, hash: GENESIS.into(), len };
            writer::commit(&file, &mut tail, shared, vec![first], None).await.map_err(&open_err)?;
            Ok(tail)
        }
        Verdict::Broken { line, reason } if new_chain => {
            let reason = if line > 0 { format!("line {line}: {reason}") } else { reason };
            restart(file, existed && len > 0, shared, head, reason, now).await
        }
        Verdict::Broken { line, reason } => {
            let reason = if line > 0 { format!("line {line}: {reason}") } else { reason };
            Err(AuditError::Broken { path: shown, reason })
        }
    }
}

/// Moves a broken log aside (kept as evidence) and begins a new chain whose first line says why and names the
/// head the store held.
async fn restart(
    file: Arc<File>,
    keep_old: bool,
    shared: &Arc<Shared>,
    head: Option<AuditHead>,
    reason: String,
    now: i64,
) -> Result<Tail, AuditError> {
    let shown = shared.path.display().to_string();
    let open_err = |reason: String| AuditError::Open { path: shown.clone(), reason };
    let mut note = format!("restarted: {reason}");
    let fresh = if keep_old {
        let kept = PathBuf::from(format!("{}.broken-{now}", shared.path.display()));
        std::fs::rename(&shared.path, &kept).map_err(|e| open_err(format!("cannot move the broken log aside: {e}")))?;
        note.push_str(&format!("; the broken log is now {}", kept.display()));
        let path = shared.path.clone();
        let f = blocking(move || prepare(&path).map(|(f, _, _)| f)).await.map_err(&open_err)?;
        let _ = file.unlock();
        f
    } else {
        file
    };
    tracing::warn!(path = %shown, previous_head = ?head, %note, "starting a new audit chain");
    let first = Line {
        ts: now,
        log: Some(shared.log_id.clone()),
        caller: "vault".into(),
        op: OP_RESTART.into(),
        outcome: "ok".into(),
        previous: head.as_ref().map(Previous::from),
        note: Some(note),
        ..Line::default()
    };
    let len = fresh.metadata().map_err(|e| open_err(e.to_string()))?.len();
    let mut tail = Tail { seq: 0, hash: GENESIS.into(), len };
    let result = writer::commit(&fresh, &mut tail, shared, vec![first], Some(head)).await;
    let _ = fresh.unlock();
    result.map_err(open_err)?;
    Ok(tail)
}

/// Cuts the file to `len` bytes (a write torn by a crash after them); the file's new length.
fn cut_at(file: &File, len: u64) -> Result<u64, String> {
    if file.metadata().map_err(|e| e.to_string())?.len() > len {
        file.set_len(len).map_err(|e| e.to_string())?;
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
