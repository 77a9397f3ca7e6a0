//! One accept loop for every listener: optional TLS, handshake and header timeouts, a connection limit,
//! HTTP/1.1 and h2 (hyper-util auto), and graceful shutdown that lets in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub mod h1guard;
pub mod per_client;

use per_client::{ClientCaps, PerClient};

use crate::stall::WriteDeadline;

/// Connections beyond the limit that still get a 503 answer (the rest are closed at once).
const SHED_CONNECTIONS: usize = 64;

/// A client connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The answer on a connection over the limit.
fn overloaded() -> Response<http_body_util::Full<bytes::Bytes>> {
    crate::respond::closing_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "too many connections; try again",
    )
}

/// Counts a request the server answers itself, so it never reaches the service: a head the HTTP/1 guard
/// refuses (400, 408, 431) or a request on a connection over the limit (503). Called with the status sent.
#[derive(Clone)]
pub struct AnsweredHere(pub Arc<dyn Fn(http::StatusCode) + Send + Sync>);

impl Default for AnsweredHere {
    fn default() -> Self {
        AnsweredHere(Arc::new(|_| {}))
    }
}

impl std::fmt::Debug for AnsweredHere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnsweredHere")
    }
}

/// Limits that every listener applies.
#[derive(Debug, Clone)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// Largest request head (HTTP/1.1 buffer, h2 header list); hyper answers 431 beyond it.
    pub max_header_bytes: usize,
    /// A write to the client that makes no progress this long closes the connection (a peer that stopped reading).
    pub write_timeout: Duration,
    /// What to count when one of these limits (or the request guard) answers a request.
    pub answered_here: AnsweredHere,
    /// Connections one client address may hold, and hold before their first request.
    pub per_client: ClientCaps,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            write_timeout: Duration::from_secs(30),
            answered_here: AnsweredHere::default(),
            per_client: ClientCaps::default(),
        }
    }
}

/// Facts about one accepted connection, handed to the service factory.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// SANs of a verified client certificate (empty without one).
    pub tls_identities: Arc<Vec<String>>,
}

/// Serves `listener` until `shutdown` turns true, then drains open connections.
pub async fn serve<F, S, Fut, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    make_service: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, std::convert::Infallible>> + Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header timeout is silently off without a timer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_header_list_size(limits.max_header_bytes as u32);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shed_slots = Arc::new(Semaphore::new(SHED_CONNECTIONS));
    let clients = Arc::new(PerClient::default());
    let make_service = Arc::new(make_service);

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // One address at its caps (half-open floods): closed at once, so other clients keep their slots.
        let Some(client_slot) = clients.admit(peer.ip(), limits.per_client) else {
            tracing::debug!(%peer, "per-client connection cap reached; closing new connection");
            continue;
        };
        // Beyond the connection limit, answer 503 (a bounded number of times) rather than queue.
        let (permit, shedding) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match shed_slots.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    tracing::warn!("connection limit reached; closing new connection");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (tls, builder, make_service) = (tls.clone(), builder.clone(), make_service.clone());
        let watcher = graceful.watcher();
        let (handshake_timeout, write_timeout) = (limits.handshake_timeout, limits.write_timeout);
        let answered_here = limits.answered_here.clone();
        let (max_head, head_timeout) = (limits.max_header_bytes.max(8192), limits.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let client_slot = Arc::new(client_slot);
            let (io, ids, h2): (Box<dyn Io>, Vec<String>, bool) = match tls {
                None => (Box::new(stream), Vec::new(), false),
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let ids = s.get_ref().1.peer_certificates().and_then(|c| c.first()).map(crate::tls::identities);
                        let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                        (Box::new(s), ids.unwrap_or_default(), h2)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            // HTTP/1.x request heads are checked for smuggling shapes before hyper parses them (h1guard).
            let verdicts = Arc::new(h1guard::Verdicts::default());
            let io: Box<dyn Io> = match h2 {
                true => io,
                false => Box::new(
                    h1guard::H1Guard::new(io, max_head, verdicts.clone()).with_first_head_deadline(head_timeout),
                ),
            };
            let io = TokioIo::new(WriteDeadline::new(io, write_timeout));
            let result = if shedding {
                let conn = builder.serve_connection(
                    io,
                    service_fn(move |_req| {
                        (answered_here.0)(http::StatusCode::SERVICE_UNAVAILABLE);
                        async { Ok::<_, std::convert::Infallible>(overloaded()) }
                    }),
                );
                watcher.watch(conn.into_owned()).await
            } else {
                let svc = Arc::new(make_service(ConnInfo { peer, tls_identities: Arc::new(ids) }));
                let svc = service_fn(move |req| {
                    client_slot.started();
                    // A refused head reaches hyper as a stand-in request; answer it here, never in a handler.
                    let refusal = verdicts.next_request();
                    if let Some(r) = refusal {
                        (answered_here.0)(r.status());
                    }
                    let svc = svc.clone();
                    async move {
                        match refusal {
                            Some(r) => {
                                tracing::info!(%peer, reason = r.message(), "HTTP/1 request refused");
                                Ok(h1guard::refused_response(r).map(Either::Right))
                            }
                            None => svc(req).await.map(|resp| resp.map(Either::Left)),
                        }
                    }
                });
                watcher.watch(builder.serve_connection(io, svc).into_owned()).await
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
}
