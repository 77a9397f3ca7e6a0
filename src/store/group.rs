//! Group commit: one writer task per store takes every queued write, commits them together in one
//! transaction, and answers each write with its own outcomes — only after the commit. A backend may also queue
//! its lookups here ([`GroupWriter::find`]): those queued together are answered by one call of the committer on the writer's
//! connection, before the writes that arrived with them.

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{Fingerprint, Inserted, Record, StoreError, Write};

/// Queued requests before `submit` / `find` wait for room.
const QUEUE: usize = 4096;
/// Most keys answered by one batched lookup (a single larger lookup still goes whole).
const MAX_FIND_KEYS: usize = 1024;

/// Lookup keys: (class, value fingerprint) and (class, canonical token).
pub(crate) type FindKeys = (Vec<(String, Fingerprint)>, Vec<(String, String)>);
/// Records found for each key of a [`FindKeys`], in order.
pub(crate) type Found = (Vec<Option<Record>>, Vec<Option<Record>>);

type WriteReply = oneshot::Sender<Result<Vec<Inserted>, StoreError>>;
type FindReply = oneshot::Sender<Result<Found, StoreError>>;

/// A backend's way of committing a batch of writes in one transaction (all or nothing).
#[async_trait]
pub(crate) trait Committer: Send + 'static {
    /// Per write, one outcome per record, in order; on error nothing of the batch is kept.
    async fn commit(&mut self, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError>;
    /// Records for the value keys and for the token keys, each in order (lookups queued with
    /// [`GroupWriter::find`]).
    async fn find(
        &mut self,
        values: &[(String, Fingerprint)],
        tokens: &[(String, String)],
    ) -> Result<Found, StoreError>;
    /// Releases the backend's resources once the queue is closed.
    async fn close(self);
}

enum Job {
    Write { write: Write, reply: WriteReply },
    Find { keys: FindKeys, reply: FindReply },
}

impl Job {
    /// Rows a write changes, keys a lookup reads.
    fn size(&self) -> usize {
        match self {
            Job::Write { write, .. } => write.size(),
            Job::Find { keys, .. } => keys.0.len() + keys.1.len(),
        }
    }
}

/// Handle to a running writer task. Dropping every handle lets the writer finish the queue and close.
#[derive(Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::Sender<Job>,
}

fn gone() -> StoreError {
    StoreError::Unavailable("store writer stopped".into())
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
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job::Write { write, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Queues a lookup and waits for its records. It sees every write committed before it was queued.
    pub(crate) async fn find(&self, keys: FindKeys) -> Result<Found, StoreError> {
        if keys.0.is_empty() && keys.1.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job::Find { keys, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// What one turn of the writer takes from the queue: writes up to `max_batch` rows and lookups up to
/// `MAX_FIND_KEYS` keys (each at least one job when queued), leaving the first job that did not fit in `carry`.
#[derive(Default)]
struct Turn {
    writes: Vec<(Write, WriteReply)>,
    rows: usize,
    finds: Vec<(FindKeys, FindReply)>,
    keys: usize,
}

impl Turn {
    /// Takes `job` if it fits; gives it back otherwise.
    fn take(&mut self, job: Job, max_batch: usize) -> Option<Job> {
        let size = job.size();
        match job {
            Job::Write { write, reply } if self.writes.is_empty() || self.rows + size <= max_batch => {
                self.rows += size;
                self.writes.push((write, reply));
                None
            }
            Job::Find { keys, reply } if self.finds.is_empty() || self.keys + size <= MAX_FIND_KEYS => {
                self.keys += size;
                self.finds.push((keys, reply));
                None
            }
            job => Some(job),
        }
    }
}

async fn run(mut committer: impl Committer, mut rx: mpsc::Receiver<Job>, max_batch: usize, name: &'static str) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut turn = Turn::default();
        carry = turn.take(first, max_batch);
        while carry.is_none() {
            match rx.try_recv() {
                Ok(job) => carry = turn.take(job, max_batch),
                Err(_) => break,
            }
        }
        // Lookups first: their callers' writes can then queue while this turn's writes commit.
        if !turn.finds.is_empty() {
            find(&mut committer, turn.finds, turn.keys, name).await;
        }
        if !turn.writes.is_empty() {
            commit(&mut committer, turn.writes, turn.rows, name).await;
        }
    }
    committer.close().await;
}

/// Answers every lookup of a turn from one call of the committer.
async fn find(committer: &mut impl Committer, finds: Vec<(FindKeys, FindReply)>, keys: usize, name: &'static str) {
    tracing::debug!(store = name, lookups = finds.len(), keys, "batched lookup");
    let (mut values, mut tokens) = (Vec::new(), Vec::new());
    for ((v, t), _) in &finds {
        values.extend_from_slice(v);
        tokens.extend_from_slice(t);
    }
    match committer.find(&values, &tokens).await {
        Ok((by_value, by_token)) if by_value.len() == values.len() && by_token.len() == tokens.len() => {
            let (mut by_value, mut by_token) = (by_value.into_iter(), by_token.into_iter());
            for ((v, t), reply) in finds {
                let found = (by_value.by_ref().take(v.len()).collect(), by_token.by_ref().take(t.len()).collect());
                let _ = reply.send(Ok(found));
            }
        }
        Ok(_) => {
            tracing::error!(store = name, "batched lookup returned the wrong number of records");
            for (_, reply) in finds {
                let _ = reply.send(Err(StoreError::Corrupt("store answered the wrong number of records".into())));
            }
        }
        Err(e) => {
            tracing::warn!(store = name, error = %e, keys, "batched lookup failed");
            let msg = e.to_string();
            for (_, reply) in finds {
                let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
            }
        }
    }
}

/// Commits every write of a turn in one transaction and answers each with its outcomes.
async fn commit(committer: &mut impl Committer, batch: Vec<(Write, WriteReply)>, rows: usize, name: &'static str) {
    tracing::debug!(store = name, writes = batch.len(), rows, "group commit");
    let (writes, replies): (Vec<Write>, Vec<_>) = batch.into_iter().unzip();
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
            tracing::warn!(store = name, error = %e, records = rows, "group commit failed");
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Finds a record for every value key whose first fingerprint byte is even and every token key that starts
    /// with "t"; fails lookups, or answers one record too few, on demand.
    #[derive(Clone, Default)]
    struct Fake {
        calls: Arc<Mutex<Vec<String>>>,
        fail_find: bool,
        short_find: bool,
    }

    fn record(class: &str, token: &str, fp: u8) -> Record {
        Record {
            class: class.into(),
            token: token.into(),
            value_fp: [fp; 32],
            fp_version: None,
            key_version: 1,
            sealed: vec![fp],
            created_at: 0,
            last_used_at: 0,
            gone_at: None,
        }
    }

    #[async_trait]
    impl Committer for Fake {
        async fn commit(&mut self, writes: &[Write]) -> Result<Vec<Vec<Inserted>>, StoreError> {
            self.calls.lock().unwrap().push(format!("commit {}", writes.len()));
            Ok(writes.iter().map(|w| vec![Inserted::New; w.records.len()]).collect())
        }

        async fn find(
            &mut self,
            values: &[(String, Fingerprint)],
            tokens: &[(String, String)],
        ) -> Result<Found, StoreError> {
            self.calls.lock().unwrap().push(format!("find {} {}", values.len(), tokens.len()));
            if self.fail_find {
                return Err(StoreError::Unavailable("disk gone".into()));
            }
            let mut by_value: Vec<Option<Record>> =
                values.iter().map(|(c, fp)| (fp[0] % 2 == 0).then(|| record(c, "v", fp[0]))).collect();
            if self.short_find {
                by_value.pop();
            }
            let by_token = tokens.iter().map(|(c, t)| t.starts_with('t').then(|| record(c, t, 1))).collect();
            Ok((by_value, by_token))
        }

        async fn close(self) {}
    }

    fn keys(fps: &[u8], tokens: &[&str]) -> FindKeys {
        (
            fps.iter().map(|&fp| ("email".to_string(), [fp; 32])).collect(),
            tokens.iter().map(|t| ("email".to_string(), t.to_string())).collect(),
        )
    }

    fn write(n: u8) -> Write {
        Write { records: (0..n).map(|i| record("email", &format!("w{i}"), i)).collect(), ..Write::default() }
    }

    #[tokio::test]
    async fn lookups_queued_together_are_answered_in_one_call_each_with_its_own_records() {
        let fake = Fake::default();
        let writer = GroupWriter::start(fake.clone(), 512, "test");
        let (a, b, c) = tokio::join!(
            writer.find(keys(&[2, 3], &["t1"])),
            writer.find(keys(&[], &["x", "t2"])),
            writer.find(keys(&[4], &[])),
        );
        assert_eq!(*fake.calls.lock().unwrap(), vec!["find 3 3".to_string()]);
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a.0.iter().map(|r| r.as_ref().map(|r| r.value_fp[0])).collect::<Vec<_>>(), vec![Some(2), None]);
        assert_eq!(
            a.1.iter().map(|r| r.as_ref().map(|r| r.token.clone())).collect::<Vec<_>>(),
            vec![Some("t1".into())]
        );
        assert!(b.0.is_empty());
        assert_eq!(
            b.1.iter().map(|r| r.as_ref().map(|r| r.token.clone())).collect::<Vec<_>>(),
            vec![None, Some("t2".into())]
        );
        assert_eq!((c.0.len(), c.0[0].as_ref().map(|r| r.value_fp[0]), c.1.len()), (1, Some(4), 0));
        // Nothing to look up: answered without the writer.
        assert_eq!(writer.find(keys(&[], &[])).await.unwrap(), (Vec::new(), Vec::new()));
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn lookups_are_answered_before_the_writes_queued_with_them_and_writes_still_batch() {
        let fake = Fake::default();
        let writer = GroupWriter::start(fake.clone(), 512, "test");
        let (w1, f, w2) = tokio::join!(writer.submit(write(2)), writer.find(keys(&[1], &[])), writer.submit(write(1)));
        assert_eq!((w1.unwrap().len(), w2.unwrap().len()), (2, 1));
        assert_eq!(f.unwrap().0, vec![None]);
        assert_eq!(*fake.calls.lock().unwrap(), vec!["find 1 0".to_string(), "commit 2".to_string()]);
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_every_lookup_of_its_turn_but_not_the_writes() {
        let fake = Fake { fail_find: true, ..Fake::default() };
        let writer = GroupWriter::start(fake.clone(), 512, "test");
        let (a, b, w) =
            tokio::join!(writer.find(keys(&[1], &[])), writer.find(keys(&[], &["t"])), writer.submit(write(1)));
        for r in [a, b] {
            match r {
                Err(StoreError::Unavailable(msg)) => assert!(msg.contains("disk gone"), "{msg}"),
                other => panic!("expected the lookup to fail: {other:?}"),
            }
        }
        assert_eq!(w.unwrap(), vec![Inserted::New]);
        // The writer goes on serving.
        assert!(writer.find(keys(&[1], &[])).await.is_err());
        assert_eq!(writer.submit(write(1)).await.unwrap(), vec![Inserted::New]);
    }

    #[tokio::test]
    async fn a_lookup_answered_with_the_wrong_number_of_records_is_an_error_not_a_misattribution() {
        let fake = Fake { short_find: true, ..Fake::default() };
        let writer = GroupWriter::start(fake, 512, "test");
        let (a, b) = tokio::join!(writer.find(keys(&[2], &[])), writer.find(keys(&[4], &[])));
        assert!(matches!(a, Err(StoreError::Corrupt(_))));
        assert!(matches!(b, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn a_turn_takes_lookups_up_to_the_key_bound_and_a_larger_one_whole() {
        let fake = Fake::default();
        let writer = GroupWriter::start(fake.clone(), 512, "test");
        let big: Vec<u8> = vec![2; MAX_FIND_KEYS + 1];
        let half: Vec<u8> = vec![2; MAX_FIND_KEYS / 2 + 1];
        let (a, b, c) =
            tokio::join!(writer.find(keys(&big, &[])), writer.find(keys(&half, &[])), writer.find(keys(&half, &[])));
        assert_eq!(a.unwrap().0.len(), MAX_FIND_KEYS + 1);
        assert_eq!((b.unwrap().0.len(), c.unwrap().0.len()), (half.len(), half.len()));
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                format!("find {} 0", MAX_FIND_KEYS + 1),
                format!("find {} 0", half.len()),
                format!("find {} 0", half.len())
            ]
        );
    }

    #[tokio::test]
    async fn a_stopped_writer_answers_unavailable() {
        let writer = GroupWriter::start(Fake::default(), 512, "test");
        let (tx, _) = mpsc::channel(1);
        let dead = GroupWriter { tx };
        assert!(matches!(dead.find(keys(&[1], &[])).await, Err(StoreError::Unavailable(_))));
        assert!(matches!(dead.submit(write(1)).await, Err(StoreError::Unavailable(_))));
        drop(writer);
    }
}
