//! SMTP test parts: a fake upstream mail server (STARTTLS with the test CA's certificate, or none) that records
//! every command and message it gets, a small SMTP client for the shop's side, and a veil with an `[[smtp]]`
//! listener in front of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const SHOP_KEY: &str = "test-shop-key-0123456789";
pub const MAILER_KEY: &str = "test-mailer-key-0123456789";
pub const RELAY: &str = "customers.shop.example";

/// What the fake upstream was told.
#[derive(Default)]
pub struct Seen {
    /// Every command line, in order, over all connections.
    pub commands: Vec<String>,
    /// Delivered messages: sender, recipients, data (dot-unstuffed).
    pub messages: Vec<(String, Vec<String>, Vec<u8>)>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
}

/// How the fake upstream behaves.
#[derive(Clone, Default)]
pub struct FakeOptions {
    /// Offer STARTTLS (with `dir`'s server.pem/server.key); without it the server is plaintext only.
    pub starttls: bool,
    /// Refuse RCPT TO for addresses containing this (echoing the address, as real servers do).
    pub refuse_rcpt: Option<String>,
}

impl FakeUpstream {
    pub async fn start(dir: &Path, opts: FakeOptions) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let config = veil::tls::server_config(&dir.join("server.pem"), &dir.join("server.key"), None).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let state = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (state, acceptor, opts) = (state.clone(), acceptor.clone(), opts.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::new(tcp);
                    r.get_mut().write_all(b"220 fake ESMTP\r\n").await.unwrap();
                    if dialog(&mut r, &state, &opts, false).await {
                        let tls = acceptor.accept(r.into_inner()).await.unwrap();
                        dialog(&mut BufReader::new(tls), &state, &opts, true).await;
                    }
                });
            }
        });
        FakeUpstream { addr, seen }
    }

    pub fn messages(&self) -> Vec<(String, Vec<String>, Vec<u8>)> {
        self.seen.lock().unwrap().messages.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.seen.lock().unwrap().commands.clone()
    }
}

/// Serves commands until QUIT or EOF; true when STARTTLS asks for the handshake.
async fn dialog<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    seen: &Mutex<Seen>,
    opts: &FakeOptions,
    tls: bool,
) -> bool {
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let line = line.trim_end().to_owned();
        seen.lock().unwrap().commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let answer: String = if upper.starts_with("EHLO") {
            let tls_line = if opts.starttls && !tls { "250-STARTTLS\r\n" } else { "" };
            format!("250-fake\r\n{tls_line}250-SIZE 100000000\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
        } else if upper == "STARTTLS" {
            r.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
            return true;
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].split('>').next().unwrap().trim_start_matches('<').to_owned();
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..].trim_start_matches('<').trim_end_matches('>').to_owned();
            match &opts.refuse_rcpt {
                Some(bad) if addr.contains(bad.as_str()) => {
                    format!("550 5.1.1 <{addr}>: Recipient address rejected: User unknown\r\n")
                }
                _ => {
                    to.push(addr);
                    "250 2.1.5 Ok\r\n".into()
                }
            }
        } else if upper == "RSET" {
            (from, to) = (String::new(), Vec::new());
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "DATA" {
            r.get_mut().write_all(b"354 go\r\n").await.unwrap();
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                r.read_until(b'\n', &mut l).await.unwrap();
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
            }
            seen.lock().unwrap().messages.push((from.clone(), to.clone(), data));
            "250 2.0.0 Ok: queued as FAKE1\r\n".into()
        } else if upper == "QUIT" {
            let _ = r.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
            return false;
        } else {
            "502 5.5.2 no\r\n".into()
        };
        r.get_mut().write_all(answer.as_bytes()).await.unwrap();
    }
}

/// The shop's side: a line-by-line SMTP client, plain or (after STARTTLS) TLS.
pub struct Client<S> {
    r: BufReader<S>,
}

pub type Plain = Client<TcpStream>;

pub async fn connect(addr: SocketAddr) -> (Plain, (u16, String)) {
    let mut c = Client { r: BufReader::new(TcpStream::connect(addr).await.unwrap()) };
    let greeting = c.reply().await;
    (c, greeting)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// One reply: code and text lines joined by '\n'.
    pub async fn reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await.unwrap() == 0 {
                return (0, text.join("\n"));
            }
            let line = line.trim_end();
            text.push(line[4.min(line.len())..].to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text.join("\n"));
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// DATA, then the message (dot-stuffed here), then the reply to the final dot.
    pub async fn data(&mut self, message: &str) -> (u16, String) {
        let (code, text) = self.cmd("DATA").await;
        if code != 354 {
            return (code, text);
        }
        let mut wire = String::new();
        for line in message.split("\r\n") {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.send(wire.as_bytes()).await;
        self.reply().await
    }

    /// A whole envelope and message; the reply to the final dot, or the first refusal.
    pub async fn mail(&mut self, from: &str, to: &[&str], message: &str) -> (u16, String) {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if r.0 != 250 {
            return r;
        }
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            if r.0 != 250 {
                return r;
            }
        }
        self.data(message).await
    }

    pub fn into_inner(self) -> S {
        self.r.into_inner()
    }
}

impl Plain {
    /// STARTTLS (after EHLO), verifying veil's certificate with the test CA.
    pub async fn starttls(
        mut self,
        ca: &rustls::pki_types::CertificateDer<'static>,
    ) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
        let (code, _) = self.cmd("STARTTLS").await;
        assert_eq!(code, 220);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, self.into_inner()).await.unwrap();
        Client { r: BufReader::new(tls) }
    }
}

/// The subject [`Veil::tokenize`] links tokens to.
pub const CUSTOMER: &str = "customer-1042";

/// Config text: a vault in `dir` (relay e-mail tokens), a `shop` caller that tokenises, a `mailer` caller that
/// reveals, and one `[[smtp]]` listener named `shop-mail` forwarding to `upstream` (`extra` appended inside it;
/// the shop's own `@shop.example` addresses are trusted recipients).
pub fn config(dir: &Path, upstream: SocketAddr, extra: &str) -> String {
    let d = dir.display();
    format!(
        r#"
[vault]
listen = "127.0.0.1:0"
store = "sqlite://{d}/vault.db"
master_key_file = "{d}/master.key"
audit_log = "{d}/audit.jsonl"

[admin]
listen = "127.0.0.1:0"

[class.email]
format = "relay"
relay_domain = "{RELAY}"

[class.name]
format = "tagged"

[class.address]
format = "tagged"

[[caller]]
name = "shop"
api_key_sha256 = "{shop}"
allow = ["tokenize:*"]

[[caller]]
name = "mailer"
api_key_sha256 = "{mailer}"
allow = ["detokenize:email", "detokenize:name", "detokenize:address", "detokenize:phone", "mask:pan"]

[[smtp]]
name = "shop-mail"
listen = "127.0.0.1:0"
upstream = "smtp://127.0.0.1:{port}"
ca = "{d}/ca.pem"
caller = "mailer"
purpose = "customer-mail"
trusted_recipients = ["@shop.example"]
{extra}
"#,
        shop = super::sha256_hex(SHOP_KEY),
        mailer = super::sha256_hex(MAILER_KEY),
        port = upstream.port(),
    )
}

/// A veil (`veil run` in this process) with the config above.
pub struct Veil {
    pub dir: tempfile::TempDir,
    pub pki: super::Pki,
    pub running: veil::app::Running,
}

impl Veil {
    /// `dir` must hold the test PKI (`Pki::new`) the upstream also uses.
    pub async fn start(dir: tempfile::TempDir, pki: super::Pki, upstream: SocketAddr, extra: &str) -> Veil {
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let cfg = veil::config::parse(&config(dir.path(), upstream, extra)).unwrap();
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        Veil { dir, pki, running }
    }

    pub fn smtp(&self) -> SocketAddr {
        self.running.smtp_addrs[0].1
    }

    /// Tokens for (class, value) pairs, through the vault API as the shop, linked to one customer (a message to
    /// that customer may show them).
    pub async fn tokenize(&self, items: &[(&str, &str)]) -> Vec<String> {
        self.tokenize_for(CUSTOMER, items).await
    }

    /// Tokens for (class, value) pairs, linked to `subject`.
    pub async fn tokenize_for(&self, subject: &str, items: &[(&str, &str)]) -> Vec<String> {
        let client = super::Client::plain(self.running.vault_addr.unwrap());
        let items: Vec<_> = items.iter().map(|(c, v)| serde_json::json!({"class": c, "value": v})).collect();
        let body = serde_json::json!({ "items": items, "subject": subject });
        let (status, body) = client.post_json("/v1/tokenize", SHOP_KEY, &body).await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().iter().map(|i| i["token"].as_str().unwrap().to_owned()).collect()
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub async fn metrics(&self) -> String {
        super::get(self.running.admin_addr.unwrap(), "/metrics").await.1
    }
}
