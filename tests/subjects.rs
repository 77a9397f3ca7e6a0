//! Data subjects through the vault API, on both stores: export is complete against seeded data (tokens, values
//! only where the caller may detokenize, times, reveals from the audit log), erasure makes exactly the subject's
//! own tokens `gone` (shared ones stay), the receipt verifies and fails when edited, and the audit log records
//! both; plus the `veil subjects` commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::lifecycle::*;
use common::pg::Backend;
use common::*;
use serde_json::{json, Value};

common::pg::on_both_stores!(
    export_and_erase_a_subject,
    subject_commands_on_the_command_line,
    unwritable_audit_log_refuses_export_and_erasure,
);

const T0: i64 = 1_800_000_000;

async fn tokenize(c: &Client, items: &[(&str, &str)], subject: Option<&str>) -> Vec<String> {
    let mut body = json!({"items": items.iter().map(|(c, v)| json!({"class": c, "value": v})).collect::<Vec<_>>()});
    if let Some(s) = subject {
        body["subject"] = json!(s);
    }
    let (status, resp) = c.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap().to_owned()).collect()
}

async fn reveal(c: &Client, path: &str, class: &str, token: &str) -> Value {
    let body = json!({"items": [{"class": class, "token": token}], "purpose": "payment"});
    let (status, resp) = c.post_json(path, PAYMENTS_KEY, &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["items"][0].clone()
}

async fn subject_call(c: &Client, method: &str, id: &str, key: &str) -> (u16, Value) {
    let (status, body) = c.request(method, &format!("/v1/subjects/{id}"), Some(key), bytes::Bytes::new()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn keys_of(v: &TestVault) -> veil::crypto::KeySet {
    let ring = veil::crypto::Keyring::load(&v.dir.path().join("master.key")).unwrap();
    veil::crypto::KeySet::derive(&ring, &veil::domain::Class::names()).unwrap()
}

async fn export_and_erase_a_subject(backend: Backend) {
    let clock = ManualClock::at(T0);
    let v = start_lifecycle_vault(backend, "", "", clock.clone()).await;
    let c = &v.client;
    // cust-42: a card and an email; cust-7: another card and the same email; a card tokenised with no subject.
    let own = tokenize(c, &[("pan", "4111111111111111"), ("email", "shared@example.org")], Some("cust-42")).await;
    clock.advance(7200);
    let other = tokenize(c, &[("pan", "5500000000000004"), ("email", "shared@example.org")], Some("cust-7")).await;
    let loose = tokenize(c, &[("pan", "4000056655665556")], None).await;
    assert_eq!(own[1], other[1], "one token per value");
    // The same card again for cust-42, written differently: the same token, now marked used later.
    clock.advance(7200);
    let again = tokenize(c, &[("pan", "4111 1111 1111 1111")], Some("cust-42")).await;
    assert_eq!(again[0].replace(' ', ""), own[0]);
    // Reveals, with the token written in two ways.
    assert_eq!(reveal(c, "/v1/detokenize", "pan", &own[0]).await["value"], "4111111111111111");
    assert_eq!(reveal(c, "/v1/detokenize", "pan", &again[0]).await["value"], "4111 1111 1111 1111");
    assert!(reveal(c, "/v1/mask", "email", &own[1]).await["masked"].is_string());
    reveal(c, "/v1/detokenize", "pan", &other[0]).await;

    // Export: everything for cust-42, nothing of cust-7's own data.
    let (status, export) = subject_call(c, "GET", "cust-42", DPO_KEY).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["complete"], true);
    // The answer has the shape the OpenAPI document describes.
    serde_json::from_value::<veil::vault::wire::SubjectExport>(export.clone()).unwrap();
    let items = export["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{export}");
    let by_class = |class: &str| items.iter().find(|i| i["class"] == class).unwrap().clone();
    let (pan, email) = (by_class("pan"), by_class("email"));
    assert_eq!((pan["token"].as_str().unwrap(), pan["value"].as_str().unwrap()), (own[0].as_str(), "4111111111111111"));
    assert_eq!(email["value"], "shared@example.org");
    assert_eq!((pan["state"].as_str(), pan["created_at"].as_i64()), (Some("active"), Some(T0)));
    assert_eq!(pan["last_used_at"].as_i64(), Some(T0 + 14_400), "re-tokenising moved last use");
    assert_eq!(email["last_used_at"].as_i64(), Some(T0 + 7200), "cust-7's tokenisation used the shared email");
    let reveals = export["reveals"].as_array().unwrap();
    assert_eq!(reveals.len(), 3, "two card reveals and one email mask: {export}");
    assert!(reveals.iter().all(|r| r["caller"] == "payments" && r["purpose"] == "payment" && r["result"] == "ok"));
    assert_eq!(reveals.iter().filter(|r| r["op"] == "detokenize" && r["token"] == own[0].as_str()).count(), 2);
    assert_eq!(reveals.iter().filter(|r| r["op"] == "mask" && r["class"] == "email").count(), 1);
    assert!(!export.to_string().contains(&other[0]), "another subject's card is not in the export");

    // A caller with export:pan only: the card, without its value; the export says it is not complete.
    let (status, partial) = subject_call(c, "GET", "cust-42", AUDITOR_KEY).await;
    assert_eq!(status, 200);
    assert_eq!(partial["items"].as_array().unwrap().len(), 1);
    assert!(partial["items"][0].get("value").is_none(), "no detokenize right, no value");
    assert_eq!((partial["complete"].as_bool(), partial["withheld_records"].as_u64()), (Some(false), Some(1)));
    // Without the rights: 403, JSON error.
    let (status, body) = subject_call(c, "GET", "cust-42", PAYMENTS_KEY).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = subject_call(c, "DELETE", "cust-42", AUDITOR_KEY).await;
    assert_eq!(status, 403);
    let (status, _) = subject_call(c, "GET", "cust-42", "wrong-key").await;
    assert_eq!(status, 401);
    let (status, body) = subject_call(c, "PUT", "cust-42", DPO_KEY).await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, _) = subject_call(c, "GET", "", DPO_KEY).await;
    assert_eq!(status, 404);

    // Erase cust-42: its own card goes, the shared email stays.
    clock.advance(60);
    let (status, signed) = subject_call(c, "DELETE", "cust-42", DPO_KEY).await;
    assert_eq!(status, 200, "{signed}");
    let receipt = &signed["receipt"];
    assert_eq!(receipt["erased"].as_array().unwrap().len(), 1);
    assert_eq!(receipt["erased"][0]["class"], "pan");
    assert_eq!(receipt["kept_shared"].as_array().unwrap().len(), 1);
    assert_eq!(receipt["kept_shared"][0]["class"], "email");
    assert_eq!(receipt["erased_at"].as_i64(), Some(T0 + 14_460));
    let keys = keys_of(&v);
    let parsed: Value = serde_json::from_str(&signed.to_string()).unwrap();
    assert!(veil::vault::subjects::verify_receipt(&keys, &parsed), "the receipt verifies");
    serde_json::from_value::<veil::vault::wire::SignedReceipt>(parsed.clone()).unwrap();
    let mut edited = parsed.clone();
    edited["receipt"]["kept_shared"] = json!([]);
    assert!(!veil::vault::subjects::verify_receipt(&keys, &edited), "an edited receipt fails");
    // Anyone with the audit public key checks it too (`veil receipt verify`); nobody can forge or edit it.
    let receipt_file = v.dir.path().join("receipt.json");
    std::fs::write(&receipt_file, parsed.to_string()).unwrap();
    let edited_file = v.dir.path().join("edited.json");
    std::fs::write(&edited_file, edited.to_string()).unwrap();
    let cfg_path = v.dir.path().join("veil.toml");
    let cfg = veil::config::load(&cfg_path).unwrap();
    let public = veil::app::audit_signer(cfg.vault.as_ref().unwrap(), &keys).unwrap().verifier();
    let public_file = v.dir.path().join("audit.pub");
    std::fs::write(&public_file, public.to_text()).unwrap();
    let other_file = v.dir.path().join("other.pub");
    std::fs::write(&other_file, veil::crypto::audit_key::AuditSigner::from_seed(&[3; 32]).verifier().to_text())
        .unwrap();
    let verify = |args: &[&std::path::Path]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_veil"));
        cmd.args(["receipt", "verify"]);
        match args {
            [receipt, key] => cmd.arg(receipt).arg("--public-key").arg(key),
            [receipt] => cmd.arg(receipt).arg("-c").arg(&cfg_path),
            _ => unreachable!(),
        };
        cmd.output().unwrap()
    };
    let ok = verify(&[&receipt_file, &public_file]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("signed by audit key {}", public.id())));
    assert!(verify(&[&receipt_file]).status.success(), "found through the config");
    assert_eq!(verify(&[&edited_file, &public_file]).status.code(), Some(3), "an edited receipt");
    assert_eq!(verify(&[&receipt_file, &other_file]).status.code(), Some(3), "another key's");

    let gone = reveal(c, "/v1/detokenize", "pan", &own[0]).await;
    assert_eq!(gone["error"]["code"], "gone", "{gone}");
    assert_eq!(reveal(c, "/v1/detokenize", "email", &own[1]).await["value"], "shared@example.org");
    assert_eq!(reveal(c, "/v1/detokenize", "pan", &other[0]).await["value"], "5500000000000004");
    assert_eq!(reveal(c, "/v1/detokenize", "pan", &loose[0]).await["value"], "4000056655665556");
    let (_, after) = subject_call(c, "GET", "cust-42", DPO_KEY).await;
    assert_eq!(after["items"], json!([]), "nothing is held for an erased subject");
    let (_, seven) = subject_call(c, "GET", "cust-7", DPO_KEY).await;
    assert_eq!(seven["items"].as_array().unwrap().len(), 2);
    // The erased token is never issued again; the value, tokenised anew, gets a new token.
    let fresh = tokenize(c, &[("pan", "4111111111111111")], None).await;
    assert_ne!(fresh[0], own[0]);
    assert_eq!(reveal(c, "/v1/detokenize", "pan", &own[0]).await["error"]["code"], "gone");

    // The audit log records both, holds no subject id or value, and its chain verifies.
    let audit = std::fs::read_to_string(v.audit_path()).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let has = |op: &str, outcome: &str| {
        lines.iter().any(|l| l["op"] == op && l["outcome"] == outcome && l["caller"] == "dpo")
    };
    assert!(has("export", "ok") && has("erase", "requested") && has("erase", "ok"), "{audit}");
    assert!(lines.iter().any(|l| l["op"] == "export" && l["outcome"] == "denied" && l["caller"] == "payments"));
    for secret in ["cust-42", "4111111111111111", "shared@example.org", own[0].as_str()] {
        assert!(!audit.contains(secret), "audit log holds {secret}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["audit", "verify", "-c"])
        .arg(v.dir.path().join("veil.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `veil subjects export|erase ID -c …` against a store seeded through the API (the vault stopped first: the
/// commands append to the same audit log).
async fn subject_commands_on_the_command_line(backend: Backend) {
    let clock = ManualClock::at(T0);
    let mut v = start_lifecycle_vault(backend, "", "", clock).await;
    let own = tokenize(&v.client, &[("pan", "4111111111111111"), ("phone", "+49 30 1234567")], Some("cli-1")).await;
    let shared = tokenize(&v.client, &[("phone", "+49 30 1234567")], Some("cli-2")).await;
    v.running.take().unwrap().shutdown().await;
    let cfg = v.dir.path().join("veil.toml");
    let veil = |args: &[&str]| {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_veil")).args(args).arg("-c").arg(&cfg).output().unwrap();
        assert!(out.status.success(), "veil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let export = veil(&["subjects", "export", "cli-1"]);
    let items = export["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{export}");
    assert!(items.iter().any(|i| i["token"] == own[0].as_str() && i["value"] == "4111111111111111"));
    assert!(items.iter().any(|i| i["class"] == "phone" && i["value"] == "+49301234567"));
    let signed = veil(&["subjects", "erase", "cli-1"]);
    assert!(veil::vault::subjects::verify_receipt(&keys_of(&v), &signed));
    assert_eq!(signed["receipt"]["caller"], "cli");
    assert_eq!(signed["receipt"]["erased"].as_array().unwrap().len(), 1);
    assert_eq!(signed["receipt"]["kept_shared"].as_array().unwrap().len(), 1);
    let after = veil(&["subjects", "export", "cli-2"]);
    assert_eq!(after["items"][0]["token"], shared[0].replace(' ', "").as_str());
    assert_eq!(after["items"][0]["state"], "active");
    // A missing config file is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["subjects", "export", "x", "-c", "/nonexistent/veil.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Fail closed: without an audit record, no export leaves and nothing is erased. Bad subject ids are refused.
async fn unwritable_audit_log_refuses_export_and_erasure(backend: Backend) {
    let v = start_lifecycle_vault_edited(backend, "", "", ManualClock::at(T0), |text| {
        let start = text.find("audit_log = ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        format!("{}audit_log = \"/dev/full\"{}", &text[..start], &text[end..])
    })
    .await;
    let c = &v.client;
    // Tokenisations are audited too: the record is stored (and linked), its token withheld.
    let body = json!({"items": [{"class": "pan", "value": "4111111111111111"}], "subject": "cust-1"});
    let (status, resp) = c.post_json("/v1/tokenize", PAYMENTS_KEY, &body).await;
    assert_eq!((status, resp["error"]["code"].as_str()), (503, Some("audit_unavailable")), "{resp}");
    for method in ["GET", "DELETE"] {
        let (status, body) = subject_call(c, method, "cust-1", DPO_KEY).await;
        assert_eq!((status, body["error"]["code"].as_str()), (503, Some("audit_unavailable")), "{method}");
        assert!(!body.to_string().contains("4111111111111111"));
    }
    // Nothing was erased: the record is still live and linked.
    let cfg = veil::config::load(&v.dir.path().join("veil.toml")).unwrap();
    let store = veil::app::open_store(cfg.vault.as_ref().unwrap()).await.unwrap();
    let subject = keys_of(&v).subject.fingerprint(b"cust-1");
    let records = store.subject_records(&subject).await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].gone_at.is_none() && !records[0].sealed.is_empty());

    for (id, code) in [("%FF%FE", 400), (&"x".repeat(300)[..], 400), ("a/b", 404)] {
        let (status, body) = subject_call(c, "GET", id, DPO_KEY).await;
        assert_eq!(status, code, "{id}: {body}");
    }
}

/// A route's `subject` selector links the tokens of a proxied request to the subject found in the body.
#[tokio::test]
async fn the_proxy_links_a_routes_tokens_to_its_subject() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let store = Backend::Sqlite.store_url(dir.path()).await;
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}\n{}",
        app.addr,
        config_with(dir.path(), &store, "", ""),
        r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [ { json = "$.card.number", class = "pan" }, { json = "$.customer.email", class = "email" } ]
subject = { json = "$.customer.id" }
"#
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
    let body =
        json!({"card": {"number": "4111111111111111"}, "customer": {"id": "cust-99", "email": "jo@example.org"}});
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/checkout")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let (status, _, _) = send_request(running.proxy_addr.unwrap(), None, false, req).await.unwrap();
    assert_eq!(status, 200);
    let seen: Value = serde_json::from_slice(&app.requests()[0].body).unwrap();
    let (card, email) = (seen["card"]["number"].as_str().unwrap(), seen["customer"]["email"].as_str().unwrap());
    assert_ne!(card, "4111111111111111");

    let (status, export) = subject_call(&Client::plain(running.vault_addr.unwrap()), "GET", "cust-99", DPO_KEY).await;
    assert_eq!(status, 200, "{export}");
    let items = export["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{export}");
    assert!(items.iter().any(|i| i["class"] == "pan" && i["token"] == card && i["value"] == "4111111111111111"));
    assert!(items.iter().any(|i| i["class"] == "email" && i["token"] == email && i["value"] == "jo@example.org"));
    running.shutdown().await;
}
