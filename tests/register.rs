//! `veil register`: the Art. 30 record from the shipped config and from a richer one — every section and the
//! rows each route, class, recipient and caller produce; no secret in the output; exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn veil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().unwrap()
}

fn register(config: &std::path::Path) -> String {
    let out = veil(&["register", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The cells of the table row whose first cell is `first`, within the section headed `section`.
fn row(md: &str, section: &str, first: &str) -> Vec<String> {
    let start = md.find(section).unwrap_or_else(|| panic!("no section {section:?} in\n{md}"));
    let rest = &md[start + section.len()..];
    let body = &rest[..rest.find("\n#").unwrap_or(rest.len())];
    let prefix = format!("| {first} |");
    let line = body.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row {first:?} in {body}"));
    line.trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect()
}

const SECTIONS: &[&str] = &[
    "# Record of processing activities (GDPR Art. 30)",
    "## Processing activities (routes)",
    "## Categories of personal data and retention",
    "## Recipients",
    "## Vault API callers and their rights",
    "## Technical and organisational measures (Art. 32)",
];

#[test]
fn shipped_config_gives_every_section_and_row() {
    let cfg = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/veil.toml"));
    let md = register(cfg);
    for s in SECTIONS {
        assert!(md.contains(s), "missing {s}");
    }
    assert!(row(&md, "# Record", "Controller")[1].starts_with('_'), "controller is a placeholder");
    let route = "### Route `checkout`";
    assert_eq!(row(&md, route, "Requests")[1], "POST `/checkout`");
    assert!(row(&md, route, "Purpose")[1].contains("not stated"));
    assert!(row(&md, route, "Mode")[1].starts_with("enforce"));
    assert!(row(&md, route, "Detection")[1].starts_with("pan, iban"));
    assert!(row(&md, route, "Subject linking")[1].contains("JSON `$.customer.id`"));
    assert_eq!(row(&md, route, "JSON `$.card.number`")[1], "pan");
    assert!(row(&md, route, "JSON `$.card.number`")[2].starts_with("tokenize"));
    assert_eq!(row(&md, route, "form field `iban`")[1], "iban");
    assert!(row(&md, route, "JSON `$.customer.birth_date`")[2].starts_with("drop"));

    let classes = "## Categories";
    let pan = row(&md, classes, "pan");
    assert_eq!(pan[2], "keep-bin-last4");
    assert_eq!(pan[3], "not set (kept until erased)");
    assert!(pan[4].contains("routes `checkout`") && pan[4].contains("`payments`"), "{pan:?}");
    assert_eq!(row(&md, classes, "iban")[2], "keep-bank");
    assert!(!row(&md, classes, "phone")[4].contains("checkout"));

    let upstream = row(&md, "## Recipients", "the application behind the proxy (upstream)");
    assert_eq!(upstream[2], "http://127.0.0.1:8080");

    let callers = "## Vault API callers";
    let payments = row(&md, callers, "`payments`");
    assert_eq!(payments[1], "API key");
    assert_eq!(
        payments[3],
        "`tokenize:*`, `detokenize:pan`, `detokenize:cvc`, `detokenize:iban`, `detokenize:name`, `detokenize:phone`, \
         `mask:*`"
    );
    assert_eq!(payments[4], "pan, iban, phone, name, cvc");
    assert_eq!(row(&md, callers, "`app`")[4], "nothing");

    let tom = "## Technical";
    assert!(row(&md, tom, "Encryption at rest")[1].contains("AES-256-GCM-SIV"));
    assert!(row(&md, tom, "Lookups")[1].contains("HMAC-SHA256"));
    assert!(row(&md, tom, "Accountability")[1].contains("`data/audit.jsonl`"));
    assert!(row(&md, tom, "Encryption in transit")[1].contains("plain HTTP on loopback only"));
    // The callers' key hashes are configuration secrets' fingerprints: never in the record.
    assert!(!md.contains("5181bf7b72b66a9c") && !md.contains("a0c9d970cbb04542"));
}

const RICH: &str = r#"
[proxy]
listen = "127.0.0.1:0"
upstream = "https://svc:upstream-pw@app.internal:8443"
[proxy.tls]
cert = "certs/proxy.crt"
key = "certs/proxy.key"

[vault]
listen = "0.0.0.0:8444"
store = "postgres://veil:db-pw-123@db.internal/veil"
master_key_file = "keys/master.key"
audit_log = "/var/log/veil/audit.jsonl"
[vault.tls]
cert = "certs/vault.crt"
key = "certs/vault.key"
client_ca = "certs/ca.pem"

[[caller]]
name = "support"
tls_identity = "spiffe://shop/support"
allow = ["mask:*", "export:*", "erase:*"]
purpose = "answer access | erasure requests"

[[caller]]
name = "auditor"
api_key_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
tls_identity = "spiffe://shop/auditor"

[class.pan]
format = "last4-reserved"

[[route]]
name = "signup"
match = { methods = ["POST", "put"], path = "/account/*" }
purpose = "customer account creation"
fields = [
  { json = "$.name", class = "name", action = "mask" },
  { json = "$..phone", class = "phone" },
  { xml = "/Envelope/Body/address", class = "address", action = "encrypt" },
  { header = "x-ssn", action = "reject" },
  { query = "email", class = "email" },
  { multipart = "card", class = "pan" },
]
subject = { header = "x-customer" }

[[egress]]
name = "psp"
listen = "127.0.0.1:0"
upstream = "https://api.psp.example"
caller = "support"
fields = [ { json = "$.source.number", class = "pan" } ]
purpose = "card-payment:capture"

[[route]]
name = "notes"
match = { path = "/notes" }
mode = "observe"
detect = ["email", "phone"]
"#;

#[test]
fn richer_config_shows_every_selector_action_mode_and_transport_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rich.toml");
    std::fs::write(&cfg, RICH).unwrap();
    let md = register(&cfg);
    for s in SECTIONS {
        assert!(md.contains(s), "missing {s}");
    }
    let signup = "### Route `signup`";
    assert_eq!(row(&md, signup, "Requests")[1], "POST, PUT paths starting with `/account/`");
    assert_eq!(row(&md, signup, "Purpose")[1], "customer account creation");
    assert_eq!(row(&md, signup, "Detection")[1], "none");
    assert!(row(&md, signup, "Subject linking")[1].contains("header `x-customer`"));
    for (field, class, action) in [
        ("JSON `$.name`", "name", "mask"),
        ("JSON `$..phone`", "phone", "tokenize"),
        ("XML element `/Envelope/Body/address`", "address", "encrypt"),
        ("header `x-ssn`", "-", "reject"),
        ("query parameter `email`", "email", "tokenize"),
        ("multipart part `card`", "pan", "tokenize"),
    ] {
        let r = row(&md, signup, field);
        assert_eq!(r[1], class, "{field}");
        assert!(r[2].starts_with(action), "{field}: {r:?}");
    }
    let notes = "### Route `notes`";
    assert_eq!(row(&md, notes, "Requests")[1], "any method `/notes`");
    assert!(row(&md, notes, "Mode")[1].starts_with("observe"));
    assert!(row(&md, notes, "Detection")[1].starts_with("email, phone"));
    assert!(row(&md, notes, "Subject linking")[1].starts_with("none"));
    assert!(md.contains("No named fields."));

    let classes = "## Categories";
    assert_eq!(row(&md, classes, "pan")[2], "last4-reserved");
    assert_eq!(row(&md, classes, "phone")[4], "routes `signup`, `notes`");
    assert_eq!(row(&md, classes, "pan")[4], "routes `signup`; egress `psp`");
    assert_eq!(row(&md, classes, "iban")[4], "egress `psp`", "the provider's replies are scanned for IBANs");
    assert!(!md[md.find(classes).unwrap()..].contains("| text |"), "no route, egress or caller processes text");

    let recipients = "## Recipients";
    assert_eq!(row(&md, recipients, "the application behind the proxy (upstream)")[2], "https://app.internal:8443");
    let psp = row(&md, recipients, "egress `psp`");
    assert_eq!(psp[2], "https://api.psp.example");
    for part in ["JSON `$.source.number` (pan)", "caller `support`", "\"card-payment:capture\"", "pan, iban values"] {
        assert!(psp[1].contains(part), "{part} not in {psp:?}");
    }

    let callers = "## Vault API callers";
    let support = row(&md, callers, "`support`");
    assert_eq!(support[1], "client certificate");
    assert_eq!(support[2], "answer access \\| erasure requests", "a pipe cannot break the table");
    assert_eq!(support[4], "nothing");
    let auditor = row(&md, callers, "`auditor`");
    assert_eq!(auditor[1], "API key or client certificate");
    assert_eq!((auditor[3].as_str(), auditor[4].as_str()), ("none", "nothing"));

    let tom = "## Technical";
    let transit = &row(&md, tom, "Encryption in transit")[1];
    assert!(transit.contains("TLS 1.2/1.3") && transit.contains("mTLS"), "{transit}");
    assert!(row(&md, tom, "Encryption at rest")[1].contains("PostgreSQL"));
    assert!(row(&md, tom, "Access control")[1].starts_with("2 caller(s)"));
    for secret in
        ["upstream-pw", "db-pw-123", "db.internal", "0000000000000000000000000000000000000000000000000000000000000001"]
    {
        assert!(!md.contains(secret), "{secret} in the record");
    }
}

#[test]
fn bad_or_missing_config_exits_2_with_the_problem_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    let text = RICH.replace("purpose = \"customer account creation\"", "purpose = \"  \"");
    std::fs::write(&cfg, text).unwrap();
    let out = veil(&["register", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("route[0].purpose: must not be empty"));
    assert!(out.stdout.is_empty(), "no partial record");

    std::fs::write(&cfg, RICH.replace("[[caller]]\nname = \"support\"", "[[caller]]\nname = \"support\"\nbogus = 1"))
        .unwrap();
    let out = veil(&["register", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));

    let out = veil(&["register", "-c", dir.path().join("none.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}
