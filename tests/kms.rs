//! Key provider `kms` against a local KMS-compatible server (PyPI's `moto[server]`, `moto_server`; scripts/test
//! installs it): `veil keys init` (GenerateDataKey), start, tokenise, rotate, restart, detokenise (Decrypt, SigV4
//! signed by hand), and a KMS that is down (or missing credentials) stops the vault with the reason; no master-key bytes on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;
use veil::crypto::provider::kms::client::KmsClient;
use veil::crypto::provider::kms::sigv4::Credentials;

/// `moto_server` on a free loopback port (killed on drop), and its URL.
async fn moto() -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server: install PyPI's moto[server] (scripts/test does)");
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(up.is_ok(), "moto_server did not listen on {port}");
    (child, format!("http://127.0.0.1:{port}"))
}

fn config(dir: &Path, endpoint: &str, key_id: &str) -> PathBuf {
    let d = dir.display();
    let text = config_text(dir, false, None).replace(
        &format!("master_key_file = \"{d}/master.key\""),
        &format!(
            "master_key = {{ provider = \"kms\", endpoint = \"{endpoint}\", region = \"eu-central-1\", \
             key_id = \"{key_id}\", wrapped = \"{d}/keyring.kms\" }}"
        ),
    );
    let path = dir.join("veil.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn veil(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().unwrap()
}

async fn start(cfg: &Path) -> Result<veil::app::Running, String> {
    veil::app::start(veil::config::load(cfg).unwrap(), veil::vault::engine::system_clock())
        .await
        .map_err(|e| e.to_string())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_on_kms_tokenises_restarts_detokenises_and_does_not_serve_when_kms_is_down() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let dir = tempfile::tempdir().unwrap();
    let (moto, endpoint) = moto().await;
    let client = KmsClient {
        endpoint: endpoint.parse().unwrap(),
        region: "eu-central-1".into(),
        credentials: Credentials {
            access_key_id: "testing".into(),
            secret_access_key: veil::crypto::Secret::new("testing".into()),
            session_token: None,
        },
    };
    let created = tokio::task::spawn_blocking(move || client.call("CreateKey", &json!({}))).await.unwrap().unwrap();
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let cfg = config(dir.path(), &endpoint, &key_id);
    let c = cfg.to_str().unwrap();

    let out = veil(&["keys", "init", "-c", c]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = veil(&["keys", "init", "-c", c]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    let pan = random_pan("4111", 16);
    let running = start(&cfg).await.unwrap();
    let api = Client::plain(running.vault_addr.unwrap());
    let (status, body) =
        api.post_json("/v1/tokenize", PAYMENTS_KEY, &json!({"items":[{"class":"pan","value": pan}]})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    running.shutdown().await;

    let out = veil(&["keys", "rotate", "-c", c]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("version 2"), "{out:?}");

    let running = start(&cfg).await.unwrap();
    let api = Client::plain(running.vault_addr.unwrap());
    let (status, body) =
        api.post_json("/v1/detokenize", PAYMENTS_KEY, &json!({"items":[{"class":"pan","token": token}]})).await;
    assert_eq!((status, body["items"][0]["value"].as_str()), (200, Some(pan.as_str())), "{body}");
    running.shutdown().await;

    // No master-key bytes on disk.
    let spec = veil::config::load(&cfg).unwrap().vault.unwrap().master_key;
    let ring = tokio::task::spawn_blocking(move || spec.provider_with(&[]).unwrap().load().unwrap()).await.unwrap();
    let keys: Vec<String> = ring
        .expose()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2);
    for file in files(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for k in &keys {
            let raw = hex::decode(k).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).to_ascii_lowercase().contains(k.as_str()), "{}", file.display());
            assert!(!bytes.windows(32).any(|w| w == raw.as_slice()), "{} holds a master key", file.display());
        }
    }

    // The KMS down: the vault does not start, and says why.
    drop(moto);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = start(&config(dir.path(), &endpoint, &key_id)).await.err().unwrap();
    assert!(err.contains(&format!("KMS at {endpoint}/ unreachable")), "{err}");
    assert!(!err.contains("testing"), "no credential in the error: {err}");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let err = start(&cfg).await.err().unwrap();
    assert!(err.contains("AWS_SECRET_ACCESS_KEY must be set"), "{err}");
}
