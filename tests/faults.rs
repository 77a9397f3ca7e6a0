//! Network faults between the proxy and the app, and between `veil proxy` and `veil vault` (resets, half-open
//! connections, delays, injected by a TCP relay): the proxy fails closed with the spec's errors, creates no second
//! token for a value the client retries, and recovers when the fault ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::relay::{Fault, Relay};
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};

struct Setup {
    _dir: tempfile::TempDir,
    app: App,
    relay: Relay,
    running: veil::app::Running,
}

async fn setup() -> Setup {
    let app = App::start().await;
    let relay = Relay::start(app.addr).await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nupstream_timeout = \"1s\"\n{}\n\
         [[route]]\nname = \"checkout\"\nmatch = {{ path = \"/checkout\" }}\n\
         fields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n",
        relay.addr,
        config_text(dir.path(), false, None)
    );
    let cfg = veil::config::parse(&text).unwrap();
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
    Setup { _dir: dir, app, relay, running }
}

async fn checkout(proxy: SocketAddr, pan: &str) -> (u16, Value) {
    let req = hyper::Request::post(format!("http://{proxy}/checkout"))
        .header("host", "shop")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({ "card": pan }).to_string())))
        .unwrap();
    let (status, _, body) = send_request(proxy, None, false, req).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn tokens_seen(app: &App) -> Vec<String> {
    app.requests()
        .iter()
        .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap()["card"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_side_faults_fail_closed_and_the_proxy_recovers() {
    let s = setup().await;
    let proxy = s.running.proxy_addr.unwrap();
    let pan = random_pan("411111", 16);

    assert_eq!(checkout(proxy, &pan).await.0, 200);
    let token = tokens_seen(&s.app)[0].clone();

    s.relay.set(Fault::Reset);
    let (status, body) = checkout(proxy, &pan).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (502, "upstream_unavailable"), "{body}");

    s.relay.set(Fault::Blackhole);
    let started = Instant::now();
    let (status, body) = checkout(proxy, &pan).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (504, "upstream_timeout"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "a half-open app is given up on at upstream_timeout");

    s.relay.set(Fault::Delay(Duration::from_millis(200)));
    assert_eq!(checkout(proxy, &pan).await.0, 200, "a slow but working link still serves");

    s.relay.set(Fault::None);
    for _ in 0..3 {
        assert_eq!(checkout(proxy, &pan).await.0, 200, "recovered once the fault ended");
    }

    // Only the successful requests reached the app, every one with the same token: retries made no second one.
    let seen = tokens_seen(&s.app);
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|t| *t == token));
    for r in s.app.requests() {
        assert!(!String::from_utf8_lossy(&r.all_bytes()).contains(&pan));
    }
    let vault = Client::plain(s.running.vault_addr.unwrap());
    let (_, body) =
        vault.post_json("/v1/tokenize", PAYMENTS_KEY, &json!({"items": [{"class": "pan", "value": pan}]})).await;
    assert_eq!(body["items"][0]["token"], token, "the vault holds one token for the value");

    let (_, metrics) = get(s.running.admin_addr.unwrap(), "/metrics").await;
    assert!(metrics.contains(r#"veil_upstream_errors_total{kind="unavailable",route="checkout"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"veil_upstream_errors_total{kind="timeout",route="checkout"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_survives_resets_of_pooled_connections() {
    let s = setup().await;
    let proxy = s.running.proxy_addr.unwrap();
    let get_page = || async {
        let req =
            hyper::Request::get(format!("http://{proxy}/page")).header("host", "shop").body(Full::default()).unwrap();
        send_request(proxy, None, false, req).await.unwrap().0
    };
    for round in 0..5 {
        assert_eq!(get_page().await, 200, "round {round}");
        // Reset the pooled connection between requests; the next request must get a fresh one.
        s.relay.set(Fault::Reset);
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.relay.set(Fault::None);
    }
    assert!(s.relay.accepted() >= 5, "each round needed a new upstream connection");
}

/// `veil proxy` whose vault (`veil vault`, mTLS) sits behind a fault-injecting relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_side_faults_fail_closed_and_the_proxy_recovers() {
    use common::split::{proxy_config, spawn, vault_config, SplitPki};
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    veil::crypto::BlobKeys::generate_file(&dir.path().join("proxy-encrypt.key")).unwrap();
    let pki = SplitPki::new(dir.path());
    let vault_toml = dir.path().join("vault.toml");
    std::fs::write(&vault_toml, vault_config(dir.path(), &pki, "127.0.0.1:0".parse().unwrap())).unwrap();
    let vault = spawn("vault", &vault_toml, &["vault"]).await;
    let relay = Relay::start(vault.addr("vault")).await;
    let app = App::start().await;
    let route = "[[route]]\nname = \"checkout\"\nmatch = { path = \"/checkout\" }\n\
                 fields = [ { json = \"$.card\", class = \"pan\" } ]\n";
    let text =
        proxy_config(dir.path(), &pki, &pki.proxy_client, relay.addr, &format!("http://{}", app.addr), "", route)
            .replace("vault_timeout = \"5s\"", "vault_timeout = \"1s\"");
    let proxy_toml = dir.path().join("proxy.toml");
    std::fs::write(&proxy_toml, text).unwrap();
    let proxy = spawn("proxy", &proxy_toml, &["proxy"]).await;
    let addr = proxy.addr("proxy");
    let pan = random_pan("411111", 16);
    let send = || async {
        let req = hyper::Request::post("https://localhost/checkout")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json!({ "card": pan }).to_string())))
            .unwrap();
        let (status, _, body) = send_request(addr, Some(&pki.ca), false, req).await.unwrap();
        (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
    };

    assert_eq!(send().await.0, 200);
    for fault in [Fault::Reset, Fault::Blackhole] {
        relay.set(fault);
        let started = Instant::now();
        let (status, body) = send().await;
        assert_eq!((status, body["error"]["code"].as_str().unwrap()), (503, "vault_unavailable"), "{fault:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{fault:?}: answered within the vault timeouts");
    }
    relay.set(Fault::Delay(Duration::from_millis(100)));
    assert_eq!(send().await.0, 200, "a slow but working vault link still serves");
    relay.set(Fault::None);
    let mut recovered = 0;
    for _ in 0..3 {
        recovered += usize::from(send().await.0 == 200);
    }
    assert_eq!(recovered, 3, "recovered once the fault ended");

    let tokens = tokens_seen(&app);
    assert_eq!(tokens.len(), 5, "only the successful requests reached the app");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "the retried value kept its one token");
    drop((proxy, vault));
}
