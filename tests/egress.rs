//! End to end: a checkout through veil's ingress to the app, then the app's payment request through an egress route
//! to a fake payment provider over verified TLS — the provider gets the card number, the app only ever the token —
//! and every way an egress route refuses: rights, unknown tokens, untrusted certificates, other destinations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::tls_app::{Reply, TlsApp};
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAN: &str = "4111111111111111";

/// The provider's reply: it echoes the card number it was sent, as real providers sometimes do.
fn echo_card(seen: &Seen) -> Reply {
    let sent: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
    let card = sent["source"]["number"].as_str().unwrap_or("").to_owned();
    let body =
        json!({"id": "pay_1", "status": "captured", "card": {"number": card}, "note": format!("charged {card}")});
    (200, vec![("content-type", "application/json".into())], Bytes::from(body.to_string()))
}

struct Shop {
    _dir: tempfile::TempDir,
    pki: Pki,
    running: veil::app::Running,
    app: App,
    provider: TlsApp,
}

impl Shop {
    /// veil with TLS ingress -> `app`, and egress routes to `provider`: `psp` (caller payments, CA trusted),
    /// `psp-app` (caller app, which may not detokenize), `psp-untrusted` (the provider's CA not configured).
    async fn start(provider: TlsApp, provider_ca: &std::path::Path) -> Shop {
        let app = App::start().await;
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let d = dir.path().display();
        let ca = provider_ca.display();
        let upstream = format!("https://{}", provider.addr);
        let egress = |name: &str, caller: &str, ca_line: &str| {
            format!(
                "[[egress]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{ca_line}\
                 caller = \"{caller}\"\nupstream_timeout = \"5s\"\n\
                 fields = [ {{ json = \"$.source.number\", class = \"pan\" }}, {{ header = \"x-card\", class = \"pan\" }} ]\n"
            )
        };
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n[proxy.tls]\ncert = \"{d}/server.pem\"\n\
             key = \"{d}/server.key\"\n{}\n\
             [[route]]\nname = \"checkout\"\nmatch = {{ methods = [\"POST\"], path = \"/checkout\" }}\n\
             fields = [ {{ json = \"$.card.number\", class = \"pan\" }} ]\n{}{}{}",
            app.addr,
            config_text(dir.path(), false, None),
            egress("psp", "payments", &format!("ca = \"{ca}\"\n")),
            egress("psp-app", "app", &format!("ca = \"{ca}\"\n")),
            egress("psp-untrusted", "payments", ""),
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Shop { _dir: dir, pki, running, app, provider }
    }

    fn egress(&self, name: &str) -> SocketAddr {
        self.running.egress_addrs.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// The browser's checkout through the TLS ingress; returns the token the app stored.
    async fn checkout(&self, pan: &str) -> String {
        let body = json!({"card": {"number": pan}, "amount": 1999}).to_string();
        let req = hyper::Request::post("https://localhost/checkout")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, _, _) =
            send_request(self.running.proxy_addr.unwrap(), Some(&self.pki.ca_der), false, req).await.unwrap();
        assert_eq!(status, 200);
        let seen = self.app.requests().pop().unwrap();
        let stored: Value = serde_json::from_slice(&seen.body).unwrap();
        stored["card"]["number"].as_str().unwrap().to_owned()
    }

    /// The app's payment request to an egress route (plain HTTP on loopback).
    async fn pay(&self, route: &str, token: &str, h2: bool) -> (u16, Value) {
        let addr = self.egress(route);
        let body = json!({"source": {"number": token}, "amount": 1999}).to_string();
        let mut req = hyper::Request::post(format!("http://{addr}/v1/payments"))
            .header("content-type", "application/json")
            .header("x-card", token);
        if !h2 {
            req = req.header("host", "psp.example");
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let (status, _, body) = send_request(addr, None, h2, req).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

/// A test CA directory and a provider serving a certificate it signed.
async fn provider(reply: Arc<dyn Fn(&Seen) -> Reply + Send + Sync>) -> (tempfile::TempDir, TlsApp) {
    let dir = tempfile::tempdir().unwrap();
    Pki::new(dir.path());
    let provider = TlsApp::start_with(dir.path(), reply).await;
    (dir, provider)
}

#[tokio::test]
async fn the_provider_gets_the_card_number_and_the_app_only_ever_the_token() {
    let (ca_dir, provider) = provider(Arc::new(echo_card)).await;
    let shop = Shop::start(provider, &ca_dir.path().join("ca.pem")).await;

    let token = shop.checkout(PAN).await;
    assert_ne!(token, PAN);
    assert!(luhn_valid(&token));

    for h2 in [false, true] {
        let (status, reply) = shop.pay("psp", &token, h2).await;
        assert_eq!(status, 200, "{reply}");
        // The provider's echo of the card number reaches the app as the same token it already holds.
        assert_eq!(reply["card"]["number"], token);
        assert_eq!(reply["note"], format!("charged {token}"));
        assert!(!reply.to_string().contains(PAN));

        let (_, seen) = shop.provider.requests().pop().unwrap();
        let sent: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(sent["source"]["number"], PAN, "the provider receives the original card number");
        assert_eq!(seen.header("x-card"), Some(PAN));
        assert_eq!(seen.header("host").map(str::to_owned), Some(shop.provider.addr.to_string()));
        assert!(seen.header("x-forwarded-for").is_none(), "nothing about the app's network leaves");
        let expected = ["/v1/payments".to_owned(), format!("https://{}/v1/payments", shop.provider.addr)];
        assert!(expected.contains(&seen.uri), "{}", seen.uri);
    }
    for seen in shop.app.requests() {
        assert!(!String::from_utf8_lossy(&seen.all_bytes()).contains(PAN));
    }

    // Every reveal is audited under the route's caller and purpose, without the value.
    let audit = std::fs::read_to_string(shop._dir.path().join("audit.jsonl")).unwrap();
    let reveals: Vec<&str> = audit.lines().filter(|l| l.contains("\"detokenize\"")).collect();
    assert_eq!(reveals.len(), 2, "{audit}");
    assert!(reveals.iter().all(|l| l.contains("\"payments\"") && l.contains("egress:psp")), "{audit}");
    assert!(!audit.contains(PAN) && !audit.contains(&token));

    let (_, metrics) = get(shop.running.admin_addr.unwrap(), "/metrics").await;
    for line in [
        r#"veil_requests_total{route="psp",status="200"} 2"#,
        r#"veil_fields_total{action="detokenize",class="pan",route="psp"} 4"#,
        r#"veil_detected_total{class="pan",route="psp"} 4"#,
        r#"veil_detokenize_total{caller="payments",class="pan",outcome="ok"} 4"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn egress_refuses_without_the_right_for_unknown_tokens_and_for_an_unverified_provider() {
    let (ca_dir, provider) = provider(Arc::new(echo_card)).await;
    let shop = Shop::start(provider, &ca_dir.path().join("ca.pem")).await;
    let token = shop.checkout(PAN).await;

    let (status, body) = shop.pay("psp-app", &token, false).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (403, "forbidden"), "{body}");

    let unknown = random_pan("411111", 16);
    let (status, body) = shop.pay("psp", &unknown, false).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (422, "unknown_token"), "{body}");

    let (status, body) = shop.pay("psp", "not-a-card", false).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (422, "unknown_token"), "{body}");

    let (status, body) = shop.pay("psp-untrusted", &token, false).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (502, "upstream_unavailable"), "{body}");

    assert!(shop.provider.requests().is_empty(), "the provider received nothing");
    let audit = std::fs::read_to_string(shop._dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"app\"") && l.contains("\"denied\"")), "{audit}");
}

/// Sends raw bytes to `addr`; returns what came back before the connection closed (or 5 s passed).
async fn raw(addr: SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn egress_cannot_be_pointed_at_another_host() {
    let (ca_dir, provider) = provider(Arc::new(echo_card)).await;
    let shop = Shop::start(provider, &ca_dir.path().join("ca.pem")).await;
    // Another TLS server the same CA vouches for: a route must never reach it.
    let elsewhere = TlsApp::start(ca_dir.path()).await;
    let psp = shop.egress("psp");
    let other = elsewhere.addr;
    let token = shop.checkout(PAN).await;
    let body = json!({"source": {"number": token}}).to_string();
    let len = body.len();

    let absolute = format!(
        "POST https://{other}/steal HTTP/1.1\r\nHost: {other}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    );
    assert!(raw(psp, absolute).await.starts_with("HTTP/1.1 200"));
    let host_game = format!(
        "POST /steal HTTP/1.1\r\nHost: {other}\r\nX-Forwarded-Host: {other}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    );
    assert!(raw(psp, host_game).await.starts_with("HTTP/1.1 200"));
    let connect = format!("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n");
    let reply = raw(psp, connect).await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(reply.contains("method_not_allowed"));
    // A smuggling shape is refused by the listener's guard, and counted under the egress route.
    let smuggle = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let reply = raw(psp, smuggle.to_owned()).await;
    assert!(reply.starts_with("HTTP/1.1 400") && reply.contains("bad_request"), "{reply}");
    let (_, metrics) = get(shop.running.admin_addr.unwrap(), "/metrics").await;
    assert!(metrics.contains("veil_requests_total{route=\"psp\",status=\"400\"} 1"), "{metrics}");

    assert!(elsewhere.requests().is_empty(), "no request reached another host");
    let at_provider = shop.provider.requests();
    assert_eq!(at_provider.len(), 2);
    for (_, seen) in at_provider {
        // Over h2 the URI carries the provider's own authority; over HTTP/1.1 only the path.
        let expected = ["/steal".to_owned(), format!("https://{}/steal", shop.provider.addr)];
        assert!(expected.contains(&seen.uri), "{}", seen.uri);
        assert_eq!(seen.header("host").map(str::to_owned), Some(shop.provider.addr.to_string()));
    }
}

#[tokio::test]
async fn a_provider_response_that_cannot_be_inspected_is_withheld() {
    let reply: Arc<dyn Fn(&Seen) -> Reply + Send + Sync> = Arc::new(|seen: &Seen| {
        if seen.uri.contains("gzip") {
            return (200, vec![("content-encoding", "gzip".into())], Bytes::from_static(b"\x1f\x8b\x08\x00"));
        }
        // Not JSON despite its content type: scanned as text, the card number is still caught.
        let sent: Value = serde_json::from_slice(&seen.body).unwrap();
        let card = sent["source"]["number"].as_str().unwrap().to_owned();
        (200, vec![("content-type", "application/json".into())], Bytes::from(format!("ok card={card} {{")))
    });
    let (ca_dir, provider) = provider(reply).await;
    let shop = Shop::start(provider, &ca_dir.path().join("ca.pem")).await;
    let token = shop.checkout(PAN).await;
    let addr = shop.egress("psp");

    let send = |path: &'static str| {
        let token = token.clone();
        async move {
            let req = hyper::Request::post(format!("http://{addr}{path}"))
                .header("host", "psp")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(json!({"source": {"number": token}}).to_string())))
                .unwrap();
            send_request(addr, None, false, req).await.unwrap()
        }
    };
    let (status, _, body) = send("/pay").await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body.to_vec()).unwrap(), format!("ok card={token} {{"));

    let (status, _, body) = send("/pay?gzip").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (502, "upstream_response_withheld"), "{body}");
}

#[tokio::test]
async fn a_vault_that_is_down_or_hangs_stops_the_payment() {
    let (ca_dir, provider) = provider(Arc::new(echo_card)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[egress]]\nname = \"psp\"\nlisten = \"127.0.0.1:0\"\nupstream = \"https://{}\"\nca = \"{}\"\n\
         caller = \"payments\"\nvault_timeout = \"300ms\"\nfields = [ {{ json = \"$.source.number\", class = \"pan\" }} ]\n",
        config_text(dir.path(), false, None),
        provider.addr,
        ca_dir.path().join("ca.pem").display()
    );
    let cfg = veil::config::parse(&text).unwrap();
    let caller = veil::vault::auth::Caller {
        name: "payments".into(),
        allow: cfg.callers[0].allow.clone(),
        new_values: None,
        origin: Default::default(),
    };
    for slow in [false, true] {
        let vault: Arc<dyn veil::vault::Vault> = Arc::new(common::down_vault::DownVault { slow });
        let metrics = Arc::new(veil::metrics::Metrics::new().unwrap());
        let egress =
            Arc::new(veil::proxy::egress::Egress::new(cfg.egress[0].clone(), caller.clone(), vault, metrics).unwrap());
        let body = json!({"source": {"number": random_pan("411111", 16)}}).to_string();
        let req = hyper::Request::post("http://psp/pay")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        // Through a real connection: hyper hands the service an `Incoming` body.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let served = seen.clone();
        tokio::spawn(veil::server::serve(
            listener,
            None,
            veil::server::Limits::default(),
            move |_conn| {
                let (egress, seen) = (egress.clone(), served.clone());
                move |req| {
                    let handle = egress.clone().handle(req);
                    seen.store(std::mem::size_of_val(&handle), std::sync::atomic::Ordering::Relaxed);
                    handle
                }
            },
            stopped,
        ));
        let (status, _, body) = send_request(addr, None, false, req).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, body["error"]["code"].as_str().unwrap()), (503, "vault_unavailable"), "{body}");
        // hyper moves each request's future by value, and every layer moves its own: it must stay small.
        let size = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(size > 0 && size <= 6144, "Egress::handle's future is {size} bytes (3.0 KiB in a test build)");
    }
    assert!(provider.requests().is_empty());
}
