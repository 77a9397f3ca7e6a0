//! Key provider `shares` end to end: `veil keygen --shares 3 --threshold 2`, a vault that starts sealed (readyz
//! 503, every API call 503 `sealed`, the proxy fails closed), `veil unseal` one share at a time (wrong, duplicate
//! and foreign shares refused and rate-limited), tokenise, restart (sealed again), unseal with other shares,
//! detokenise; `veil keys rotate|rewrap` need the shares; and no master-key bytes anywhere on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::json;

async fn veil(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().await.unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `veil run` config on provider `shares` with a proxy route in front of `app`.
fn config(dir: &Path, app: std::net::SocketAddr) -> PathBuf {
    let base = config_text(dir, false, None).replace(
        &format!("master_key_file = \"{}/master.key\"", dir.display()),
        &format!("master_key = {{ provider = \"shares\", sealed = \"{}/custody/keyring.sealed\" }}", dir.display()),
    );
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{app}\"\n{base}\n[[route]]\nname = \"checkout\"\n\
         match = {{ methods = [\"POST\"], path = \"/checkout\" }}\nfields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n"
    );
    let path = dir.join("veil.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `veil unseal` with share `i` of `dir`'s custody; (success, stdout + stderr).
async fn unseal(cfg: &Path, vault: std::net::SocketAddr, share: &Path) -> (bool, String) {
    let url = format!("http://{vault}");
    let out = veil(&["unseal", "-c", cfg.to_str().unwrap(), "--url", &url, "--share", share.to_str().unwrap()]).await;
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

fn share(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("custody/share-{i}.txt"))
}

async fn start(cfg: &Path) -> veil::app::Running {
    veil::app::start(veil::config::load(cfg).unwrap(), veil::vault::engine::system_clock()).await.unwrap()
}

async fn checkout(running: &veil::app::Running, pan: &str) -> u16 {
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/checkout")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({ "card": pan }).to_string())))
        .unwrap();
    send_request(running.proxy_addr.unwrap(), None, false, req).await.unwrap().0
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shares_vault_starts_sealed_unseals_with_m_shares_and_keeps_its_tokens_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let custody = dir.path().join("custody");
    let out = veil(&["keygen", "--shares", "3", "--threshold", "2", "--out", custody.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("share-3.txt"), "{}", text(&out.stdout));
    let again = veil(&["keygen", "--shares", "3", "--threshold", "2", "--out", custody.to_str().unwrap()]).await;
    assert!(!again.status.success() && text(&again.stderr).contains("refusing to overwrite"), "never overwrites");
    let other = tempfile::tempdir().unwrap();
    let o = veil(&["keygen", "--shares", "2", "--threshold", "2", "--out", other.path().to_str().unwrap()]).await;
    assert!(o.status.success());

    let app = App::start().await;
    let cfg = config(dir.path(), app.addr);
    let running = start(&cfg).await;
    let vault = running.vault_addr.unwrap();
    let client = Client::plain(vault);
    let pan = random_pan("4111", 16);
    let tokenize = json!({"items":[{"class":"pan","value": pan}]});

    // Sealed: nothing is served, and each place says why.
    let (status, body) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &tokenize).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("sealed")), "{body}");
    let (status, body) = client.request("GET", "/v1/ready", Some(PAYMENTS_KEY), Bytes::new()).await;
    assert_eq!(status, 503, "{}", text(&body));
    assert_eq!(get(running.admin_addr.unwrap(), "/readyz").await.0, 503);
    assert_eq!(checkout(&running, &pan).await, 503, "the proxy fails closed");
    assert!(app.requests().is_empty(), "nothing reached the app");

    // One share: still sealed, and it says so. The same share again, or another set's, is refused.
    let (ok, said) = unseal(&cfg, vault, &share(dir.path(), 1)).await;
    assert!(ok && said.contains("1 of 2"), "{said}");
    let (ok, said) = unseal(&cfg, vault, &share(dir.path(), 1)).await;
    assert!(!ok && said.contains("invalid_share") && said.contains("already given"), "{said}");
    let (ok, said) = unseal(&cfg, vault, &other.path().join("share-1.txt")).await;
    assert!(!ok && said.contains("another share set"), "{said}");
    let (status, body) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &tokenize).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("sealed")));
    for s in [share(dir.path(), 1), share(dir.path(), 2)] {
        let share_line = std::fs::read_to_string(s).unwrap();
        assert!(!said.contains(share_line.lines().nth(1).unwrap()), "a share is never echoed");
    }

    // The second distinct share unseals.
    let (ok, said) = unseal(&cfg, vault, &share(dir.path(), 3)).await;
    assert!(ok && said.contains("unsealed"), "{said}");
    let (status, body) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &tokenize).await;
    assert_eq!(status, 200, "{body}");
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    assert_eq!(get(running.admin_addr.unwrap(), "/readyz").await.0, 200);
    assert_eq!(checkout(&running, &random_pan("5500", 16)).await, 200);
    running.shutdown().await;

    // Restarted: sealed again until two custodians (others this time) give their shares.
    let running = start(&cfg).await;
    let vault = running.vault_addr.unwrap();
    let client = Client::plain(vault);
    let reveal = json!({"items":[{"class":"pan","token": token}]});
    let (status, body) = client.post_json("/v1/detokenize", PAYMENTS_KEY, &reveal).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("sealed")));
    assert!(unseal(&cfg, vault, &share(dir.path(), 2)).await.0);
    assert!(unseal(&cfg, vault, &share(dir.path(), 3)).await.0);
    let (status, body) = client.post_json("/v1/detokenize", PAYMENTS_KEY, &reveal).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["value"], pan.as_str());
    running.shutdown().await;

    // Clear-text key operations need M custodians too.
    let c = cfg.to_str().unwrap();
    let (s1, s2) = (share(dir.path(), 1), share(dir.path(), 2));
    let out = veil(&["keys", "rotate", "-c", c, "--share", s1.to_str().unwrap()]).await;
    assert!(!out.status.success() && text(&out.stderr).contains("1 of the 2 shares"), "{}", text(&out.stderr));
    let out =
        veil(&["keys", "rotate", "-c", c, "--share", s1.to_str().unwrap(), "--share", s2.to_str().unwrap()]).await;
    assert!(out.status.success() && text(&out.stdout).contains("version 2"), "{}", text(&out.stderr));
    let out = veil(&["keys", "rewrap", "-c", c]).await;
    assert!(!out.status.success() && text(&out.stderr).contains("sealed"), "{}", text(&out.stderr));
    let out =
        veil(&["keys", "rewrap", "-c", c, "--share", s1.to_str().unwrap(), "--share", s2.to_str().unwrap()]).await;
    assert!(out.status.success() && text(&out.stdout).contains("re-sealed 2 records"), "{}", text(&out.stdout));

    // So do the operator commands that open the keyring themselves: the audit log's key is derived from it here
    // (no audit_key_file), so verifying the log takes the custodians too.
    let out = veil(&["audit", "verify", "-c", c]).await;
    assert!(!out.status.success() && text(&out.stderr).contains("0 of the 2 shares"), "{}", text(&out.stderr));
    let out =
        veil(&["audit", "verify", "-c", c, "--share", s1.to_str().unwrap(), "--share", s2.to_str().unwrap()]).await;
    assert!(out.status.success() && text(&out.stdout).contains("intact"), "{}", text(&out.stderr));
    let out = veil(&["purge", "-c", c]).await;
    assert!(!out.status.success() && text(&out.stderr).contains("0 of the 2 shares"), "{}", text(&out.stderr));
    let out = veil(&["purge", "-c", c, "--share", s1.to_str().unwrap(), "--share", s2.to_str().unwrap()]).await;
    assert!(out.status.success() && text(&out.stdout).contains("purged 0 records"), "{}", text(&out.stderr));
    let out = veil(&["subjects", "export", "cust-1", "-c", c, "--share", s1.to_str().unwrap()]).await;
    assert!(!out.status.success() && text(&out.stderr).contains("1 of the 2 shares"), "{}", text(&out.stderr));
    let out = veil(&[
        "subjects",
        "export",
        "cust-1",
        "-c",
        c,
        "--share",
        s1.to_str().unwrap(),
        "--share",
        s2.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // No master-key bytes on disk, in any form: read the keyring with two shares, scan every file written.
    let shares: Vec<_> =
        [&s1, &s2].iter().map(|p| veil::crypto::Secret::new(std::fs::read_to_string(p).unwrap())).collect();
    let spec = veil::config::load(&cfg).unwrap().vault.unwrap().master_key;
    let ring_text = spec.provider_with(&shares).unwrap().load().unwrap();
    let keys: Vec<String> = ring_text
        .expose()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2, "versions 1 and 2");
    for file in files(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for hex_key in &keys {
            let raw = hex::decode(hex_key).unwrap();
            let lower = text(&bytes).to_ascii_lowercase();
            assert!(!lower.contains(hex_key.as_str()), "{} holds a master key in hex", file.display());
            assert!(!bytes.windows(32).any(|w| w == raw.as_slice()), "{} holds a master key's bytes", file.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_shares_are_rate_limited_and_a_damaged_share_drops_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::provider::shares::generate(&dir.path().join("custody"), 3, 3).unwrap();
    let app = App::start().await;
    let cfg = config(dir.path(), app.addr);
    let running = start(&cfg).await;
    let client = Client::plain(running.vault_addr.unwrap());
    let send = |share: String| {
        let client = &client;
        async move { client.post("/v1/unseal", None, json!({ "share": share }).to_string()).await }
    };
    let good = |i| std::fs::read_to_string(share(dir.path(), i)).unwrap();
    let (status, body) = send(good(1)).await;
    assert_eq!((status, body["have"].as_u64(), body["need"].as_u64()), (200, Some(1), Some(3)), "{body}");
    // A share of this set whose bytes were damaged passes the set check; the combination fails its check value.
    let line = good(2).lines().nth(1).unwrap().to_owned();
    let damaged = format!("{}{}", &line[..line.len() - 1], if line.ends_with('0') { "1" } else { "0" });
    assert_eq!(send(damaged).await.0, 200);
    let (status, body) = send(good(3)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_share")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("start over"), "{body}");
    // Four more wrong shares fill the window of five; the next share, even a good one, waits.
    for _ in 0..4 {
        assert_eq!(send("veil-share-v1:nonsense".into()).await.0, 400);
    }
    let (status, body) = send(good(1)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many_attempts")), "{body}");
    let (status, body) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &json!({"items":[]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("sealed")));
    running.shutdown().await;
}
