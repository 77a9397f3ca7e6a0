//! The `veil` binary's commands: keygen, check (every problem with its path), exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn veil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().unwrap()
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/master.key");
    let key_s = key.to_str().unwrap();
    let out = veil(&["keygen", "--out", key_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(&key).unwrap();
    let out = veil(&["keygen", "--out", key_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert!(veil(&["keygen", "--out", key_s, "--if-missing"]).status.success());
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = veil(&["check", "-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config/veil.toml")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_prints_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        r#"
[vault]
listen = "10.0.0.1:8444"
store = "redis://x"
master_key_file = "k"
audit_log = "a"
[[caller]]
name = "x"
allow = ["peek:pan"]
"#,
    )
    .unwrap();
    let out = veil(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["vault.listen:", "vault.store:", "caller[0]: needs", "caller[0].allow[0]:"] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let out = veil(&["check", "-c", "/nonexistent/veil.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_refuses_a_missing_master_key_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("veil.toml");
    let d = dir.path().display();
    std::fs::write(
        &cfg,
        format!("[vault]\nlisten = \"127.0.0.1:0\"\nstore = \"sqlite://{d}/v.db\"\nmaster_key_file = \"{d}/missing.key\"\naudit_log = \"{d}/a.jsonl\"\n"),
    )
    .unwrap();
    let out = veil(&["run", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.key"));
}
