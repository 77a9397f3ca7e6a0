//! Real software on both sides of the `[[smtp]]` listener: Debian's `msmtp` as the shop's mailer (STARTTLS and
//! AUTH PLAIN to veil), a throwaway Debian `postfix` as the mail server (STARTTLS, verified by veil with the test
//! CA) delivering to a Maildir. An order confirmation written with the customer's tokens arrives with the real
//! values; refusals deliver nothing. Skipped, saying why, only when the binaries are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::postfix::{binaries, msmtp, Postfix, DOMAIN};
use common::smtp::{Veil, RELAY};
use common::Pki;

const PASSWORD: &str = "shop-mailer-password-42";

/// Fields drop in order: Postfix is stopped before veil's tempdir (its config and queue) is removed.
struct Mta {
    postfix: Postfix,
    veil: Veil,
    msmtp: std::path::PathBuf,
}

async fn start() -> Option<Mta> {
    let (postfix_bin, msmtp_bin) = match binaries() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let postfix = Postfix::start(&postfix_bin, dir.path(), &["jane.doe"]);
    let d = dir.path().display().to_string();
    let extra = format!(
        "tls = {{ cert = \"{d}/server.pem\", key = \"{d}/server.key\" }}\n\
         auth = {{ username = \"shop\", password_sha256 = \"{}\" }}\n",
        common::sha256_hex(PASSWORD)
    );
    let veil = Veil::start(dir, pki, postfix.addr, &extra).await;
    Some(Mta { postfix, veil, msmtp: msmtp_bin })
}

impl Mta {
    async fn send(&self, to: &[&str], message: String) -> (bool, String) {
        let (bin, dir, addr) = (self.msmtp.clone(), self.veil.dir.path().to_path_buf(), self.veil.smtp());
        let to: Vec<String> = to.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            msmtp(&bin, &dir, addr, Some(("shop", PASSWORD)), "orders@shop.example", &to, message.as_bytes())
        })
        .await
        .unwrap()
    }
}

/// Base64 in lines of 76.
fn base64_lines(text: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    b64.as_bytes().chunks(76).map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap())).collect()
}

/// Quoted-printable (RFC 2045 §6.7): CRLF kept as line breaks, soft breaks before 76 characters.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        let mut width = 0;
        for b in line.bytes() {
            let piece = match b {
                b'=' => "=3D".to_owned(),
                33..=126 | b' ' => char::from(b).to_string(),
                _ => format!("={b:02X}"),
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

/// An order confirmation: (Content-Type and body) for `kind`, each text part in `encoding`.
fn order_mail(kind: &str, encoding: &str, t: &Tokens) -> String {
    let text = format!(
        "Dear {},\r\nthanks for your order 1042. We ship to {}.\r\nWe ring {} on delivery; replies reach you at {}.",
        t.name, t.address, t.phone, t.email
    );
    let html = format!(
        "<p>Dear {},</p><p>We ship to {}.</p><p>Tel. {}, <a href=\"mailto:{e}\">{e}</a></p>",
        t.name,
        t.address,
        t.phone,
        e = t.email
    );
    let encode = |body: &str| match encoding {
        "base64" => base64_lines(body),
        _ => quoted_printable(body),
    };
    let part = |ct: &str, body: &str| {
        format!("Content-Type: {ct}; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{}", encode(body))
    };
    let body = match kind {
        "text/plain" => part("text/plain", &text),
        "text/html" => part("text/html", &html),
        _ => format!(
            "Content-Type: multipart/alternative; boundary=\"b1042\"\r\n\r\n--b1042\r\n{}--b1042\r\n{}--b1042--\r\n",
            part("text/plain", &text),
            part("text/html", &html)
        ),
    };
    format!(
        "From: Shop <orders@shop.example>\r\nTo: {} <{}>\r\nSubject: Order 1042 for {}\r\nMIME-Version: 1.0\r\n{body}",
        t.name, t.email, t.name
    )
}

struct Tokens {
    email: String,
    name: String,
    address: String,
    phone: String,
}

const NAME: &str = "Jane Doe";
const ADDRESS: &str = "Hauptstraße 5, 10115 Berlin";
const PHONE: &str = "+49 170 1234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_confirmation_arrives_with_real_values() {
    let Some(mta) = start().await else { return };
    let email = format!("jane.doe@{DOMAIN}");
    let items = [("email", email.as_str()), ("name", NAME), ("address", ADDRESS), ("phone", PHONE)];
    let mut tokens = mta.veil.tokenize(&items).await.into_iter();
    let mut next = || tokens.next().unwrap();
    let t = Tokens { email: next(), name: next(), address: next(), phone: next() };
    assert!(t.email.ends_with(RELAY) && t.name.starts_with("Zq") && t.address.starts_with("Zx"), "{}", t.name);

    let variants: Vec<(&str, &str)> = ["text/plain", "text/html", "multipart/alternative"]
        .into_iter()
        .flat_map(|k| [(k, "quoted-printable"), (k, "base64")])
        .collect();
    for (kind, encoding) in &variants {
        let (ok, out) = mta.send(&[&t.email], order_mail(kind, encoding, &t)).await;
        assert!(ok, "{kind} {encoding}: msmtp failed: {out}\n{}", mta.postfix.log());
    }
    let delivered = mta.postfix.wait_for("jane.doe", variants.len());
    assert_eq!(delivered.len(), variants.len(), "not all delivered:\n{}", mta.postfix.log());
    let mut seen = Vec::new();
    for raw in &delivered {
        let message = veil::rewrite::mime::Message::parse(raw, &veil::rewrite::mime::Limits::default())
            .unwrap_or_else(|e| panic!("delivered mail is not valid MIME ({e}):\n{}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(raw);
        let kind = ["multipart/alternative", "text/html", "text/plain"]
            .into_iter()
            .find(|k| head.contains(&format!("Content-Type: {k}")))
            .unwrap_or_else(|| panic!("which kind is this?\n{head}"));
        let encoding = ["quoted-printable", "base64"]
            .into_iter()
            .find(|e| head.contains(&format!("Transfer-Encoding: {e}")))
            .unwrap_or_else(|| panic!("which encoding is this?\n{head}"));
        seen.push((kind, encoding));
        let slots = message.slots();
        let bodies: Vec<&veil::rewrite::mime::Slot> =
            slots.iter().filter(|s| matches!(s.place, veil::rewrite::mime::Place::Body { .. })).collect();
        assert_eq!(bodies.len(), if kind == "multipart/alternative" { 2 } else { 1 }, "{kind} {encoding}");
        let to = slots.iter().find(|s| s.place == veil::rewrite::mime::Place::Address("To")).unwrap();
        assert_eq!(to.text, format!("{NAME} <{email}>"), "{kind} {encoding}");
        let subject = slots.iter().find(|s| s.place == veil::rewrite::mime::Place::Subject).unwrap();
        assert_eq!(subject.text, format!("Order 1042 for {NAME}"));
        for body in bodies {
            for value in [NAME, ADDRESS, PHONE, email.as_str()] {
                assert!(body.text.contains(value), "{kind} {encoding}: {value} missing in {}", body.text);
            }
        }
        for token in [&t.email, &t.name, &t.address, &t.phone] {
            assert!(!slots.iter().any(|s| s.text.contains(token.as_str())), "{kind} {encoding}: a token is left");
        }
    }
    seen.sort();
    let mut expected = variants.clone();
    expected.sort();
    assert_eq!(seen, expected, "each kind in each encoding arrived once");
    let log = mta.postfix.log();
    let tls_sessions = log.lines().filter(|l| l.contains(" starttls=1 mail=1 rcpt=1 data=1")).count();
    assert_eq!(tls_sessions, variants.len(), "veil used STARTTLS with postfix for every message:\n{log}");
    let audit = mta.veil.audit();
    assert!(audit.iter().filter(|e| e["caller"] == "mailer" && e["op"] == "detokenize").count() >= 12, "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_deliver_nothing() {
    let Some(mta) = start().await else { return };
    let unknown = format!("nobody123@{RELAY}");
    let message = format!("From: orders@shop.example\r\nTo: {unknown}\r\nSubject: x\r\n\r\nhi\r\n");
    let (ok, out) = mta.send(&[&unknown], message).await;
    assert!(!ok && out.contains("550"), "{out}");
    let big = format!("From: orders@shop.example\r\nSubject: x\r\n\r\n{}", "0123456789abcdef\r\n".repeat(700_000));
    let (ok, out) = mta.send(&["orders@shop.example"], big).await;
    assert!(!ok && out.contains("552"), "{}", &out[..out.len().min(500)]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(mta.postfix.all_delivered(), 0, "{}", mta.postfix.log());
}
