//! End to end: request-smuggling shapes sent over raw TLS and plain sockets to a pass-through path and a rule
//! path are answered 400 with the JSON error, the connection closes, and the upstream app receives nothing;
//! pipelined requests before a bad head are still answered; the vault API and admin listeners are guarded too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const ROUTES: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST", "GET"], path = "/checkout" }
fields = [ { json = "$.card", class = "pan" } ]
"#;

struct Veil {
    _dir: tempfile::TempDir,
    pki: Pki,
    running: veil::app::Running,
}

impl Veil {
    async fn start(app: &App, tls: bool) -> Veil {
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let d = dir.path().display();
        let tls_section = if tls {
            format!("[proxy.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n")
        } else {
            String::new()
        };
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_body_bytes = 65536\n{tls_section}{}\n{ROUTES}",
            app.addr,
            config_text(dir.path(), false, None)
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Veil { _dir: dir, pki, running }
    }

    fn proxy(&self) -> SocketAddr {
        self.running.proxy_addr.unwrap()
    }
}

/// Writes `bytes` in one go and reads until the server closes (bounded): everything the server sent, and
/// whether it closed.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, bytes: &[u8]) -> (String, bool) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    let closed = matches!(tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await, Ok(Ok(_)));
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

async fn raw(addr: SocketAddr, ca: Option<&Pki>, bytes: &[u8]) -> (String, bool) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let Some(pki) = ca else { return exchange(tcp, bytes).await };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    exchange(tls, bytes).await
}

/// Splits a response stream into (status line, headers, JSON body) of its responses, in order.
fn responses(mut text: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while let Some(end) = text.find("\r\n\r\n") {
        let head = &text[..end];
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        let body = &text[end + 4..(end + 4 + len).min(text.len())];
        let status = head.lines().next().unwrap_or_default().to_owned();
        out.push((status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null)));
        text = &text[(end + 4 + len).min(text.len())..];
    }
    out
}

fn assert_refused(text: &str, closed: bool, status: &str, code: &str, what: &str) {
    let all = responses(text);
    let (line, head, body) = all.last().unwrap_or_else(|| panic!("{what}: no response in {text:?}"));
    assert!(line.starts_with(&format!("HTTP/1.1 {status}")), "{what}: {line}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    assert!(head.contains("content-type: application/json") && head.contains("connection: close"), "{what}: {head}");
    assert!(closed, "{what}: the connection stays open");
}

fn vectors(path: &str) -> Vec<(&'static str, String)> {
    let h = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n");
    vec![
        ("CL+TE", format!("{h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")),
        ("TE+CL lower case", format!("{h}transfer-encoding: CHUNKED\r\ncontent-length: 4\r\n\r\n0\r\n\r\n")),
        ("duplicate CL", format!("{h}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}")),
        ("conflicting CL", format!("{h}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}x")),
        ("CL list", format!("{h}Content-Length: 2, 2\r\n\r\n{{}}")),
        ("obs-fold", format!("{h}X-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{{}}")),
        ("bare LF", format!("POST {path} HTTP/1.1\nHost: x\nContent-Length: 2\n\n{{}}")),
        ("NUL in value", format!("{h}X-A: a\0b\r\nContent-Length: 2\r\n\r\n{{}}")),
        ("CR in value", format!("{h}X-A: a\rb\r\nContent-Length: 2\r\n\r\n{{}}")),
        ("invalid chunk size", format!("{h}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n")),
        ("chunk size overflow", format!("{h}Transfer-Encoding: chunked\r\n\r\n10000000000000002\r\n{{}}\r\n0\r\n\r\n")),
        ("TE not chunked", format!("{h}Transfer-Encoding: gzip\r\n\r\n")),
        ("TE chunked not final", format!("{h}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")),
        ("TE in HTTP/1.0", format!("POST {path} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")),
        (
            "TE + CL on GET",
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n"
            ),
        ),
    ]
}

#[tokio::test]
async fn smuggling_vectors_get_400_json_and_a_closed_connection_over_tls_and_plain() {
    let app = App::start().await;
    let tls = Veil::start(&app, true).await;
    let plain = Veil::start(&app, false).await;
    for (veil, ca) in [(&tls, Some(&tls.pki)), (&plain, None)] {
        for path in ["/pass/through", "/checkout"] {
            for (name, bytes) in vectors(path) {
                let what = format!("{name} to {path} (tls={})", ca.is_some());
                let (text, closed) = raw(veil.proxy(), ca, bytes.as_bytes()).await;
                assert_refused(&text, closed, "400", "bad_request", &what);
                assert_eq!(responses(&text).len(), 1, "{what}: {text}");
            }
        }
    }
    assert!(app.requests().is_empty(), "the app received {:?}", app.requests());
}

#[tokio::test]
async fn pipelined_requests_before_a_bad_head_are_answered_and_nothing_after_it_is_forwarded() {
    let app = App::start().await;
    let veil = Veil::start(&app, false).await;
    let ok = "POST /pass HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let ok_chunked =
        "POST /pass2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    let bad = "POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let hidden = "GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n";
    let (text, closed) = raw(veil.proxy(), None, format!("{ok}{ok_chunked}{bad}{hidden}").as_bytes()).await;
    let all = responses(&text);
    assert_eq!(all.len(), 3, "{text}");
    assert!(all[0].0.starts_with("HTTP/1.1 200") && all[1].0.starts_with("HTTP/1.1 200"), "{text}");
    assert_refused(&text, closed, "400", "bad_request", "CL+TE after two good requests");
    let seen: Vec<_> = app.requests().into_iter().map(|s| (s.uri, s.body)).collect();
    assert_eq!(seen, vec![("/pass".into(), "hello".into()), ("/pass2".into(), "abc".into())]);
}

#[tokio::test]
async fn a_refused_head_followed_by_a_large_body_still_gets_its_answer() {
    let app = App::start().await;
    let veil = Veil::start(&app, false).await;
    let mut attack =
        b"POST /pass HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    attack.extend(std::iter::repeat_n(b'a', 200_000));
    for _ in 0..5 {
        let (text, closed) = raw(veil.proxy(), None, &attack).await;
        assert_refused(&text, closed, "400", "bad_request", "CL+TE with 200 kB behind it");
    }
    assert!(app.requests().is_empty());
}

#[tokio::test]
async fn oversized_heads_get_431_json() {
    let app = App::start().await;
    let veil = Veil::start(&app, false).await;
    let big = format!("GET /pass HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
    let (text, closed) = raw(veil.proxy(), None, big.as_bytes()).await;
    assert_refused(&text, closed, "431", "headers_too_large", "17 KiB head");
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let (text, closed) = raw(veil.proxy(), None, format!("GET /pass HTTP/1.1\r\n{many}\r\n").as_bytes()).await;
    assert_refused(&text, closed, "431", "headers_too_large", "101 header lines");
    assert!(app.requests().is_empty());
}

#[tokio::test]
async fn vault_api_and_admin_listeners_are_guarded_and_h2_still_works() {
    let app = App::start().await;
    let veil = Veil::start(&app, false).await;
    let attack =
        "POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for addr in [veil.running.vault_addr.unwrap(), veil.running.admin_addr.unwrap()] {
        let (text, closed) = raw(addr, None, attack.as_bytes()).await;
        assert_refused(&text, closed, "400", "bad_request", &format!("CL+TE to {addr}"));
    }
    let (status, _) = get(veil.running.admin_addr.unwrap(), "/healthz").await;
    assert_eq!(status, 200, "a clean HTTP/1.1 request still passes");

    // Prior-knowledge h2 on the plain proxy port is not touched by the guard.
    let tcp = tokio::net::TcpStream::connect(veil.proxy()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("http://localhost/pass/h2")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"over h2")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.requests().pop().unwrap().body, "over h2");
}
