//! Crash safety through the proxy: clients keep sending checkouts through `veil proxy` while the `veil vault`
//! behind it is SIGKILLed at random moments and restarted, many times. Afterwards: every request the app received
//! was answered 200 to its client and vice versa (nothing was forwarded for a failed request), every token the
//! app received detokenises to the value its client sent, and tokenising a value again gives the same token.
//! Cycles: `VEIL_PROXY_CRASH_CYCLES` (default 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::split::{proxy_config, spawn, vault_config, SplitPki};
use common::*;
use http_body_util::Full;
use rand::Rng;
use serde_json::{json, Value};

const ROUTE: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [ { json = "$.cards[*]", class = "pan" } ]
"#;

/// Request id -> (the card numbers sent, the status the client got).
type Sent = HashMap<String, (Vec<String>, u16)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_sigkills_under_load_lose_no_token_and_forward_nothing_that_failed() {
    let cycles: usize = std::env::var("VEIL_PROXY_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    veil::crypto::BlobKeys::generate_file(&dir.path().join("proxy-encrypt.key")).unwrap();
    let pki = SplitPki::new(dir.path());
    let vault_toml = dir.path().join("vault.toml");
    std::fs::write(&vault_toml, vault_config(dir.path(), &pki, "127.0.0.1:0".parse().unwrap())).unwrap();
    let mut vault = spawn("vault", &vault_toml, &["vault"]).await;
    let vault_addr = vault.addr("vault");
    std::fs::write(&vault_toml, vault_config(dir.path(), &pki, vault_addr)).unwrap();

    let app = App::start().await;
    let proxy_toml = dir.path().join("proxy.toml");
    let upstream = format!("http://{}", app.addr);
    let text = proxy_config(dir.path(), &pki, &pki.proxy_client, vault_addr, &upstream, "", ROUTE);
    std::fs::write(&proxy_toml, text).unwrap();
    let proxy = spawn("proxy", &proxy_toml, &["proxy"]).await;
    let proxy_addr = proxy.addr("proxy");

    let sent: Arc<Mutex<Sent>> = Arc::default();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for c in 0..6 {
            let (stop, served, sent, ca) = (stop.clone(), served.clone(), sent.clone(), pki.ca.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{cycle}-{c}-{n}");
                    n += 1;
                    let cards: Vec<String> = (0..3).map(|_| random_pan("4", 16)).collect();
                    let body = json!({ "id": id, "cards": cards }).to_string();
                    let req = hyper::Request::post("https://localhost/checkout")
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let status = match send_request(proxy_addr, Some(&ca), false, req).await {
                        Ok((status, _, _)) => status,
                        Err(_) => 0,
                    };
                    if status == 200 {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    sent.lock().unwrap().insert(id, (cards, status));
                }
            }));
        }
        // Kill at a random moment after the restarted vault has served (however slow the machine is).
        tokio::time::timeout(Duration::from_secs(10), async {
            while served.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the restarted vault served nothing");
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..100))).await;
        vault.kill().await;
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..30))).await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        vault = spawn("vault", &vault_toml, &["vault"]).await;
    }

    let sent = sent.lock().unwrap().clone();
    let statuses = sent.values().fold(HashMap::<u16, usize>::new(), |mut m, (_, s)| {
        *m.entry(*s).or_default() += 1;
        m
    });
    assert!(statuses.keys().all(|s| [200, 503].contains(s)), "only 200 or fail-closed 503: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|&n| n >= cycles), "each cycle served: {statuses:?}");
    assert!(statuses.contains_key(&503), "no request ever met a dead vault: {statuses:?}");

    // The app received exactly the requests whose clients got a 200, each card replaced by a token.
    let mut issued: Vec<(String, String)> = Vec::new();
    let received = app.requests();
    for seen in &received {
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        let id = body["id"].as_str().unwrap();
        let (cards, status) = &sent[id];
        assert_eq!(*status, 200, "request {id} failed at its client but reached the app");
        let tokens: Vec<&str> = body["cards"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(tokens.len(), cards.len());
        for (card, token) in cards.iter().zip(tokens) {
            assert_ne!(card, token);
            issued.push((card.clone(), token.to_owned()));
        }
    }
    assert_eq!(received.len(), statuses[&200], "every 200 was forwarded once");

    // Every token the app holds is in the vault, durably, with its value; re-tokenising gives the same token.
    let client = Client { addr: vault_addr, tls: Some(pki.tls(None)), pki: None };
    for chunk in issued.chunks(50) {
        let items: Vec<Value> = chunk.iter().map(|(_, t)| json!({"class": "pan", "token": t})).collect();
        let (status, body) = client.post_json("/v1/detokenize", PAYMENTS_KEY, &json!({ "items": items })).await;
        assert_eq!(status, 200, "{body}");
        for ((card, _), item) in chunk.iter().zip(body["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(card.as_str()), "a token was lost or is wrong: {item}");
        }
        let items: Vec<Value> = chunk.iter().map(|(c, _)| json!({"class": "pan", "value": c})).collect();
        let (status, body) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &json!({ "items": items })).await;
        assert_eq!(status, 200, "{body}");
        for ((_, token), item) in chunk.iter().zip(body["items"].as_array().unwrap()) {
            assert_eq!(item["token"].as_str(), Some(token.as_str()), "a value got a second token");
        }
    }
    eprintln!(
        "{cycles} vault SIGKILL cycles: {} requests answered 200, {} refused 503, {} tokens verified",
        statuses[&200],
        statuses.get(&503).copied().unwrap_or(0),
        issued.len()
    );
    drop(proxy);
}
