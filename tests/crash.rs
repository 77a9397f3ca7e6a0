//! Crash safety: many clients tokenise through a `veil run` process that is SIGKILLed at random moments and
//! restarted; afterwards every token any client received detokenises to its value, and re-tokenising gives
//! the same token. Cycles: `VEIL_CRASH_CYCLES` (default 8). And a `veil keys rewrap` pass SIGKILLed part way,
//! again and again, then rerun: it resumes, and no record, token or subject link is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::Rng;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_tokenisation_loses_no_token() {
    let cycles: usize = std::env::var("VEIL_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let cfg = dir.path().join("veil.toml");
    std::fs::write(&cfg, config_text(dir.path(), false, None).replace("[admin]\nlisten = \"127.0.0.1:0\"\n", ""))
        .unwrap();

    // (value, token) pairs that some client received with a 200.
    let issued: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut failures = 0usize;
    for cycle in 0..cycles {
        let (mut child, addr) = spawn_veil(&cfg).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..12 {
            let (stop, issued) = (stop.clone(), issued.clone());
            clients.push(tokio::spawn(async move {
                let client = Client::plain(addr);
                let mut failed = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let values: Vec<String> = (0..3).map(|_| random_pan("4", 16)).collect();
                    let body = json!({"items": values.iter().map(|v| json!({"class": "pan", "value": v})).collect::<Vec<_>>()});
                    match client.try_post_json("/v1/tokenize", PAYMENTS_KEY, &body).await {
                        Ok((200, resp)) => {
                            let items = resp["items"].as_array().unwrap();
                            assert_eq!(items.len(), values.len());
                            let mut issued = issued.lock().unwrap();
                            for (v, item) in values.into_iter().zip(items) {
                                issued.push((v, item["token"].as_str().unwrap().to_owned()));
                            }
                        }
                        Ok((status, resp)) => panic!("unexpected {status}: {resp}"),
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                failed
            }));
        }
        let run_for = rand::thread_rng().gen_range(150..600);
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            failures += c.await.unwrap();
        }
        eprintln!("cycle {cycle}: {} tokens issued so far", issued.lock().unwrap().len());
    }

    let (mut child, addr) = spawn_veil(&cfg).await;
    let client = Client::plain(addr);
    let issued = issued.lock().unwrap().clone();
    assert!(issued.len() > cycles * 10, "the clients got too few tokens to mean anything: {}", issued.len());
    for chunk in issued.chunks(50) {
        let body = json!({"items": chunk.iter().map(|(_, t)| json!({"class": "pan", "token": t})).collect::<Vec<_>>()});
        let (status, resp) = client.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        for ((value, token), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(value.as_str()), "token {token} lost its value");
        }
        let body = json!({"items": chunk.iter().map(|(v, _)| json!({"class": "pan", "value": v})).collect::<Vec<_>>()});
        let (_, resp) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
        for ((_, token), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["token"].as_str(), Some(token.as_str()), "re-tokenising gave another token");
        }
    }
    eprintln!("{cycles} kill cycles, {} tokens verified, {failures} requests cut by kills", issued.len());
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// `veil keys rewrap` (re-seal, re-fingerprint, subjects) SIGKILLed at random moments beside a serving vault, then
/// rerun to the end: every token still detokenises and tokenises back to itself, every subject still holds all
/// its tokens, and nothing is left under version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_rewrap_loses_nothing() {
    use common::lifecycle::{lifecycle_callers, DPO_KEY};
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    veil::crypto::Keyring::generate_file(&key_file).unwrap();
    let cfg = dir.path().join("veil.toml");
    let text = config_text(dir.path(), false, None).replace("[admin]\nlisten = \"127.0.0.1:0\"\n", "");
    std::fs::write(&cfg, format!("{text}\n{}", lifecycle_callers())).unwrap();

    // 40 subjects with 12 values each, under key version 1.
    let (mut child, addr) = spawn_veil(&cfg).await;
    let client = Client::plain(addr);
    let mut held: Vec<(String, String, String)> = Vec::new(); // (subject, value, token)
    for s in 0..40 {
        let values: Vec<String> = (0..12).map(|_| random_pan("5", 16)).collect();
        let body = json!({"items": values.iter().map(|v| json!({"class": "pan", "value": v})).collect::<Vec<_>>(),
                          "subject": format!("c-{s}")});
        let (status, resp) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        for (v, item) in values.into_iter().zip(resp["items"].as_array().unwrap()) {
            held.push((format!("c-{s}"), v, item["token"].as_str().unwrap().to_owned()));
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["keys", "rotate", "--key-file"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(rotated.status.success());
    let (mut child, addr) = spawn_veil(&cfg).await;
    let client = Client::plain(addr);

    // Killed again and again after a short while, each run resuming where the last one's commits left it, until
    // a run gets to the end by itself: the kills fall in every phase (records, subjects, the end).
    let mut kills = 0;
    loop {
        let mut pass = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["keys", "rewrap", "--page", "3", "-c"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(10..80))).await;
        if let Some(status) = pass.try_wait().unwrap() {
            assert!(status.success(), "the pass failed: {status}");
            break;
        }
        pass.start_kill().unwrap(); // SIGKILL
        pass.wait().await.unwrap();
        kills += 1;
        assert!(kills < 200, "the pass makes no progress between kills");
    }
    assert!(kills >= 3, "too few kills to mean anything: {kills}");
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["keys", "rewrap", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success() && out.contains("done") && out.contains("older fingerprint versions unused"),
        "{out}"
    );
    eprintln!("rewrap killed {kills} times part way, then finished: {out}");

    for chunk in held.chunks(50) {
        let body =
            json!({"items": chunk.iter().map(|(_, _, t)| json!({"class": "pan", "token": t})).collect::<Vec<_>>()});
        let (status, resp) = client.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        for ((_, value, token), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(value.as_str()), "token {token} lost its value");
        }
        let body =
            json!({"items": chunk.iter().map(|(_, v, _)| json!({"class": "pan", "value": v})).collect::<Vec<_>>()});
        let (_, resp) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
        for ((_, _, token), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["token"].as_str(), Some(token.as_str()), "re-tokenising gave another token");
        }
    }
    for s in 0..40 {
        let id = format!("c-{s}");
        let (status, body) =
            client.request("GET", &format!("/v1/subjects/{id}"), Some(DPO_KEY), bytes::Bytes::new()).await;
        assert_eq!(status, 200);
        let export: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let exported: Vec<&str> =
            export["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap()).collect();
        for (_, _, token) in held.iter().filter(|(h, _, _)| *h == id) {
            assert!(exported.contains(&token.as_str()), "{id} lost {token}");
        }
    }
    let cfg = veil::config::load(&cfg).unwrap();
    let store = veil::app::open_store(cfg.vault.as_ref().unwrap()).await.unwrap();
    assert_eq!(store.count_stale_before(2).await.unwrap(), Some(0));
    let usage = store.key_usage(1, true).await.unwrap();
    assert!(usage.is_unused(), "{usage:?}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
