//! The vault API's OpenAPI document: `docs/openapi.json` is exactly the generated one, an independent validator
//! (PyPI's `openapi-spec-validator`) accepts it and refuses a broken copy, and `GET /v1/openapi.json` serves it to
//! authenticated callers only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::*;
use serde_json::Value;

fn committed_path() -> PathBuf {
    common::prom::repo_root().join("docs/openapi.json")
}

/// The generated document as committed: pretty-printed, with a trailing newline.
fn generated_text() -> String {
    let mut text = serde_json::to_string_pretty(&veil::vault::openapi::document()).unwrap();
    text.push('\n');
    text
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = committed_path();
    let generated = generated_text();
    if std::env::var_os("VEIL_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not the document the vault API types generate; regenerate it with \
         `VEIL_UPDATE_OPENAPI=1 cargo nextest run --test openapi` and commit it"
    );
}

/// The Python that has `openapi_spec_validator`; panics with the install hint when none has (never skips).
fn require_validator() -> &'static str {
    let found = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "PyPI's `openapi-spec-validator` is not installed: this test needs it \
         (`python3 -m pip install openapi-spec-validator`; scripts/test installs it)"
    );
    "python3"
}

/// Runs the validator on `file`: (accepted, what it printed).
fn validate(file: &Path) -> (bool, String) {
    let out = Command::new(require_validator())
        .args(["-m", "openapi_spec_validator"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

#[test]
fn an_independent_validator_accepts_the_document_and_refuses_a_broken_one() {
    let (ok, printed) = validate(&committed_path());
    assert!(ok, "openapi-spec-validator refuses docs/openapi.json:\n{printed}");

    // The validator really checks: the same document without its required `info` is refused.
    let mut broken: Value = serde_json::from_str(&generated_text()).unwrap();
    broken.as_object_mut().unwrap().remove("info");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let (ok, printed) = validate(&file);
    assert!(!ok, "a document without `info` must be refused, but the validator said:\n{printed}");
}

#[test]
fn the_document_lists_every_path_error_code_and_security_scheme() {
    let doc = veil::vault::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/tokenize", "post"),
        ("/v1/detokenize", "post"),
        ("/v1/mask", "post"),
        ("/v1/subjects/{id}", "get"),
        ("/v1/subjects/{id}", "delete"),
        ("/v1/ready", "get"),
        ("/v1/openapi.json", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(op["responses"]["401"].is_object(), "{method} {path}: no 401");
    }
    let text = doc.to_string();
    for e in veil::vault::api::ERROR_CODES {
        assert!(text.contains(&format!("`{}`", e.code)), "code {} not described", e.code);
    }
    for code in ["not_found", "gone", "cvc_unavailable"] {
        assert!(text.contains(code), "item code {code} not described");
    }
    let tokenize = &doc["paths"]["/v1/tokenize"]["post"]["responses"];
    assert!(tokenize["429"]["headers"]["Retry-After"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["components"]["securitySchemes"]["mutualTLS"]["type"], "mutualTLS");
    for name in ["TokenizeRequest", "RevealRequest", "ErrorBody", "ErrorDetail", "SubjectExport", "SignedReceipt"] {
        assert!(doc["components"]["schemas"][name].is_object(), "schema {name} missing");
    }
}

#[tokio::test]
async fn the_api_serves_the_document_to_authenticated_callers() {
    let v = TestVault::start(false).await;
    let (status, body) = v.client.request("GET", "/v1/openapi.json", Some(APP_KEY), Bytes::new()).await;
    assert_eq!(status, 200);
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, veil::vault::openapi::document());

    let (status, body) = v.client.request("GET", "/v1/openapi.json", None, Bytes::new()).await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = v.client.request("GET", "/v1/openapi.json", Some("wrong-key"), Bytes::new()).await;
    assert_eq!(status, 401);
    let (status, _) = v.client.request("POST", "/v1/openapi.json", Some(APP_KEY), Bytes::new()).await;
    assert_eq!(status, 405);
    // Not audited: it reveals and changes nothing.
    let audit = std::fs::read_to_string(v.audit_path()).unwrap_or_default();
    assert!(!audit.contains("openapi"), "{audit}");
}
