//! End to end: a recording app behind veil's TLS ingress (HTTP/1.1 and h2), every body format, every
//! fail-closed error path, pass-through streaming, metrics, graceful shutdown and certificate reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::down_vault::DownVault;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};

const ROUTES: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [
  { json = "$.card.number", class = "pan" },
  { json = "$.customer.email", class = "email" },
  { json = "$..iban", class = "iban" },
  { json = "$.customer.birth_date", action = "drop" },
  { json = "$.customer.ssn", action = "reject" },
  { json = "$.customer.name", class = "name", action = "mask" },
  { json = "$.customer.note", class = "text", action = "encrypt" },
  { header = "x-card", class = "pan" },
  { query = "email", class = "email" },
]
detect = ["pan", "iban", "email"]
subject = { json = "$.customer.id" }

[[route]]
name = "form"
match = { methods = ["POST"], path = "/form" }
fields = [ { form = "iban", class = "iban" }, { form = "card", class = "pan" } ]
detect = ["pan", "email"]

[[route]]
name = "upload"
match = { path = "/upload" }
fields = [ { multipart = "card", class = "pan" } ]
detect = ["pan", "email"]

[[route]]
name = "soap"
match = { path = "/soap" }
fields = [ { xml = "card/number", class = "pan" } ]
detect = ["pan"]

[[route]]
name = "notes"
match = { path = "/notes/*" }
detect = ["pan", "iban", "email"]

[[route]]
name = "observe"
match = { path = "/observe" }
mode = "observe"
fields = [ { json = "$.card", class = "pan" } ]
"#;

const PAN: &str = "4111111111111111";
const PAN2: &str = "5500 0000 0000 0004";
const IBAN: &str = "DE89370400440532013000";
const EMAIL: &str = "jane.doe@example.org";
const SECRETS: &[&str] =
    &[PAN, "5500000000000004", "4111 1111 1111 1111", IBAN, EMAIL, "1990-01-01", "Jane Doe", "allergic"];

struct Veil {
    dir: tempfile::TempDir,
    pki: Pki,
    running: Option<veil::app::Running>,
    app: App,
}

impl Veil {
    async fn start(app: App, extra: &str) -> Veil {
        Self::start_upstream(app.clone(), &format!("http://{}", app.addr), extra).await
    }

    async fn start_upstream(app: App, upstream: &str, extra: &str) -> Veil {
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let d = dir.path().display();
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nmax_body_bytes = 65536\n{extra}\n\
             [proxy.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n{}\n{ROUTES}",
            config_text(dir.path(), false, None)
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Veil { dir, pki, running: Some(running), app }
    }

    fn running(&self) -> &veil::app::Running {
        self.running.as_ref().unwrap()
    }

    async fn send(
        &self,
        h2: bool,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (u16, Value) {
        let mut req = hyper::Request::builder().method(method).uri(format!("https://localhost{uri}"));
        if !h2 {
            req = req.header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let (status, _, body) =
            send_request(self.running().proxy_addr.unwrap(), Some(&self.pki.ca_der), h2, req).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn detokenize(&self, class: &str, token: &str) -> String {
        let client = Client::plain(self.running().vault_addr.unwrap());
        let (status, body) = client
            .post_json("/v1/detokenize", PAYMENTS_KEY, &json!({"items":[{"class": class, "token": token}]}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"][0]["value"].as_str().unwrap_or_else(|| panic!("no value: {body}")).to_owned()
    }

    fn assert_app_saw_no_secret(&self) {
        for seen in self.app.requests() {
            let bytes = String::from_utf8_lossy(&seen.all_bytes()).into_owned();
            for s in SECRETS {
                assert!(!bytes.contains(s), "the app received a plaintext value ({s}) in {bytes}");
            }
        }
    }
}

fn checkout_body() -> Value {
    json!({
        "card": {"number": PAN, "expiry": "12/29"},
        "customer": {"id": "cust-42", "email": EMAIL, "birth_date": "1990-01-01", "name": "Jane Doe",
                     "note": "allergic to nuts", "bank": {"iban": IBAN}},
        "comment": format!("second card {PAN2}, mail me at {EMAIL}"),
        "items": [{"sku": "A1", "qty": 2}]
    })
}

#[tokio::test]
async fn the_client_address_is_appended_to_a_forwarded_for_chain() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    for h2 in [false, true] {
        for prev in [Some("203.0.113.7"), None, Some("198.51.100.1, 203.0.113.7")] {
            let headers: Vec<(&str, &str)> = prev.map(|p| ("x-forwarded-for", p)).into_iter().collect();
            let (status, _) = veil.send(h2, "GET", "/item/1", &headers, Vec::new()).await;
            assert_eq!(status, 200);
            let seen = app.requests().pop().unwrap();
            let want = prev.map_or("127.0.0.1".to_owned(), |p| format!("{p}, 127.0.0.1"));
            assert_eq!(seen.header("x-forwarded-for"), Some(want.as_str()), "h2={h2} prev={prev:?}");
        }
    }
}

#[tokio::test]
async fn checkout_is_tokenised_for_http1_and_h2() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    for h2 in [false, true] {
        let body = serde_json::to_vec(&checkout_body()).unwrap();
        let (status, resp) = veil
            .send(
                h2,
                "POST",
                "/checkout?email=jane.doe%40example.org&x=1",
                &[("content-type", "application/json"), ("x-card", PAN)],
                body,
            )
            .await;
        assert_eq!(status, 200, "h2={h2}: {resp}");
        let seen = app.requests().pop().unwrap();
        let got: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(seen.header("content-length").unwrap(), seen.body.len().to_string());
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));

        let card = got["card"]["number"].as_str().unwrap();
        assert!(luhn_valid(card) && card.len() == 16 && card.starts_with("411111") && card != PAN);
        assert_eq!(veil.detokenize("pan", card).await, PAN);
        let email = got["customer"]["email"].as_str().unwrap();
        assert!(email.ends_with("@example.org") && email != EMAIL);
        assert_eq!(veil.detokenize("email", email).await, EMAIL);
        let iban = got["customer"]["bank"]["iban"].as_str().unwrap();
        assert_eq!(veil.detokenize("iban", iban).await, IBAN);
        assert!(got["customer"].get("birth_date").is_none(), "dropped");
        assert_eq!(got["customer"]["name"], "J*** ***");
        assert!(got["customer"]["note"].as_str().unwrap().starts_with("veil:v1:"));
        assert_eq!(got["customer"]["id"], "cust-42", "the subject id is passed through");
        assert_eq!(got["items"], json!([{"sku": "A1", "qty": 2}]), "shape kept");
        // Detected in free text.
        let comment = got["comment"].as_str().unwrap();
        assert!(comment.starts_with("second card 5500 00") && comment.contains("@example.org"));
        // Header and query.
        let header_card = seen.header("x-card").unwrap();
        assert_eq!(header_card, card, "same value, same token");
        assert!(seen.uri.contains("x=1") && !seen.uri.contains("jane.doe%40"));
    }
    veil.assert_app_saw_no_secret();
}

#[tokio::test]
async fn form_multipart_xml_and_text_bodies() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;

    let form = format!("iban={IBAN}&card=4111+1111+1111+1111&note=call+{}&qty=2", EMAIL.replace('@', "%40"));
    let (status, _) =
        veil.send(false, "POST", "/form", &[("content-type", "application/x-www-form-urlencoded")], form).await;
    assert_eq!(status, 200);
    let seen = app.requests().pop().unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&seen.body).into_owned().collect();
    assert_eq!(pairs.len(), 4);
    assert_eq!(veil.detokenize("iban", &pairs[0].1).await, IBAN);
    assert_eq!(veil.detokenize("pan", &pairs[1].1).await, "4111 1111 1111 1111");
    assert!(pairs[2].1.starts_with("call ") && pairs[2].1.ends_with("@example.org"));

    let multipart = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"card\"\r\n\r\n{PAN}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"msg\"\r\n\r\nmail {EMAIL}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--XyZ--\r\n"
    );
    let (status, _) =
        veil.send(true, "POST", "/upload", &[("content-type", "multipart/form-data; boundary=XyZ")], multipart).await;
    assert_eq!(status, 200);
    let seen = app.requests().pop().unwrap();
    let text = String::from_utf8_lossy(&seen.body).into_owned();
    assert!(text.contains("name=\"card\"\r\n\r\n411111") && text.contains("--XyZ--"));

    let soap = format!("<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"x\"><s:Body><card><number>{PAN}</number></card><memo>pay {PAN2}</memo></s:Body></s:Envelope>");
    let (status, _) = veil.send(false, "POST", "/soap", &[("content-type", "text/xml")], soap).await;
    assert_eq!(status, 200);
    let seen = app.requests().pop().unwrap();
    let text = String::from_utf8_lossy(&seen.body).into_owned();
    assert!(text.contains("<number>411111") && text.contains("<memo>pay 5500 00"), "{text}");

    let (status, _) = veil
        .send(false, "POST", "/notes/1", &[("content-type", "text/plain")], format!("iban {IBAN} card {PAN}"))
        .await;
    assert_eq!(status, 200);
    let seen = app.requests().pop().unwrap();
    assert!(String::from_utf8_lossy(&seen.body).starts_with("iban DE"));
    veil.assert_app_saw_no_secret();
}

/// path, request headers, body, expected status, expected error code.
type ErrorCase = (&'static str, Vec<(&'static str, &'static str)>, Vec<u8>, u16, &'static str);

#[tokio::test]
async fn every_error_path_answers_json_and_forwards_nothing() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    let json_ct = ("content-type", "application/json");
    let cases: Vec<ErrorCase> = vec![
        ("/checkout", vec![json_ct], b"{\"card\":".to_vec(), 400, "malformed_body"),
        ("/checkout", vec![json_ct], br#"{"card":{"number":"4111111111111112"}}"#.to_vec(), 422, "invalid_value"),
        ("/checkout", vec![json_ct], br#"{"customer":{"ssn":"078-05-1120"}}"#.to_vec(), 422, "field_rejected"),
        ("/checkout", vec![json_ct], vec![b' '; 70_000], 413, "body_too_large"),
        (
            "/checkout",
            vec![("content-type", "application/octet-stream")],
            PAN.as_bytes().to_vec(),
            415,
            "unsupported_media_type",
        ),
        ("/checkout", vec![json_ct, ("content-encoding", "gzip")], b"\x1f\x8b".to_vec(), 415, "unsupported_encoding"),
        (
            "/form",
            vec![("content-type", "application/x-www-form-urlencoded")],
            b"card=%ZZ".to_vec(),
            400,
            "malformed_body",
        ),
        (
            "/upload",
            vec![("content-type", "multipart/form-data; boundary=XyZ")],
            b"--XyZ\r\nno end".to_vec(),
            400,
            "malformed_body",
        ),
        ("/soap", vec![("content-type", "text/xml")], b"<card><number>1</card>".to_vec(), 400, "malformed_body"),
    ];
    for (path, headers, body, want_status, want_code) in cases {
        let (status, resp) = veil.send(false, "POST", path, &headers, body).await;
        assert_eq!((status, resp["error"]["code"].as_str().unwrap_or("")), (want_status, want_code), "{path}: {resp}");
        assert!(!resp.to_string().contains("4111111111111112") && !resp.to_string().contains("078-05"));
    }
    assert!(app.requests().is_empty(), "the upstream received nothing");
}

/// A plain-HTTP proxy in front of `app` that uses `vault` (services in memory, no vault process).
async fn proxy_with_vault(app: &App, vault: Arc<dyn veil::vault::Vault>) -> std::net::SocketAddr {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nvault_timeout = \"300ms\"\n{}\n{ROUTES}",
        app.addr,
        config_text(dir.path(), false, None)
    );
    let cfg = veil::config::parse(&text).unwrap();
    let blobs = veil::crypto::BlobKeys::derive(
        &veil::crypto::Keyring::from_keys([(1, [7u8; 32])]),
        &veil::domain::Class::names(),
    )
    .unwrap()
    .into_slot();
    let metrics = Arc::new(veil::metrics::Metrics::new().unwrap());
    let pc = cfg.proxy.unwrap();
    let proxy = Arc::new(veil::proxy::Proxy::new(&pc, cfg.routes, vault, blobs, metrics, Vec::new()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    std::mem::forget(stop); // serve for the rest of the test
    tokio::spawn(veil::server::serve(
        listener,
        None,
        veil::server::Limits::default(),
        move |conn: veil::server::ConnInfo| {
            let (proxy, client) = (proxy.clone(), veil::proxy::ClientAddr::new(conn.peer.ip()));
            move |req| {
                let handle = proxy.clone().handle(client.clone(), req);
                HANDLE_FUTURE_BYTES.store(std::mem::size_of_val(&handle), std::sync::atomic::Ordering::Relaxed);
                handle
            }
        },
        stopped,
    ));
    addr
}

/// The size of `Proxy::handle`'s future (one type, so one size), as `proxy_with_vault` last saw it.
static HANDLE_FUTURE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// hyper moves each request's future by value, and every layer moves its own, pass-through included: the
/// routed path and the dial are boxed, and there is one `forward` call, so that a request's future stays small
/// (3.3 KiB in a test build; 9.3 KiB with the dial inline; 32 KiB in a release build before all three).
#[tokio::test]
async fn the_future_of_a_request_stays_small() {
    let app = App::start().await;
    let addr = proxy_with_vault(&app, Arc::new(DownVault { slow: false })).await;
    let (status, _) = get(addr, "/item/1").await;
    assert_eq!(status, 200);
    let size = HANDLE_FUTURE_BYTES.load(std::sync::atomic::Ordering::Relaxed);
    assert!(size > 0 && size <= 6144, "Proxy::handle's future is {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_vault_dead_upstream_and_slow_upstream_fail_closed() {
    let app = App::start().await;
    // A vault that fails, and one that hangs past vault_timeout: 503, and the app receives nothing.
    for slow in [false, true] {
        let addr = proxy_with_vault(&app, Arc::new(DownVault { slow })).await;
        let body = serde_json::to_vec(&checkout_body()).unwrap();
        let (status, resp) = Client::plain(addr).post("/checkout", None, body).await;
        assert_eq!((status, resp["error"]["code"].as_str().unwrap_or("")), (503, "vault_unavailable"), "slow={slow}");
    }
    assert!(app.requests().is_empty(), "nothing forwarded while the vault is down");

    // Upstream down: 502.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let down = Veil::start_upstream(App::start().await, &format!("http://{closed}"), "").await;
    let (status, resp) = down.send(false, "GET", "/anything", &[], Bytes::new()).await;
    assert_eq!((status, resp["error"]["code"].as_str().unwrap()), (502, "upstream_unavailable"));

    // Upstream slow: 504.
    let slow_app = App::start_with(Arc::new(|_| {
        std::thread::sleep(Duration::from_millis(600));
        Bytes::from_static(b"late")
    }))
    .await;
    let slow = Veil::start(slow_app, "upstream_timeout = \"200ms\"").await;
    let (status, resp) = slow.send(false, "GET", "/anything", &[], Bytes::new()).await;
    assert_eq!((status, resp["error"]["code"].as_str().unwrap()), (504, "upstream_timeout"));
}

#[tokio::test]
async fn smuggling_shapes_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    let addr = veil.running().proxy_addr.unwrap();
    let attacks: [&[u8]; 4] = [
        b"POST /checkout HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /checkout HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /checkout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    ];
    for attack in attacks {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(veil.pki.ca_der.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        s.write_all(attack).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let head = String::from_utf8_lossy(&buf);
        // The HTTP/1 guard refuses every shape before hyper parses it (tests/smuggling.rs has the full set).
        let what = String::from_utf8_lossy(attack);
        assert!(head.starts_with("HTTP/1.1 400"), "{what}: {:?}", head.lines().next());
        let body: Value = serde_json::from_str(head.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{what}");
    }
    assert!(app.requests().is_empty());
}

#[tokio::test]
async fn unmatched_requests_stream_through_and_observe_mode_changes_nothing() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    let big = vec![b'x'; 8 << 20];
    let (status, _) =
        veil.send(true, "PUT", "/files/big?x=1", &[("content-type", "application/octet-stream")], big.clone()).await;
    assert_eq!(status, 200);
    let seen = app.requests().pop().unwrap();
    assert_eq!(seen.body.len(), big.len(), "an 8 MiB body over max_body_bytes passes when no rule touches it");

    let body = json!({"card": PAN}).to_string();
    let (status, _) = veil.send(false, "POST", "/observe", &[("content-type", "application/json")], body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(app.requests().pop().unwrap().body, Bytes::from(body));

    let admin = veil.running().admin_addr.unwrap();
    let (_, metrics) = get(admin, "/metrics").await;
    assert!(metrics.contains(r#"veil_fields_total{action="tokenize",class="pan",route="observe"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"veil_requests_total{route="-",status="200"} 1"#));
    assert!(!metrics.contains(PAN));
}

#[tokio::test]
async fn metrics_count_what_the_proxy_did() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    let body = serde_json::to_vec(&checkout_body()).unwrap();
    veil.send(false, "POST", "/checkout", &[("content-type", "application/json")], body).await;
    veil.send(false, "POST", "/checkout", &[("content-type", "application/json")], b"{".to_vec()).await;
    veil.send(false, "GET", "/item/1", &[], Vec::new()).await;
    let (status, text) = get(veil.running().admin_addr.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        r#"veil_requests_total{route="checkout",status="200"} 1"#,
        r#"veil_requests_total{route="checkout",status="400"} 1"#,
        r#"veil_fields_total{action="tokenize",class="pan",route="checkout"} 1"#,
        r#"veil_fields_total{action="drop",class="-",route="checkout"} 1"#,
        r#"veil_detected_total{class="pan",route="checkout"} 1"#,
        r#"veil_request_duration_seconds_count{route="checkout"} 2"#,
        r#"veil_requests_total{route="-",status="200"} 1"#,
        r#"veil_request_duration_seconds_count{route="-"} 1"#,
        r#"veil_vault_operations_total{class="pan",op="tokenize",outcome="ok"} 2"#,
        r#"veil_vault_operation_duration_seconds_count{op="tokenize"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.rsplit(' ').next().unwrap().parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let arrived = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal = arrived.clone();
    let app = App::start_with(Arc::new(move |_| {
        signal.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(400));
        Bytes::from_static(b"done")
    }))
    .await;
    let mut veil = Veil::start(app.clone(), "").await;
    let addr = veil.running().proxy_addr.unwrap();
    let ca = veil.pki.ca_der.clone();
    let in_flight = tokio::spawn(async move {
        let req =
            hyper::Request::builder().uri("/slow").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
        send_request(addr, Some(&ca), false, req).await
    });
    // Shut down only once the request is in flight (it reached the app), however loaded the machine is.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !arrived.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let running = veil.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "new connections refused while draining");
    let (status, _, body) = in_flight.await.unwrap().unwrap();
    assert_eq!((status, &body[..]), (200, &b"done"[..]), "the in-flight request finished");
    shutdown.await.unwrap();
}

#[tokio::test]
async fn certificate_reload_serves_the_new_certificate() {
    let app = App::start().await;
    let veil = Veil::start(app.clone(), "").await;
    let addr = veil.running().proxy_addr.unwrap();
    let req = || hyper::Request::builder().uri("/x").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    assert!(send_request(addr, Some(&veil.pki.ca_der), false, req()).await.is_ok());

    // A new CA and server certificate written over the old files.
    let other = tempfile::tempdir().unwrap();
    let fresh = Pki::new(other.path());
    std::fs::copy(other.path().join("server.pem"), veil.dir.path().join("server.pem")).unwrap();
    std::fs::copy(other.path().join("server.key"), veil.dir.path().join("server.key")).unwrap();
    assert!(send_request(addr, Some(&veil.pki.ca_der), false, req()).await.is_ok(), "old cert until reload");
    veil.running().reload_certificates().unwrap();
    assert!(send_request(addr, Some(&fresh.ca_der), false, req()).await.is_ok(), "new cert after reload");
    assert!(send_request(addr, Some(&veil.pki.ca_der), false, req()).await.is_err(), "old CA no longer matches");

    std::fs::write(veil.dir.path().join("server.key"), "garbage").unwrap();
    assert!(veil.running().reload_certificates().is_err());
    assert!(send_request(addr, Some(&fresh.ca_der), false, req()).await.is_ok(), "a failed reload keeps the old cert");
}

#[tokio::test]
async fn with_non_luhn_card_tokens_the_app_never_sees_a_card_number_iban_or_test_email() {
    let app = App::start().await;
    // Same routes, but card tokens that fail Luhn, so any Luhn-valid number the app sees would be a leak.
    let veil =
        Veil::start(app.clone(), "\n[class.pan]\nformat = \"non-luhn\"\n[class.email]\nformat = \"reserved-domain\"")
            .await;
    for h2 in [false, true] {
        let body = serde_json::to_vec(&checkout_body()).unwrap();
        let (status, resp) = veil.send(h2, "POST", "/checkout", &[("content-type", "application/json")], body).await;
        assert_eq!(status, 200, "{resp}");
        let (status, _) =
            veil.send(h2, "POST", "/notes/2", &[("content-type", "text/plain")], format!("{PAN} {PAN2} {EMAIL}")).await;
        assert_eq!(status, 200);
    }
    for seen in app.requests() {
        let text = String::from_utf8_lossy(&seen.all_bytes()).into_owned();
        use veil::domain::Class;
        // One scan for all classes, so an IBAN token's digit groups count as the IBAN they are.
        for m in veil::detect::find(&text, &[Class::Pan, Class::Iban, Class::Email]) {
            let v = &text[m.start..m.end];
            match m.class {
                Class::Iban => assert_ne!(v.replace(' ', ""), IBAN, "the app received the IBAN"),
                Class::Email => assert!(v.ends_with("@example.com"), "the app received a real-looking email: {v}"),
                // The detector also tries leading/trailing groups of a longer run; a Luhn-valid part of a 16-digit
                // non-Luhn token is not a card number the app holds.
                _ if text[..m.start].trim_end_matches([' ', '-']).ends_with(|c: char| c.is_ascii_digit())
                    || text[m.end..].trim_start_matches([' ', '-']).starts_with(|c: char| c.is_ascii_digit()) => {}
                other => panic!("the app received a Luhn-valid {other}: {v}"),
            }
        }
    }
    veil.assert_app_saw_no_secret();
}
