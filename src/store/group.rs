//! Group commit: one writer task per store takes every queued write, commits them together in one
//! transaction, and answers each write with its own outcomes — only after the commit.

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{Inserted, StoreError, Write};

/// Queued insert requests before `submit` waits for room.
const QUEUE: usize = 4096;

/// A backend's way of committing a batch of writes in one transaction (all or nothing).
#[async_trait]
pub(crate) trait Committer: Send + 'static {
    /// Per write, one outcome per record, in order; on error nothing of the batch is kept.
    async fn commit(&mut self, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError>;
    /// Releases the backend's resources once the queue is closed.
    async fn close(self);
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Vec<Inserted>, StoreError>>,
}

/// Handle to a running writer task. Dropping every handle lets the writer finish the queue and close.
#[derive(Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::Sender<Request>,
}

impl GroupWriter {
    /// Starts the writer task (needs a tokio runtime). A batch changes at most `max_batch` rows unless a single
    /// write is larger (it then goes whole).
    pub(crate) fn start(committer: impl Committer, max_batch: usize, name: &'static str) -> GroupWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(committer, rx, max_batch.max(1), name));
        GroupWriter { tx }
    }

    /// Queues `write` and waits for its outcomes (after the commit).
    pub(crate) async fn submit(&self, write: Write) -> Result<Vec<Inserted>, StoreError> {
        if write.records.is_empty() && write.touch.is_empty() {
            return Ok(Vec::new());
        }
        let gone = || StoreError::Unavailable("store writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send(Request { write, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(mut committer: impl Committer, mut rx: mpsc::Receiver<Request>, max_batch: usize, name: &'static str) {
    let mut carry: Option<Request> = None;
    loop {
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        let mut total = first.write.size();
        let mut batch = vec![first];
        while total < max_batch {
            match rx.try_recv() {
                Ok(r) if total + r.write.size() > max_batch => {
                    carry = Some(r);
                    break;
                }
                Ok(r) => {
                    total += r.write.size();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        tracing::debug!(store = name, writes = batch.len(), rows = total, "group commit");
        let (writes, replies): (Vec<Write>, Vec<_>) = batch.into_iter().map(|r| (r.write, r.reply)).unzip();
        match committer.commit(&writes).await {
            Ok(outcomes)
                if outcomes.len() == writes.len()
                    && outcomes.iter().zip(&writes).all(|(o, w)| o.len() == w.records.len()) =>
            {
                for (reply, out) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(_) => {
                tracing::error!(store = name, "group commit returned the wrong number of outcomes");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt("store answered the wrong number of outcomes".into())));
                }
            }
            Err(e) => {
                tracing::warn!(store = name, error = %e, records = total, "group commit failed");
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
    }
    committer.close().await;
}
