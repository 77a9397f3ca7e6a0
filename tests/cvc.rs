//! The card verification code (issue 21): kept on the way in as a volatile secret bound to the card's token, the
//! app given a placeholder; revealed once on the way out to the payment provider beside the card number; gone
//! after its use or its TTL, also across a restart within it. End to end through ingress, app and an egress route
//! to a recording TLS provider (HTTP/1.1 and h2), and at the engine with a controllable clock on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::lifecycle::ManualClock;
use common::pg::Backend;
use common::tls_app::TlsApp;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::store::postgres::{PostgresOptions, PostgresStore};
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::Store;
use veil::token::ClassFormats;
use veil::vault::engine::{Engine, Missing, Terms};

const PAN: &str = "5555555555554444";
const CVC: &str = "739";

struct Shop {
    dir: tempfile::TempDir,
    config: String,
    running: veil::app::Running,
    app: App,
    provider: TlsApp,
    _provider_dir: tempfile::TempDir,
}

impl Shop {
    async fn start() -> Shop {
        Shop::start_with(veil::vault::engine::system_clock()).await
    }

    async fn start_with(clock: veil::vault::engine::Clock) -> Shop {
        let provider_dir = tempfile::tempdir().unwrap();
        Pki::new(provider_dir.path());
        let provider = TlsApp::start(provider_dir.path()).await;
        let app = App::start().await;
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}\n\
             [[route]]\nname = \"checkout\"\nmatch = {{ methods = [\"POST\"], path = \"/checkout\" }}\n\
             fields = [ {{ json = \"$.card.number\", class = \"pan\" }},\n\
               {{ json = \"$.card.cvc\", class = \"cvc\", bind = \"$.card.number\" }} ]\n\
             [[egress]]\nname = \"psp\"\nlisten = \"127.0.0.1:0\"\nupstream = \"https://{}\"\nca = \"{}\"\n\
             caller = \"payments\"\n\
             fields = [ {{ json = \"$.source.number\", class = \"pan\" }},\n\
               {{ json = \"$.source.cvc\", class = \"cvc\", bind = \"$.source.number\" }} ]\n",
            app.addr,
            config_text(dir.path(), false, None),
            provider.addr,
            provider_dir.path().join("ca.pem").display(),
        );
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, clock).await.unwrap();
        Shop { dir, config: text, running, app, provider, _provider_dir: provider_dir }
    }

    /// Stops veil and starts it again on the same store and keys.
    async fn restart(self, clock: veil::vault::engine::Clock) -> Shop {
        let Shop { dir, config, running, app, provider, _provider_dir } = self;
        running.shutdown().await;
        let running = veil::app::start(veil::config::parse(&config).unwrap(), clock).await.unwrap();
        Shop { dir, config, running, app, provider, _provider_dir }
    }

    /// The browser's checkout; what the app stored (card token, CVC placeholder).
    async fn checkout(&self, pan: &str, cvc: &str) -> (String, String) {
        let body = json!({"card": {"number": pan, "cvc": cvc}, "amount": 1999}).to_string();
        let req = hyper::Request::post("http://localhost/checkout")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, _, body) = send_request(self.running.proxy_addr.unwrap(), None, false, req).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let seen = self.app.requests().pop().unwrap();
        let stored: Value = serde_json::from_slice(&seen.body).unwrap();
        let text = String::from_utf8_lossy(&seen.body).into_owned();
        assert!(!text.contains(pan), "the card reached the app: {text}");
        let (token, placeholder) =
            (stored["card"]["number"].as_str().unwrap(), stored["card"]["cvc"].as_str().unwrap());
        assert_ne!(placeholder, cvc, "the CVC reached the app");
        assert_eq!(placeholder.len(), cvc.len(), "the placeholder has the CVC's shape");
        (token.to_owned(), placeholder.to_owned())
    }

    fn egress(&self) -> SocketAddr {
        self.running.egress_addrs[0].1
    }

    /// The app's charge through the egress route.
    async fn charge(&self, token: &str, placeholder: &str, h2: bool) -> (u16, Value) {
        let addr = self.egress();
        let body = json!({"source": {"number": token, "cvc": placeholder}, "amount": 1999}).to_string();
        let mut req =
            hyper::Request::post(format!("http://{addr}/v1/payments")).header("content-type", "application/json");
        if !h2 {
            req = req.header("host", "psp.example");
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let (status, _, body) = send_request(addr, None, h2, req).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn volatile_rows(&self) -> i64 {
        let url = format!("sqlite://{}/vault.db?mode=ro", self.dir.path().display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM volatile").fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

#[tokio::test]
async fn the_provider_gets_card_and_cvc_once_and_the_app_neither() {
    let shop = Shop::start().await;
    for h2 in [false, true] {
        let pan = if h2 { random_pan("4", 16) } else { PAN.to_owned() };
        let (token, placeholder) = shop.checkout(&pan, CVC).await;
        assert_eq!(shop.volatile_rows().await, 1, "the CVC is kept, sealed, until it is used");
        let (status, reply) = shop.charge(&token, &placeholder, h2).await;
        assert_eq!(status, 200, "{reply}");
        let (_, seen) = shop.provider.requests().pop().unwrap();
        let sent: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(
            (sent["source"]["number"].as_str(), sent["source"]["cvc"].as_str()),
            (Some(pan.as_str()), Some(CVC))
        );
        assert_eq!(shop.volatile_rows().await, 0, "used once, erased");

        // A second charge with the same placeholder: refused, nothing reaches the provider.
        let before = shop.provider.requests().len();
        let (status, reply) = shop.charge(&token, &placeholder, h2).await;
        assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("cvc_unavailable")), "{reply}");
        assert_eq!(shop.provider.requests().len(), before);
    }
    // A charge naming a card whose CVC was never given: refused the same way.
    let api = Client::plain(shop.running.vault_addr.unwrap());
    let items = json!({"items": [{"class": "pan", "value": random_pan("4", 16)}]});
    let (_, body) = api.post_json("/v1/tokenize", PAYMENTS_KEY, &items).await;
    let (status, reply) = shop.charge(body["items"][0]["token"].as_str().unwrap(), "123", false).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("cvc_unavailable")), "{reply}");
}

#[tokio::test]
async fn a_cvc_waits_across_a_restart_within_its_ttl_and_not_past_it() {
    let clock = ManualClock::at(1_800_000_000);
    let shop = Shop::start_with(clock.clock()).await;
    let (token, placeholder) = shop.checkout(PAN, CVC).await;
    let shop = shop.restart(clock.clock()).await;
    clock.advance(1800);
    let (status, reply) = shop.charge(&token, &placeholder, false).await;
    assert_eq!(status, 200, "{reply}");
    let (_, seen) = shop.provider.requests().pop().unwrap();
    assert!(String::from_utf8_lossy(&seen.body).contains(CVC), "the CVC kept across the restart was sent");

    let (token, placeholder) = shop.checkout(&random_pan("4", 16), CVC).await;
    clock.advance(3601);
    let before = shop.provider.requests().len();
    let (status, reply) = shop.charge(&token, &placeholder, false).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("cvc_unavailable")), "past its TTL: {reply}");
    assert_eq!(shop.provider.requests().len(), before, "nothing reached the provider");
    assert_eq!(shop.volatile_rows().await, 0, "and the expired CVC is gone from the store");
}

#[tokio::test]
async fn a_cvc_without_its_card_is_refused_and_never_forwarded() {
    let shop = Shop::start().await;
    let body = json!({"card": {"cvc": CVC}}).to_string();
    let req = hyper::Request::post("http://localhost/checkout")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, _, body) = send_request(shop.running.proxy_addr.unwrap(), None, false, req).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_value")), "{body}");
    assert!(!body.to_string().contains(CVC));
    assert!(shop.app.requests().is_empty());
}

#[test]
fn a_cvc_field_must_name_its_card() {
    let dir = tempfile::tempdir().unwrap();
    let base = config_text(dir.path(), false, None);
    let route = |fields: &str| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n{base}\n[[route]]\nname = \"c\"\n\
             match = {{ path = \"/c\" }}\nfields = [ {fields} ]\n"
        )
    };
    for (fields, problem) in [
        (r#"{ json = "$.cvc", class = "cvc" }"#, "fields[0].bind: a cvc field needs bind"),
        (r#"{ json = "$.cvc", class = "cvc", bind = "$.pan" }"#, "fields[0].bind: names no pan field"),
        (r#"{ json = "$.pan", class = "pan", bind = "$.x" }"#, "fields[0].bind: only a cvc field"),
        (r#"{ json = "$.cvc", class = "cvc", action = "encrypt" }"#, "fields[0].action: a cvc is never given"),
    ] {
        let err = veil::config::parse(&route(fields)).unwrap_err().problems.join("\n");
        assert!(err.contains(problem), "{fields}: {err}");
    }
    let ok = r#"{ json = "$.pan", class = "pan" }, { json = "$.cvc", class = "cvc", bind = "$.pan" }"#;
    veil::config::parse(&route(ok)).unwrap();
    let ttl = format!("{}\n[class.cvc]\nttl = \"25h\"\n", route(ok));
    assert!(veil::config::parse(&ttl).unwrap_err().problems.join("").contains("class.cvc.ttl"));
}

/// An engine on `url` (SQLite or PostgreSQL) with the test key ring.
async fn engine(url: &str, clock: &ManualClock, uses: u32) -> Engine {
    let ring = Keyring::from_keys([(1, [9; 32])]);
    let keys = KeySet::derive(&ring, &Class::names()).unwrap();
    let store: Arc<dyn Store> = match url.starts_with("sqlite:") {
        true => Arc::new(SqliteStore::open(url, SqliteOptions::default()).await.unwrap()),
        false => Arc::new(PostgresStore::open(url, PostgresOptions::default()).await.unwrap()),
    };
    let formats = ClassFormats { cvc_ttl: 3600, cvc_uses: uses, ..ClassFormats::default() };
    Engine::new(keys, store, formats, clock.clock())
}

/// Rows in the store's `volatile` table.
async fn rows(url: &str) -> i64 {
    let query = "SELECT COUNT(*) FROM volatile";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(query).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(query).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

async fn keep(e: &Engine, pan: &str, cvc: &str) -> (String, String) {
    let items = [(Class::Pan, pan), (Class::Cvc, cvc)];
    let out = e.tokenize_on(&items, None, Terms { binds: &[(1, 0)], ..Terms::default() }).await.unwrap();
    (out[0].clone(), out[1].clone())
}

async fn reveal(e: &Engine, card_token: &str) -> Result<String, Missing> {
    let out = e.reveal(&[(Class::Cvc, card_token)], true).await.unwrap();
    out.into_iter().next().unwrap().map(|r| r.render())
}

common::pg::on_both_stores!(a_cvc_lives_for_its_uses_and_its_ttl_across_a_restart_and_replicas);

async fn a_cvc_lives_for_its_uses_and_its_ttl_across_a_restart_and_replicas(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = backend.store_url(dir.path()).await;
    let clock = ManualClock::at(1_800_000_000);
    let e = engine(&url, &clock, 2).await;
    let (token, placeholder) = keep(&e, PAN, "1234").await;
    assert_ne!(placeholder, "1234");
    assert!(matches!(e.reveal(&[(Class::Cvc, &token)], false).await.unwrap()[0], Err(Missing::NotFound)));
    drop(e);

    // A restart within the TTL: the CVC is in the store, sealed; and another replica of the store reveals it.
    let e = engine(&url, &clock, 2).await;
    let replica = engine(&url, &clock, 2).await;
    clock.advance(3000);
    assert_eq!(reveal(&e, &token).await.as_deref(), Ok("1234"));
    assert_eq!(reveal(&replica, &token).await.as_deref(), Ok("1234"), "two uses configured, one per replica");
    assert_eq!(reveal(&e, &token).await, Err(Missing::CvcUnavailable), "used up");
    assert_eq!(rows(&url).await, 0, "erased with its last use");

    // Given again, then past its TTL: unavailable, and purged though never used.
    let (token, _) = keep(&e, PAN, "567").await;
    clock.advance(3600);
    assert_eq!(reveal(&e, &token).await, Err(Missing::CvcUnavailable));
    let (other, _) = keep(&e, &random_pan("4", 16), "890").await;
    assert_eq!(e.purge_volatile().await.unwrap(), 0, "the expired one was erased when it was asked for");
    clock.advance(3601);
    assert_eq!(rows(&url).await, 1);
    assert_eq!(e.purge_volatile().await.unwrap(), 1, "an unused one is erased at its TTL");
    assert_eq!(rows(&url).await, 0);
    assert_eq!(reveal(&e, &other).await, Err(Missing::CvcUnavailable));

    // Unbound or malformed: refused before anything is written.
    let unbound = e.tokenize_on(&[(Class::Pan, PAN), (Class::Cvc, "123")], None, Terms::default()).await;
    assert!(unbound.is_err());
    let bad =
        e.tokenize_on(&[(Class::Pan, PAN), (Class::Cvc, "12")], None, Terms { binds: &[(1, 0)], ..Terms::default() });
    assert!(bad.await.is_err());
}
