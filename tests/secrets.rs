//! No secrets in output: a `veil run` process logging at debug level is driven through every kind of request —
//! each body format, each ingress and egress refusal, every vault API call and denial — then stopped; every log
//! line it wrote, every error body it answered and its metrics are scanned for the seeded values (in each
//! layout they were sent), the tokens it issued, the API keys and the master key: zero hits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::smtp;
use common::tls_app::TlsApp;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

const PAN: &str = "4111111111111111";
const PAN_SPACED: &str = "4111 1111 1111 1111";
const PAN2: &str = "5500000000000004";
const BAD_PAN: &str = "4111111111111112";
const IBAN: &str = "DE89370400440532013000";
const EMAIL: &str = "secret.person@example.org";
const PHONE: &str = "+491701234567";
const NAME: &str = "Zacharias Quux";
const NOTE: &str = "allergic to peanuts";
const SSN: &str = "078-05-1120";
const WRONG_KEY: &str = "wrong-key-never-to-be-logged";
const CVC: &str = "8642";

const ROUTES: &str = r#"
[[route]]
name = "checkout"
match = { methods = ["POST"], path = "/checkout" }
fields = [
  { json = "$.card.number", class = "pan" },
  { json = "$.card.cvc", class = "cvc", bind = "$.card.number" },
  { json = "$.customer.email", class = "email" },
  { json = "$.customer.phone", class = "phone" },
  { json = "$..iban", class = "iban" },
  { json = "$.customer.name", class = "name", action = "mask" },
  { json = "$.customer.note", class = "text", action = "encrypt" },
  { json = "$.customer.ssn", action = "reject" },
  { header = "x-card", class = "pan" },
]
detect = ["pan", "iban", "email", "phone"]

[[route]]
name = "form"
match = { path = "/form" }
fields = [ { form = "card", class = "pan" }, { form = "iban", class = "iban" } ]

[[route]]
name = "upload"
match = { path = "/upload" }
fields = [ { multipart = "card", class = "pan" } ]

[[route]]
name = "soap"
match = { path = "/soap" }
fields = [ { xml = "card/number", class = "pan" } ]

[[route]]
name = "notes"
match = { path = "/notes/*" }
detect = ["pan", "iban", "email", "phone"]

[[route]]
name = "admin"
match = { path = "/admin/*" }
reveal = { classes = ["pan", "email", "iban"], identity = { header = "x-staff", trusted = ["127.0.0.1/32"] } }

[[caller]]
name = "staff"
allow = ["detokenize:*"]
"#;

/// A spawned `veil run` whose stderr is kept, line by line.
struct Spawned {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    addrs: HashMap<String, SocketAddr>,
}

async fn spawn(config: &std::path::Path) -> Spawned {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["run", "-c"])
        .arg(config)
        .env("VEIL_LOG", "debug")
        .env("RUST_BACKTRACE", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
    }
    // Listening lines: "<what> listening … addr=ADDR" (or addr=Some(ADDR)), egress lines name their route.
    let addrs = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let found: HashMap<String, SocketAddr> = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(" listening"))
                .filter_map(|l| {
                    let addr = l.split("addr=").nth(1)?.split_whitespace().next()?;
                    let addr = addr.trim_start_matches("Some(").trim_end_matches(')').parse().ok()?;
                    let what = if l.contains("egress listening") {
                        "egress".to_owned()
                    } else if l.contains("smtp listening") {
                        format!("smtp:{}", l.split("smtp=").nth(1)?.split_whitespace().next()?)
                    } else {
                        l.split(" listening").next()?.split_whitespace().last()?.to_owned()
                    };
                    Some((what, addr))
                })
                .collect();
            if found.len() == 6 {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("veil did not start in time:\n{}", lines.lock().unwrap().join("\n")));
    Spawned { child, lines, addrs }
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: String) -> (u16, Bytes) {
    let mut req = hyper::Request::builder().method(method).uri(format!("http://{addr}{path}")).header("host", "shop");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, _, body) =
        send_request(addr, None, false, req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_token_or_key_appears_in_logs_errors_or_metrics() {
    // The app answers its admin pages with what it was sent (tokens), everything else with {"ok":true}.
    let app = App::start_with(Arc::new(|seen: &Seen| {
        if seen.uri.starts_with("/admin") {
            seen.body.clone()
        } else {
            Bytes::from_static(b"{\"ok\":true}")
        }
    }))
    .await;
    let ca_dir = tempfile::tempdir().unwrap();
    Pki::new(ca_dir.path());
    // Two mail servers: one that takes everything, one that refuses the customer, echoing the address.
    let mail_ok = smtp::FakeUpstream::start(ca_dir.path(), smtp::FakeOptions { starttls: true, refuse_rcpt: None });
    let refusing = smtp::FakeOptions { starttls: true, refuse_rcpt: Some("secret.person".into()) };
    let mail_refusing = smtp::FakeUpstream::start(ca_dir.path(), refusing);
    let (mail_ok, mail_refusing) = (mail_ok.await, mail_refusing.await);
    let provider = TlsApp::start_with(
        ca_dir.path(),
        Arc::new(|seen: &Seen| {
            // Echo everything back, as a chatty provider would.
            (200, vec![("content-type", "application/json".into())], seen.body.clone())
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_body_bytes = 4096\n{}\n{ROUTES}\n\
         [[egress]]\nname = \"psp\"\nlisten = \"127.0.0.1:0\"\nupstream = \"https://{}\"\nca = \"{ca}\"\n\
         caller = \"payments\"\nfields = [ {{ json = \"$.source.number\", class = \"pan\" }},\n\
         {{ json = \"$.source.cvc\", class = \"cvc\", bind = \"$.source.number\" }} ]\n\
         [[smtp]]\nname = \"mail\"\nlisten = \"127.0.0.1:0\"\nupstream = \"smtp://{}\"\nca = \"{ca}\"\n\
         caller = \"payments\"\n\
         [[smtp]]\nname = \"mail-refusing\"\nlisten = \"127.0.0.1:0\"\nupstream = \"smtp://{}\"\nca = \"{ca}\"\n\
         caller = \"payments\"\n",
        app.addr,
        config_text(dir.path(), false, None),
        provider.addr,
        mail_ok.addr,
        mail_refusing.addr,
        ca = ca_dir.path().join("ca.pem").display()
    );
    let config = dir.path().join("veil.toml");
    std::fs::write(&config, text).unwrap();
    let mut veil = spawn(&config).await;
    let (proxy, vault, admin, egress) =
        (veil.addrs["proxy"], veil.addrs["API"], veil.addrs["admin"], veil.addrs["egress"]);
    let answers: std::cell::RefCell<Vec<String>> = Default::default();
    // Error bodies are kept for the scan (a 200's body is the app's or the provider's, tokens included).
    let keep = |(status, body): (u16, Bytes)| {
        if status != 200 {
            answers.borrow_mut().push(String::from_utf8_lossy(&body).into_owned());
        }
        status
    };
    let json_ct = [("content-type", "application/json")];

    // Ingress: every body format, then every refusal.
    let checkout = json!({"card": {"number": PAN_SPACED, "cvc": CVC}, "customer": {"email": EMAIL, "phone": PHONE, "name": NAME,
        "note": NOTE, "iban": IBAN}, "comment": format!("second card {PAN2}")});
    let ok = keep(
        send(
            proxy,
            "POST",
            "/checkout",
            &[("content-type", "application/json"), ("x-card", PAN)],
            checkout.to_string(),
        )
        .await,
    );
    assert_eq!(ok, 200);
    // The back office: the staff member's page shows the values; nothing of them reaches a log or a metric.
    let stored: Value = serde_json::from_slice(&app.requests().last().unwrap().body).unwrap();
    let page =
        format!("{} {}", stored["card"]["number"].as_str().unwrap(), stored["customer"]["email"].as_str().unwrap());
    let (status, shown) = send(proxy, "POST", "/admin/page", &[("x-staff", "staff")], page.clone()).await;
    assert_eq!((status, String::from_utf8_lossy(&shown).into_owned()), (200, format!("{PAN_SPACED} {EMAIL}")));
    let (_, unshown) = send(proxy, "POST", "/admin/page", &[], page.clone()).await;
    assert_eq!(String::from_utf8_lossy(&unshown), page, "no identity: tokens");
    let form_ct = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(keep(send(proxy, "POST", "/form", &form_ct, format!("card={PAN}&iban={IBAN}")).await), 200);
    let multipart = format!("--b\r\nContent-Disposition: form-data; name=\"card\"\r\n\r\n{PAN}\r\n--b--\r\n");
    assert_eq!(
        keep(send(proxy, "POST", "/upload", &[("content-type", "multipart/form-data; boundary=b")], multipart).await),
        200
    );
    let xml = format!("<order><card><number>{PAN}</number></card></order>");
    assert_eq!(keep(send(proxy, "POST", "/soap", &[("content-type", "application/xml")], xml).await), 200);
    let note = format!("call {PHONE} or mail {EMAIL}, card {PAN_SPACED}, iban {IBAN}");
    assert_eq!(keep(send(proxy, "POST", "/notes/1", &[("content-type", "text/plain")], note).await), 200);
    let refusals = [
        (json!({"card": {"number": BAD_PAN}}).to_string(), 422),
        (json!({"card": {"number": PAN}, "customer": {"ssn": SSN}}).to_string(), 422),
        (format!("{{\"card\": {{\"number\": \"{PAN}\"}}, \"x\": {EMAIL}"), 400),
        (json!({"card": {"number": PAN}, "pad": "x".repeat(5000)}).to_string(), 413),
    ];
    for (body, expected) in refusals {
        assert_eq!(keep(send(proxy, "POST", "/checkout", &json_ct, body).await), expected);
    }
    let (status, _) = send(proxy, "POST", "/checkout", &[("content-type", "text/csv")], format!("{PAN},{EMAIL}")).await;
    assert_eq!(status, 415);

    // Vault API: every operation and denial.
    let client = Client::plain(vault);
    let items = json!({"items": [{"class": "pan", "value": PAN}, {"class": "iban", "value": IBAN}]});
    let (status, body) = client.post_json("/v1/tokenize", APP_KEY, &items).await;
    assert_eq!(status, 200);
    let token = body["items"][0]["token"].as_str().unwrap().to_owned();
    let iban_token = body["items"][1]["token"].as_str().unwrap().to_owned();
    let reveal = json!({"items": [{"class": "pan", "token": token}]});
    for (path, key, expected) in [
        ("/v1/detokenize", PAYMENTS_KEY, 200),
        ("/v1/mask", APP_KEY, 200),
        ("/v1/detokenize", APP_KEY, 403),
        ("/v1/detokenize", WRONG_KEY, 401),
    ] {
        let (status, body) = client.post_json(path, key, &reveal).await;
        assert_eq!(status, expected, "{path}");
        if status != 200 {
            answers.borrow_mut().push(body.to_string());
        }
    }
    let (status, body) =
        client.post_json("/v1/tokenize", APP_KEY, &json!({"items": [{"class": "pan", "value": BAD_PAN}]})).await;
    assert_eq!(status, 422);
    answers.borrow_mut().push(body.to_string());

    // Egress: a payment with the checkout's card and CVC, the CVC again (used), an unknown token.
    let stored: Value = serde_json::from_slice(&app.requests()[0].body).unwrap();
    let (card, placeholder) = (stored["card"]["number"].as_str().unwrap(), stored["card"]["cvc"].as_str().unwrap());
    let pay = |number: &str| json!({"source": {"number": number, "cvc": placeholder}, "amount": 5}).to_string();
    assert_eq!(keep(send(egress, "POST", "/pay", &json_ct, pay(card)).await), 200);
    assert_eq!(keep(send(egress, "POST", "/pay", &json_ct, pay(card)).await), 422, "the CVC was used");
    let unknown = random_pan("411111", 16);
    assert_eq!(keep(send(egress, "POST", "/pay", &json_ct, pay(&unknown)).await), 422);
    assert_eq!(provider.requests().len(), 1);
    let sent: Value = serde_json::from_slice(&provider.requests()[0].1.body).unwrap();
    assert_eq!(sent["source"]["cvc"].as_str(), Some(CVC), "the provider got the CVC");

    // SMTP: the customer's e-mail token as recipient and in the message (revealed, with their phone token), the
    // same message to a server that refuses the customer (its echo of the address scrubbed), an unknown token.
    let (status, body) = client
        .post_json(
            "/v1/tokenize",
            APP_KEY,
            &json!({"items": [{"class": "email", "value": EMAIL}, {"class": "phone", "value": PHONE}], "subject": "cust-9"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (email_token, phone_token) = (
        body["items"][0]["token"].as_str().unwrap().to_owned(),
        body["items"][1]["token"].as_str().unwrap().to_owned(),
    );
    let message = format!("To: {email_token}\r\nSubject: order\r\n\r\nWe call {phone_token}; mail {email_token}.\r\n");
    let mut smtp_answers = Vec::new();
    for (listener, expected) in [("smtp:mail", 250), ("smtp:mail-refusing", 550)] {
        let (mut c, _) = smtp::connect(veil.addrs[listener]).await;
        c.cmd("EHLO shop.example").await;
        let answer = c.mail("orders@shop.example", &[email_token.as_str()], &message).await;
        assert_eq!(answer.0, expected, "{listener}: {answer:?}");
        smtp_answers.push(answer.1);
        assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 250);
        let unknown = c.cmd("RCPT TO:<nobody1234@example.com>").await;
        assert_eq!(unknown.0, 550, "{unknown:?}");
        smtp_answers.push(unknown.1);
    }
    let delivered = String::from_utf8(mail_ok.messages()[0].2.clone()).unwrap();
    assert!(delivered.contains(EMAIL) && delivered.contains(PHONE), "{delivered}");
    assert!(mail_refusing.messages().is_empty());
    for answer in &smtp_answers {
        assert!(!answer.contains(EMAIL) && !answer.contains(PHONE), "a value in an SMTP reply: {answer}");
    }
    let smtp_tokens = [email_token, phone_token];

    let (_, metrics) = get(admin, "/metrics").await;

    // Stop it the way operators do, so shutdown logging is scanned too.
    let pid = veil.child.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), veil.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = veil.lines.lock().unwrap().join("\n");
    assert!(logs.contains("request refused") && logs.contains("DEBUG"), "the scan must see real logs:\n{logs}");
    assert!(!logs.contains("panicked"), "{logs}");

    let mut tokens: Vec<String> = vec![token, iban_token];
    for seen in app.requests() {
        let body = String::from_utf8_lossy(&seen.body).into_owned();
        if let Ok(v) = serde_json::from_str::<Value>(&body) {
            tokens.extend(v["card"]["number"].as_str().map(str::to_owned));
            tokens.extend(v["customer"]["email"].as_str().map(str::to_owned));
            tokens.extend(v["customer"]["iban"].as_str().map(str::to_owned));
        }
    }
    let master_key = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let key_hex: Vec<&str> = master_key
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert!(!key_hex.is_empty());
    let mut secrets: Vec<String> =
        [PAN, PAN_SPACED, PAN2, BAD_PAN, IBAN, EMAIL, PHONE, NAME, NOTE, SSN, PAYMENTS_KEY, APP_KEY, WRONG_KEY]
            .iter()
            .map(|s| s.to_string())
            .collect();
    secrets.extend(tokens.iter().filter(|t| t.len() >= 8).cloned());
    secrets.extend(smtp_tokens.iter().cloned());
    secrets.extend(key_hex.iter().map(|h| h.to_string()));
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"cvc\""), "the CVC's reveal is audited (by class and card token fingerprint)");
    let outputs = [
        ("log", logs.as_str()),
        ("metrics", metrics.as_str()),
        ("error bodies", &answers.borrow().join("\n")),
        ("audit log", audit.as_str()),
    ];
    for (what, text) in outputs {
        for s in &secrets {
            let hit = text.lines().find(|l| l.contains(s.as_str()));
            assert!(hit.is_none(), "seeded secret {s:?} appeared in {what}: {}", hit.unwrap_or_default());
        }
        // The CVC is four digits: a hit is one not inside a longer digit run (a timestamp, a fingerprint).
        let alone = |l: &str| {
            l.match_indices(CVC).any(|(i, _)| {
                let before = l[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric());
                let after = l[i + CVC.len()..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
                !before && !after
            })
        };
        assert!(text.lines().all(|l| !alone(l)), "the CVC appeared in {what}");
    }
}
