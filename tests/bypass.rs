//! No way around the rules (issue 19): requests no route takes, bodies a detecting route cannot read, and more
//! values than a request may carry. Each test asserts on the bytes the app received: no plaintext value, and
//! every refusal answered with its JSON error and nothing forwarded. Over TLS with HTTP/1.1 and h2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::Value;

const ROUTES: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [ { json = "$.card.number", class = "pan" } ]
detect = ["pan", "iban", "email"]
subject = { json = "$.customer.id" }

[[route]]
name = "notes"
match = { path = "/notes" }
detect = ["pan", "email"]

[[route]]
name = "files"
match = { path = "/files/*" }

[[route]]
name = "account"
match = { path = "/account" }
detect = ["pan"]
subject = { header = "x-customer" }
"#;

const PAN: &str = "5555555555554444";
const EMAIL: &str = "jane.doe@example.org";

/// How a test request travels: plain HTTP/1.1, or over TLS with HTTP/1.1 or h2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Plain,
    H1,
    H2,
}

const EVERY_WAY: [Via; 3] = [Via::Plain, Via::H1, Via::H2];

/// Two veils with the same routes in front of one recording app: one serving plain HTTP, one TLS.
struct Veil {
    dir: tempfile::TempDir,
    pki: Pki,
    running: veil::app::Running,
    plain: veil::app::Running,
    _plain_dir: tempfile::TempDir,
    app: App,
}

impl Veil {
    async fn start(proxy_extra: &str) -> Veil {
        let app = App::start().await;
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let d = dir.path().display();
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_body_bytes = 262144\n{proxy_extra}\n\
             [proxy.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n{}\n{ROUTES}",
            app.addr,
            config_text(dir.path(), false, None)
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        let plain_dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&plain_dir.path().join("master.key")).unwrap();
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_body_bytes = 262144\n{proxy_extra}\n{}\n\
             {ROUTES}",
            app.addr,
            config_text(plain_dir.path(), false, None)
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let plain = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Veil { dir, pki, running, plain, _plain_dir: plain_dir, app }
    }

    async fn send(&self, via: Via, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let scheme = if via == Via::Plain { "http" } else { "https" };
        let mut req = hyper::Request::builder().method(method).uri(format!("{scheme}://localhost{uri}"));
        if via != Via::H2 {
            req = req.header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let (status, _, body) = match via {
            Via::Plain => send_request(self.plain.proxy_addr.unwrap(), None, false, req).await.unwrap(),
            _ => send_request(self.running.proxy_addr.unwrap(), Some(&self.pki.ca_der), via == Via::H2, req)
                .await
                .unwrap(),
        };
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Everything the app has received, as text.
    fn app_bytes(&self) -> String {
        self.app.requests().iter().map(|s| String::from_utf8_lossy(&s.all_bytes()).into_owned()).collect()
    }

    /// Records in the vault's store.
    async fn stored(&self) -> i64 {
        let url = format!("sqlite://{}/vault.db?mode=ro", self.dir.path().display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens").fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("-")
}

#[tokio::test]
async fn requests_no_route_takes_are_scanned_by_default() {
    let veil = Veil::start("").await;
    for h2 in EVERY_WAY {
        let body = format!(r#"{{"pan":"{PAN}","contact":"{EMAIL}"}}"#);
        let (status, _) =
            veil.send(h2, "POST", "/api/v2/orders", &[("content-type", "application/json")], body.as_bytes()).await;
        assert_eq!(status, 200);
        let (status, _) = veil.send(h2, "GET", &format!("/search?q={PAN}&mail={EMAIL}"), &[], b"").await;
        assert_eq!(status, 200);
        // A body of no format veil parses is still read as text when it is text.
        let text = format!("card {PAN}, mail {EMAIL}");
        for ct in [None, Some("application/octet-stream"), Some("text/csv"), Some("application/yaml")] {
            let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
            let (status, _) = veil.send(h2, "POST", "/import", &headers, text.as_bytes()).await;
            assert_eq!(status, 200, "{ct:?}");
        }
    }
    let seen = veil.app_bytes();
    assert!(!seen.contains(PAN) && !seen.contains(EMAIL), "plaintext reached the app: {seen}");
    assert_eq!(veil.app.requests().len(), 18);
}

#[tokio::test]
async fn binary_bodies_no_route_takes_are_scanned_as_bytes_and_a_detecting_route_refuses_them() {
    let veil = Veil::start("").await;
    let binary: Vec<u8> = [0xff, 0xfe, 0x00, 0x89].iter().copied().chain(PAN.bytes()).collect();
    for h2 in EVERY_WAY {
        let (status, _) = veil.send(h2, "POST", "/avatar", &[("content-type", "image/png")], &binary).await;
        assert_eq!(status, 200, "an upload no route takes is forwarded, scanned as bytes");
        let (status, body) = veil.send(h2, "POST", "/notes", &[("content-type", "image/png")], &binary).await;
        assert_eq!((status, code(&body)), (415, "unsupported_media_type"), "{body}");
        let (status, body) = veil.send(h2, "POST", "/notes", &[], &binary).await;
        assert_eq!((status, code(&body)), (415, "unsupported_media_type"), "{body}");
    }
    let bodies: Vec<Bytes> = veil.app.requests().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies.len(), 3, "only the uploads arrived");
    for b in bodies {
        assert_eq!((b.len(), &b[..4]), (binary.len(), &binary[..4]), "the bytes around the card are kept");
        assert!(!String::from_utf8_lossy(&b).contains(PAN), "the card in the upload was tokenised");
    }
}

#[tokio::test]
async fn a_body_no_route_takes_too_large_to_parse_is_streamed_only_where_bytes_show_its_digits() {
    let veil = Veil::start("").await;
    // 300 KB over the 256 KiB limit: text is scanned as it streams; JSON, form and XML, whose digits may be
    // escaped (`\u0035`, `%35`, `&#53;`), are refused.
    let padding = "x".repeat(300_000);
    let text = format!("note {PAN} {padding}");
    let (status, _) = veil.send(Via::H1, "POST", "/upload", &[("content-type", "text/plain")], text.as_bytes()).await;
    assert_eq!(status, 200);
    let escaped = PAN.chars().map(|c| format!("\\u00{:x}", c as u32)).collect::<String>();
    let bodies = [
        ("application/json", format!(r#"{{"pad":"{padding}","pan":"{escaped}"}}"#)),
        ("application/x-www-form-urlencoded", format!("pad={padding}&pan=%35%35{}", &PAN[2..])),
        ("application/xml", format!("<a><pad>{padding}</pad><pan>&#53;{}</pan></a>", &PAN[1..])),
    ];
    for (ct, body) in bodies {
        for via in EVERY_WAY {
            let (status, resp) = veil.send(via, "POST", "/upload", &[("content-type", ct)], body.as_bytes()).await;
            assert_eq!((status, code(&resp)), (413, "body_too_large"), "{ct} {via:?}: {resp}");
        }
    }
    let seen = veil.app.requests();
    assert_eq!(seen.len(), 1, "only the text body was forwarded");
    assert!(!String::from_utf8_lossy(&seen[0].body).contains(PAN), "its card was tokenised on the way");
}

#[tokio::test]
async fn a_route_without_detection_passes_what_it_does_not_select() {
    let veil = Veil::start("").await;
    let big = vec![b'x'; 200_000];
    let (status, _) =
        veil.send(Via::H1, "PUT", "/files/a.bin", &[("content-type", "application/octet-stream")], &big).await;
    assert_eq!(status, 200);
    assert_eq!(veil.app.requests()[0].body.len(), big.len());
}

#[tokio::test]
async fn the_unmatched_policy_can_pass_or_refuse() {
    let pass = Veil::start("unmatched = \"pass\"").await;
    let body = format!(r#"{{"pan":"{PAN}"}}"#);
    let (status, _) =
        pass.send(Via::H1, "POST", "/other", &[("content-type", "application/json")], body.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(pass.app_bytes().contains(PAN), "pass forwards untouched (the operator chose it)");

    let refuse = Veil::start("unmatched = \"refuse\"").await;
    for h2 in EVERY_WAY {
        let (status, body) = refuse.send(h2, "GET", "/other", &[], b"").await;
        assert_eq!((status, code(&body)), (404, "no_route"), "{body}");
    }
    let (status, _) = refuse.send(Via::H1, "POST", "/checkout", &[("content-type", "application/json")], b"{}").await;
    assert_eq!(status, 200, "routes still serve");
    assert_eq!(refuse.app.requests().len(), 1);
    assert!(veil::config::parse(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\nunmatched = \"maybe\"\n{}",
        config_text(refuse.dir.path(), false, None)
    ))
    .unwrap_err()
    .to_string()
    .contains("proxy.unmatched"));
}

#[tokio::test]
async fn more_values_than_a_request_may_carry_are_refused_and_nothing_is_stored() {
    let veil = Veil::start("max_values_per_request = 8").await;
    let cards: Vec<String> = (0..9).map(|_| random_pan("4", 16)).collect();
    let before = veil.stored().await;
    for h2 in EVERY_WAY {
        let (status, body) =
            veil.send(h2, "POST", "/notes", &[("content-type", "text/plain")], cards.join(" x ").as_bytes()).await;
        assert_eq!((status, code(&body)), (422, "too_many_values"), "{body}");
    }
    assert_eq!(veil.stored().await, before, "a refused request stores nothing");
    assert!(veil.app.requests().is_empty());
    let (status, _) = veil
        .send(Via::H1, "POST", "/notes", &[("content-type", "text/plain")], cards[..8].join(" x ").as_bytes())
        .await;
    assert_eq!(status, 200, "at the limit is fine");
    assert_eq!(veil.stored().await, before + 8);
}

#[tokio::test]
async fn connect_is_refused() {
    let veil = Veil::start("").await;
    let req = hyper::Request::builder().method("CONNECT").uri("localhost:443").header("host", "localhost:443");
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let (status, _, _) =
        send_request(veil.running.proxy_addr.unwrap(), Some(&veil.pki.ca_der), false, req).await.unwrap();
    assert_eq!(status, 405);
    assert!(veil.app.requests().is_empty());
}

#[tokio::test]
async fn routes_match_every_spelling_of_their_path_and_method() {
    let veil = Veil::start("unmatched = \"pass\"").await;
    let body = format!(r#"{{"card":{{"number":"{PAN}"}}}}"#);
    let variants = [
        ("POST", "/checkout"),
        ("POST", "/checkout/"),
        ("POST", "/Checkout"),
        ("POST", "/CHECKOUT/"),
        ("POST", "/checkout;jsessionid=1"),
        ("POST", "/%63heckout"),
        ("POST", "/%63%68eckout"),
        ("POST", "/./checkout"),
        ("POST", "/x/../checkout"),
        ("POST", "/x/%2e%2e/checkout"),
        ("POST", "//checkout"),
        ("POST", "/checkout?x=1"),
        ("post", "/checkout"),
        ("Post", "/checkout/."),
    ];
    for h2 in EVERY_WAY {
        for (method, path) in variants {
            let (status, resp) =
                veil.send(h2, method, path, &[("content-type", "application/json")], body.as_bytes()).await;
            assert_eq!(status, 200, "{method} {path} via={h2:?}: {resp}");
        }
    }
    let seen = veil.app.requests();
    assert_eq!(seen.len(), EVERY_WAY.len() * variants.len());
    for s in &seen {
        let text = String::from_utf8_lossy(&s.all_bytes()).into_owned();
        assert!(!text.contains(PAN), "{} {} reached the app in clear", s.method, s.uri);
    }
    // The request goes on with its path as sent.
    assert!(
        seen.iter().any(|s| s.uri.ends_with("/%63heckout")),
        "{:?}",
        seen.iter().map(|s| &s.uri).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn paths_that_cannot_be_matched_unambiguously_are_refused() {
    let veil = Veil::start("unmatched = \"pass\"").await;
    let body = format!(r#"{{"card":{{"number":"{PAN}"}}}}"#);
    for h2 in EVERY_WAY {
        for path in [
            "/checkout%2F",
            "/x%2F..%2Fcheckout",
            "/checkout%00",
            "/%C0%AFcheckout",
            "/%252e%252e/checkout",
            "/checkout%5C",
            "/checkout%3Bx",
            "/checkout.",
        ] {
            let (status, resp) =
                veil.send(h2, "POST", path, &[("content-type", "application/json")], body.as_bytes()).await;
            assert_eq!((status, code(&resp)), (400, "bad_request"), "{path} via={h2:?}: {resp}");
        }
    }
    assert!(veil.app.requests().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn detection_reads_headers_cookies_and_the_subject() {
    let veil = Veil::start("").await;
    let body = br#"{"card":{"number":"4111111111111111"},"customer":{"id":"c-1"}}"#;
    let cookie = format!("pan={PAN}; mail={EMAIL}; session=abc");
    let note = format!("call me, card {PAN}");
    for h2 in EVERY_WAY {
        for path in ["/checkout", "/elsewhere"] {
            let headers = [
                ("content-type", "application/json"),
                ("cookie", cookie.as_str()),
                ("x-note", note.as_str()),
                ("referer", "https://shop.example/?card=5555555555554444"),
            ];
            let (status, resp) = veil.send(h2, "POST", path, &headers, body).await;
            assert_eq!(status, 200, "{path}: {resp}");
        }
        let with_card_subject = format!(r#"{{"customer":{{"id":"{PAN}"}}}}"#);
        let (status, resp) = veil
            .send(h2, "POST", "/checkout", &[("content-type", "application/json")], with_card_subject.as_bytes())
            .await;
        assert_eq!((status, code(&resp)), (422, "field_rejected"), "{resp}");
    }
    let seen = veil.app.requests();
    assert_eq!(seen.len(), 2 * EVERY_WAY.len());
    for s in &seen {
        let text = String::from_utf8_lossy(&s.all_bytes()).into_owned();
        assert!(!text.contains(PAN) && !text.contains(EMAIL), "plaintext reached the app: {text}");
        assert!(s.header("cookie").is_some_and(|c| c.contains("session=abc")), "the rest of the cookie is kept");
    }
}

/// Whether the proxy closed a connection at once (instead of waiting for its TLS handshake).
async fn closed_at_once(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1];
    matches!(tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection_half_open() {
    let veil = Veil::start("max_pending_per_client = 4").await;
    let addr = veil.running.proxy_addr.unwrap();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut fifth = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_at_once(&mut fifth).await, "a fifth half-open connection from the same address is closed");
    // Another address (all of 127/8 is loopback) still gets a connection that waits for its handshake.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr).await.unwrap();
    assert!(!closed_at_once(&mut other).await, "another address is not affected");
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _) = veil.send(Via::H1, "GET", "/", &[], b"").await;
    assert_eq!(status, 200, "the address is served again once its connections are gone");
}

#[tokio::test]
async fn a_subject_id_holding_a_protected_value_anywhere_is_refused() {
    let veil = Veil::start("").await;
    let in_json = |id: &str| format!(r#"{{"card":{{"number":"{PAN}"}},"customer":{{"id":"{id}"}}}}"#);
    let json = [("content-type", "application/json")];
    for via in EVERY_WAY {
        for id in [format!("cust-{PAN}"), format!("{PAN}-7"), "c 5555 5555 5555 4444".into(), format!("x{EMAIL}")] {
            let (status, resp) = veil.send(via, "POST", "/checkout", &json, in_json(&id).as_bytes()).await;
            assert_eq!((status, code(&resp)), (422, "field_rejected"), "{via:?} {id}: {resp}");
            assert!(!resp.to_string().contains(PAN), "the error names the field, not the value: {resp}");
        }
        let header = format!("c-1 card {PAN}");
        let (status, resp) = veil.send(via, "GET", "/account", &[("x-customer", header.as_str())], b"").await;
        assert_eq!((status, code(&resp)), (422, "field_rejected"), "{via:?}: {resp}");
    }
    assert!(veil.app.requests().is_empty(), "nothing was forwarded");
    // An id of the app's own, with digits too few or too split to be a card, passes untouched.
    let id = "cust-123456-x789012";
    for via in EVERY_WAY {
        let (status, resp) = veil.send(via, "POST", "/checkout", &json, in_json(id).as_bytes()).await;
        assert_eq!(status, 200, "{via:?}: {resp}");
        let (status, resp) = veil.send(via, "GET", "/account", &[("x-customer", "c-1 order 4711")], b"").await;
        assert_eq!(status, 200, "{via:?}: {resp}");
    }
    let seen = veil.app.requests();
    assert_eq!(seen.iter().filter(|s| String::from_utf8_lossy(&s.body).contains(id)).count(), EVERY_WAY.len());
    assert!(seen.iter().all(|s| !String::from_utf8_lossy(&s.all_bytes()).contains(PAN)));
}
