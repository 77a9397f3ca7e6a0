//! Key provider `pkcs11` against Debian's SoftHSM2 (a token in a temporary directory through SOFTHSM2_CONF):
//! `veil keys init` makes the wrapping key in the HSM and the wrapped keyring; start, tokenise, restart,
//! detokenise; rotate; a wrong PIN, a missing token or a missing key stop the vault with the reason; and no
//! master-key bytes anywhere on disk (the token's own files included).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A fresh SoftHSM2 token labelled `veil` (user PIN 1234) whose files live in `dir`; SOFTHSM2_CONF points at it
/// for this test process (each test runs in its own process under nextest) and the `veil` commands it starts.
fn token(dir: &Path) -> PathBuf {
    assert!(Path::new(MODULE).exists(), "{MODULE} is missing: install Debian's softhsm2 (scripts/test does)");
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}/tokens\nobjectstore.backend = file\n", dir.display()))
        .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "veil", "--so-pin", "5678", "--pin", "1234"])
        .output()
        .expect("softhsm2-util");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("hsm.pin"), "1234\n").unwrap();
    conf
}

fn config(dir: &Path, token_label: &str, pin_file: &str) -> PathBuf {
    let d = dir.display();
    let base = config_text(dir, false, None).replace(
        &format!("master_key_file = \"{d}/master.key\""),
        &format!(
            "master_key = {{ provider = \"pkcs11\", module = \"{MODULE}\", token_label = \"{token_label}\", \
             pin_file = \"{d}/{pin_file}\", key_label = \"veil-kek\", wrapped = \"{d}/keyring.hsm\" }}"
        ),
    );
    let path = dir.join(format!("veil-{token_label}-{pin_file}.toml"));
    std::fs::write(&path, base).unwrap();
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
async fn a_vault_on_softhsm_tokenises_restarts_detokenises_and_refuses_a_wrong_pin_or_token() {
    let dir = tempfile::tempdir().unwrap();
    token(dir.path());
    let cfg = config(dir.path(), "veil", "hsm.pin");
    let c = cfg.to_str().unwrap();

    // Before keys init: the token has no key, the vault says so.
    let err = start(&cfg).await.err().unwrap();
    assert!(err.contains("cannot read") && err.contains("keyring.hsm"), "{err}");
    let out = veil(&["keys", "init", "-c", c]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = veil(&["keys", "init", "-c", c]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    let pan = random_pan("4111", 16);
    let running = start(&cfg).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    let (status, body) =
        client.post_json("/v1/tokenize", PAYMENTS_KEY, &json!({"items":[{"class":"pan","value": pan}]})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    running.shutdown().await;

    let out = veil(&["keys", "rotate", "-c", c]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("version 2"), "{out:?}");

    let running = start(&cfg).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    let (status, body) =
        client.post_json("/v1/detokenize", PAYMENTS_KEY, &json!({"items":[{"class":"pan","token": token}]})).await;
    assert_eq!((status, body["items"][0]["value"].as_str()), (200, Some(pan.as_str())), "{body}");
    running.shutdown().await;

    // A wrong PIN, a token that is not there, a PIN variable that is not set: the vault does not start, and says why.
    std::fs::write(dir.path().join("wrong.pin"), "0000\n").unwrap();
    let err = start(&config(dir.path(), "veil", "wrong.pin")).await.err().unwrap();
    assert!(err.contains("login to token \"veil\" refused (wrong PIN?)"), "{err}");
    assert!(!err.contains("0000"), "the PIN is never shown: {err}");
    let err = start(&config(dir.path(), "other", "hsm.pin")).await.err().unwrap();
    assert!(err.contains("no token labelled \"other\""), "{err}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let env_cfg = dir.path().join("env.toml");
    std::fs::write(
        &env_cfg,
        text.replace(
            &format!("pin_file = \"{}/hsm.pin\"", dir.path().display()),
            "pin_env = \"VEIL_TEST_NO_SUCH_PIN\"",
        ),
    )
    .unwrap();
    let err = start(&env_cfg).await.err().unwrap();
    assert!(err.contains("VEIL_TEST_NO_SUCH_PIN is not set"), "{err}");

    // No master-key bytes on disk: not in the data, not in the wrapped keyring, not in the token's files.
    let spec = veil::config::load(&cfg).unwrap().vault.unwrap().master_key;
    let ring = spec.provider_with(&[]).unwrap().load().unwrap();
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
}
