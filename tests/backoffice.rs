//! The back office sees what its staff may see (issue 23): a shop's admin pages (HTML, JSON, XML, a chunked CSV
//! export) hold only tokens; through a `reveal` route, each staff member gets exactly what their rights allow —
//! values, masked forms, or the tokens — asserted on the bytes, over TLS with HTTP/1.1 and h2. Identity by a
//! trusted header (ignored from an untrusted peer) and by client certificate; a reveal budget that switches to
//! masked; audit lines per reveal; revealed values in no metric and no audit line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

struct Customer {
    name: &'static str,
    address: &'static str,
    email: &'static str,
    phone: &'static str,
    pan: &'static str,
}

const CUSTOMERS: [Customer; 2] = [
    Customer {
        name: "Zoë O'Brien",
        address: "12 High Street, London",
        email: "zoe.obrien@gmail.com",
        phone: "+44 7911 123456",
        pan: "4000056655665556",
    },
    Customer {
        name: "Jonas Weiß",
        address: "Hauptstraße 5, 10115 Berlin",
        email: "jonas@web.de",
        phone: "+49 170 1234567",
        pan: "5555555555554444",
    },
];

/// The tokens the app stored for each customer, in CUSTOMERS order: name, address, email, phone, pan.
type Stored = Arc<Mutex<Vec<[String; 5]>>>;

/// Each request's path and headers as the app saw them.
type AppSeen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// The shop: stores sign-ups, and renders its admin pages from what it stored (tokens).
async fn start_app(stored: Stored) -> (SocketAddr, AppSeen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: AppSeen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (stored, seen) = (stored.clone(), seen2.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (stored, seen) = (stored.clone(), seen.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                            .collect();
                        seen.lock().unwrap().push((path.clone(), headers));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let rows = stored.lock().unwrap().clone();
                        let resp = hyper::Response::builder();
                        let full = |ct: &str, text: String| {
                            let b: http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible> =
                                Full::new(Bytes::from(text)).boxed();
                            hyper::Response::builder().header("content-type", ct).body(b).unwrap()
                        };
                        let out = if path == "/signup" {
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            let s = |k: &str| v[k].as_str().unwrap().to_owned();
                            stored.lock().unwrap().push([s("name"), s("address"), s("email"), s("phone"), s("card")]);
                            full("application/json", "{\"ok\":true}".into())
                        } else if path.ends_with("/orders.html") {
                            let mut html = String::from("<html><body><table>\n");
                            // As a template engine writes them: escaped (a name token's apostrophe is `&#39;`).
                            for r in rows.iter().map(|r| r.clone().map(|t| self::html(&t))) {
                                html.push_str(&format!(
                                    "<tr><td>{}</td><td>{}</td><td><a href=\"mailto:{}\">{}</a></td><td>{}</td>\
                                     <td>{}</td></tr>\n",
                                    r[0], r[1], r[2], r[2], r[3], r[4]
                                ));
                            }
                            full("text/html; charset=utf-8", html + "</table></body></html>")
                        } else if path.ends_with("/orders.json") {
                            let list: Vec<Value> = rows
                                .iter()
                                .map(|r| {
                                    json!({"customer": {"name": r[0], "address": r[1], "email": r[2]},
                                           "phone": r[3], "card": r[4], "note": format!("call {} first", r[0])})
                                })
                                .collect();
                            full("application/json", json!({"orders": list}).to_string())
                        } else if path.ends_with("/orders.xml") {
                            let mut xml = String::from("<?xml version=\"1.0\"?><orders>");
                            for r in &rows {
                                xml.push_str(&format!(
                                    "<order card=\"{}\"><name>{}</name><address>{}</address></order>",
                                    r[4], r[0], r[1]
                                ));
                            }
                            full("application/xml", xml + "</orders>")
                        } else if path.ends_with("/export.csv") {
                            // Chunked: a frame per row.
                            let mut frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> =
                                vec![Ok(hyper::body::Frame::data(Bytes::from("name,address,email,phone\n")))];
                            for r in &rows {
                                let line = format!("{},\"{}\",{},{}\n", r[0], r[1], r[2], r[3]);
                                frames.push(Ok(hyper::body::Frame::data(Bytes::from(line))));
                            }
                            let b = StreamBody::new(futures_util::stream::iter(frames)).boxed();
                            resp.header("content-type", "text/csv").body(b).unwrap()
                        } else {
                            full("text/plain", "no such page".into())
                        };
                        Ok::<_, std::convert::Infallible>(out)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

struct Shop {
    _dir: tempfile::TempDir,
    pki: Pki,
    running: veil::app::Running,
    stored: Stored,
    app_seen: AppSeen,
}

impl Shop {
    async fn start() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let stored: Stored = Arc::default();
        let (app, app_seen) = start_app(stored.clone()).await;
        let d = dir.path().display();
        let text = format!(
            r#"{vault}
[[caller]]
name = "alice"
allow = ["detokenize:*", "mask:*"]

[[caller]]
name = "bob"
allow = ["mask:*"]

[[caller]]
name = "carol"
allow = []

[[caller]]
name = "dpo"
api_key_sha256 = "{dpo}"
allow = ["export:*"]

[[caller]]
name = "dave"
allow = ["detokenize:name", "mask:name"]
reveals_per_hour = 2

[class.name]
format = "tagged"

[class.address]
format = "tagged"

[class.email]
format = "relay"
relay_domain = "customers.shop.example"

[proxy]
listen = "127.0.0.1:0"
upstream = "http://{app}"

[proxy.tls]
cert = "{d}/server.pem"
key = "{d}/server.key"
client_ca = "{d}/ca.pem"

[[route]]
name = "signup"
match = {{ methods = ["POST"], path = "/signup" }}
fields = [
  {{ json = "$.name", class = "name" }},
  {{ json = "$.address", class = "address" }},
  {{ json = "$.email", class = "email" }},
  {{ json = "$.phone", class = "phone" }},
  {{ json = "$.card", class = "pan" }},
]
subject = {{ json = "$.customer_id" }}

[[route]]
name = "admin"
match = {{ path = "/admin/*" }}
purpose = "customer support"
reveal = {{ classes = ["name", "address", "email", "phone", "pan"], identity = {{ header = "X-Forwarded-User", trusted = ["127.0.0.1/32"] }} }}

[[route]]
name = "partner"
match = {{ path = "/partner/*" }}
reveal = {{ classes = ["name", "pan"], identity = {{ header = "X-Partner-User", trusted = ["10.0.0.0/8"] }} }}

[[route]]
name = "staff"
match = {{ path = "/staff/*" }}
reveal = {{ classes = ["name", "pan"], identity = "mtls" }}
"#,
            vault = config_text(dir.path(), false, None),
            dpo = sha256_hex(DPO_KEY),
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        let shop = Shop { _dir: dir, pki, running, stored, app_seen };
        for (i, c) in CUSTOMERS.iter().enumerate() {
            let body = json!({"customer_id": format!("cust-{i}"), "name": c.name, "address": c.address, "email": c.email, "phone": c.phone, "card": c.pan});
            let (status, _, _) = shop.send("POST", "/signup", &[], Some(body.to_string()), false, false).await;
            assert_eq!(status, 200);
        }
        shop
    }

    /// One request through the TLS ingress (h2 or HTTP/1.1; with the test client certificate or not).
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
        h2: bool,
        cert: bool,
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.pki.ca_der.clone()).unwrap();
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut cfg = if cert {
            builder.with_client_auth_cert(vec![self.pki.client_cert.clone()], self.pki.client_key.clone_key()).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        cfg.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        let tcp = tokio::net::TcpStream::connect(self.running.proxy_addr.unwrap()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut req = hyper::Request::builder().method(method).uri(format!("https://localhost{path}"));
        if !h2 {
            req = req.header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
        let io = TokioIo::new(tls);
        let resp = if h2 {
            let (mut s, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            s.send_request(req).await.unwrap()
        } else {
            let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            s.send_request(req).await.unwrap()
        };
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.into_body().collect().await.unwrap().to_bytes())
    }

    async fn page(&self, path: &str, user: Option<&str>, h2: bool) -> (http::HeaderMap, String) {
        let headers: Vec<(&str, &str)> = user.map(|u| vec![("x-forwarded-user", u)]).unwrap_or_default();
        let (status, h, body) = self.send("GET", path, &headers, None, h2, false).await;
        assert_eq!(status, 200, "{path}");
        (h, String::from_utf8(body.to_vec()).unwrap())
    }

    fn tokens(&self) -> Vec<[String; 5]> {
        self.stored.lock().unwrap().clone()
    }

    async fn metrics(&self) -> String {
        get(self.running.admin_addr.unwrap(), "/metrics").await.1
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self._dir.path().join("audit.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

const DPO_KEY: &str = "test-dpo-key-0123456789";

fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[tokio::test]
async fn each_staff_member_sees_exactly_what_their_rights_allow() {
    let shop = Shop::start().await;
    let tokens = shop.tokens();
    assert_eq!(tokens.len(), 2);
    for (t, c) in tokens.iter().zip(&CUSTOMERS) {
        assert!(t[0].starts_with("Zq") && t[1].starts_with("Zx") && t[2].ends_with("@customers.shop.example"));
        assert_ne!(t[4], c.pan);
    }
    for h2 in [false, true] {
        // Full rights: every value, escaped for its format; never cached.
        let (headers, page) = shop.page("/admin/orders.html", Some("alice"), h2).await;
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        for c in &CUSTOMERS {
            for v in [c.name, c.address, c.email, c.phone] {
                assert!(page.contains(&html(v)), "{v} in {page}");
            }
            assert!(page.contains(c.pan));
            assert!(page.contains(&format!("mailto:{}", c.email)));
        }
        for t in &tokens {
            assert!(t.iter().all(|token| !page.contains(&html(token))), "no token left: {page}");
        }
        let (_, json_page) = shop.page("/admin/orders.json", Some("alice"), h2).await;
        let v: Value = serde_json::from_str(&json_page).unwrap();
        for (o, c) in v["orders"].as_array().unwrap().iter().zip(&CUSTOMERS) {
            assert_eq!(o["customer"]["name"], c.name);
            assert_eq!(o["customer"]["address"], c.address);
            assert_eq!(o["customer"]["email"], c.email);
            assert_eq!(o["phone"], c.phone);
            assert_eq!(o["card"], c.pan);
            assert_eq!(o["note"], format!("call {} first", c.name));
        }
        let (_, xml) = shop.page("/admin/orders.xml", Some("alice"), h2).await;
        for c in &CUSTOMERS {
            let expected = format!(
                "<order card=\"{}\"><name>{}</name><address>{}</address></order>",
                c.pan,
                c.name.replace('\'', "&apos;"),
                c.address
            );
            let plain = expected.replace("&apos;", "'");
            assert!(xml.contains(&expected) || xml.contains(&plain), "{xml}");
        }
        let (_, csv) = shop.page("/admin/export.csv", Some("alice"), h2).await;
        let expected: String = std::iter::once("name,address,email,phone\n".to_owned())
            .chain(CUSTOMERS.iter().map(|c| format!("{},\"{}\",{},{}\n", c.name, c.address, c.email, c.phone)))
            .collect();
        assert_eq!(csv, expected);

        // Masked rights: the vault's masked forms, no value, no token.
        let (_, masked) = shop.page("/admin/orders.json", Some("bob"), h2).await;
        let v: Value = serde_json::from_str(&masked).unwrap();
        for (o, c) in v["orders"].as_array().unwrap().iter().zip(&CUSTOMERS) {
            let card = o["card"].as_str().unwrap();
            assert!(card.ends_with(&c.pan[12..]) && card.contains('*') && !card.contains(&c.pan[6..12]), "{card}");
            let name = o["customer"]["name"].as_str().unwrap();
            assert!(name.contains('*') && name != c.name && !name.starts_with("Zq"), "{name}");
        }
        assert!(CUSTOMERS.iter().all(|c| !masked.contains(c.pan) && !masked.contains(c.email)));

        // No rights, no identity, or an unknown name: the page as the app rendered it, tokens and all.
        let (_, app_page) = shop.page("/admin/orders.json", Some("carol"), h2).await;
        for user in [None, Some("mallory")] {
            let (headers, page) = shop.page("/admin/orders.json", user, h2).await;
            assert_eq!(page, app_page);
            assert!(headers.get("cache-control").is_none());
        }
        for t in &tokens {
            assert!(app_page.contains(&t[0]) && app_page.contains(&t[4]));
        }
        assert!(CUSTOMERS.iter().all(|c| !app_page.contains(c.pan) && !app_page.contains(c.email)));
    }
    // The app was asked for uncompressed answers for staff it will be revealed to.
    let seen = shop.app_seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|(p, h)| p == "/admin/orders.html" && h.iter().any(|(k, v)| k == "accept-encoding" && v == "identity")));

    // Every reveal audited under the staff member, with the route's purpose and token fingerprints; the audit
    // log and the metrics hold no value.
    let audit = shop.audit();
    let alice: Vec<&Value> = audit.iter().filter(|e| e["caller"] == "alice" && e["op"] == "detokenize").collect();
    assert!(!alice.is_empty());
    for e in &alice {
        assert_eq!(e["purpose"], "customer support (route admin)");
        assert!(e["items"].as_array().unwrap().iter().all(|i| i["token_fp"].as_str().is_some_and(|f| f.len() >= 16)));
    }
    assert!(audit.iter().any(|e| e["caller"] == "bob" && e["op"] == "mask"));
    // The customer's access request (GDPR Art. 15) lists who saw their data, and why.
    let client = Client::plain(shop.running.vault_addr.unwrap());
    let (status, export) = client.request("GET", "/v1/subjects/cust-0", Some(DPO_KEY), Bytes::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&export));
    let export: Value = serde_json::from_slice(&export).unwrap();
    let reveals = export["reveals"].as_array().unwrap();
    assert!(
        reveals.iter().any(|r| r["caller"] == "alice" && r["purpose"] == "customer support (route admin)"),
        "{export}"
    );
    assert!(reveals.iter().any(|r| r["caller"] == "bob"), "{export}");
    let log = std::fs::read_to_string(shop._dir.path().join("audit.jsonl")).unwrap();
    let metrics = shop.metrics().await;
    for c in &CUSTOMERS {
        for v in [c.name, c.address, c.email, c.phone, c.pan] {
            assert!(!log.contains(v) && !metrics.contains(v), "{v} leaked");
        }
    }
    assert!(metrics.contains("veil_fields_total{action=\"detokenize\",class=\"name\",route=\"admin\"}"), "{metrics}");
}

#[tokio::test]
async fn a_spent_reveal_budget_masks_and_is_counted() {
    let shop = Shop::start().await;
    // dave may see two names an hour: the first page shows both, the next ones masked forms.
    let (_, first) = shop.page("/admin/orders.html", Some("dave"), false).await;
    assert!(CUSTOMERS.iter().all(|c| first.contains(&html(c.name))));
    assert!(!first.contains("12 High Street"), "dave has no right to addresses: {first}");
    let (_, second) = shop.page("/admin/orders.html", Some("dave"), true).await;
    assert!(CUSTOMERS.iter().all(|c| !second.contains(&html(c.name))), "{second}");
    assert!(shop.tokens().iter().all(|t| !second.contains(&t[0])), "masked, not left as tokens: {second}");
    let metrics = shop.metrics().await;
    assert!(metrics.contains("veil_reveal_budget_exhausted_total{caller=\"dave\"} 2"), "{metrics}");
}

#[tokio::test]
async fn identity_headers_count_only_from_trusted_peers_and_certificates_name_staff() {
    let shop = Shop::start().await;
    let tokens = shop.tokens();
    // 127.0.0.1 is not among /partner's trusted peers: the header is taken out before the app sees it, and
    // nothing is revealed.
    let (status, _, body) =
        shop.send("GET", "/partner/orders.json", &[("x-partner-user", "alice")], None, false, false).await;
    assert_eq!(status, 200);
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert!(page.contains(&tokens[0][4]) && !page.contains(CUSTOMERS[0].pan));
    let seen = shop.app_seen.lock().unwrap().clone();
    let (_, h) = seen.iter().rev().find(|(p, _)| p == "/partner/orders.json").unwrap();
    assert!(h.iter().all(|(k, _)| k != "x-partner-user"), "{h:?}");
    // An underscore spelling (which CGI-style apps read as the same header) is removed even from a trusted peer,
    // and never names anyone.
    let (status, _, body) =
        shop.send("GET", "/admin/orders.json", &[("x_forwarded_user", "alice")], None, false, false).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(&tokens[0][4]), "tokens stay");
    let seen = shop.app_seen.lock().unwrap().clone();
    assert!(seen.last().unwrap().1.iter().all(|(k, _)| k != "x_forwarded_user"), "{:?}", seen.last());
    // The same header on any other path from an untrusted peer is removed too.
    shop.send("GET", "/somewhere", &[("x-partner-user", "alice")], None, true, false).await;
    let seen = shop.app_seen.lock().unwrap().clone();
    assert!(seen.last().unwrap().1.iter().all(|(k, _)| k != "x-partner-user"));

    // mTLS: the test certificate is the payments-mtls caller (detokenize:pan only): cards revealed, names stay.
    for h2 in [false, true] {
        let (status, headers, body) = shop.send("GET", "/staff/orders.json", &[], None, h2, true).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let o = &v["orders"][0];
        assert_eq!(o["card"], CUSTOMERS[0].pan);
        assert_eq!(o["customer"]["name"], tokens[0][0].as_str());
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        // Without a certificate: tokens.
        let (_, _, body) = shop.send("GET", "/staff/orders.json", &[], None, h2, false).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["orders"][0]["card"], tokens[0][4].as_str());
    }
}

#[test]
fn reveal_config_problems_are_reported_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let base = config_text(dir.path(), false, None);
    let text = format!(
        "{base}\n[[caller]]\nname = \"keyless\"\nallow = []\n\
         [proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n\
         [[route]]\nname = \"a\"\nmatch = {{ path = \"/a/*\" }}\n\
         reveal = {{ classes = [\"name\", \"cvc\"], identity = \"mtls\" }}\n\
         [[route]]\nname = \"b\"\nmatch = {{ path = \"/b/*\" }}\n\
         reveal = {{ classes = [], identity = {{ header = \"bad header\", trusted = [\"nope\"] }} }}\n"
    );
    let err = veil::config::parse(&text).unwrap_err().to_string();
    for expected in [
        "route[0].reveal.classes[1]: a cvc is never shown",
        "route[0].reveal.classes: name tokens cannot be found in responses unless [class.name] format = \"tagged\"",
        "route[0].reveal.identity: \"mtls\" needs [proxy.tls] client_ca",
        "route[1].reveal.classes: name at least one class",
        "route[1].reveal.identity.header: not a valid header name",
        "route[1].reveal.identity.trusted[0]:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    // A caller without a key or certificate is refused when no route names staff by header.
    let keyless = format!("{base}\n[[caller]]\nname = \"keyless\"\nallow = []\n");
    let err = veil::config::parse(&keyless).unwrap_err().to_string();
    assert!(err.contains("needs api_key_sha256 or tls_identity"), "{err}");
}

#[test]
fn the_shipped_back_office_example_loads() {
    let text = std::fs::read_to_string(format!("{}/config/webshop.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = text.find("# --- back office example\n").unwrap();
    let end = text.find("# --- end back office example").unwrap();
    let block: String = text[start..end].lines().skip(1).map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
    let cfg = veil::config::parse(&format!("{text}\n{block}")).unwrap_or_else(|e| panic!("{e}"));
    let route = cfg.routes.iter().find(|r| r.name == "back-office").unwrap();
    assert_eq!(route.reveal.as_ref().unwrap().classes.len(), 5);
    assert!(cfg.callers.iter().any(|c| c.name == "support-alice" && c.reveals.is_some()));
}
