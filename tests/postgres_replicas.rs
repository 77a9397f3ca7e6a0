//! Two `veil vault` processes on one PostgreSQL database (replicas): clients tokenise the same values
//! concurrently through both — every value gets exactly one token — then one replica is SIGKILLed mid-load and
//! every token either replica handed out still detokenises, and re-tokenises to itself, through the survivor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pg::{self, Backend};
use common::*;
use rand::seq::SliceRandom;
use serde_json::json;

type Issued = Arc<Mutex<Vec<(String, String, usize)>>>;

/// Tokenises random handfuls of `values` through `addrs` (client `i` starts on replica `i % 2` and alternates)
/// until `stop`; records every (value, token, replica) answered with 200.
fn clients(
    addrs: [SocketAddr; 2],
    values: Arc<Vec<String>>,
    issued: Issued,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..8)
        .map(|i| {
            let (values, issued, stop) = (values.clone(), issued.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failed = 0;
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let replica = n % 2;
                    let picked: Vec<String> =
                        values.choose_multiple(&mut rand::thread_rng(), 5).cloned().collect();
                    let body = json!({"items": picked.iter().map(|v| json!({"class": "pan", "value": v})).collect::<Vec<_>>()});
                    match Client::plain(addrs[replica]).try_post_json("/v1/tokenize", PAYMENTS_KEY, &body).await {
                        Ok((200, resp)) => {
                            let mut issued = issued.lock().unwrap();
                            for (v, item) in picked.into_iter().zip(resp["items"].as_array().unwrap()) {
                                issued.push((v, item["token"].as_str().unwrap().to_owned(), replica));
                            }
                        }
                        Ok((status, resp)) => panic!("replica {replica} answered {status}: {resp}"),
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
                failed
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vault_replicas_share_one_database_and_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let store = Backend::Postgres.store_url(dir.path()).await;
    let mut configs = Vec::new();
    for r in 0..2 {
        let text = config_text(dir.path(), false, Some(&format!("{}/audit-{r}.jsonl", dir.path().display())))
            .replace("[admin]\nlisten = \"127.0.0.1:0\"\n", "");
        let path = dir.path().join(format!("replica-{r}.toml"));
        std::fs::write(&path, pg::with_store(&text, &store)).unwrap();
        configs.push(path);
    }
    let (mut a, addr_a) = pg::spawn_veil_command("vault", &configs[0]).await;
    let (_b, addr_b) = pg::spawn_veil_command("vault", &configs[1]).await;

    // Fresh values sent to both replicas at the same moment: both answer the same tokens.
    let (ca, cb) = (Client::plain(addr_a), Client::plain(addr_b));
    for _ in 0..40 {
        let fresh: Vec<String> = (0..5).map(|_| random_pan("5", 16)).collect();
        let body = json!({"items": fresh.iter().map(|v| json!({"class": "pan", "value": v})).collect::<Vec<_>>()});
        let ((sa, ra), (sb, rb)) = tokio::join!(
            ca.post_json("/v1/tokenize", PAYMENTS_KEY, &body),
            cb.post_json("/v1/tokenize", PAYMENTS_KEY, &body)
        );
        assert_eq!((sa, sb), (200, 200), "{ra} {rb}");
        assert_eq!(ra["items"], rb["items"], "the replicas handed out different tokens for one value");
    }

    let values: Arc<Vec<String>> = Arc::new((0..150).map(|_| random_pan("4", 16)).collect());
    let issued: Issued = Arc::default();

    // Both replicas up: the same values through both at once.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = clients([addr_a, addr_b], values.clone(), issued.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Replica A dies mid-load; the clients keep going (their calls to A now fail).
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap();
    }

    let issued = issued.lock().unwrap().clone();
    let from = |r| issued.iter().filter(|(_, _, x)| *x == r).count();
    assert!(from(0) > 50 && from(1) > 50, "both replicas must have served: {} and {}", from(0), from(1));
    // One token per value, whichever replica answered.
    let mut token_of: HashMap<&str, &str> = HashMap::new();
    for (v, t, _) in &issued {
        let first = token_of.entry(v.as_str()).or_insert(t.as_str());
        assert_eq!(*first, t.as_str(), "a value got two tokens");
    }
    // Everything either replica handed out is served by the survivor.
    let survivor = Client::plain(addr_b);
    let pairs: Vec<(&str, &str)> = token_of.into_iter().collect();
    for chunk in pairs.chunks(50) {
        let body = json!({"items": chunk.iter().map(|(_, t)| json!({"class": "pan", "token": t})).collect::<Vec<_>>()});
        let (status, resp) = survivor.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        for ((value, _), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(*value), "a token lost its value");
        }
        let body = json!({"items": chunk.iter().map(|(v, _)| json!({"class": "pan", "value": v})).collect::<Vec<_>>()});
        let (_, resp) = survivor.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
        for ((_, token), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["token"].as_str(), Some(*token), "re-tokenising gave another token");
        }
    }
    eprintln!(
        "{} answers ({} from A, {} from B), {} distinct values, {failures} calls cut by the kill",
        issued.len(),
        from(0),
        from(1),
        pairs.len()
    );
}
