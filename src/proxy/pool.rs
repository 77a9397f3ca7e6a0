//! veil's own pool of idle upstream connections for one origin: a small bounded LIFO with an idle timeout, and the
//! response body wrapper that gives a connection back only once its response has been read to the end.
//!
//! One origin per pool, so there is no keyed map and no hashing: checkout pops the most recently used connection,
//! checkin pushes it back. Connections the upstream closed are never handed out, expired ones are dropped at
//! checkout and by a sweep task, and a full pool drops what it cannot hold.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// A connection the pool can hold: all it needs to know is whether the upstream side has gone.
///
/// No `Send`/`'static` bounds here on purpose: the response body future is checked for `Send` with its lifetimes
/// erased, and a bound on the boxed error type's `'static` would then fail to prove.
pub trait Conn {
    fn is_closed(&self) -> bool;
}

impl<B> Conn for hyper::client::conn::http1::SendRequest<B> {
    fn is_closed(&self) -> bool {
        hyper::client::conn::http1::SendRequest::is_closed(self)
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Idle connections to one origin, most recently used last.
pub struct Pool<C> {
    idle: Mutex<Vec<Idle<C>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<C: Conn + Send + 'static> Pool<C> {
    /// A pool, and (inside a Tokio runtime) a task that sweeps it every half idle timeout until the pool is gone,
    /// so idle sockets are closed even when no request comes to check them out.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Arc<Pool<C>> {
        let pool = Arc::new(Pool { idle: Mutex::new(Vec::new()), max_idle, idle_timeout });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Pool<C>> = Arc::downgrade(&pool);
            let period = (idle_timeout / 2).max(Duration::from_millis(10));
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    match weak.upgrade() {
                        Some(pool) => pool.sweep(),
                        None => return,
                    }
                }
            });
        }
        pool
    }
}

impl<C: Conn> Pool<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle<C>>> {
        // A panic while holding the lock leaves a plain Vec behind: still consistent, keep using it.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection that is neither expired nor closed, if any.
    pub fn checkout(&self) -> Option<C> {
        let now = Instant::now();
        let mut doomed = Vec::new();
        let found = {
            let mut idle = self.lock();
            loop {
                let Some(entry) = idle.pop() else { break None };
                if now.duration_since(entry.since) >= self.idle_timeout {
                    // Entries are in checkin order: everything below this one is older still.
                    doomed.push(entry);
                    doomed.append(&mut idle);
                    break None;
                }
                if entry.conn.is_closed() {
                    doomed.push(entry);
                    continue;
                }
                break Some(entry.conn);
            }
        };
        drop(doomed); // outside the lock
        found
    }

    /// Gives a connection back for reuse; it is dropped instead when closed or when the pool is full.
    pub fn checkin(&self, conn: C) {
        if conn.is_closed() {
            return;
        }
        let rejected = {
            let mut idle = self.lock();
            if idle.len() >= self.max_idle {
                Some(conn)
            } else {
                idle.push(Idle { conn, since: Instant::now() });
                None
            }
        };
        drop(rejected);
    }

    /// Drops every idle connection that expired or was closed by the upstream.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut doomed = Vec::new();
        {
            let mut idle = self.lock();
            let mut kept = Vec::with_capacity(idle.len());
            for entry in idle.drain(..) {
                if now.duration_since(entry.since) >= self.idle_timeout || entry.conn.is_closed() {
                    doomed.push(entry);
                } else {
                    kept.push(entry);
                }
            }
            *idle = kept;
        }
        drop(doomed);
    }

    /// How many connections are idle right now.
    pub fn idle_len(&self) -> usize {
        self.lock().len()
    }
}

/// A response body that gives its connection back to the pool once it has been read to the end. Dropped early or
/// failed, it takes the connection with it: that connection is never reused.
pub struct PooledBody<B, C> {
    inner: B,
    back: Option<(Arc<Pool<C>>, C)>,
}

impl<B: Body + Unpin, C: Conn + Unpin> PooledBody<B, C> {
    /// `back` is the connection the response came on and its pool (none for multiplexed connections).
    pub fn new(inner: B, back: Option<(Arc<Pool<C>>, C)>) -> PooledBody<B, C> {
        let mut body = PooledBody { inner, back };
        // An empty body is never polled by whoever relays it: the connection is free already.
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((pool, conn)) = self.back.take() {
            pool.checkin(conn);
        }
    }
}

impl<B: Body + Unpin, C: Conn + Unpin> Body for PooledBody<B, C> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            // Relays stop polling once a body says it has ended, so check after every frame.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A stand-in connection: an id to recognise it, and a switch for "the upstream closed it".
    struct Fake {
        id: usize,
        closed: Arc<AtomicBool>,
        dropped: Arc<AtomicUsize>,
    }

    impl Conn for Fake {
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn fake(id: usize, dropped: &Arc<AtomicUsize>) -> (Fake, Arc<AtomicBool>) {
        let closed = Arc::new(AtomicBool::new(false));
        (Fake { id, closed: closed.clone(), dropped: dropped.clone() }, closed)
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_connection_comes_back_once_its_body_is_read_to_the_end() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (conn, _) = fake(1, &dropped);
        let body = PooledBody::new(Full::new(Bytes::from_static(b"hello")), Some((pool.clone(), conn)));
        assert_eq!(pool.idle_len(), 0, "not before the body is read");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        let back = pool.checkout().unwrap();
        assert_eq!(back.id, 1);
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "kept open for reuse");
    }

    #[tokio::test]
    async fn a_body_that_ends_without_an_end_stream_hint_gives_the_connection_back_at_its_end() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (conn, _) = fake(1, &dropped);
        let (mut tx, chan) = http_body_util::channel::Channel::<Bytes>::new(4);
        let mut body = PooledBody::new(chan, Some((pool.clone(), conn)));
        tx.send_data(Bytes::from_static(b"a")).await.unwrap();
        drop(tx);
        assert!(body.frame().await.unwrap().unwrap().is_data());
        assert_eq!(pool.idle_len(), 0, "the body has not ended yet");
        assert!(body.frame().await.is_none());
        assert_eq!(pool.checkout().map(|c| c.id), Some(1));
    }

    #[tokio::test]
    async fn an_empty_body_frees_its_connection_at_once() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (conn, _) = fake(7, &dropped);
        let _body = PooledBody::new(Empty::<Bytes>::new(), Some((pool.clone(), conn)));
        assert_eq!(pool.checkout().map(|c| c.id), Some(7));
    }

    #[tokio::test]
    async fn a_body_dropped_early_takes_its_connection_with_it() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (conn, _) = fake(1, &dropped);
        let (mut tx, chan) = http_body_util::channel::Channel::<Bytes>::new(4);
        let mut body = PooledBody::new(chan, Some((pool.clone(), conn)));
        tx.send_data(Bytes::from_static(b"part")).await.unwrap();
        assert!(body.frame().await.unwrap().unwrap().is_data());
        drop(body);
        assert_eq!(pool.idle_len(), 0);
        assert!(pool.checkout().is_none());
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the connection was dropped, not kept");
    }

    #[tokio::test]
    async fn a_body_that_fails_takes_its_connection_with_it() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (conn, _) = fake(1, &dropped);
        let (tx, chan) = http_body_util::channel::Channel::<Bytes, &'static str>::new(4);
        let mut body = PooledBody::new(chan, Some((pool.clone(), conn)));
        tx.abort("upstream went away");
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the connection went with the error");
        assert!(pool.checkout().is_none(), "a failed body never gives its connection back");
    }

    #[tokio::test]
    async fn checkout_is_last_in_first_out() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        for id in 1..=3 {
            pool.checkin(fake(id, &dropped).0);
        }
        let order: Vec<usize> = std::iter::from_fn(|| pool.checkout().map(|c| c.id)).collect();
        assert_eq!(order, [3, 2, 1]);
    }

    #[tokio::test]
    async fn connections_the_upstream_closed_are_never_handed_out() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (a, _) = fake(1, &dropped);
        let (b, b_closed) = fake(2, &dropped);
        pool.checkin(a);
        pool.checkin(b);
        b_closed.store(true, Ordering::SeqCst);
        let got = pool.checkout().unwrap();
        assert_eq!(got.id, 1, "the closed one on top was skipped");
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "and dropped");

        let (c, c_closed) = fake(3, &dropped);
        c_closed.store(true, Ordering::SeqCst);
        pool.checkin(c);
        assert_eq!(pool.idle_len(), 0, "a closed connection is not taken back");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire_at_checkout() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        pool.checkin(fake(1, &dropped).0);
        tokio::time::advance(Duration::from_secs(30)).await;
        pool.checkin(fake(2, &dropped).0);
        tokio::time::advance(Duration::from_secs(31)).await;
        // 2 is 31 s old and still good; 1 is 61 s old.
        let got = pool.checkout().unwrap();
        assert_eq!(got.id, 2);
        assert!(pool.checkout().is_none());
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the expired one was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_expired_connections_without_a_checkout() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        pool.checkin(fake(1, &dropped).0);
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert_eq!(pool.idle_len(), 0);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn sweep_keeps_fresh_connections_and_drops_closed_ones() {
        let dropped = Arc::default();
        let pool = Pool::new(8, MINUTE);
        let (a, a_closed) = fake(1, &dropped);
        pool.checkin(a);
        pool.checkin(fake(2, &dropped).0);
        a_closed.store(true, Ordering::SeqCst);
        pool.sweep();
        assert_eq!(pool.idle_len(), 1);
        assert_eq!(pool.checkout().map(|c| c.id), Some(2));
    }

    #[tokio::test]
    async fn the_pool_holds_at_most_its_bound() {
        let dropped = Arc::default();
        let pool = Pool::new(2, MINUTE);
        for id in 1..=3 {
            pool.checkin(fake(id, &dropped).0);
        }
        assert_eq!(pool.idle_len(), 2);
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the one that did not fit was closed");
        assert_eq!(pool.checkout().map(|c| c.id), Some(2));
    }
}
