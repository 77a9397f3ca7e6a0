//! A fault-injecting TCP relay for tests: sits between two peers on 127.0.0.1 and, as the test switches it,
//! passes bytes through, delays them, resets new connections, or holds them open and silent (half-open).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass through.
    None,
    /// Every chunk is held this long in each direction.
    Delay(Duration),
    /// Connections are reset (RST) as soon as they arrive; open ones are reset too.
    Reset,
    /// Connections are accepted and then nothing: no bytes, no close (a peer that went away silently).
    Blackhole,
}

pub struct Relay {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Connections accepted so far.
    pub accepted: Arc<Mutex<usize>>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, watcher) = watch::channel(Fault::None);
        let accepted: Arc<Mutex<usize>> = Arc::default();
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                *count.lock().unwrap() += 1;
                tokio::spawn(relay(client, target, watcher.clone()));
            }
        });
        Relay { addr, fault, accepted }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn relay(client: TcpStream, target: SocketAddr, mut fault: watch::Receiver<Fault>) {
    let first = *fault.borrow_and_update();
    match first {
        Fault::Reset => return reset(client),
        Fault::Blackhole => {
            // Hold the connection, silent, until the fault ends; then drop it.
            while fault.changed().await.is_ok() && *fault.borrow() == Fault::Blackhole {}
            return reset(client);
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(target).await else { return reset(client) };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = pipe(&mut cr, &mut sw, fault.clone());
    let down = pipe(&mut sr, &mut cw, fault.clone());
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    let current = *fault.borrow_and_update();
    if current == Fault::Blackhole {
        // Half-open: both ends stay connected and hear nothing until the fault ends.
        while fault.changed().await.is_ok() && *fault.borrow() == Fault::Blackhole {}
    }
    if matches!(current, Fault::Reset | Fault::Blackhole) {
        if let (Ok(c), Ok(s)) = (cr.reunite(cw), sr.reunite(sw)) {
            reset(c);
            reset(s);
        }
    }
}

/// Copies until EOF, an error, or a Reset/Blackhole fault (the caller then resets the connection).
async fn pipe(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => { let _ = to.shutdown().await; return; }
                Ok(n) => n,
            },
            changed = fault.changed() => {
                if changed.is_err() || matches!(*fault.borrow(), Fault::Reset | Fault::Blackhole) {
                    return;
                }
                continue;
            }
        };
        let current = *fault.borrow();
        match current {
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Reset | Fault::Blackhole => return,
            Fault::None => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
