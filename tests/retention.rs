//! Retention on both stores, with a clock the test moves: records past their class's retention (counted from
//! the last tokenisation) answer `gone` and their values are gone from the store, others stay; the vault's purge
//! task does it on its own, `veil purge` on request; `veil_purged_total` and `veil_tokens` follow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::lifecycle::*;
use common::pg::Backend;
use common::*;
use serde_json::{json, Value};
use veil::domain::Class;
use veil::vault::Vault;

common::pg::on_both_stores!(the_purge_task_expires_records_past_retention, veil_purge_on_the_command_line);

/// The Art. 30 record states each class's configured retention.
#[test]
fn the_record_of_processing_shows_retention() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_with(dir.path(), "sqlite://x.db", "", "[class.pan]\nretention = \"7y\"\n");
    let cfg = veil::config::parse(&text).unwrap();
    assert_eq!(
        veil::register::retention_of(&cfg, Class::Pan).as_deref(),
        Some("7y after the last tokenisation, then purged")
    );
    assert_eq!(veil::register::retention_of(&cfg, Class::Email), None);
    let md = veil::register::render(&cfg, "veil.toml");
    assert!(md.contains("7y after the last tokenisation"), "{md}");
}

const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;
const RETENTION: &str = "[class.email]\nretention = \"1d\"\n";

async fn tokenize(c: &Client, class: &str, value: &str, subject: Option<&str>) -> String {
    let mut body = json!({"items": [{"class": class, "value": value}]});
    if let Some(s) = subject {
        body["subject"] = json!(s);
    }
    let (status, resp) = c.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["items"][0]["token"].as_str().unwrap().to_owned()
}

async fn detokenize(c: &Client, class: &str, token: &str) -> Value {
    let body = json!({"items": [{"class": class, "token": token}]});
    let (status, resp) = c.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["items"][0].clone()
}

/// Waits (bounded) for the background purge to tombstone `token`.
async fn until_gone(c: &Client, class: &str, token: &str) {
    for _ in 0..200 {
        if detokenize(c, class, token).await["error"]["code"] == "gone" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the purge task never expired the {class} token");
}

async fn the_purge_task_expires_records_past_retention(backend: Backend) {
    let clock = ManualClock::at(T0);
    let v = start_lifecycle_vault(backend, "purge_interval = \"1s\"", RETENTION, clock.clone()).await;
    let c = &v.client;
    let old = tokenize(c, "email", "old@example.org", Some("s1")).await;
    let kept = tokenize(c, "email", "kept@example.org", None).await;
    let card = tokenize(c, "pan", "4111111111111111", None).await;
    clock.advance(12 * HOUR);
    assert_eq!(tokenize(c, "email", "kept@example.org", None).await, kept, "re-tokenised: last use moves");
    clock.advance(13 * HOUR); // T0 + 25h: `old` is a day and an hour past its last use, `kept` 13 hours.

    until_gone(c, "email", &old).await;
    assert_eq!(detokenize(c, "email", &kept).await["value"], "kept@example.org");
    assert_eq!(detokenize(c, "pan", &card).await["value"], "4111111111111111", "pan has no retention");
    // The purge task sets the gauge after its purge commits: the token can read gone a moment before.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = get(v.admin, "/metrics").await.1;
        if metrics.contains("veil_tokens{class=\"email\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("veil_purged_total{class=\"email\"} 1"), "{metrics}");
    assert!(metrics.contains("veil_tokens{class=\"email\"} 1"), "{metrics}");
    assert!(metrics.contains("veil_tokens{class=\"pan\"} 1"), "{metrics}");

    // In the store: a tombstone keeps the token; the sealed value is deleted and the value no longer found.
    let cfg = veil::config::load(&v.dir.path().join("veil.toml")).unwrap();
    let store = veil::app::open_store(cfg.vault.as_ref().unwrap()).await.unwrap();
    let keys = veil::app::load_keys(cfg.vault.as_ref().unwrap().master_key_file().unwrap()).unwrap();
    let row = store.find_by_tokens(&[("email".into(), old.clone())]).await.unwrap().remove(0).unwrap();
    assert_eq!(row.gone_at, Some(T0 + 25 * HOUR), "purged at the clock's time");
    assert!(row.sealed.is_empty(), "the sealed value is deleted");
    let fp = keys.value_fingerprint("email", "old@example.org").unwrap();
    assert_eq!(store.find_by_values(&[("email".into(), fp)]).await.unwrap(), vec![None]);
    let kept_fp = keys.value_fingerprint("email", "kept@example.org").unwrap();
    assert!(store.find_by_values(&[("email".into(), kept_fp)]).await.unwrap()[0].as_ref().unwrap().gone_at.is_none());
    // The subject's export shows it gone.
    let (_, body) = c.request("GET", "/v1/subjects/s1", Some(DPO_KEY), bytes::Bytes::new()).await;
    let export: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(export["items"].as_array().unwrap().len(), 0, "purging drops the subject links too: {export}");

    // The value comes back: a new token; the old one stays gone.
    let again = tokenize(c, "email", "old@example.org", None).await;
    assert_ne!(again, old);
    assert_eq!(detokenize(c, "email", &old).await["error"]["code"], "gone");

    clock.advance(12 * HOUR); // T0 + 37h: `kept` (last used T0 + 12h) expires too.
    until_gone(c, "email", &kept).await;
    assert_eq!(detokenize(c, "email", &again).await["value"], "old@example.org");
}

async fn veil_purge_on_the_command_line(backend: Backend) {
    // Seed through an in-process vault whose clock is two days behind, then purge with the real clock.
    let clock = ManualClock::at(veil::vault::engine::system_clock()() - 48 * HOUR);
    let mut v = start_lifecycle_vault(backend, "", RETENTION, clock.clone()).await;
    let old = tokenize(&v.client, "email", "old@example.org", None).await;
    let card = tokenize(&v.client, "pan", "4111111111111111", None).await;
    v.running.take().unwrap().shutdown().await;

    let cfg_path = v.dir.path().join("veil.toml");
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_veil")).args(["purge", "-c"]).arg(&cfg_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("purged 1 records") && stdout.contains("email: 1"), "{stdout}");
    // Not on a terminal: plain progress lines, the last with the count, the total, the rate and the ETA.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("purge email: 1/1 (100%)") && l.contains("/s, ETA")), "{stderr}");
    assert!(!stderr.contains('\r'), "no terminal redraws in plain output");

    let cfg = veil::config::load(&cfg_path).unwrap();
    let vault = veil::cli::offline::open(&cfg, veil::vault::engine::system_clock()).await.unwrap();
    let op = veil::vault::auth::Caller::operator();
    let got = vault.detokenize(&op, &[(Class::Email, old.as_str()), (Class::Pan, card.as_str())], None).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap_err().code(), "gone");
    assert_eq!(got[1].as_ref().unwrap(), "4111111111111111");
    // Nothing left to purge: a second run purges nothing.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_veil")).args(["purge", "-c"]).arg(&cfg_path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 0 records"));
}
