//! Key rotation end to end: records and `encrypt` blobs made under version 1, `veil keys rotate` (the binary),
//! a restart, new records under version 2 — and every token and blob from either version still opens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::Store;

const ROUTE: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [
  { json = "$.card.number", class = "pan" },
  { json = "$.note", class = "text", action = "encrypt" },
]
"#;

fn veil_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().unwrap()
}

fn config(dir: &Path, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n{}\n{ROUTE}",
        config_text(dir, false, None)
    );
    let path = dir.join("veil.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(cfg: &Path) -> veil::app::Running {
    let cfg = veil::config::load(cfg).unwrap();
    veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap()
}

async fn tokenize(running: &veil::app::Running, pan: &str) -> String {
    let c = Client::plain(running.vault_addr.unwrap());
    let (status, body) =
        c.post_json("/v1/tokenize", PAYMENTS_KEY, &json!({"items":[{"class":"pan","value":pan}]})).await;
    assert_eq!(status, 200, "{body}");
    body["items"][0]["token"].as_str().unwrap().to_owned()
}

async fn detokenize(running: &veil::app::Running, tokens: &[&str]) -> Vec<String> {
    let c = Client::plain(running.vault_addr.unwrap());
    let items: Vec<Value> = tokens.iter().map(|t| json!({"class":"pan","token":t})).collect();
    let (status, body) = c.post_json("/v1/detokenize", PAYMENTS_KEY, &json!({ "items": items })).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().iter().map(|i| i["value"].as_str().expect("a value").to_owned()).collect()
}

/// Sends a checkout through the proxy; returns the `encrypt` blob the app received for the note.
async fn blob_through_proxy(running: &veil::app::Running, app: &App, note: &str) -> String {
    let body = json!({"card":{"number": random_pan("4000", 16)}, "note": note}).to_string();
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/checkout")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, _, reply) = send_request(running.proxy_addr.unwrap(), None, false, req).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let seen = app.requests().pop().unwrap();
    let json: Value = serde_json::from_slice(&seen.body).unwrap();
    json["note"].as_str().unwrap().to_owned()
}

async fn key_version(dir: &Path, token: &str) -> u32 {
    let store =
        SqliteStore::open(&format!("sqlite://{}/vault.db", dir.display()), SqliteOptions::default()).await.unwrap();
    let rec = store.find_by_tokens(&[("pan".to_owned(), token.to_owned())]).await.unwrap().pop().unwrap();
    rec.expect("the token is stored").key_version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_then_restart_seals_new_records_under_v2_and_everything_old_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let app = App::start().await;
    let cfg = config(dir.path(), app.addr);

    let (pan1, pan2) = (random_pan("4111", 16), random_pan("5500", 16));
    let running = start(&cfg).await;
    let tok1 = tokenize(&running, &pan1).await;
    let blob1 = blob_through_proxy(&running, &app, "allergic to nuts").await;
    assert!(blob1.starts_with("veil:v1:"), "{blob1}");
    running.shutdown().await;
    assert_eq!(key_version(dir.path(), &tok1).await, 1);

    let key_before = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let out = veil_cmd(&["keys", "rotate", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("version 2"), "{stdout}");
    let key_after = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert!(key_after.starts_with(&key_before), "version 1 kept");
    for line in key_after.lines().filter(|l| !l.starts_with('#')) {
        let hex = line.split_whitespace().nth(1).unwrap();
        assert!(!stdout.contains(hex) && !String::from_utf8_lossy(&out.stderr).contains(hex), "key printed");
    }

    let running = start(&cfg).await;
    let tok2 = tokenize(&running, &pan2).await;
    assert_eq!(tokenize(&running, &pan1).await, tok1, "lookups survive the rotation: same value, same token");
    assert_eq!(detokenize(&running, &[&tok1, &tok2]).await, vec![pan1, pan2]);
    let blob2 = blob_through_proxy(&running, &app, "allergic to nuts").await;
    assert!(blob2.starts_with("veil:v2:"), "{blob2}");
    running.shutdown().await;
    assert_eq!(key_version(dir.path(), &tok1).await, 1);
    assert_eq!(key_version(dir.path(), &tok2).await, 2);

    let keys = veil::app::load_keys(veil::config::load(&cfg).unwrap().master_key_file().unwrap()).unwrap();
    assert_eq!(keys.current_version(), 2);
    for blob in [&blob1, &blob2] {
        assert_eq!(keys.decrypt_blob("text", blob).unwrap().expose(), "allergic to nuts");
    }
}

#[test]
fn rotate_takes_a_key_file_directly_and_reports_errors_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let key_s = key.to_str().unwrap();
    assert!(veil_cmd(&["keygen", "--out", key_s]).status.success());
    let out = veil_cmd(&["keys", "rotate", "--key-file", key_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = veil_cmd(&["keys", "rotate", "--key-file", key_s]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 3"));
    assert_eq!(veil::crypto::Keyring::load(&key).unwrap().versions().collect::<Vec<_>>(), vec![1, 2, 3]);

    // A missing key file is a runtime failure (1), named in the message.
    let out = veil_cmd(&["keys", "rotate", "--key-file", dir.path().join("nope.key").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.key"));

    // An interrupted rotation's lock file: refused, and the key file is untouched.
    let before = std::fs::read(&key).unwrap();
    std::fs::write(dir.path().join("master.key.rotating"), "").unwrap();
    let out = veil_cmd(&["keys", "rotate", "--key-file", key_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("master.key.rotating"));
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // Bad config: 2; no source or both sources: usage error, 2.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[vault]\nlisten = \"nope\"\n").unwrap();
    assert_eq!(veil_cmd(&["keys", "rotate", "-c", bad.to_str().unwrap()]).status.code(), Some(2));
    assert_eq!(veil_cmd(&["keys", "rotate"]).status.code(), Some(2));
    assert_eq!(veil_cmd(&["keys", "rotate", "-c", bad.to_str().unwrap(), "--key-file", key_s]).status.code(), Some(2));
    assert_eq!(std::fs::read(&key).unwrap(), before);
}
