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

struct Mta {
    veil: Veil,
    postfix: Postfix,
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
    Some(Mta { veil, postfix, msmtp: msmtp_bin })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_confirmation_arrives_with_real_values() {
    let Some(mta) = start().await else { return };
    let email = format!("jane.doe@{DOMAIN}");
    let tokens = mta.veil.tokenize(&[("email", &email), ("phone", "+49 170 1234567")]).await;
    let (email_token, phone_token) = (&tokens[0], &tokens[1]);
    assert!(email_token.ends_with(RELAY));
    let message = format!(
        "From: Shop <orders@shop.example>\r\nTo: {email_token}\r\nSubject: Order 1042 confirmed\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Dear customer,\r\nthanks for your order. We ring {phone_token} on delivery.\r\n\
         Replies reach you at {email_token}.\r\n"
    );
    let (ok, out) = mta.send(&[email_token], message).await;
    assert!(ok, "msmtp failed: {out}\n{}", mta.postfix.log());
    let delivered = mta.postfix.wait_for("jane.doe", 1);
    assert_eq!(delivered.len(), 1, "nothing delivered:\n{}", mta.postfix.log());
    let text = String::from_utf8_lossy(&delivered[0]);
    assert!(text.contains(&format!("To: {email}")), "{text}");
    assert!(text.contains("We ring +49 170 1234567 on delivery."), "{text}");
    assert!(text.contains(&format!("Replies reach you at {email}.")), "{text}");
    assert!(!text.contains(email_token.as_str()) && !text.contains(phone_token.as_str()), "{text}");
    assert!(mta.postfix.log().contains("TLS"), "veil spoke TLS to postfix:\n{}", mta.postfix.log());
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
