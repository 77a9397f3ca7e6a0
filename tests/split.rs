//! Split deployment end to end: `veil vault` and `veil proxy` as separate processes talking HTTPS with mTLS.
//! The same ingress scenarios run against an in-process `veil run` and against the split pair; the vault refuses
//! clients without a valid certificate; a killed vault makes the proxy fail closed (503, nothing forwarded) and
//! a restarted one makes it recover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::split::*;
use common::*;
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};

const ROUTES: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [
  { json = "$.card.number", class = "pan" },
  { json = "$.card.cvc", class = "cvc", bind = "$.card.number" },
  { json = "$.customer.email", class = "email" },
  { json = "$..iban", class = "iban" },
  { json = "$.customer.note", class = "text", action = "encrypt" },
]
detect = ["pan", "email"]
subject = { json = "$.customer.id" }

[[route]]
name = "form"
match = { methods = ["POST"], path = "/form" }
fields = [ { form = "iban", class = "iban" }, { form = "email", class = "email" }, { form = "card", class = "pan" } ]
"#;

const PAN: &str = "4111111111111111";
const PAN2: &str = "5500 0000 0000 0004";
const IBAN: &str = "DE89370400440532013000";
const EMAIL: &str = "jane.doe@example.org";
const SECRETS: &[&str] = &[PAN, "5500000000000004", PAN2, IBAN, EMAIL, "allergic"];

/// A proxy to send requests through, the vault API behind it, and the recording app in front of which it sits.
struct Target {
    proxy: SocketAddr,
    ca: CertificateDer<'static>,
    /// The vault API, as the `payments` caller (bearer key) would reach it.
    vault: Client,
    app: App,
}

impl Target {
    async fn send(&self, h2: bool, path: &str, content_type: &str, body: impl Into<Bytes>) -> (u16, Value) {
        let mut req = hyper::Request::builder().method("POST").uri(format!("https://localhost{path}"));
        if !h2 {
            req = req.header("host", "localhost");
        }
        let req = req.header("content-type", content_type).body(Full::new(body.into())).unwrap();
        let (status, _, body) = send_request(self.proxy, Some(&self.ca), h2, req).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn detokenize(&self, class: &str, token: &str) -> String {
        let body = json!({"items": [{"class": class, "token": token}], "purpose": "test"});
        let (status, resp) = self.vault.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        resp["items"][0]["value"].as_str().unwrap_or_else(|| panic!("no value: {resp}")).to_owned()
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

// ---------------------------------------------------------------- scenarios (both modes)

/// JSON body over HTTP/1.1 and h2: configured fields and detected values become tokens the vault gives back.
async fn checkout_scenario(t: &Target) {
    for h2 in [false, true] {
        let body = json!({
            "card": {"number": PAN, "cvc": "319"},
            "customer": {"id": "cust-42", "email": EMAIL, "note": "allergic to nuts", "bank": {"iban": IBAN}},
            "comment": format!("second card {PAN2}, mail me at {EMAIL}"),
        });
        let (status, resp) = t.send(h2, "/checkout", "application/json", serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(status, 200, "h2={h2}: {resp}");
        let seen = t.app.requests().pop().unwrap();
        let got: Value = serde_json::from_slice(&seen.body).unwrap();
        let card = got["card"]["number"].as_str().unwrap();
        assert!(luhn_valid(card) && card.len() == 16 && card.starts_with("411111") && card != PAN, "{card}");
        assert_eq!(t.detokenize("pan", card).await, PAN);
        // The CVC: a placeholder for the app, kept for the card's token, revealed once by it.
        assert_ne!(got["card"]["cvc"], "319");
        assert_eq!(t.detokenize("cvc", card).await, "319");
        let email = got["customer"]["email"].as_str().unwrap();
        assert!(email.ends_with("@example.org") && email != EMAIL);
        assert_eq!(t.detokenize("email", email).await, EMAIL);
        assert_eq!(t.detokenize("iban", got["customer"]["bank"]["iban"].as_str().unwrap()).await, IBAN);
        assert!(got["customer"]["note"].as_str().unwrap().starts_with("veil:v1:"), "encrypted by the proxy");
        let comment = got["comment"].as_str().unwrap();
        let detected = comment.strip_prefix("second card ").unwrap().split(',').next().unwrap();
        assert_ne!(detected, PAN2);
        assert_eq!(t.detokenize("pan", detected).await, PAN2);
        assert!(comment.ends_with(&format!("mail me at {email}")), "same value, same token: {comment}");
    }
    t.assert_app_saw_no_secret();
}

/// Form body: three fields, three tokens (split over two vault calls by `veil proxy`).
async fn form_scenario(t: &Target) {
    let body = format!("iban={IBAN}&email=jane.doe%40example.org&card={PAN}&keep=1");
    let (status, resp) = t.send(false, "/form", "application/x-www-form-urlencoded", body).await;
    assert_eq!(status, 200, "{resp}");
    let seen = t.app.requests().pop().unwrap();
    let form: Vec<(String, String)> = form_urlencoded::parse(&seen.body).into_owned().collect();
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(t.detokenize("iban", &field("iban")).await, IBAN);
    assert_eq!(t.detokenize("email", &field("email")).await, EMAIL);
    assert_eq!(t.detokenize("pan", &field("card")).await, PAN);
    assert_eq!(field("keep"), "1");
    t.assert_app_saw_no_secret();
}

/// A value invalid for its class (the third of the batch) is refused with the spec's error naming the field,
/// and the app receives nothing.
async fn invalid_value_scenario(t: &Target) {
    let before = t.app.requests().len();
    let body = format!("iban={IBAN}&email=jane.doe%40example.org&card=4111111111111112");
    let (status, resp) = t.send(false, "/form", "application/x-www-form-urlencoded", body).await;
    assert_eq!(status, 422, "{resp}");
    assert_eq!(resp["error"]["code"], "invalid_value", "{resp}");
    assert!(resp["error"]["message"].as_str().unwrap().contains("form card"), "{resp}");
    assert_eq!(t.app.requests().len(), before, "nothing forwarded");
}

async fn all_scenarios(t: &Target) {
    checkout_scenario(t).await;
    form_scenario(t).await;
    invalid_value_scenario(t).await;
}

// ---------------------------------------------------------------- the two deployments

/// `veil run` in this process: proxy and vault API (plain HTTP on loopback) in one.
async fn in_process(app: &App) -> (tempfile::TempDir, veil::app::Running, Target) {
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let pki = Pki::new(dir.path());
    let d = dir.path().display();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n[proxy.tls]\ncert = \"{d}/server.pem\"\n\
         key = \"{d}/server.key\"\n{}\n{ROUTES}",
        app.addr,
        config_text(dir.path(), false, None)
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
    let target = Target {
        proxy: running.proxy_addr.unwrap(),
        ca: pki.ca_der.clone(),
        vault: Client::plain(running.vault_addr.unwrap()),
        app: app.clone(),
    };
    (dir, running, target)
}

/// `veil vault` and `veil proxy` processes.
struct Split {
    dir: tempfile::TempDir,
    pki: SplitPki,
    vault_config: PathBuf,
    vault: Option<Spawned>,
    proxy: Option<Spawned>,
    app: App,
}

impl Split {
    /// Starts the vault (port chosen by the OS, then fixed in its config so a restart keeps it).
    async fn start_vault() -> Split {
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        veil::crypto::BlobKeys::generate_file(&dir.path().join("proxy-encrypt.key")).unwrap();
        let pki = SplitPki::new(dir.path());
        let config = dir.path().join("vault.toml");
        std::fs::write(&config, vault_config(dir.path(), &pki, "127.0.0.1:0".parse().unwrap())).unwrap();
        let vault = spawn("vault", &config, &["vault", "admin"]).await;
        std::fs::write(&config, vault_config(dir.path(), &pki, vault.addr("vault"))).unwrap();
        Split { dir, pki, vault_config: config, vault: Some(vault), proxy: None, app: App::start().await }
    }

    /// Starts a proxy that authenticates with `client` (the proxy's certificate, or the rogue one).
    async fn start_proxy(&mut self, rogue: bool) {
        self.start_proxy_with(rogue, "", "", &[]).await;
    }

    /// Like `start_proxy`, with lines added to [vault_client] and to the routes, and more listeners to wait for.
    async fn start_proxy_with(&mut self, rogue: bool, client_extra: &str, routes: &str, listeners: &[&str]) {
        let client = if rogue { &self.pki.rogue_client } else { &self.pki.proxy_client };
        let upstream = format!("http://{}", self.app.addr);
        let routes = format!("{ROUTES}\n{routes}");
        let text =
            proxy_config(self.dir.path(), &self.pki, client, self.vault_addr(), &upstream, client_extra, &routes);
        let path = self.dir.path().join(if rogue { "rogue-proxy.toml" } else { "proxy.toml" });
        std::fs::write(&path, text).unwrap();
        let expect: Vec<&str> = ["proxy", "admin"].iter().chain(listeners).copied().collect();
        self.proxy = Some(spawn("proxy", &path, &expect).await);
    }

    fn listener(&self, name: &str) -> SocketAddr {
        self.proxy.as_ref().unwrap().addr(name)
    }

    fn vault_addr(&self) -> SocketAddr {
        self.vault.as_ref().unwrap().addr("vault")
    }

    fn proxy_admin(&self) -> SocketAddr {
        self.proxy.as_ref().unwrap().addr("admin")
    }

    /// The vault API over TLS, with an optional client certificate.
    fn vault_client(&self, cert: Option<&Issued>) -> Client {
        Client { addr: self.vault_addr(), tls: Some(self.pki.tls(cert)), pki: None }
    }

    fn target(&self) -> Target {
        Target {
            proxy: self.proxy.as_ref().unwrap().addr("proxy"),
            ca: self.pki.ca.clone(),
            vault: self.vault_client(None),
            app: self.app.clone(),
        }
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn ingress_scenarios_in_one_process() {
    let app = App::start().await;
    let (_dir, _running, target) = in_process(&app).await;
    all_scenarios(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_scenarios_through_veil_proxy_and_veil_vault() {
    let mut split = Split::start_vault().await;
    split.start_proxy(false).await;
    assert_eq!(get(split.proxy_admin(), "/readyz").await.0, 200, "ready: the remote vault answers");
    all_scenarios(&split.target()).await;
    let (_, metrics) = get(split.proxy_admin(), "/metrics").await;
    assert!(metrics.contains(r#"veil_requests_total{route="checkout",status="200"} 2"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_refuses_clients_without_a_valid_certificate() {
    let split = Split::start_vault().await;
    let items = json!({"items": [{"class": "pan", "value": PAN}]});
    let body = || Bytes::from(serde_json::to_vec(&items).unwrap());

    // No certificate and no key: unauthenticated.
    let (status, resp) = split.vault_client(None).request("POST", "/v1/tokenize", None, body()).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(split.vault_client(None).request("GET", "/v1/ready", None, Bytes::new()).await.0, 401);

    // A certificate with the right SAN from another CA: the handshake is refused.
    let rogue = split.vault_client(Some(&split.pki.rogue_client));
    let refused = rogue.try_request("POST", "/v1/tokenize", None, body()).await;
    assert!(refused.is_err(), "a rogue certificate got an answer: {refused:?}");

    // The proxy's certificate: the `proxy` caller, which may tokenise and nothing else.
    let proxy = split.vault_client(Some(&split.pki.proxy_client));
    let (status, resp) = proxy.request("POST", "/v1/tokenize", None, body()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let token: Value = serde_json::from_slice(&resp).unwrap();
    let token = token["items"][0]["token"].as_str().unwrap().to_owned();
    let reveal = json!({"items": [{"class": "pan", "token": token}]});
    let (status, resp) =
        proxy.request("POST", "/v1/detokenize", None, serde_json::to_vec(&reveal).unwrap().into()).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(proxy.request("GET", "/v1/ready", None, Bytes::new()).await.0, 200);
    assert_eq!(proxy.request("POST", "/v1/ready", None, Bytes::new()).await.0, 405);
    assert_eq!(proxy.request("GET", "/v1/tokenize", None, Bytes::new()).await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_the_vault_does_not_trust_forwards_nothing() {
    let mut split = Split::start_vault().await;
    split.start_proxy(true).await;
    let t = split.target();
    let body = serde_json::to_vec(&json!({"card": {"number": PAN}})).unwrap();
    let (status, resp) = t.send(false, "/checkout", "application/json", body).await;
    assert_eq!(status, 503, "{resp}");
    assert_eq!(resp["error"]["code"], "vault_unavailable", "{resp}");
    assert!(t.app.requests().is_empty(), "the app received a request");
    assert_eq!(get(split.proxy_admin(), "/readyz").await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_vault_fails_closed_and_restarting_it_recovers() {
    let mut split = Split::start_vault().await;
    split.start_proxy(false).await;
    let t = split.target();
    let checkout = || serde_json::to_vec(&json!({"card": {"number": PAN}, "customer": {"id": "c1"}})).unwrap();
    let (status, resp) = t.send(false, "/checkout", "application/json", checkout()).await;
    assert_eq!(status, 200, "{resp}");
    let seen: Value = serde_json::from_slice(&t.app.requests()[0].body).unwrap();
    let token = seen["card"]["number"].as_str().unwrap().to_owned();

    split.vault.take().unwrap().kill().await;
    for h2 in [false, true] {
        let (status, resp) = t.send(h2, "/checkout", "application/json", checkout()).await;
        assert_eq!(status, 503, "{resp}");
        assert_eq!(resp["error"]["code"], "vault_unavailable", "{resp}");
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{resp}");
    }
    assert_eq!(t.app.requests().len(), 1, "nothing forwarded while the vault is down");
    assert_eq!(get(split.proxy_admin(), "/readyz").await.0, 503);

    split.vault = Some(spawn("vault", &split.vault_config, &["vault", "admin"]).await);
    let mut recovered = None;
    for _ in 0..50 {
        let (status, resp) = t.send(false, "/checkout", "application/json", checkout()).await;
        if status == 200 {
            recovered = Some(resp);
            break;
        }
        assert_eq!((status, &resp["error"]["code"]), (503, &json!("vault_unavailable")), "{resp}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered.is_some(), "the proxy did not recover after the vault came back");
    let again: Value = serde_json::from_slice(&t.app.requests().last().unwrap().body).unwrap();
    assert_eq!(again["card"]["number"], token.as_str(), "same value, same token after the restart");
    assert_eq!(t.detokenize("pan", &token).await, PAN);
    assert_eq!(get(split.proxy_admin(), "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_reveals_through_the_remote_vault_as_its_own_caller() {
    use common::tls_app::TlsApp;
    // The payment provider: HTTPS with a certificate from its own test CA; it echoes the card number back.
    let provider_dir = tempfile::tempdir().unwrap();
    Pki::new(provider_dir.path());
    let provider = TlsApp::start_with(
        provider_dir.path(),
        std::sync::Arc::new(|seen: &Seen| {
            let sent: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
            let body = json!({"status": "captured", "card": sent["source"]["number"]}).to_string();
            (200, vec![("content-type", "application/json".to_owned())], Bytes::from(body))
        }),
    )
    .await;

    let mut split = Split::start_vault().await;
    let keys = split.dir.path();
    std::fs::write(keys.join("payments.key"), format!("{PAYMENTS_KEY}\n")).unwrap();
    std::fs::write(keys.join("app.key"), APP_KEY).unwrap();
    let client_extra =
        format!("api_keys = {{ payments = \"{0}/payments.key\", app = \"{0}/app.key\" }}", keys.display());
    let egress = |name: &str, caller: &str| {
        format!(
            "[[egress]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nupstream = \"https://localhost:{port}\"\n\
             ca = \"{ca}\"\ncaller = \"{caller}\"\nfields = [ {{ json = \"$.source.number\", class = \"pan\" }} ]\n",
            port = provider.addr.port(),
            ca = provider_dir.path().join("ca.pem").display(),
        )
    };
    let routes = format!("{}{}", egress("psp", "payments"), egress("psp-app", "app"));
    split.start_proxy_with(false, &client_extra, &routes, &["egress:psp", "egress:psp-app"]).await;

    // The browser's checkout: the app stores the token.
    let t = split.target();
    let body = serde_json::to_vec(&json!({"card": {"number": PAN}})).unwrap();
    assert_eq!(t.send(false, "/checkout", "application/json", body).await.0, 200);
    let stored: Value = serde_json::from_slice(&t.app.requests()[0].body).unwrap();
    let token = stored["card"]["number"].as_str().unwrap().to_owned();

    let pay = |route: &str, token: &str| {
        let addr = split.listener(&format!("egress:{route}"));
        let body = serde_json::to_vec(&json!({"source": {"number": token}, "amount": 1999})).unwrap();
        async move { Client::plain(addr).post("/v1/payments", None, body).await }
    };
    // The provider gets the card number; the app gets the echoed number back as a token.
    let (status, resp) = pay("psp", &token).await;
    assert_eq!(status, 200, "{resp}");
    let sent: Value = serde_json::from_slice(&provider.requests()[0].1.body).unwrap();
    assert_eq!(sent["source"]["number"], PAN);
    assert_eq!(resp["card"], token.as_str(), "the echoed card number is tokenised again");

    // A caller without detokenize:pan, and an unknown token: refused, the provider receives nothing more.
    let (status, resp) = pay("psp-app", &token).await;
    assert_eq!((status, &resp["error"]["code"]), (403, &json!("forbidden")), "{resp}");
    let (status, resp) = pay("psp", "4111110000001111").await;
    assert_eq!((status, &resp["error"]["code"]), (422, &json!("unknown_token")), "{resp}");
    assert_eq!(provider.requests().len(), 1);

    // The vault audited the reveal under the route's caller and purpose, and the refusal under `app`.
    let audit = std::fs::read_to_string(split.dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        lines.iter().any(|l| l["caller"] == "payments" && l["op"] == "detokenize" && l["purpose"] == "egress:psp"),
        "{audit}"
    );
    assert!(lines.iter().any(|l| l["caller"] == "app" && l["outcome"] == "denied"), "{audit}");
    assert!(!audit.contains(PAN), "the audit log holds no value");
}
