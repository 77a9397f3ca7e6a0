//! Group commit: one writer task per store takes every queued insert request, commits them together in one
//! transaction, and answers each request with its own outcomes — only after the commit.

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{Inserted, Record, StoreError};

/// Queued insert requests before `submit` waits for room.
const QUEUE: usize = 4096;

/// A backend's way of committing one batch of records in one transaction (all or nothing).
#[async_trait]
pub(crate) trait Committer: Send + 'static {
    /// One outcome per record, in order; on error nothing of the batch is kept.
    async fn commit(&mut self, records: &[Record]) -> Result<Vec<Inserted>, StoreError>;
    /// Releases the backend's resources once the queue is closed.
    async fn close(self);
}

struct Request {
    records: Vec<Record>,
    reply: oneshot::Sender<Result<Vec<Inserted>, StoreError>>,
}

/// Handle to a running writer task. Dropping every handle lets the writer finish the queue and close.
#[derive(Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::Sender<Request>,
}

impl GroupWriter {
    /// Starts the writer task (needs a tokio runtime). A batch holds at most `max_batch` records unless a single
    /// request is larger (it then goes whole).
    pub(crate) fn start(committer: impl Committer, max_batch: usize, name: &'static str) -> GroupWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(committer, rx, max_batch.max(1), name));
        GroupWriter { tx }
    }

    /// Queues `records` and waits for their outcomes (after the commit).
    pub(crate) async fn submit(&self, records: Vec<Record>) -> Result<Vec<Inserted>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let gone = || StoreError::Unavailable("store writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send(Request { records, reply }).await.map_err(|_| gone())?;
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
        let mut total = first.records.len();
        let mut batch = vec![first];
        while total < max_batch {
            match rx.try_recv() {
                Ok(r) if total + r.records.len() > max_batch => {
                    carry = Some(r);
                    break;
                }
                Ok(r) => {
                    total += r.records.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        tracing::debug!(store = name, requests = batch.len(), records = total, "group commit");
        let mut replies = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(total);
        for req in batch {
            replies.push((req.reply, req.records.len()));
            records.extend(req.records);
        }
        match committer.commit(&records).await {
            Ok(outcomes) if outcomes.len() == total => {
                let mut outcomes = outcomes.into_iter();
                for (reply, n) in replies {
                    let _ = reply.send(Ok(outcomes.by_ref().take(n).collect()));
                }
            }
            Ok(_) => {
                tracing::error!(store = name, "group commit returned the wrong number of outcomes");
                for (reply, _) in replies {
                    let _ = reply.send(Err(StoreError::Corrupt("store answered the wrong number of outcomes".into())));
                }
            }
            Err(e) => {
                tracing::warn!(store = name, error = %e, records = total, "group commit failed");
                let msg = e.to_string();
                for (reply, _) in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
    }
    committer.close().await;
}
