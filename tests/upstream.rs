//! The upstream side of the proxy: a 50 MiB upload no rule touches streams through a spawned veil with flat
//! memory, and an https:// upstream is reached over verified TLS (and refused when its certificate does not
//! verify, with nothing sent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPLOAD_BYTES: u64 = 50 << 20;

/// An upstream that counts the body bytes it receives without keeping them, and answers with the count.
struct CountingApp {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl CountingApp {
    async fn start() -> CountingApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            seen.fetch_add(1, Ordering::SeqCst);
                            let mut body = req.into_body();
                            let mut n = 0u64;
                            while let Some(frame) = body.frame().await {
                                if let Ok(data) = frame.unwrap().into_data() {
                                    n += data.len() as u64;
                                }
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                n.to_string(),
                            ))))
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        CountingApp { addr, requests }
    }
}

async fn spawn_proxy(config: &Path) -> (tokio::process::Child, SocketAddr) {
    spawn_veil_listening(config, "proxy listening").await
}

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends a request with a `len`-byte body written in 64 KiB pieces, never held whole; returns status and body.
async fn upload(addr: SocketAddr, path: &str, len: u64) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: shop\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).await.unwrap();
        left -= n as u64;
    }
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut reply)).await.unwrap().unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let status = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn a_50_mib_upload_no_rule_touches_streams_through_with_flat_memory() {
    let app = CountingApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_body_bytes = 65536\n{}\n\
         [[route]]\nname = \"checkout\"\nmatch = {{ path = \"/checkout\" }}\n\
         fields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n",
        app.addr,
        config_text(dir.path(), false, None)
    );
    let config = dir.path().join("veil.toml");
    std::fs::write(&config, text).unwrap();
    let (child, proxy) = spawn_proxy(&config).await;
    let pid = child.id().unwrap();

    // Warm up (connection pool, buffers), then take the baseline.
    assert_eq!(upload(proxy, "/files/warm", 1 << 20).await, (200, (1u64 << 20).to_string()));
    let before = peak_rss_kib(pid);
    assert_eq!(upload(proxy, "/files/big", UPLOAD_BYTES).await, (200, UPLOAD_BYTES.to_string()));
    let grown = peak_rss_kib(pid).saturating_sub(before);
    assert!(grown < 16 << 10, "peak RSS grew by {grown} KiB while streaming {} MiB", UPLOAD_BYTES >> 20);
    assert_eq!(app.requests.load(Ordering::SeqCst), 2);
}

/// A veil in this process, plain HTTP in front, forwarding to `upstream` with `upstream_ca` trusted if given.
async fn veil_to(dir: &Path, upstream: &str, upstream_ca: Option<&Path>) -> veil::app::Running {
    veil::crypto::Keyring::generate_file(&dir.join("master.key")).unwrap();
    let ca = upstream_ca.map(|p| format!("upstream_ca = \"{}\"\n", p.display())).unwrap_or_default();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{ca}upstream_timeout = \"5s\"\n{}\n\
         [[route]]\nname = \"checkout\"\nmatch = {{ path = \"/checkout\" }}\n\
         fields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n",
        config_text(dir, false, None)
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap()
}

async fn post_card(proxy: SocketAddr, card: &str) -> (u16, Value) {
    let req = hyper::Request::post(format!("http://{proxy}/checkout"))
        .header("host", "shop")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({ "card": card }).to_string())))
        .unwrap();
    let (status, _, body) = send_request(proxy, None, false, req).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn https_upstream_is_verified_against_the_configured_ca() {
    let upstream_pki = tempfile::tempdir().unwrap();
    Pki::new(upstream_pki.path());
    let app = tls_app::TlsApp::start(upstream_pki.path()).await;
    let pan = random_pan("411111", 16);

    let dir = tempfile::tempdir().unwrap();
    let running =
        veil_to(dir.path(), &format!("https://{}", app.addr), Some(&upstream_pki.path().join("ca.pem"))).await;
    let (status, body) = post_card(running.proxy_addr.unwrap(), &pan).await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    let (version, received) = app.requests().pop().unwrap();
    assert_eq!(version, "HTTP/2.0", "ALPN picks h2 towards an upstream that offers it");
    let received: Value = serde_json::from_slice(&received.body).unwrap();
    let token = received["card"].as_str().unwrap();
    assert_ne!(token, pan);
    assert!(luhn_valid(token) && token.len() == pan.len());
    running.shutdown().await;

    // Without the CA the upstream certificate does not verify: 502, and the app gets nothing.
    let dir = tempfile::tempdir().unwrap();
    let running = veil_to(dir.path(), &format!("https://{}", app.addr), None).await;
    let (status, body) = post_card(running.proxy_addr.unwrap(), &pan).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (502, "upstream_unavailable"), "{body}");
    assert_eq!(app.requests().len(), 1, "only the first veil's request reached the app");
    running.shutdown().await;
}

/// A CA and one server certificate it signed, written as ca.pem / server.pem / server.key in `dir`.
fn write_server_cert(dir: &Path, names: &[&str], not_after: (i32, u8, u8)) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn expired_and_wrong_host_upstream_certificates_are_refused() {
    // Checked against a control with a valid certificate, so a refusal is the certificate's doing.
    for (names, not_after, what) in [
        (&["localhost"][..], (2099, 1, 1), "valid"),
        (&["localhost"][..], (2021, 1, 1), "expired"),
        (&["shop.example"][..], (2099, 1, 1), "issued for another host"),
    ] {
        let pki = tempfile::tempdir().unwrap();
        write_server_cert(pki.path(), names, not_after);
        let app = tls_app::TlsApp::start(pki.path()).await;
        let dir = tempfile::tempdir().unwrap();
        let upstream = format!("https://localhost:{}", app.addr.port());
        let running = veil_to(dir.path(), &upstream, Some(&pki.path().join("ca.pem"))).await;
        let (status, body) = post_card(running.proxy_addr.unwrap(), &random_pan("411111", 16)).await;
        if what == "valid" {
            // The control: the same setup with a good certificate reaches the app.
            assert_eq!((status, app.requests().len()), (200, 1), "{body}");
        } else {
            let code = body["error"]["code"].as_str().unwrap();
            assert_eq!((status, code), (502, "upstream_unavailable"), "{what}: {body}");
            assert!(app.requests().is_empty(), "{what}: the app received nothing");
        }
        running.shutdown().await;
    }
}
