//! veil's upstream connection pool end to end: sequential requests through veil share one upstream connection, a
//! connection comes back only after its response was read to the end, connections the upstream closes are not
//! used again, and dropping an `Upstream` closes its idle connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::relay::Relay;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use veil::proxy::forward::{Hop, Upstream};
use veil::proxy::ProxyBody;

/// An upstream that counts the connections it accepted and those that have ended. `/big` answers 1 MiB, `/upload`
/// answers before reading the body, anything else `ok` and the HTTP version; with `keep_alive` off it closes
/// every connection after one response.
struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    ended_signal: Arc<tokio::sync::Notify>,
}

impl Origin {
    async fn start(keep_alive: bool) -> Origin {
        Self::serve(keep_alive, None).await
    }

    /// Over TLS with the test PKI in `pki_dir`, offering `alpn` (`h2`, `http/1.1`).
    async fn start_tls(pki_dir: &std::path::Path, alpn: &[&[u8]]) -> Origin {
        let cfg = common::tls_app::server_config(pki_dir, alpn);
        Self::serve(true, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    async fn serve(keep_alive: bool, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let ended_signal = Arc::new(tokio::sync::Notify::new());
        let (a, e, signal) = (accepted.clone(), ended.clone(), ended_signal.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let (e, signal, tls) = (e.clone(), signal.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/upload" {
                            // Answers at once and reads the body afterwards, as it arrives.
                            tokio::spawn(req.into_body().collect());
                            return Ok(hyper::Response::new(Full::new(Bytes::from_static(b"early"))));
                        }
                        let body = match req.uri().path() {
                            "/big" => vec![b'x'; 1 << 20],
                            _ => format!("ok {:?}", req.version()).into_bytes(),
                        };
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    });
                    match tls {
                        None => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(keep_alive)
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            } else {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            }
                        }
                    }
                    e.fetch_add(1, Ordering::SeqCst);
                    signal.notify_one();
                });
            }
        });
        Origin { addr, accepted, ended, ended_signal }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections have ended (the guard only stops a broken run from hanging).
    async fn until_ended(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.ended.load(Ordering::SeqCst) < n {
                self.ended_signal.notified().await;
            }
        })
        .await
        .expect("upstream connections did not end");
    }
}

fn get(path: &str) -> hyper::Request<ProxyBody> {
    hyper::Request::get(path).body(Full::new(Bytes::new()).map_err(|never| match never {}).boxed()).unwrap()
}

fn upstream(origin: &Origin) -> Upstream {
    Upstream::new(&format!("http://{}", origin.addr).parse().unwrap(), Duration::from_secs(5), None).unwrap()
}

#[tokio::test]
async fn a_connection_is_reused_after_a_full_body_and_never_after_an_early_drop() {
    let origin = Origin::start(true).await;
    let up = upstream(&origin);
    for _ in 0..3 {
        let resp = up.send(get("/"), Hop::Egress).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok HTTP/1.1");
    }
    assert_eq!(origin.accepted(), 1, "read to the end, the connection was reused");

    // A response abandoned after its first frame: its connection is closed, the next request opens another.
    let mut big = up.send(get("/big"), Hop::Egress).await.unwrap().into_body();
    assert!(big.frame().await.unwrap().unwrap().is_data());
    drop(big);
    origin.until_ended(1).await;
    let resp = up.send(get("/"), Hop::Egress).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok HTTP/1.1");
    assert_eq!(origin.accepted(), 2);

    // A large body read to the end gives its connection back too.
    let body = up.send(get("/big"), Hop::Egress).await.unwrap().into_body().collect().await.unwrap();
    assert_eq!(body.to_bytes().len(), 1 << 20);
    let resp = up.send(get("/"), Hop::Egress).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok HTTP/1.1");
    assert_eq!(origin.accepted(), 2);
}

#[tokio::test]
async fn a_connection_still_sending_a_request_body_is_not_waited_for() {
    let origin = Origin::start(true).await;
    let up = upstream(&origin);
    // The origin answers at once; the request body is still streaming when the answer has been read.
    let (mut tx, chan) = http_body_util::channel::Channel::<Bytes, Box<dyn std::error::Error + Send + Sync>>::new(1);
    tx.send_data(Bytes::from_static(b"first part")).await.unwrap();
    let req = hyper::Request::post("/upload").header("content-length", "1000000").body(chan.boxed()).unwrap();
    let resp = up.send(req, Hop::Egress).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "early");
    // That connection cannot take a request before its body is sent: the next one goes on a fresh connection
    // (waiting for it would run into the 5 s deadline and fail this request).
    assert_eq!(text(&up, "/").await, "ok HTTP/1.1");
    assert_eq!(origin.accepted(), 2);
    drop(tx);
}

#[tokio::test]
async fn connections_the_upstream_closes_are_not_used_again() {
    let origin = Origin::start(false).await;
    let up = upstream(&origin);
    for n in 1..=4 {
        let resp = up.send(get("/"), Hop::Egress).await.unwrap();
        assert_eq!(resp.status(), 200, "request {n}");
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok HTTP/1.1");
        // The upstream closed it after answering.
        origin.until_ended(n).await;
    }
    assert_eq!(origin.accepted(), 4, "one fresh connection per request");
}

#[tokio::test]
async fn dropping_the_upstream_closes_its_idle_connections() {
    let origin = Origin::start(true).await;
    let up = upstream(&origin);
    let resp = up.send(get("/"), Hop::Egress).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok HTTP/1.1");
    assert_eq!(origin.ended.load(Ordering::SeqCst), 0, "idle in the pool, still open");
    drop(up);
    origin.until_ended(1).await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_error_not_a_hang() {
    // Bound then closed: nothing listens on this port.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let up = Upstream::new(&format!("http://{addr}").parse().unwrap(), Duration::from_secs(5), None).unwrap();
    let err = up.send(get("/"), Hop::Egress).await.err().unwrap();
    assert_eq!(err.status_and_code().1, "upstream_unavailable");
}

#[tokio::test]
async fn a_named_upstream_host_is_resolved() {
    let origin = Origin::start(true).await;
    let base = format!("http://localhost:{}", origin.addr.port()).parse().unwrap();
    let up = Upstream::new(&base, Duration::from_secs(5), None).unwrap();
    let resp = up.send(get("/"), Hop::Egress).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok HTTP/1.1");
    assert_eq!(origin.accepted(), 1);
}

#[test]
fn an_upstream_that_is_neither_http_nor_https_is_refused() {
    let err = Upstream::new(&"ftp://127.0.0.1:21".parse().unwrap(), Duration::from_secs(5), None).err().unwrap();
    assert!(err.to_string().contains("not http or https"), "{err}");
    let err = Upstream::new(&"/relative".parse().unwrap(), Duration::from_secs(5), None).err().unwrap();
    assert!(err.to_string().contains("scheme and a host"), "{err}");
}

async fn text(up: &Upstream, path: &str) -> String {
    let resp = up.send(get(path), Hop::Egress).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn an_https_upstream_that_speaks_http1_is_pooled_too() {
    let pki = tempfile::tempdir().unwrap();
    Pki::new(pki.path());
    let origin = Origin::start_tls(pki.path(), &[b"http/1.1"]).await;
    let base = format!("https://localhost:{}", origin.addr.port()).parse().unwrap();
    let up = Upstream::new(&base, Duration::from_secs(5), Some(&pki.path().join("ca.pem"))).unwrap();
    for _ in 0..3 {
        assert_eq!(text(&up, "/").await, "ok HTTP/1.1");
    }
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_that_speaks_h2_shares_one_connection() {
    let pki = tempfile::tempdir().unwrap();
    Pki::new(pki.path());
    let origin = Origin::start_tls(pki.path(), &[b"h2", b"http/1.1"]).await;
    let base = format!("https://127.0.0.1:{}", origin.addr.port()).parse().unwrap();
    let up = Arc::new(Upstream::new(&base, Duration::from_secs(5), Some(&pki.path().join("ca.pem"))).unwrap());
    assert_eq!(text(&up, "/").await, "ok HTTP/2.0");
    // Concurrent requests are multiplexed on the one connection.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let up = up.clone();
            tokio::spawn(async move { text(&up, "/").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "ok HTTP/2.0");
    }
    assert_eq!(origin.accepted(), 1);
    drop(up);
    origin.until_ended(1).await;
}

/// 20 sequential client connections through veil, pass-through and tokenising, reach the app over one
/// upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_through_veil_share_one_upstream_connection() {
    let app = App::start().await;
    let relay = Relay::start(app.addr).await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nupstream_timeout = \"5s\"\n{}\n\
         [[route]]\nname = \"checkout\"\nmatch = {{ path = \"/checkout\" }}\n\
         fields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n",
        relay.addr,
        config_text(dir.path(), false, None)
    );
    let running =
        veil::app::start(veil::config::parse(&text).unwrap(), veil::vault::engine::system_clock()).await.unwrap();
    let proxy = running.proxy_addr.unwrap();
    for i in 0..20 {
        let req = if i % 2 == 0 {
            hyper::Request::get(format!("http://{proxy}/page/{i}")).header("host", "shop").body(Full::default())
        } else {
            hyper::Request::post(format!("http://{proxy}/checkout"))
                .header("host", "shop")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(json!({ "card": random_pan("411111", 16) }).to_string())))
        };
        let (status, _, body) = send_request(proxy, None, false, req.unwrap()).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"{\"ok\":true}"[..]), "request {i}");
    }
    assert_eq!(app.requests().len(), 20);
    assert_eq!(relay.accepted(), 1, "every request went over the one pooled upstream connection");
    running.shutdown().await;
}
