//! Following other processes' erasures in a shared PostgreSQL store: every transaction that turns records into
//! tombstones sends `NOTIFY veil_gone`; each process LISTENs and moves an epoch that in-memory caches of live
//! records check (see [`super::Store::erasure_epoch`]).
//!
//! The epoch is odd while nobody listens (at start, after a lost connection): notifications sent then are not
//! delivered, so caches are bypassed. Each (re)connection moves it on to a new even value, which also voids
//! everything cached before.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The channel tombstoning transactions notify.
pub const CHANNEL: &str = "veil_gone";

/// Pause before listening again after a lost connection.
const RETRY: Duration = Duration::from_secs(1);

/// The listening task; stops when dropped.
pub struct Follower {
    task: JoinHandle<()>,
    epoch: watch::Receiver<u64>,
}

impl Follower {
    /// Starts listening on one connection of `pool` (needs a tokio runtime).
    pub fn start(pool: PgPool) -> Follower {
        let (tx, epoch) = watch::channel(1u64);
        let task = tokio::spawn(follow(pool, tx));
        Follower { task, epoch }
    }

    pub fn epoch(&self) -> watch::Receiver<u64> {
        self.epoch.clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(pool: PgPool, epoch: watch::Sender<u64>) {
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                // Listening from here on: a new even epoch (whatever happened before is forgotten).
                epoch.send_modify(|e| *e = (*e | 1) + 1);
                // `Ok(None)`: the connection was lost (notifications may have been missed).
                while let Ok(Some(_)) = listener.try_recv().await {
                    epoch.send_modify(|e| *e += 2);
                }
                tracing::warn!("lost the store's erasure notifications; known values are not used until back");
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for the store's erasure notifications"),
        }
        epoch.send_modify(|e| *e |= 1);
        tokio::time::sleep(RETRY).await;
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
