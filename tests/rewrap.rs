//! Key rotation and rewrap on both stores: records sealed under key version 1, a second version added by
//! `veil keys rotate`, the vault restarted; then `veil keys rewrap` — stopped part way,
//! rerun — re-seals everything under version 2 while clients keep tokenising and detokenising, and every token
//! from every key version still detokenises.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::lifecycle::*;
use common::pg::Backend;
use common::*;
use serde_json::json;

common::pg::on_both_stores!(rewrap_while_serving_keeps_every_token);

type Pairs = Arc<Mutex<Vec<(String, String, String)>>>;

async fn tokenize_into(c: &Client, values: &[(&str, String)], pairs: &Pairs) {
    let body = json!({"items": values.iter().map(|(c, v)| json!({"class": c, "value": v})).collect::<Vec<_>>()});
    let (status, resp) = c.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{resp}");
    let mut pairs = pairs.lock().unwrap();
    for ((class, v), item) in values.iter().zip(resp["items"].as_array().unwrap()) {
        pairs.push((class.to_string(), v.clone(), item["token"].as_str().unwrap().to_owned()));
    }
}

fn batch(n: usize, tag: &str) -> Vec<(&'static str, String)> {
    (0..n)
        .flat_map(|i| {
            [("pan", random_pan("4", 16)), ("email", format!("{tag}-{i}-{}@example.org", rand::random::<u32>()))]
        })
        .collect()
}

async fn check_all(c: &Client, pairs: &[(String, String, String)]) {
    for chunk in pairs.chunks(40) {
        let body = json!({"items": chunk.iter().map(|(c, _, t)| json!({"class": c, "token": t})).collect::<Vec<_>>()});
        let (status, resp) = c.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        for ((_, value, _), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(value.as_str()), "{item}");
        }
    }
}

/// Runs `veil keys rewrap -c cfg EXTRA…` off the runtime; its stdout.
async fn rewrap(cfg: &std::path::Path, extra: &'static [&'static str]) -> String {
    let cfg = cfg.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["keys", "rewrap", "-c"])
            .arg(&cfg)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        // Progress as plain lines (not a terminal), the last one complete.
        let last = stderr.lines().rev().find(|l| l.starts_with("rewrap: ")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(last.contains("(100%)") || last.contains("/s)"), "{stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

async fn rewrap_while_serving_keeps_every_token(backend: Backend) {
    let clock = ManualClock::at(veil::vault::engine::system_clock()());
    let mut v = start_lifecycle_vault(backend, "", "", clock.clone()).await;
    let pairs: Pairs = Arc::default();
    for tag in ["v1a", "v1b"] {
        tokenize_into(&v.client, &batch(20, tag), &pairs).await; // 80 records under key version 1
    }
    v.running.take().unwrap().shutdown().await;

    // Rotation: `veil keys rotate` appends a second master key version; the restarted vault seals new records
    // under it.
    let cfg_path = v.dir.path().join("veil.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["keys", "rotate", "-c"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = veil::config::load(&cfg_path).unwrap();
    let running = veil::app::start(cfg.clone(), clock.clock()).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    tokenize_into(&client, &batch(10, "v2"), &pairs).await;
    let before = pairs.lock().unwrap().clone();
    check_all(&client, &before).await;

    // Clients keep tokenising and detokenising while the rewrap runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, pairs, stop) = (client.clone(), pairs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                tokenize_into(&client, &batch(2, "live"), &pairs).await;
                let sample: Vec<_> = pairs.lock().unwrap().iter().rev().step_by(7).take(20).cloned().collect();
                check_all(&client, &sample).await;
                rounds += 1;
            }
            rounds
        })
    };
    let first = rewrap(&cfg_path, &["--page", "7", "--max", "20"]).await;
    assert!(first.contains("re-sealed 20 records under key version 2") && first.contains("stopped early"), "{first}");
    let second = rewrap(&cfg_path, &["--page", "9"]).await;
    assert!(second.contains("re-sealed 60 records") && second.contains("done"), "the rest, 80 - 20: {second}");
    stop.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > 0);

    // Every token from either version still detokenises; nothing is left under version 1.
    let all = pairs.lock().unwrap().clone();
    check_all(&client, &all).await;
    let store = veil::app::open_store(cfg.vault.as_ref().unwrap()).await.unwrap();
    assert!(store.stale_before(2, None, 10).await.unwrap().is_empty());
    let keys: Vec<(String, String)> = all.iter().map(|(c, _, t)| (c.clone(), t.clone())).collect();
    let records = store.find_by_tokens(&keys).await.unwrap();
    assert!(records.iter().all(|r| r.as_ref().unwrap().key_version == 2));
    let third = rewrap(&cfg_path, &[]).await;
    assert!(third.contains("re-sealed 0 records") && third.contains("done"), "{third}");
    running.shutdown().await;
}
