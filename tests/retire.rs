//! Rotation that retires, on both stores, with the vault serving: records and subject links under key version 1
//! (some written through the API, some as a database from before rows named their fingerprint version: legacy
//! rows, legacy links without a sealed subject id); `veil keys rotate`, restart; `veil keys retire` refused with
//! what still depends on version 1; `veil keys rewrap` (stopped part way, rerun with `--subjects FILE`) while
//! clients keep tokenising — one token per value throughout; `veil keys retire --version 1`. Then version 1's key
//! material is gone from the key file, and a vault restarted with the shorter keyring detokenises every token,
//! gives every value its token again, and exports and erases every subject.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::lifecycle::*;
use common::pg::Backend;
use common::*;
use serde_json::{json, Value};
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::store::{Record, Write};

common::pg::on_both_stores!(rotation_then_retirement_while_serving_keeps_every_token_and_subject);

/// (class, value, token, subject)
type Seen = Arc<Mutex<Vec<(String, String, String, Option<String>)>>>;

async fn tokenize(c: &Client, values: &[(&str, String)], subject: Option<&str>, seen: &Seen) -> Vec<String> {
    let mut body = json!({"items": values.iter().map(|(c, v)| json!({"class": c, "value": v})).collect::<Vec<_>>()});
    if let Some(s) = subject {
        body["subject"] = json!(s);
    }
    let (status, resp) = c.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{resp}");
    let tokens: Vec<String> =
        resp["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap().to_owned()).collect();
    let mut seen = seen.lock().unwrap();
    for ((class, v), t) in values.iter().zip(&tokens) {
        seen.push((class.to_string(), v.clone(), t.clone(), subject.map(str::to_owned)));
    }
    tokens
}

fn values(n: usize, tag: &str) -> Vec<(&'static str, String)> {
    (0..n)
        .flat_map(|i| {
            [("pan", random_pan("4", 16)), ("email", format!("{tag}-{i}-{}@example.org", rand::random::<u32>()))]
        })
        .collect()
}

async fn detokenize_all(c: &Client, seen: &[(String, String, String, Option<String>)]) {
    for chunk in seen.chunks(40) {
        let body =
            json!({"items": chunk.iter().map(|(c, _, t, _)| json!({"class": c, "token": t})).collect::<Vec<_>>()});
        let (status, resp) = c.post_json("/v1/detokenize", PAYMENTS_KEY, &body).await;
        assert_eq!(status, 200, "{resp}");
        for ((_, value, _, _), item) in chunk.iter().zip(resp["items"].as_array().unwrap()) {
            assert_eq!(item["value"].as_str(), Some(value.as_str()), "{item}");
        }
    }
}

/// One token per (class, value) among everything seen.
fn one_token_per_value(seen: &[(String, String, String, Option<String>)]) {
    let mut tokens: HashMap<(&str, &str), &str> = HashMap::new();
    for (class, value, token, _) in seen {
        let first = *tokens.entry((class, value)).or_insert(token);
        assert_eq!(first, token, "a {class} value got two tokens");
    }
}

async fn subject(c: &Client, method: &str, id: &str) -> Value {
    let (status, body) = c.request(method, &format!("/v1/subjects/{id}"), Some(DPO_KEY), bytes::Bytes::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Runs `veil ARGS… -c cfg` off the runtime: (success, stdout, stderr).
async fn veil(cfg: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let (cfg, args): (_, Vec<String>) = (cfg.to_path_buf(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_veil")).args(&args).arg("-c").arg(&cfg).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

/// The config with its own audit signing key (retiring the oldest version needs one).
fn with_audit_key(text: String) -> String {
    let line = text.lines().find(|l| l.starts_with("master_key_file")).unwrap();
    let key_file = line.split('"').nth(1).unwrap();
    let audit_key = std::path::Path::new(key_file).with_file_name("audit.key");
    veil::crypto::audit_key::AuditSigner::generate_file(&audit_key).unwrap();
    text.replacen(line, &format!("{line}\naudit_key_file = \"{}\"", audit_key.display()), 1)
}

/// Rows as a database from before this change holds them (the migration leaves their new columns empty): sealed
/// with the AAD that does not bind the fingerprint, fingerprinted under version 1, linked with no sealed id.
async fn write_legacy_rows(cfg: &veil::config::Config, keys: &KeySet, seen: &Seen) {
    let store = veil::app::open_store(cfg.vault.as_ref().unwrap()).await.unwrap();
    for s in 0..3 {
        let id = format!("legacy-{s}");
        let mut records = Vec::new();
        for i in 0..4 {
            let value = format!("legacy-{s}-{i}-{}@example.org", rand::random::<u32>());
            let canonical = veil::token::parse(Class::Email, &value).unwrap().canonical;
            let token = format!("zq{s}x{i}y{}@example.net", rand::random::<u32>());
            let sealed = keys.sealer("email", 1).unwrap().seal("email", &token, 1, canonical.as_bytes()).unwrap();
            records.push(Record {
                class: "email".into(),
                token: token.clone(),
                value_fp: keys.value_fingerprint_at("email", &canonical, 1).unwrap(),
                fp_version: None,
                key_version: 1,
                sealed,
                created_at: 1,
                last_used_at: 1,
                gone_at: None,
            });
            seen.lock().unwrap().push(("email".into(), value, token, Some(id.clone())));
        }
        let subject = keys.subject_at(1).unwrap().fingerprint(id.as_bytes());
        let write = Write { records, subject: Some(subject), now: 1, ..Write::default() };
        assert!(store.write(write).await.unwrap().iter().all(|o| *o == veil::store::Inserted::New));
    }
}

async fn rotation_then_retirement_while_serving_keeps_every_token_and_subject(backend: Backend) {
    let clock = ManualClock::at(veil::vault::engine::system_clock()());
    let mut v = start_lifecycle_vault_edited(backend, "", "", clock.clone(), with_audit_key).await;
    let cfg_path = v.dir.path().join("veil.toml");
    let key_file = v.dir.path().join("master.key");
    let cfg = veil::config::load(&cfg_path).unwrap();
    let v1 = KeySet::derive(&Keyring::load(&key_file).unwrap(), &Class::names()).unwrap();
    let seen: Seen = Arc::default();
    for s in 0..4 {
        tokenize(&v.client, &values(3, "v1"), Some(&format!("cust-{s}")), &seen).await;
    }
    tokenize(&v.client, &values(5, "loose"), None, &seen).await;
    write_legacy_rows(&cfg, &v1, &seen).await;
    let before = seen.lock().unwrap().clone();
    detokenize_all(&v.client, &before).await;
    v.running.take().unwrap().shutdown().await;
    let v1_line = std::fs::read_to_string(&key_file).unwrap().lines().find(|l| l.starts_with("1 ")).unwrap().to_owned();

    // Rotation, and the vault restarted on the new keyring.
    let (ok, _, err) = veil(&cfg_path, &["keys", "rotate"]).await;
    assert!(ok, "{err}");
    let running = veil::app::start(cfg.clone(), clock.clock()).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    tokenize(&client, &values(3, "v2"), Some("cust-9"), &seen).await;

    // Retirement is refused while anything depends on version 1, and says what; the newest never goes.
    let (ok, _, err) = veil(&cfg_path, &["keys", "retire", "--version", "1"]).await;
    assert!(!ok && err.contains("still in use") && err.contains("records sealed under it"), "{err}");
    assert!(err.contains("3 subjects have links but no sealed id"), "the legacy subjects: {err}");
    let (ok, _, err) = veil(&cfg_path, &["keys", "retire", "--version", "2"]).await;
    assert!(!ok && err.contains("newest"), "{err}");
    assert!(std::fs::read_to_string(&key_file).unwrap().contains(&v1_line), "nothing was retired");

    // Clients tokenise new values and the old ones again (with their subjects) while the pass runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                tokenize(&client, &values(2, "live"), Some("cust-live"), &seen).await;
                let old: Vec<_> = seen.lock().unwrap().iter().step_by(3).take(12).cloned().collect();
                for (class, value, _, subject) in old {
                    tokenize(
                        &client,
                        &[(if class == "pan" { "pan" } else { "email" }, value)],
                        subject.as_deref(),
                        &seen,
                    )
                    .await;
                }
                rounds += 1;
            }
            rounds
        })
    };
    let (ok, first, err) = veil(&cfg_path, &["keys", "rewrap", "--page", "7", "--max", "20"]).await;
    assert!(
        ok && first.contains("re-sealed 20 records under key version 2") && first.contains("stopped"),
        "{first}{err}"
    );
    let ids = v.dir.path().join("customers.txt");
    std::fs::write(&ids, "legacy-0\n legacy-1 \n\nlegacy-2\nnever-seen\n").unwrap();
    let (ok, second, err) =
        veil(&cfg_path, &["keys", "rewrap", "--page", "9", "--subjects", ids.to_str().unwrap()]).await;
    assert!(ok && second.contains("done") && second.contains("older fingerprint versions unused"), "{second}{err}");
    stop.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > 0);
    one_token_per_value(&seen.lock().unwrap());
    let during = seen.lock().unwrap().clone();
    detokenize_all(&client, &during).await;
    running.shutdown().await;

    // Retirement: version 1's line leaves the key file; audited.
    let (ok, out, err) = veil(&cfg_path, &["keys", "retire", "--version", "1"]).await;
    assert!(ok && out.contains("retired master key version 1"), "{out}{err}");
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    assert!(!key_text.contains(&v1_line) && !key_text.contains(v1_line.split(' ').nth(1).unwrap()));
    assert_eq!(Keyring::load(&key_file).unwrap().versions().collect::<Vec<_>>(), vec![2]);
    let audit = std::fs::read_to_string(v.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(audit.lines().any(|l| l.contains("\"keys_retire\"") && l.contains("\"ok\"")), "the retirement is audited");

    // A vault restarted with the shorter keyring serves every token, and every value gets its token again.
    let running = veil::app::start(veil::config::load(&cfg_path).unwrap(), clock.clock()).await.unwrap();
    let client = Client::plain(running.vault_addr.unwrap());
    let all = seen.lock().unwrap().clone();
    detokenize_all(&client, &all).await;
    let again: Seen = Arc::default();
    for chunk in all.chunks(25) {
        let items: Vec<(&str, String)> =
            chunk.iter().map(|(c, v, _, _)| (if c == "pan" { "pan" } else { "email" }, v.clone())).collect();
        let tokens = tokenize(&client, &items, None, &again).await;
        for ((_, _, token, _), again) in chunk.iter().zip(tokens) {
            assert_eq!(*token, again, "the same token after retirement");
        }
    }
    // Subjects export (their tokens found under the new fingerprint) and erase.
    let subjects: Vec<String> =
        (0..4).map(|s| format!("cust-{s}")).chain((0..3).map(|s| format!("legacy-{s}"))).collect();
    for id in subjects.iter().chain([&"cust-9".to_owned(), &"cust-live".to_owned()]) {
        let held: Vec<&String> = all.iter().filter(|(.., s)| s.as_ref() == Some(id)).map(|(_, _, t, _)| t).collect();
        let export = subject(&client, "GET", id).await;
        let exported: Vec<&str> =
            export["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap()).collect();
        for token in &held {
            assert!(exported.contains(&token.as_str()), "{id}: {token} missing from {export}");
        }
    }
    let receipt = subject(&client, "DELETE", "legacy-1").await;
    assert_eq!(receipt["receipt"]["key_version"], 2);
    assert_eq!(receipt["receipt"]["erased"].as_array().unwrap().len(), 4, "{receipt}");
    assert!(subject(&client, "GET", "legacy-1").await["items"].as_array().unwrap().is_empty());
    running.shutdown().await;
}

/// With the fallback audit signing key (derived from the oldest version), retiring that version is refused
/// even when nothing else depends on it; so is a version the keyring does not hold. Nothing is removed.
#[tokio::test]
async fn retiring_the_oldest_version_needs_an_audit_key_file() {
    let clock = ManualClock::at(veil::vault::engine::system_clock()());
    let mut v = start_lifecycle_vault(Backend::Sqlite, "", "", clock).await;
    tokenize(&v.client, &values(2, "a"), Some("s"), &Seen::default()).await;
    v.running.take().unwrap().shutdown().await;
    let cfg_path = v.dir.path().join("veil.toml");
    let key_file = v.dir.path().join("master.key");
    assert!(veil(&cfg_path, &["keys", "rotate"]).await.0);
    let (ok, out, err) = veil(&cfg_path, &["keys", "rewrap"]).await;
    assert!(ok && out.contains("older fingerprint versions unused"), "{out}{err}");
    let before = std::fs::read_to_string(&key_file).unwrap();
    let (ok, _, err) = veil(&cfg_path, &["keys", "retire", "--below", "2"]).await;
    assert!(!ok && err.contains("audit_key_file") && err.contains("--new-audit-chain"), "{err}");
    let (ok, _, err) = veil(&cfg_path, &["keys", "retire", "--version", "3"]).await;
    assert!(!ok && err.contains("no master key version 3"), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), before, "nothing was retired");
}
