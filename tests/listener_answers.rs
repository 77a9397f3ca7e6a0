//! End to end: requests the proxy listener answers itself, before any route — a head the HTTP/1 guard refuses
//! (400) and a request on a connection over `max_connections` (503 `overloaded`) — get the JSON error, never
//! reach the app, and are counted in `veil_requests_total` under route "-".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` on a new connection and reads until the server closes it (bounded).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close the connection: {}", String::from_utf8_lossy(&out));
    String::from_utf8(out).unwrap()
}

fn status_and_code(response: &str) -> (String, String) {
    let status = response.split(' ').nth(1).unwrap_or_default().to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    (status, json["error"]["code"].as_str().unwrap_or_default().to_owned())
}

/// The value of one `veil_requests_total` series on the admin listener (0 when absent).
async fn requests_total(admin: SocketAddr, route: &str, status: &str) -> u64 {
    let (_, text) = get(admin, "/metrics").await;
    let series = format!("veil_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn refused_and_shed_requests_are_answered_and_counted() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_connections = 2\n{}",
        app.addr,
        config_text(dir.path(), false, None)
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
    let (proxy, admin) = (running.proxy_addr.unwrap(), running.admin_addr.unwrap());

    // A smuggling shape: refused by the guard with 400, counted under route "-".
    let smuggle = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(status_and_code(&exchange(proxy, smuggle).await), ("400".into(), "bad_request".into()));
    assert_eq!(requests_total(admin, "-", "400").await, 1);

    // Two idle connections take both slots; a third connection's request is answered 503 and closed.
    let _held = [TcpStream::connect(proxy).await.unwrap(), TcpStream::connect(proxy).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = exchange(proxy, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_and_code(&answer), ("503".into(), "overloaded".into()), "{answer}");
    assert_eq!(requests_total(admin, "-", "503").await, 1);

    assert!(app.requests().is_empty(), "the app received {:?}", app.requests());
}
