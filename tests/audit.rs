//! The audit trail end to end (issue 24, items 3 and 4): a log cut short, rolled back to an older copy, emptied
//! or deleted is found by `veil audit verify` (exit 3) and refused at vault start unless `--new-audit-chain`,
//! which begins a new chain recording the restart; a forged line, or an unsigned one appended, is found with only
//! the public key; a command appending beside a running vault keeps one chain; every event of item 4 is in the
//! log. Both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::pg::Backend;
use common::*;
use serde_json::{json, Value};

common::pg::on_both_stores!(
    lost_lines_are_detected_by_verify_and_at_start_and_a_new_chain_records_the_restart,
    a_command_appending_beside_the_running_vault_keeps_one_chain,
    every_event_is_in_the_log,
);

fn veil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().unwrap()
}

fn verify(cfg: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify", "-c", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    veil(&args)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn items(pairs: &[(&str, &str)], field: &str) -> Value {
    json!({ "items": pairs.iter().map(|(c, v)| json!({"class": c, field: v})).collect::<Vec<_>>() })
}

async fn tokenize(v: &TestVault, pan: &str) -> String {
    let (status, body) = v.client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", pan)], "value")).await;
    assert_eq!(status, 200, "{body}");
    body["items"][0]["token"].as_str().unwrap().to_owned()
}

async fn detokenize(v: &TestVault, key: &str, token: &str) -> u16 {
    let body = json!({"items":[{"class":"pan","token":token}],"purpose":"payment"});
    v.client.post_json("/v1/detokenize", key, &body).await.0
}

fn config_of(path: &Path) -> veil::config::Config {
    veil::config::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn stop(v: &mut TestVault) {
    v.running.take().unwrap().shutdown().await;
}

async fn lost_lines_are_detected_by_verify_and_at_start_and_a_new_chain_records_the_restart(backend: Backend) {
    let mut v = TestVault::start_on(backend, false, None).await;
    let cfg = v.config_path();
    let token = tokenize(&v, "4111111111111111").await;
    for _ in 0..3 {
        assert_eq!(detokenize(&v, PAYMENTS_KEY, &token).await, 200);
    }
    let older = std::fs::read_to_string(v.audit_path()).unwrap();
    for _ in 0..2 {
        assert_eq!(detokenize(&v, PAYMENTS_KEY, &token).await, 200);
    }
    stop(&mut v).await;
    let full = std::fs::read_to_string(v.audit_path()).unwrap();
    assert_eq!(full.lines().count(), 7, "chain start, tokenize, five reveals");
    let out = verify(&cfg, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact, 7 entries"));

    let cut: String = full.lines().take(3).map(|l| format!("{l}\n")).collect();
    let cases = [
        ("truncated", Some(cut), "cut off"),
        ("rolled back", Some(older), "cut off"),
        ("emptied", Some(String::new()), "empty"),
        ("deleted", None, "missing"),
    ];
    for (what, text, reason) in &cases {
        match text {
            Some(t) => std::fs::write(v.audit_path(), t).unwrap(),
            None => std::fs::remove_file(v.audit_path()).unwrap(),
        }
        let out = verify(&cfg, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
        assert!(err.contains("BROKEN") && err.contains(reason), "{what}: {err}");
        let refused = veil::app::start(config_of(&cfg), veil::vault::engine::system_clock()).await.err().unwrap();
        assert!(refused.to_string().contains("--new-audit-chain"), "{what}: {refused}");
        assert!(refused.to_string().contains(reason), "{what}: {refused}");
        std::fs::write(v.audit_path(), &full).unwrap();
    }

    // The binary refuses too, and says why.
    std::fs::write(v.audit_path(), "").unwrap();
    let out = veil(&["run", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--new-audit-chain"));

    // Told to: a new chain, whose first line records the restart and the head the store held.
    let mut c = config_of(&cfg);
    c.vault.as_mut().unwrap().new_audit_chain = true;
    let running = veil::app::start(c, veil::vault::engine::system_clock()).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    let (status, _) =
        client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", "5555555555554444")], "value")).await;
    assert_eq!(status, 200);
    running.shutdown().await;
    let new = lines(&v.audit_path());
    assert_eq!(new[0]["op"], "chain_restart");
    assert_eq!(new[0]["previous"]["seq"], 7);
    assert!(new[0]["note"].as_str().unwrap().contains("empty"), "{}", new[0]);
    assert_eq!(new[1]["op"], "tokenize");
    let out = verify(&cfg, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kept = std::fs::read_dir(v.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("audit.jsonl.broken-"));
    assert!(!kept, "an empty log has nothing to keep");

    // `veil run --new-audit-chain` starts on a deleted log.
    std::fs::remove_file(v.audit_path()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["run", "--new-audit-chain", "-c", cfg.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .env("VEIL_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let started = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        use tokio::io::AsyncBufReadExt;
        let mut l = tokio::io::BufReader::new(stderr).lines();
        while let Some(line) = l.next_line().await.unwrap() {
            if line.contains("vault API listening") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(started);
    child.kill().await.unwrap();
    assert_eq!(lines(&v.audit_path())[0]["op"], "chain_restart");
}

#[tokio::test]
async fn a_forged_line_is_found_with_only_the_public_key() {
    let mut v = TestVault::start_on(Backend::Sqlite, false, None).await;
    let key = v.dir.path().join("audit.key");
    assert!(veil(&["keygen", "--audit-key", "--out", key.to_str().unwrap()]).status.success());
    assert!(!veil(&["keygen", "--audit-key", "--out", key.to_str().unwrap()]).status.success(), "never overwrites");
    stop(&mut v).await;
    // A vault with its own audit key: a new log (and a new log id) under it.
    let text = std::fs::read_to_string(v.config_path()).unwrap().replace(
        "audit_log = ",
        &format!("audit_key_file = \"{}\"\naudit_log_id = \"signed\"\naudit_log = ", key.display()),
    );
    let text = text.replace("audit.jsonl", "signed.jsonl");
    let cfg = v.dir.path().join("signed.toml");
    std::fs::write(&cfg, &text).unwrap();
    let running = veil::app::start(config_of(&cfg), veil::vault::engine::system_clock()).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    for pan in ["4111111111111111", "5555555555554444"] {
        let (status, _) = client.post_json("/v1/tokenize", PAYMENTS_KEY, &items(&[("pan", pan)], "value")).await;
        assert_eq!(status, 200);
    }
    running.shutdown().await;
    let log = v.dir.path().join("signed.jsonl");
    let public = v.dir.path().join("audit.key.pub");
    // Only the public key: the private key and the master key are out of reach.
    let hidden = v.dir.path().join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    std::fs::rename(&key, hidden.join("audit.key")).unwrap();
    std::fs::rename(v.dir.path().join("master.key"), hidden.join("master.key")).unwrap();
    let out = verify(&cfg, &["--public-key", public.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // An edited line.
    let original = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, original.replacen("\"caller\":\"payments\"", "\"caller\":\"paymentz\"", 1)).unwrap();
    let out = verify(&cfg, &["--public-key", public.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&out.stderr));

    // A line re-signed with another key (and the chain re-linked after it): still found.
    let forger = veil::crypto::audit_key::AuditSigner::from_seed(&[7; 32]);
    let mut texts: Vec<String> = original.lines().map(str::to_owned).collect();
    let last = texts.len() - 1;
    let mut l: veil::vault::audit::line::Line =
        serde_json::from_str(&format!("{}}}", &texts[last][..texts[last].rfind(",\"sig\"").unwrap()])).unwrap();
    l.caller = "someone-else".into();
    texts[last] = veil::vault::audit::line::seal(&forger, &l).unwrap();
    std::fs::write(&log, texts.join("\n") + "\n").unwrap();
    let out = verify(&cfg, &["--public-key", public.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"));

    // A line appended without the key, chained on correctly (seq and prev right) but unsigned: the log no longer
    // ends on a signed line.
    let last_line = original.lines().last().unwrap();
    let mut l: veil::vault::audit::line::Line =
        serde_json::from_str(&format!("{}}}", &last_line[..last_line.rfind(",\"sig\"").unwrap()])).unwrap();
    (l.seq, l.prev, l.caller) = (l.seq + 1, veil::vault::audit::line::hash(last_line), "someone-else".into());
    let appended = format!("{original}{}\n", veil::vault::audit::line::unsigned(&l).unwrap());
    std::fs::write(&log, &appended).unwrap();
    let out = verify(&cfg, &["--public-key", public.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without a signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&log, &original).unwrap();
    assert!(verify(&cfg, &["--public-key", public.to_str().unwrap()]).status.success());
}

async fn a_command_appending_beside_the_running_vault_keeps_one_chain(backend: Backend) {
    let v = TestVault::start_on(backend, false, None).await;
    let cfg = v.config_path();
    let token = tokenize(&v, "4111111111111111").await;
    // Requests keep the vault appending while `veil keys rewrap` and `veil purge` append their own lines.
    let busy = async {
        for _ in 0..40 {
            assert_eq!(detokenize(&v, PAYMENTS_KEY, &token).await, 200);
        }
    };
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let commands = tokio::task::spawn_blocking(move || {
        for _ in 0..2 {
            let out = veil(&["keys", "rewrap", "-c", &cfg_s]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let out = veil(&["purge", "-c", &cfg_s]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    });
    let ((), joined) = tokio::join!(busy, commands);
    joined.unwrap();
    assert_eq!(detokenize(&v, PAYMENTS_KEY, &token).await, 200);
    let out = verify(&cfg, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = lines(&v.audit_path());
    assert_eq!(all.iter().filter(|l| l["op"] == "keys_rewrap").count(), 4, "start and end of two rewraps");
    assert_eq!(all.iter().filter(|l| l["op"] == "purge" && l["caller"] == "cli").count(), 2);
    assert_eq!(all.iter().filter(|l| l["op"] == "detokenize").count(), 41);
    for (i, l) in all.iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
    }
}

async fn every_event_is_in_the_log(backend: Backend) {
    let mut v = TestVault::start_on(backend, false, None).await;
    let cfg = v.config_path();
    let token = tokenize(&v, "4111111111111111").await;
    // A denial carries the token's fingerprint; a reveal and a denial of one token carry the same one.
    assert_eq!(detokenize(&v, APP_KEY, &token).await, 403);
    assert_eq!(detokenize(&v, PAYMENTS_KEY, &token).await, 200);
    stop(&mut v).await;
    let cfg_s = cfg.to_str().unwrap();
    for args in [vec!["keys", "rotate", "-c", cfg_s], vec!["keys", "rewrap", "-c", cfg_s], vec!["purge", "-c", cfg_s]] {
        let out = veil(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let all = lines(&v.audit_path());
    let find = |op: &str, outcome: &str| {
        all.iter().find(|l| l["op"] == op && l["outcome"] == outcome).unwrap_or_else(|| panic!("no {op} {outcome}"))
    };
    let tok = find("tokenize", "ok");
    assert_eq!(tok["caller"], "payments");
    assert!(tok["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{tok}");
    let fp = tok["items"][0]["token_fp"].as_str().unwrap();
    assert!(!fp.is_empty());
    let denied = find("detokenize", "denied");
    assert_eq!((denied["caller"].as_str(), denied["items"][0]["token_fp"].as_str()), (Some("app"), Some(fp)));
    assert!(denied["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(find("detokenize", "ok")["items"][0]["token_fp"], fp);
    find("keys_rotate", "started");
    assert_eq!(find("keys_rotate", "ok")["counts"]["version"], 2);
    find("keys_rewrap", "started");
    let rewrap = find("keys_rewrap", "ok");
    assert_eq!((rewrap["counts"]["version"].as_u64(), rewrap["counts"]["resealed"].as_u64()), (Some(2), Some(1)));
    let purge = all.iter().find(|l| l["op"] == "purge" && l["caller"] == "cli").unwrap();
    assert!(purge["counts"].is_object(), "{purge}");
    let text = std::fs::read_to_string(v.audit_path()).unwrap();
    assert!(!text.contains("4111111111111111") && !text.contains(&token));
    let out = verify(&cfg, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_reveal_that_fails_to_decrypt_and_a_client_certificate_are_on_record() {
    let v = TestVault::start_on(Backend::Sqlite, true, None).await;
    let token = tokenize(&v, "4111111111111111").await;
    // A record whose ciphertext no longer opens (a database writer swapped it).
    let url = format!("sqlite://{}/vault.db", v.dir.path().display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("UPDATE tokens SET sealed = randomblob(48)").execute(&mut conn).await.unwrap();
    let status = detokenize(&v, PAYMENTS_KEY, &token).await;
    assert_eq!(status, 500);
    // Over mTLS: the certificate's identity is recorded beside the address.
    let mtls = v.client.with_client_cert();
    let body = json!({"items":[{"class":"pan","token":token}]});
    let (status, _) = mtls.post("/v1/detokenize", None, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(status, 500);
    let all = lines(&v.audit_path());
    let failed: Vec<&Value> = all.iter().filter(|l| l["op"] == "detokenize" && l["outcome"] == "error").collect();
    assert_eq!(failed.len(), 2, "{all:?}");
    assert_eq!(failed[0]["items"][0]["result"], "error");
    assert!(!failed[0]["items"][0]["token_fp"].as_str().unwrap().is_empty());
    assert_eq!(failed[1]["caller"], "payments-mtls");
    assert_eq!(failed[1]["identity"], "spiffe://shop/payments");
}
