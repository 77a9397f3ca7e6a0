//! Issue 24, item 2: a split proxy holds only what it needs. It gets its own encrypt-only key for `encrypt`
//! blobs and nothing of the vault's master keyring: every key in the proxy's files, and every subkey it (or anyone
//! holding those files) can derive, is tried against a sealed row of the vault's database and fails to open it or
//! to fingerprint its value. The vault's own key opens the row (so the test can fail).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use veil::app::Mode;
use veil::crypto::aead::Sealer;
use veil::crypto::fingerprint::Fingerprinter;
use veil::crypto::{BlobKeys, Keyring};
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::store::Store;

const PROXY_KEY: &str = "test-proxy-key-0123456789";

fn vault_config(dir: &Path, key_file: &Path) -> String {
    let d = dir.display();
    format!(
        "[vault]\nlisten = \"127.0.0.1:0\"\nstore = \"sqlite://{d}/vault.db\"\nmaster_key_file = \"{key}\"\n\
         audit_log = \"{d}/audit.jsonl\"\n[[caller]]\nname = \"proxy\"\napi_key_sha256 = \"{sha}\"\n\
         allow = [\"tokenize:*\"]\n",
        key = key_file.display(),
        sha = sha256_hex(PROXY_KEY),
    )
}

fn proxy_config(dir: &Path, vault: std::net::SocketAddr, app: std::net::SocketAddr, key_file: &Path) -> String {
    let d = dir.display();
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{app}\"\n[vault_client]\nurl = \"http://{vault}\"\n\
         encrypt_key_file = \"{key}\"\napi_keys = {{ proxy = \"{d}/proxy.key\" }}\n[[route]]\nname = \"checkout\"\n\
         match = {{ methods = [\"POST\"], path = \"/checkout\" }}\nfields = [ {{ json = \"$.card\", class = \"pan\" }}, \
         {{ json = \"$.note\", class = \"text\", action = \"encrypt\" }} ]\n",
        key = key_file.display(),
    )
}

async fn start(text: &str, mode: Mode) -> Result<veil::app::Running, veil::app::StartError> {
    veil::app::start_mode(veil::config::parse(text).unwrap(), mode, veil::vault::engine::system_clock()).await
}

/// Every 32-byte key a holder of `files` can have or derive: SHA-256 of each file, every hex key line's raw key,
/// and every HKDF subkey veil derives (any purpose, class and version) from each keyring among them.
fn candidate_keys(files: &[PathBuf]) -> Vec<[u8; 32]> {
    let purposes = ["seal", "blob", "value-fingerprint", "audit", "subject", "erasure-receipt"];
    let mut classes = veil::domain::Class::names().to_vec();
    classes.extend(["-", veil::crypto::keys::SUBJECT_SEAL]);
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        out.push(Sha256::digest(&bytes).into());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(Ok(raw)) = line.split_whitespace().nth(1).map(hex::decode) {
                if let Ok(k) = <[u8; 32]>::try_from(raw.as_slice()) {
                    out.push(k);
                }
            }
        }
        if let Ok(ring) = Keyring::from_text(&veil::crypto::Secret::new(text), "proxy file") {
            for v in ring.versions() {
                for p in purposes {
                    for c in &classes {
                        out.push(*ring.derive(p, c, v).unwrap().expose());
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_proxys_keys_open_no_vault_record_and_fingerprint_no_value() {
    let (vault_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = vault_dir.path().join("master.key");
    Keyring::generate_file(&master).unwrap();
    let encrypt_key = proxy_dir.path().join("proxy-encrypt.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["keygen", "--encrypt-only", "--out", encrypt_key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(proxy_dir.path().join("proxy.key"), PROXY_KEY).unwrap();

    let app = App::start().await;
    let vault = start(&vault_config(vault_dir.path(), &master), Mode::Vault).await.unwrap();
    let vault_addr = vault.vault_addr.unwrap();
    let proxy_text = proxy_config(proxy_dir.path(), vault_addr, app.addr, &encrypt_key);
    std::fs::write(proxy_dir.path().join("proxy.toml"), &proxy_text).unwrap();
    assert!(!proxy_text.contains("master"), "the proxy's config names no master key");
    let proxy = start(&proxy_text, Mode::Proxy).await.unwrap();

    let pan = random_pan("4111", 16);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/checkout")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({"card": pan, "note": "allergic to nuts"}).to_string())))
        .unwrap();
    let (status, _, reply) = send_request(proxy.proxy_addr.unwrap(), None, false, req).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let seen: Value = serde_json::from_slice(&app.requests().pop().unwrap().body).unwrap();
    let (token, blob) = (seen["card"].as_str().unwrap().to_owned(), seen["note"].as_str().unwrap().to_owned());
    proxy.shutdown().await;
    vault.shutdown().await;

    // The proxy's encrypt key opens its blobs; the vault's keyring does not, and the other way round below.
    let blobs = BlobKeys::load_encrypt_only(&encrypt_key).unwrap();
    assert_eq!(blobs.decrypt_blob("text", &blob).unwrap().expose(), "allergic to nuts");
    let vault_keys = veil::app::load_keys(&master).unwrap();
    assert!(vault_keys.decrypt_blob("text", &blob).is_none());

    // The sealed row, and proof that the vault's key opens it.
    let store =
        SqliteStore::open(&format!("sqlite://{}/vault.db", vault_dir.path().display()), SqliteOptions::default())
            .await
            .unwrap();
    let rec = store.find_by_tokens(&[("pan".to_owned(), token.clone())]).await.unwrap().pop().unwrap().unwrap();
    let v = rec.key_version;
    let fp = rec.value_fp;
    assert_eq!(rec.fp_version, Some(v), "a row written now binds its fingerprint");
    let opened = vault_keys.sealer("pan", v).unwrap().open_bound("pan", &token, v, &fp, &rec.sealed).unwrap();
    assert_eq!(opened, pan.as_bytes());
    assert_eq!(vault_keys.value_fingerprint("pan", &pan), Some(rec.value_fp));

    // Every key the proxy's files hold or yield: none opens the row or fingerprints the value.
    let files: Vec<PathBuf> = std::fs::read_dir(proxy_dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 3, "config, encrypt key, API key: {files:?}");
    let keys = candidate_keys(&files);
    assert!(keys.len() > 50, "{} candidate keys", keys.len());
    for k in &keys {
        let sealer = Sealer::new(k);
        assert!(sealer.open_bound("pan", &token, v, &fp, &rec.sealed).is_err(), "a proxy key opened a vault record");
        assert!(sealer.open("pan", &token, v, &rec.sealed).is_err(), "a proxy key opened a vault record");
        assert_ne!(Fingerprinter::new(k).fingerprint(pan.as_bytes()), rec.value_fp, "a proxy key fingerprints values");
    }
    // The candidates include the proxy's in-memory blob keys (derived exactly so), which do open its blobs.
    let blob_key = *Keyring::from_text(&veil::crypto::Secret::new(std::fs::read_to_string(&encrypt_key).unwrap()), "k")
        .unwrap()
        .derive("blob", "text", 1)
        .unwrap()
        .expose();
    assert!(keys.contains(&blob_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refuses_the_master_keyring_and_a_vault_refuses_the_proxys_key() {
    let dir = tempfile::tempdir().unwrap();
    let (master, encrypt_key) = (dir.path().join("master.key"), dir.path().join("proxy-encrypt.key"));
    Keyring::generate_file(&master).unwrap();
    BlobKeys::generate_file(&encrypt_key).unwrap();
    std::fs::write(dir.path().join("proxy.key"), PROXY_KEY).unwrap();
    let unused = "127.0.0.1:1".parse().unwrap();
    let err = start(&proxy_config(dir.path(), unused, unused, &master), Mode::Proxy).await.err().unwrap().to_string();
    assert!(err.contains("not an encrypt-only key file") && err.contains("veil keygen --encrypt-only"), "{err}");
    let err = start(&vault_config(dir.path(), &encrypt_key), Mode::Vault).await.err().unwrap().to_string();
    assert!(err.contains("encrypt-only key file, not a master keyring"), "{err}");
    // An old proxy config that still names the master key file is refused with the way out.
    let old = format!("[vault_client]\nurl = \"http://127.0.0.1:1\"\nmaster_key_file = \"{}\"\n", master.display());
    let err = veil::config::parse(&old).unwrap_err().to_string();
    assert!(err.contains("vault_client.master_key_file: a proxy no longer holds"), "{err}");
}
