//! The HTTP edge under hostile clients: oversized heads get 431, slowloris heads, slow bodies and silent TLS
//! handshakes and clients that stop reading are reaped at their timeouts, and normal requests keep being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Edge {
    _dir: tempfile::TempDir,
    pki: Pki,
    app: App,
    plain: veil::app::Running,
    tls: veil::app::Running,
}

async fn start() -> Edge {
    // A small page, or a big one (/big) for readers that stop reading.
    let app = App::start_with(std::sync::Arc::new(|seen: &Seen| {
        if seen.uri.starts_with("/big") {
            Bytes::from(vec![b'x'; 64 << 20])
        } else {
            Bytes::from_static(b"{\"ok\":true}")
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let pki = Pki::new(dir.path());
    let d = dir.path().display();
    let config = |tls: &str, sub: &str| {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        std::fs::copy(dir.path().join("master.key"), dir.path().join(sub).join("master.key")).unwrap();
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_header_bytes = 8192\n\
             max_pending_per_client = 1000\n\
             handshake_timeout = \"500ms\"\nheader_timeout = \"500ms\"\nbody_timeout = \"500ms\"\n\
             write_timeout = \"500ms\"\n{tls}\n{}\n\
             [[route]]\nname = \"checkout\"\nmatch = {{ path = \"/checkout\" }}\n\
             fields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n",
            app.addr,
            config_text(&dir.path().join(sub), false, None)
        )
    };
    let tls = format!("[proxy.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n");
    let clock = veil::vault::engine::system_clock;
    let plain = veil::app::start(veil::config::parse(&config("", "plain")).unwrap(), clock()).await.unwrap();
    let tls = veil::app::start(veil::config::parse(&config(&tls, "tls")).unwrap(), clock()).await.unwrap();
    Edge { _dir: dir, pki, app, plain, tls }
}

/// Writes `head`, then reads until the server closes or `wait` passes; returns what came back and whether it
/// closed.
async fn exchange(addr: SocketAddr, head: &[u8], wait: Duration) -> (String, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await.is_ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

async fn normal_get(addr: SocketAddr) -> u16 {
    let req = hyper::Request::get(format!("http://{addr}/page")).header("host", "shop").body(Full::default()).unwrap();
    send_request(addr, None, false, req).await.unwrap().0
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let e = start().await;
    let addr = e.plain.proxy_addr.unwrap();
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(16 << 10));
    let (reply, _) = exchange(addr, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (reply, _) = exchange(addr, many.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");

    // h2: a header list over the limit is refused too.
    let req = hyper::Request::get("https://localhost/page").header("x-big", "a".repeat(16 << 10)).body(Full::default());
    let result = send_request(e.tls.proxy_addr.unwrap(), Some(&e.pki.ca_der), true, req.unwrap()).await;
    assert!(!matches!(result, Ok((200, _, _))), "an oversized h2 header list is not served");
    assert!(e.app.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_reaped_while_normal_requests_are_served() {
    let e = start().await;
    let addr = e.plain.proxy_addr.unwrap();
    let mut slow = Vec::new();
    for _ in 0..100 {
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            // One header byte every 100 ms, for at most 10 s: the server must cut this off at header_timeout.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if s.write_all(b"X").await.is_err() {
                    break;
                }
                let mut probe = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => break, // a 408 answer, then close
                    Err(_) => {}
                }
            }
            started.elapsed()
        }));
    }
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_millis(800) {
        assert_eq!(normal_get(addr).await, 200, "normal requests are served beside slowloris connections");
    }
    for s in slow {
        let lived = s.await.unwrap();
        assert!(lived < Duration::from_secs(5), "a slowloris connection lived {lived:?}");
    }
}

#[tokio::test]
async fn a_slow_body_under_a_rule_gets_408_and_nothing_is_forwarded() {
    let e = start().await;
    let addr = e.plain.proxy_addr.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /checkout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the slow body was not cut off");
    let reply = String::from_utf8_lossy(&buf);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(e.app.requests().is_empty());
}

#[tokio::test]
async fn a_silent_tls_client_is_dropped_at_the_handshake_timeout() {
    let e = start().await;
    let started = Instant::now();
    let (reply, closed) = exchange(e.tls.proxy_addr.unwrap(), b"", Duration::from_secs(5)).await;
    assert!(closed && reply.is_empty(), "closed={closed} {reply:?}");
    assert!(started.elapsed() >= Duration::from_millis(400), "closed before the timeout: {:?}", started.elapsed());
    let req = hyper::Request::get("https://localhost/page").header("host", "localhost").body(Full::new(Bytes::new()));
    let (status, _, _) =
        send_request(e.tls.proxy_addr.unwrap(), Some(&e.pki.ca_der), false, req.unwrap()).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let e = start().await;
    let addr = e.plain.proxy_addr.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Read nothing while socket buffers fill and the proxy's write stalls past write_timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
    assert!(total < 64 << 20, "the whole 64 MiB response was delivered to a reader that had stopped ({total} bytes)");
    assert_eq!(normal_get(addr).await, 200, "other clients are served");
}
