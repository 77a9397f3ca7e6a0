//! The `[[smtp]]` listener end to end on 127.0.0.1 against an in-process fake upstream mail server: recipients
//! and message tokens revealed as the listener's caller (audited), and every refusal (451, 550, 552, AUTH,
//! an upstream without STARTTLS, an upstream refusing a recipient) with the upstream receiving no message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::smtp::{connect, FakeOptions, FakeUpstream, Veil, RELAY};
use common::Pki;

async fn setup(opts: FakeOptions, extra: &str) -> (Veil, FakeUpstream) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let upstream = FakeUpstream::start(dir.path(), opts).await;
    let veil = Veil::start(dir, pki, upstream.addr, extra).await;
    (veil, upstream)
}

fn tls_upstream() -> FakeOptions {
    FakeOptions { starttls: true, ..FakeOptions::default() }
}

fn order_mail(to: &str, body: &str) -> String {
    format!(
        "From: Shop <orders@shop.example>\r\nTo: {to}\r\nSubject: Your order 1042\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

#[tokio::test]
async fn reveals_recipients_and_message_tokens_as_the_caller() {
    let (veil, upstream) = setup(tls_upstream(), "").await;
    let pan = common::random_pan("411111", 16);
    let tokens = veil.tokenize(&[("email", "jane.doe@gmail.com"), ("phone", "+49 170 1234567"), ("pan", &pan)]).await;
    let (email, phone, card) = (&tokens[0], &tokens[1], &tokens[2]);
    assert!(email.ends_with(&format!("@{RELAY}")), "{email}");

    let (mut c, greeting) = connect(veil.smtp()).await;
    assert_eq!(greeting.0, 220);
    let (code, ehlo) = c.cmd("EHLO shop.example").await;
    assert_eq!(code, 250);
    for keyword in ["SIZE 10485760", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.lines().any(|l| l == keyword), "{keyword} not in {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "no tls/auth configured: {ehlo}");
    let body = format!(
        "Dear customer,\r\nwe call {phone} when the parcel arrives; reply to {email}.\r\n\
         .a line that starts with a dot\r\nPaid with {card}. Unknown: 99@{RELAY} x@{RELAY}\r\n"
    );
    let (code, text) = c.mail("orders@shop.example", &[email, "orders@shop.example"], &order_mail(email, &body)).await;
    assert_eq!((code, text.as_str()), (250, "2.0.0 Ok: queued as FAKE1"), "the upstream's reply is passed back");
    assert_eq!(c.cmd("QUIT").await.0, 221);

    let messages = upstream.messages();
    assert_eq!(messages.len(), 1);
    let (from, to, data) = &messages[0];
    assert_eq!(from, "orders@shop.example");
    assert_eq!(to, &["jane.doe@gmail.com", "orders@shop.example"], "token revealed, plain address as it is");
    let data = String::from_utf8(data.clone()).unwrap();
    assert!(data.contains("To: jane.doe@gmail.com\r\n"), "{data}");
    assert!(data.contains("we call +49 170 1234567 when"), "{data}");
    assert!(data.contains("reply to jane.doe@gmail.com."), "{data}");
    assert!(data.contains("\r\n.a line that starts with a dot\r\n"), "dot-unstuffed, stuffed again: {data}");
    assert!(!data.contains(&pan) && !data.contains(card.as_str()), "mask only: neither value nor token: {data}");
    assert!(data.contains(&format!("Paid with ************{}.", &pan[12..])), "{data}");
    assert!(data.contains(&format!("x@{RELAY}")), "an unknown token-shaped address is left: {data}");
    let commands = upstream.commands();
    assert!(commands.iter().any(|c| c == "STARTTLS"), "{commands:?}");

    // Every reveal is audited under the listener's caller, with its purpose.
    let audit = veil.audit();
    let reveals: Vec<_> = audit.iter().filter(|e| e["caller"] == "mailer").collect();
    assert!(reveals.len() >= 3, "{audit:?}");
    assert!(reveals.iter().all(|e| e["purpose"] == "customer-mail"), "{reveals:?}");
    assert!(reveals.iter().any(|e| e["op"] == "detokenize") && reveals.iter().any(|e| e["op"] == "mask"));
    let text = std::fs::read_to_string(veil.dir.path().join("audit.jsonl")).unwrap();
    assert!(!text.contains("jane.doe") && !text.contains("1234567"), "no values in the audit log");

    let m = veil.metrics().await;
    for series in [
        "veil_smtp_messages_total{listener=\"shop-mail\",outcome=\"delivered\"} 1",
        "veil_smtp_recipients_revealed_total{listener=\"shop-mail\"} 1",
        "veil_smtp_fields_revealed_total{class=\"phone\",listener=\"shop-mail\",op=\"detokenize\"} 1",
        "veil_smtp_fields_revealed_total{class=\"pan\",listener=\"shop-mail\",op=\"mask\"} 1",
    ] {
        assert!(m.contains(series), "{series} missing:\n{m}");
    }
}

#[tokio::test]
async fn unknown_relay_recipient_is_550_and_nothing_is_sent() {
    let (veil, upstream) = setup(tls_upstream(), "").await;
    let (mut c, _) = connect(veil.smtp()).await;
    c.cmd("EHLO shop.example").await;
    assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 250);
    let (code, text) = c.cmd(&format!("RCPT TO:<nobody7@{RELAY}>")).await;
    assert_eq!((code, text.as_str()), (550, "5.1.1 Unknown recipient"));
    let (code, _) = c.cmd("RCPT TO:<zz9@example.com>").await;
    assert_eq!(code, 550, "the reserved domain holds tokens only too");
    assert_eq!(c.cmd("DATA").await.0, 554, "no valid recipients");
    assert!(upstream.commands().is_empty(), "the upstream was never contacted");
    assert!(veil.metrics().await.contains("veil_smtp_refusals_total{code=\"550\",listener=\"shop-mail\"} 2"));
}

#[tokio::test]
async fn over_the_size_limit_is_552_both_declared_and_sent() {
    let (veil, upstream) = setup(tls_upstream(), "max_message_bytes = 2048").await;
    let (mut c, _) = connect(veil.smtp()).await;
    let (_, ehlo) = c.cmd("EHLO shop.example").await;
    assert!(ehlo.lines().any(|l| l == "SIZE 2048"), "{ehlo}");
    let (code, text) = c.cmd("MAIL FROM:<orders@shop.example> SIZE=4096").await;
    assert_eq!((code, text.as_str()), (552, "5.3.4 Message size exceeds the fixed limit"));
    let big = order_mail("orders@shop.example", &"0123456789abcdef\r\n".repeat(200));
    let (code, _) = c.mail("orders@shop.example", &["orders@shop.example"], &big).await;
    assert_eq!(code, 552);
    // The session goes on: the rest of the big message was read, not taken for commands.
    assert_eq!(c.cmd("NOOP").await.0, 250);
    let small = order_mail("orders@shop.example", "ok");
    assert_eq!(c.mail("orders@shop.example", &["orders@shop.example"], &small).await.0, 250);
    assert_eq!(upstream.messages().len(), 1, "only the small one");
}

#[tokio::test]
async fn an_upstream_without_starttls_gets_nothing() {
    let (veil, upstream) = setup(FakeOptions::default(), "").await;
    let (mut c, _) = connect(veil.smtp()).await;
    c.cmd("EHLO shop.example").await;
    let (code, text) = c.mail("orders@shop.example", &["orders@shop.example"], &order_mail("x@y.example", "hi")).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("4.7.5"), "{text}");
    let commands = upstream.commands();
    assert!(!commands.iter().any(|c| c.starts_with("MAIL") || c.starts_with("RCPT")), "{commands:?}");
    assert!(upstream.messages().is_empty());
}

#[tokio::test]
async fn an_upstream_refusing_a_recipient_gets_no_message_and_the_shop_no_real_address() {
    let opts = FakeOptions { starttls: true, refuse_rcpt: Some("gmail".into()) };
    let (veil, upstream) = setup(opts, "").await;
    let token = veil.tokenize(&[("email", "jane.doe@gmail.com")]).await.remove(0);
    let (mut c, _) = connect(veil.smtp()).await;
    c.cmd("EHLO shop.example").await;
    let (code, text) = c.mail("orders@shop.example", &["orders@shop.example", &token], &order_mail(&token, "hi")).await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains(&token) && !text.contains("jane.doe"), "the upstream's text, scrubbed: {text}");
    assert!(upstream.messages().is_empty());
    assert!(upstream.commands().iter().any(|c| c == "RSET"));
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let (veil, upstream) = setup(tls_upstream(), "").await;
    let (mut c, _) = connect(veil.smtp()).await;
    c.send(b"EHLO shop.example\r\nMAIL FROM:<orders@shop.example>\r\nRCPT TO:<a@shop.example>\r\nRCPT TO:<b@shop.example>\r\nDATA\r\n").await;
    let codes: Vec<u16> = [c.reply().await, c.reply().await, c.reply().await, c.reply().await, c.reply().await]
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(codes, [250, 250, 250, 250, 354]);
    c.send(b"Subject: hi\r\n\r\nbody\r\n.\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(upstream.messages()[0].1, ["a@shop.example", "b@shop.example"]);
}

#[tokio::test]
async fn auth_is_required_and_only_over_tls() {
    let password = "mailer-password-123";
    let extra = format!(
        "tls = {{ cert = \"PKI/server.pem\", key = \"PKI/server.key\" }}\n\
         auth = {{ username = \"shop\", password_sha256 = \"{}\" }}\n",
        common::sha256_hex(password)
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let upstream = FakeUpstream::start(dir.path(), tls_upstream()).await;
    let extra = extra.replace("PKI", &dir.path().display().to_string());
    let ca = pki.ca_der.clone();
    let veil = Veil::start(dir, pki, upstream.addr, &extra).await;

    let (mut c, _) = connect(veil.smtp()).await;
    let (_, ehlo) = c.cmd("EHLO shop.example").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "AUTH only after STARTTLS: {ehlo}");
    assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 530);
    let plain = |user: &str, pass: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
    };
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("shop", password))).await.0, 538, "no AUTH in the clear");
    let mut c = c.starttls(&ca).await;
    let (_, ehlo) = c.cmd("EHLO shop.example").await;
    assert!(ehlo.lines().any(|l| l == "AUTH PLAIN") && !ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("shop", "wrong"))).await.0, 535);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("other", password))).await.0, 535);
    assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 530, "still unauthenticated");
    assert!(upstream.commands().is_empty());
    // The two-step form: AUTH PLAIN, 334, then the response.
    assert_eq!(c.cmd("AUTH PLAIN").await.0, 334);
    assert_eq!(c.cmd(&plain("shop", password)).await.0, 235);
    let (code, _) = c.mail("orders@shop.example", &["orders@shop.example"], &order_mail("x@y.example", "hi")).await;
    assert_eq!(code, 250);
    assert_eq!(upstream.messages().len(), 1);
}

#[tokio::test]
async fn a_vault_that_is_down_or_slow_is_451_and_nothing_is_sent() {
    for slow in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let _pki = Pki::new(dir.path());
        let upstream = FakeUpstream::start(dir.path(), tls_upstream()).await;
        let text = common::smtp::config(dir.path(), upstream.addr, "vault_timeout = \"300ms\"");
        let cfg = veil::config::parse(&text).unwrap();
        let metrics = Arc::new(veil::metrics::Metrics::new().unwrap());
        let caller = veil::vault::auth::Caller {
            name: "mailer".into(),
            allow: cfg.callers[1].allow.clone(),
            new_values: None,
            origin: Default::default(),
        };
        let listener = veil::smtp::Listener::new(
            cfg.smtp[0].clone(),
            caller,
            Some(cfg.callers[1].allow.clone()),
            Arc::new(common::down_vault::DownVault { slow }),
            metrics.clone(),
            Some(RELAY),
        )
        .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(Arc::new(listener).serve(tcp, stopped));

        let (mut c, _) = connect(addr).await;
        c.cmd("EHLO shop.example").await;
        assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 250);
        let (code, text) = c.cmd(&format!("RCPT TO:<k3f9x2@{RELAY}>")).await;
        assert_eq!((code, text.as_str()), (451, "4.3.0 Temporary failure, try again later"), "slow={slow}");
        // A plain recipient needs the vault too (is it a token?), and so does the message.
        assert_eq!(c.cmd("RCPT TO:<orders@shop.example>").await.0, 451);
        assert!(upstream.commands().is_empty());
        let m = metrics.render();
        assert!(m.contains("veil_smtp_refusals_total{code=\"451\",listener=\"shop-mail\"} 2"), "{m}");
    }
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_with_421() {
    let (veil, _upstream) = setup(tls_upstream(), "").await;
    let (mut c, _) = connect(veil.smtp()).await;
    c.cmd("EHLO shop.example").await;
    let addr = veil.smtp();
    let Veil { running, dir: _dir, .. } = veil;
    let stopping = tokio::spawn(running.shutdown());
    assert_eq!(c.reply().await.0, 421);
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
}

#[tokio::test]
async fn a_split_deployment_reveals_through_the_remote_vault_and_masks_what_it_refuses() {
    // `veil vault` holds the callers and their rights; `veil proxy` serves [[smtp]] with the mailer's key only.
    let dir = tempfile::tempdir().unwrap();
    let _pki = Pki::new(dir.path());
    let upstream = FakeUpstream::start(dir.path(), tls_upstream()).await;
    let d = dir.path().display().to_string();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let vault_text = format!(
        "{}\n[[caller]]\nname = \"proxy\"\napi_key_sha256 = \"{}\"\nallow = [\"tokenize:*\"]\n",
        common::smtp::config(dir.path(), upstream.addr, ""),
        common::sha256_hex("proxy-key-0123456789")
    );
    let vault_cfg = veil::config::parse(&vault_text).unwrap();
    let clock = veil::vault::engine::system_clock();
    let vault = veil::app::start_mode(vault_cfg, veil::app::Mode::Vault, clock.clone()).await.unwrap();
    std::fs::write(dir.path().join("proxy.key"), "proxy-key-0123456789\n").unwrap();
    std::fs::write(dir.path().join("mailer.key"), format!("{}\n", common::smtp::MAILER_KEY)).unwrap();
    let proxy_text = format!(
        "[vault_client]\nurl = \"http://{}\"\n\
         api_keys = {{ proxy = \"{d}/proxy.key\", mailer = \"{d}/mailer.key\" }}\n\
         [class.email]\nformat = \"relay\"\nrelay_domain = \"{RELAY}\"\n\
         [[smtp]]\nname = \"shop-mail\"\nlisten = \"127.0.0.1:0\"\nupstream = \"smtp://{}\"\nca = \"{d}/ca.pem\"\n\
         caller = \"mailer\"\n",
        vault.vault_addr.unwrap(),
        upstream.addr
    );
    let proxy =
        veil::app::start_mode(veil::config::parse(&proxy_text).unwrap(), veil::app::Mode::Proxy, clock).await.unwrap();
    let shop = common::Client::plain(vault.vault_addr.unwrap());
    let pan = common::random_pan("411111", 16);
    let items = serde_json::json!({"items": [{"class": "email", "value": "jane.doe@gmail.com"}, {"class": "pan", "value": pan}],
                                   "subject": "customer-7"});
    let (status, body) = shop.post_json("/v1/tokenize", common::smtp::SHOP_KEY, &items).await;
    assert_eq!(status, 200, "{body}");
    let (email, card) = (body["items"][0]["token"].as_str().unwrap(), body["items"][1]["token"].as_str().unwrap());

    let (mut c, _) = connect(proxy.smtp_addrs[0].1).await;
    c.cmd("EHLO shop.example").await;
    let (code, text) =
        c.mail("orders@shop.example", &[email], &order_mail(email, &format!("card {card}, mail {email}"))).await;
    assert_eq!(code, 250, "{text}");
    let (_, to, data) = upstream.messages().remove(0);
    assert_eq!(to, ["jane.doe@gmail.com"]);
    let data = String::from_utf8(data).unwrap();
    assert!(data.contains(&format!("card ************{}, mail jane.doe@gmail.com", &pan[12..])), "{data}");
    let (code, _) = c.cmd("MAIL FROM:<orders@shop.example>").await;
    assert_eq!(code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<unknown1@{RELAY}>")).await.0, 550, "the relay domain is known to the proxy");
    proxy.shutdown().await;
    vault.shutdown().await;
}

#[tokio::test]
async fn hostile_input_is_refused_and_nothing_is_sent() {
    let (veil, upstream) = setup(tls_upstream(), "max_recipients = 2").await;
    let (mut c, _) = connect(veil.smtp()).await;
    assert_eq!(c.cmd("RCPT TO:<a@shop.example>").await.0, 503, "no MAIL yet");
    assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 503, "no EHLO yet");
    c.cmd("EHLO shop.example").await;
    assert_eq!(c.cmd(&format!("NOOP {}", "x".repeat(2000))).await.0, 500, "line too long");
    assert_eq!(c.cmd("MAIL FROM:<orders@shop.example> SMTPUTF8").await.0, 555);
    assert_eq!(c.cmd("MAIL FROM:<orders@shop.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<a@shop.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@shop.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<c@shop.example>").await.0, 452, "max_recipients");
    // A bare LF anywhere refuses the message, and a "\n.\n" does not end it.
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(b"Subject: x\r\n\r\nhi\n.\nRSET\r\n.\r\n").await;
    assert_eq!(c.reply().await, (554, "5.6.0 Lines must end in CRLF".into()));
    // MIME that does not parse (a multipart whose boundary never closes).
    let broken =
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\r\nhi\r\n";
    let (code, text) = c.mail("orders@shop.example", &["a@shop.example"], broken).await;
    assert_eq!((code, text.as_str()), (554, "5.6.0 Message could not be parsed as MIME"));
    assert!(upstream.commands().is_empty(), "{:?}", upstream.commands());
    // Errors past the limit close the connection.
    let mut last = (0, String::new());
    for _ in 0..12 {
        last = c.cmd("BOGUS").await;
        if last.0 != 500 {
            break;
        }
    }
    assert_eq!(last.0, 421, "{last:?}");
    assert_eq!(c.reply().await.0, 0, "closed");
}

/// A vault that says "no token" to single e-mail lookups (RCPT) and is down for everything else (the message).
struct DownForMessages;

#[async_trait::async_trait]
impl veil::vault::Vault for DownForMessages {
    async fn tokenize_on(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
        _: veil::vault::Terms<'_>,
    ) -> Result<Vec<String>, veil::vault::VaultError> {
        Err(veil::vault::VaultError::StoreUnavailable)
    }
    async fn detokenize(
        &self,
        _: &veil::vault::auth::Caller,
        items: &[(veil::domain::Class, &str)],
        _: Option<&str>,
    ) -> Result<Vec<veil::vault::ItemResult>, veil::vault::VaultError> {
        match items {
            [(veil::domain::Class::Email, _)] => Ok(vec![Err(veil::vault::engine::Missing::NotFound)]),
            _ => Err(veil::vault::VaultError::StoreUnavailable),
        }
    }
    async fn mask(
        &self,
        _: &veil::vault::auth::Caller,
        _: &[(veil::domain::Class, &str)],
        _: Option<&str>,
    ) -> Result<Vec<veil::vault::ItemResult>, veil::vault::VaultError> {
        Err(veil::vault::VaultError::StoreUnavailable)
    }
    async fn ready(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn a_vault_failing_during_the_message_is_451_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let _pki = Pki::new(dir.path());
    let upstream = FakeUpstream::start(dir.path(), tls_upstream()).await;
    let cfg = veil::config::parse(&common::smtp::config(dir.path(), upstream.addr, "")).unwrap();
    let metrics = Arc::new(veil::metrics::Metrics::new().unwrap());
    let allow = cfg.callers[1].allow.clone();
    let caller = veil::vault::auth::Caller {
        name: "mailer".into(),
        allow: allow.clone(),
        new_values: None,
        origin: Default::default(),
    };
    let listener = veil::smtp::Listener::new(
        cfg.smtp[0].clone(),
        caller,
        Some(allow),
        Arc::new(DownForMessages),
        metrics.clone(),
        Some(RELAY),
    )
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::new(listener).serve(tcp, stopped));

    let (mut c, _) = connect(addr).await;
    c.cmd("EHLO shop.example").await;
    let message = order_mail("orders@shop.example", "we ring +44 7700 900123 on delivery");
    let (code, text) = c.mail("orders@shop.example", &["orders@shop.example"], &message).await;
    assert_eq!((code, text.as_str()), (451, "4.3.0 Temporary failure, try again later"));
    // A message with nothing to reveal needs no vault: it goes through.
    let (code, _) = c.mail("orders@shop.example", &["orders@shop.example"], &order_mail("x@y.example", "hi")).await;
    assert_eq!(code, 250);
    assert_eq!(upstream.messages().len(), 1);
    let m = metrics.render();
    assert!(m.contains("veil_smtp_messages_total{listener=\"shop-mail\",outcome=\"vault_unavailable\"} 1"), "{m}");
    assert!(m.contains("veil_smtp_messages_total{listener=\"shop-mail\",outcome=\"delivered\"} 1"), "{m}");
}

#[tokio::test]
async fn a_value_revealed_into_html_is_escaped() {
    let (veil, upstream) = setup(tls_upstream(), "").await;
    let name = veil.tokenize(&[("name", "Zoë O'Neil")]).await.remove(0);
    assert!(name.contains('\''), "the token keeps the value's punctuation: {name}");
    let (mut c, _) = connect(veil.smtp()).await;
    c.cmd("EHLO shop.example").await;
    let html = format!(
        "From: orders@shop.example\r\nTo: orders@shop.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>Dear {name},</p>\r\n"
    );
    let plain = html.replace("text/html", "text/plain");
    // As a template engine writes the token into HTML: its apostrophe escaped.
    let escaped = html.replace(&name, &name.replace('\'', "&#39;"));
    assert_ne!(escaped, html);
    for message in [html, plain, escaped] {
        assert_eq!(c.mail("orders@shop.example", &["orders@shop.example"], &message).await.0, 250);
    }
    let texts: Vec<String> = upstream
        .messages()
        .iter()
        .map(|(_, _, raw)| {
            let m = veil::rewrite::mime::Message::parse(raw, &veil::rewrite::mime::Limits::default()).unwrap();
            m.slots().last().unwrap().text.trim_end().to_owned()
        })
        .collect();
    assert_eq!(texts, ["<p>Dear Zoë O&#39;Neil,</p>", "<p>Dear Zoë O'Neil,</p>", "<p>Dear Zoë O&#39;Neil,</p>"]);
}

/// Someone who read the app's database writes a victim's tokens into what the app mails them (a gift message, a
/// comment), or gets the app to mail a plain address of theirs. A message shows only what is linked to its
/// customers; to an untrusted plain address, no value at all; the shop's trusted staff see what the caller may.
#[tokio::test]
async fn a_message_shows_only_what_is_linked_to_its_recipients() {
    let (veil, upstream) = setup(tls_upstream(), "").await;
    let victim = veil.tokenize_for("victim", &[("name", "Jane Doe"), ("phone", "+49 170 1234567")]).await;
    let attacker = veil.tokenize_for("attacker", &[("email", "mallory@evil.example"), ("name", "Mal Lory")]).await;
    let victim_email = veil.tokenize_for("victim", &[("email", "jane.doe@gmail.com")]).await.remove(0);
    let body = format!("Dear {}, your gift message: {} {}", attacker[1], victim[0], victim[1]);
    let (mut c, _) = connect(veil.smtp()).await;
    c.cmd("EHLO shop.example").await;
    let send = |to: Vec<String>| {
        let message = order_mail(&to[0], &body);
        (to, message)
    };
    for (to, message) in [
        send(vec![attacker[0].clone()]),
        send(vec!["mallory@evil.example".into()]),
        send(vec![attacker[0].clone(), "orders@shop.example".into()]),
        send(vec![victim_email.clone(), attacker[0].clone()]),
        send(vec!["orders@shop.example".into()]),
    ] {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        assert_eq!(c.mail("orders@shop.example", &to, &message).await.0, 250);
    }
    let bodies: Vec<String> = upstream
        .messages()
        .iter()
        .map(|(_, _, raw)| {
            String::from_utf8(raw.clone()).unwrap().split("\r\n\r\n").nth(1).unwrap().trim_end().to_owned()
        })
        .collect();
    let gift = |name: &str, victim_name: &str, victim_phone: &str| {
        format!("Dear {name}, your gift message: {victim_name} {victim_phone}")
    };
    assert_eq!(
        bodies,
        [
            // To the attacker: their own name, the victim's tokens as they were.
            gift("Mal Lory", &victim[0], &victim[1]),
            // To a plain address nobody trusts: no value.
            gift(&attacker[1], &victim[0], &victim[1]),
            // The attacker with the shop's staff on copy: still only what is the attacker's.
            gift("Mal Lory", &victim[0], &victim[1]),
            // Two customers: only what both are linked to (nothing here).
            gift(&attacker[1], &victim[0], &victim[1]),
            // The shop's staff alone: what the caller may reveal.
            gift("Mal Lory", "Jane Doe", "+49 170 1234567"),
        ]
    );
    // The withheld reveals are on record.
    let withheld = veil
        .audit()
        .iter()
        .flat_map(|e| e["items"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["result"] == "not_linked")
        .count();
    assert!(withheld >= 5, "{withheld}");
}
