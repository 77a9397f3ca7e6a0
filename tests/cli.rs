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

/// Every `.toml` under config/ (recursively), sorted.
fn shipped_configs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            shipped_configs(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn check_accepts_every_shipped_config() {
    let mut files = Vec::new();
    shipped_configs(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), &mut files);
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    for must in
        ["config/veil.toml", "config/split/proxy.toml", "config/split/vault.toml", "config/providers/card-form.toml"]
    {
        assert!(names.iter().any(|n| n.ends_with(must)), "{must} missing from {names:?}");
    }
    // Provider snippets (config/providers/) are meant to be appended to veil.toml: checked that way.
    let base = std::fs::read_to_string(files.iter().find(|f| f.ends_with("config/veil.toml")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in &files {
        let checked = match f.parent().is_some_and(|p| p.ends_with("providers")) {
            false => f.clone(),
            true => {
                let joined = dir.path().join(f.file_name().unwrap());
                std::fs::write(&joined, format!("{base}\n{}", std::fs::read_to_string(f).unwrap())).unwrap();
                joined
            }
        };
        let out = veil(&["check", "-c", checked.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
        // No shipped config hands out a token a stranger could receive mail or a call at, or one that cannot be
        // found again in the mail and pages the app renders.
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!said.contains("keep-domain") && !said.contains("keep-country"), "{}: {said}", f.display());
        let cfg = veil::config::parse(&std::fs::read_to_string(&checked).unwrap()).unwrap();
        if cfg.vault.is_some() {
            for class in [veil::domain::Class::Email, veil::domain::Class::Phone, veil::domain::Class::Name] {
                assert!(cfg.formats.distinguishable(class), "{}: {class} tokens", f.display());
            }
        }
    }
}

#[test]
fn each_command_refuses_a_config_that_lacks_what_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let vault = format!(
        "[vault]\nlisten = \"0.0.0.0:0\"\nstore = \"sqlite://{d}/v.db\"\nmaster_key_file = \"{d}/k\"\naudit_log = \"{d}/a\"\n\
         [vault.tls]\ncert = \"{d}/c.pem\"\nkey = \"{d}/k.pem\"\n"
    );
    let vault_cfg = dir.path().join("vault.toml");
    std::fs::write(&vault_cfg, &vault).unwrap();
    let proxy_cfg = dir.path().join("proxy.toml");
    std::fs::write(&proxy_cfg, "[vault_client]\nurl = \"http://127.0.0.1:1\"\napi_keys = { proxy = \"p.key\" }\n")
        .unwrap();
    let cases: [(&str, &std::path::PathBuf, &str); 4] = [
        ("vault", &vault_cfg, "vault.tls.client_ca: `veil vault` on a non-loopback address needs"),
        ("proxy", &vault_cfg, "vault_client: `veil proxy` needs a [vault_client] section"),
        ("proxy", &proxy_cfg, "proxy: `veil proxy` needs a [proxy] section, [[egress]] routes or [[smtp]] listeners"),
        ("run", &proxy_cfg, "vault: `veil run` needs a [vault] section"),
    ];
    for (cmd, cfg, needle) in cases {
        let out = veil(&[cmd, "-c", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains(needle), "{cmd}: missing {needle:?} in {err}");
    }
}

#[test]
fn veil_proxy_names_the_file_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let key = dir.path().join("proxy-encrypt.key");
    assert!(veil(&["keygen", "--encrypt-only", "--out", key.to_str().unwrap()]).status.success());
    let cfg = dir.path().join("proxy.toml");
    let write = |client: &str| {
        std::fs::write(
            &cfg,
            format!("[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n[vault_client]\n{client}\n"),
        )
        .unwrap()
    };
    let cases = [
        (
            format!("url = \"https://127.0.0.1:1\"\ncert = \"{d}/none.pem\"\nkey = \"{d}/none.key\"\nencrypt_key_file = \"{d}/proxy-encrypt.key\""),
            "none.pem",
        ),
        (
            format!("url = \"http://127.0.0.1:1\"\nencrypt_key_file = \"{d}/proxy-encrypt.key\"\napi_keys = {{ proxy = \"{d}/proxy.key\" }}"),
            "vault_client.api_keys.proxy:",
        ),
        (
            format!("url = \"http://127.0.0.1:1\"\nencrypt_key_file = \"{d}/gone.key\"\napi_keys = {{ proxy = \"{d}/proxy.key\" }}"),
            "gone.key",
        ),
    ];
    for (client, needle) in cases {
        write(&client);
        let out = veil(&["proxy", "-c", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    // The vault's audit log belongs to the vault's config.
    let out = veil(&["audit", "verify", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the [vault] section"));
}

/// `veil try -c CONFIG ARGS…` run in an empty directory (where a config's relative store would be), `stdin` as
/// its input; its output and that directory.
fn run_try(config: &std::path::Path, args: &[&str], stdin: &str) -> (std::process::Output, tempfile::TempDir) {
    use std::io::Write;
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["try", "-c", config.to_str().unwrap()])
        .args(args)
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    (child.wait_with_output().unwrap(), cwd)
}

/// `veil try` with the shipped config.
fn veil_try(args: &[&str], stdin: &str) -> (std::process::Output, tempfile::TempDir) {
    run_try(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/veil.toml")), args, stdin)
}

#[test]
fn try_shows_what_the_app_would_receive_and_what_hit_where() {
    let body = r#"{"card":{"number":"4111 1111 1111 1111"},"customer":{"email":"jane@example.org","birth_date":"1990-01-01"},"comment":"other card 5500 0000 0000 0004"}"#;
    let (out, cwd) = veil_try(&["--route", "checkout", "-"], body);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("POST /checkout HTTP/1.1"), "{stdout}");
    assert!(!stdout.contains("4111 1111 1111 1111") && !stdout.contains("5500 0000 0000 0004"), "{stdout}");
    assert!(!stdout.contains("jane@example.org") && !stdout.contains("birth_date"), "{stdout}");
    for row in [
        ("json $.card.number", "pan", "tokenize"),
        ("json $.customer.birth_date", "-", "drop"),
        ("detected value", "pan", "tokenize"),
    ] {
        let line = stderr.lines().find(|l| l.contains(row.0) && l.contains(row.1) && l.ends_with(row.2));
        assert!(line.is_some_and(|l| l.starts_with("body")), "{row:?} missing in\n{stderr}");
    }
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "veil try wrote nothing where it ran");
}

#[test]
fn try_exits_2_with_the_proxys_error_where_it_would_refuse() {
    let (out, _) = veil_try(&["--route", "checkout", "-"], r#"{"card":{"number":"4111111111111112"}}"#);
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["code"], "invalid_value");
    let (out, _) = veil_try(&["--route", "nope"], "");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // A path no route takes is scanned by the unmatched policy, as the proxy would.
    let (out, _) = veil_try(&["--path", "/elsewhere", "--content-type", "text/plain", "-"], "card 4111111111111111");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("4111111111111111"));
}

#[test]
fn no_shipped_config_gives_an_email_token_a_strangers_domain() {
    let mut files = Vec::new();
    shipped_configs(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), &mut files);
    let mut checked = 0;
    for f in files.iter().filter(|f| !f.parent().is_some_and(|p| p.ends_with("providers"))) {
        let cfg = veil::config::load(f).unwrap();
        if cfg.vault.is_none() {
            continue; // a proxy-only config: its vault's config decides the formats
        }
        let format = cfg.formats.email;
        assert!(
            matches!(
                format,
                veil::token::email::EmailFormat::Relay(_) | veil::token::email::EmailFormat::ReservedDomain
            ),
            "{}: email format {format:?} could address a stranger",
            f.display()
        );
        // A token drawn under it is an address at the operator's (or a reserved) domain.
        let mut rng = rand::thread_rng();
        let token = veil::token::email::generate("jane.doe@gmail.com", format, 0, &mut rng);
        assert!(!token.ends_with("@gmail.com"), "{token}");
        // And a phone token rings nobody: a fiction range or the operator's block.
        let phone = cfg.formats.phone;
        assert!(matches!(phone, veil::token::phone::PhoneFormat::ReservedRange(_)), "{}: {phone:?}", f.display());
        let token = veil::token::phone::generate("+4917012345678", phone, 0, &mut rng);
        assert!(!token.starts_with("+49"), "{token}");
        checked += 1;
    }
    assert!(checked >= 3, "veil.toml, webshop.toml and split/vault.toml at least");
}

#[test]
fn check_warns_where_a_token_could_reach_a_stranger() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/veil.toml")).unwrap();
    let risky =
        base.replace("format = \"relay\"\nrelay_domain = \"customers.shop.example\"", "format = \"keep-domain\"");
    assert_ne!(risky, base);
    let path = dir.path().join("risky.toml");
    std::fs::write(&path, risky).unwrap();
    let out = veil(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning is not an error: {stderr}");
    assert!(stderr.contains("warning: class.email.format: keep-domain") && stderr.contains("stranger"), "{stderr}");
    let risky =
        base.replace("format = \"reserved-range\"\nreserved_prefix = \"+44 1632\"", "format = \"keep-country\"");
    std::fs::write(&path, risky).unwrap();
    let out = veil(&["check", "-c", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: class.phone.format: keep-country"));
    for (bad, problem) in [
        ("format = \"reserved-range\"", "class.phone.format: the reserved-range format needs reserved_prefix"),
        ("format = \"reserved-range\"\nreserved_prefix = \"1632\"", "class.phone.reserved_prefix"),
    ] {
        let text = base.replace("format = \"reserved-range\"\nreserved_prefix = \"+44 1632\"", bad);
        std::fs::write(&path, text).unwrap();
        let out = veil(&["check", "-c", path.to_str().unwrap()]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(problem), "{bad}");
    }
    for (bad, problem) in [
        ("format = \"relay\"\nrelay_domain = \"customers.shop.example\"", ""),
        ("format = \"relay\"", "class.email.format: the relay format needs relay_domain"),
        ("format = \"relay\"\nrelay_domain = \"not a domain\"", "class.email.relay_domain"),
        (
            "format = \"relay\"\nrelay_domain = \"customers.shop.example\"\nreserved_prefix = \"+44 1632\"",
            "class.email.reserved_prefix",
        ),
    ] {
        let text = base.replace("format = \"relay\"\nrelay_domain = \"customers.shop.example\"", bad);
        std::fs::write(&path, text).unwrap();
        let out = veil(&["check", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), problem.is_empty(), "{bad}: {stderr}");
        assert!(stderr.contains(problem), "{bad}: {stderr}");
    }
}

/// Routes with every selector kind and every refusal, for `veil try` (its vault section is never opened).
const TRY_CONFIG: &str = r#"
[proxy]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:1"
unmatched = "refuse"
max_body_bytes = 4096
max_values_per_request = 3

[vault]
listen = "127.0.0.1:0"
store = "sqlite://never/used.db"
master_key_file = "never/used.key"
audit_log = "never/used.jsonl"

[[route]]
name = "json"
match = { path = "/json" }
fields = [ { json = "$.card", class = "pan" }, { json = "$.ssn", action = "reject" } ]

[[route]]
name = "form"
match = { path = "/form" }
fields = [ { form = "card[number]", class = "pan" } ]

[[route]]
name = "multipart"
match = { path = "/multipart" }
fields = [ { multipart = "card", class = "pan" } ]

[[route]]
name = "xml"
match = { path = "/xml" }
fields = [ { xml = "order/card", class = "pan" } ]

[[route]]
name = "header"
match = { path = "/header" }
fields = [ { header = "x-card", class = "pan" } ]

[[route]]
name = "query"
match = { path = "/query" }
fields = [ { query = "card", class = "pan" } ]

[[route]]
name = "notes"
match = { path = "/notes" }
detect = ["pan"]
"#;

/// `veil try` on [`TRY_CONFIG`], the body from standard input: exit code, stdout, stderr.
fn try_on(args: &[&str], body: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("try.toml");
    std::fs::write(&config, TRY_CONFIG).unwrap();
    let args: Vec<&str> = args.iter().copied().chain(["-"]).collect();
    let (out, cwd) = run_try(&config, &args, body);
    assert!(!cwd.path().join("never").exists(), "the configured store was never opened");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn try_reads_every_selector_kind() {
    const PAN: &str = "4111111111111111";
    let multipart = format!("--b\r\nContent-Disposition: form-data; name=\"card\"\r\n\r\n{PAN}\r\n--b--\r\n");
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (vec!["--path".into(), "/json".into()], format!(r#"{{"card":"{PAN}"}}"#), "json $.card"),
        (vec!["--path".into(), "/form".into()], format!("card%5Bnumber%5D={PAN}"), "form card[number]"),
        (
            vec![
                "--path".into(),
                "/multipart".into(),
                "--content-type".into(),
                "multipart/form-data; boundary=b".into(),
            ],
            multipart,
            "multipart card",
        ),
        (vec!["--path".into(), "/xml".into()], format!("<order><card>{PAN}</card></order>"), "xml order/card"),
        (
            vec!["--path".into(), "/header".into(), "-H".into(), format!("x-card: {PAN}")],
            String::new(),
            "header x-card",
        ),
        (vec!["--path".into(), format!("/query?card={PAN}")], String::new(), "query card"),
        (
            vec!["--path".into(), "/notes".into(), "--content-type".into(), "text/plain".into()],
            format!("card {PAN}"),
            "detected value",
        ),
    ];
    for (args, body, field) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = try_on(&args, &body);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stdout.contains(PAN), "{args:?}: the card reached the app:\n{stdout}");
        assert!(
            stderr.lines().any(|l| l.contains(field) && l.contains("pan") && l.ends_with("tokenize")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn try_shows_every_refusal_as_the_proxy_answers_it() {
    let many = "4111111111111111 5555555555554444 4000056655665556 378282246310005";
    let big = format!(r#"{{"card":"4111111111111111","pad":"{}"}}"#, "x".repeat(5000));
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (vec!["--path", "/json"], r#"{"card":"4111111111111112"}"#.into(), "invalid_value"),
        (vec!["--path", "/json"], r#"{"card":"4111111111111111","ssn":"078-05-1120"}"#.into(), "field_rejected"),
        (vec!["--path", "/json"], r#"{"card": 4111"#.into(), "malformed_body"),
        (vec!["--path", "/json", "--content-type", "text/csv"], "4111111111111111".into(), "unsupported_media_type"),
        (vec!["--path", "/json"], big, "body_too_large"),
        (vec!["--path", "/notes", "--content-type", "text/plain"], many.into(), "too_many_values"),
        (vec!["--path", "/elsewhere"], String::new(), "no_route"),
        (vec!["--path", "/json%2Fx"], String::new(), "bad_request"),
        (vec!["--method", "CONNECT", "--path", "/json"], String::new(), "method_not_allowed"),
    ];
    for (args, body, code) in cases {
        let (exit, stdout, stderr) = try_on(&args, &body);
        assert_eq!(exit, Some(2), "{args:?}: {stdout} {stderr}");
        let error: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{args:?}: {stdout}"));
        assert_eq!(error["error"]["code"], code, "{args:?}: {stdout}");
    }
}

#[test]
fn keygen_api_key_writes_a_private_key_and_prints_the_hash_the_config_holds() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payments.key");
    let out = veil(&["keygen", "--api-key", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.len(), 43, "32 random bytes, base64url");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("api_key_sha256 = \"{}\"", hex::encode(sha2::Sha256::digest(key.as_bytes())))),
        "{said}"
    );
    assert!(!said.contains(&key), "the key itself is never printed");
    // Never overwritten.
    let again = veil(&["keygen", "--api-key", "--out", path.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
}
