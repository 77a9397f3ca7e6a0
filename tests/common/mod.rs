//! Test harness: rcgen certificates, a vault started in-process on 127.0.0.1:0, and a small HTTPS client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod down_vault;
pub mod lifecycle;
pub mod pg;
pub mod postfix;
pub mod relay;
pub mod smtp;
pub mod split;
pub mod tls_app;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub mod prom;

pub const PAYMENTS_KEY: &str = "test-payments-key-0123456789";
pub const APP_KEY: &str = "test-app-key-0123456789";

/// A CA and the certificates it signed, PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub client_cert: CertificateDer<'static>,
    pub client_key: PrivateKeyDer<'static>,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "veil test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut sp = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        sp.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();

        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut cp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        cp.subject_alt_names.push(rcgen::SanType::URI("spiffe://shop/payments".try_into().unwrap()));
        let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();

        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            client_cert: client.der().clone(),
            client_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
        }
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Config text for a vault in `dir`; `tls` adds [vault.tls] with client-certificate verification.
pub fn config_text(dir: &Path, tls: bool, audit_log: Option<&str>) -> String {
    let d = dir.display();
    let audit = audit_log.map(str::to_owned).unwrap_or_else(|| format!("{d}/audit.jsonl"));
    let mut text = format!(
        r#"
[vault]
listen = "127.0.0.1:0"
store = "sqlite://{d}/vault.db"
master_key_file = "{d}/master.key"
audit_log = "{audit}"
max_batch = 50
max_body_bytes = 65536

[admin]
listen = "127.0.0.1:0"

[[caller]]
name = "payments"
api_key_sha256 = "{payments}"
allow = ["tokenize:*", "detokenize:*", "mask:*"]

[[caller]]
name = "app"
api_key_sha256 = "{app}"
allow = ["tokenize:*", "mask:pan"]

[[caller]]
name = "payments-mtls"
tls_identity = "spiffe://shop/payments"
allow = ["detokenize:pan"]
"#,
        payments = sha256_hex(PAYMENTS_KEY),
        app = sha256_hex(APP_KEY),
    );
    if tls {
        text.push_str(&format!(
            "\n[vault.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\n"
        ));
    }
    text
}

/// A vault running in this test process.
pub struct TestVault {
    pub dir: tempfile::TempDir,
    pub running: Option<veil::app::Running>,
    pub client: Client,
    pub admin: SocketAddr,
    /// The `store = "…"` URL this vault runs on.
    pub store_url: String,
}

impl TestVault {
    pub async fn start(tls: bool) -> TestVault {
        Self::start_with(tls, None).await
    }

    pub async fn start_with(tls: bool, audit_log: Option<&str>) -> TestVault {
        Self::start_on(pg::Backend::Sqlite, tls, audit_log).await
    }

    /// A vault on the given store backend (PostgreSQL: a fresh database of its own).
    pub async fn start_on(backend: pg::Backend, tls: bool, audit_log: Option<&str>) -> TestVault {
        let dir = tempfile::tempdir().unwrap();
        veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
        let pki = Pki::new(dir.path());
        let store_url = backend.store_url(dir.path()).await;
        let text = pg::with_store(&config_text(dir.path(), tls, audit_log), &store_url);
        let cfg = veil::config::parse(&text).unwrap();
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        let tls_cfg = tls.then(|| TlsClient { ca: pki.ca_der.clone(), client: None });
        let client = Client { addr: running.vault_addr.unwrap(), tls: tls_cfg, pki: Some(Arc::new(pki)) };
        let admin = running.admin_addr.unwrap();
        TestVault { dir, running: Some(running), client, admin, store_url }
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    pub fn config_path(&self) -> PathBuf {
        let p = self.dir.path().join("veil.toml");
        let tls = self.client.tls.is_some();
        std::fs::write(&p, pg::with_store(&config_text(self.dir.path(), tls, None), &self.store_url)).unwrap();
        p
    }
}

pub struct TlsClient {
    pub ca: CertificateDer<'static>,
    pub client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
}

impl Clone for TlsClient {
    fn clone(&self) -> TlsClient {
        TlsClient { ca: self.ca.clone(), client: self.client.as_ref().map(|(c, k)| (c.clone(), k.clone_key())) }
    }
}

/// One request per connection: simple, and every test request goes through a full handshake.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub tls: Option<TlsClient>,
    pub pki: Option<Arc<Pki>>,
}

impl Client {
    pub fn with_client_cert(&self) -> Client {
        let mut c = self.clone();
        if let (Some(t), Some(pki)) = (&mut c.tls, &self.pki) {
            t.client = Some((pki.client_cert.clone(), pki.client_key.clone_key()));
        }
        c
    }

    pub fn plain(addr: SocketAddr) -> Client {
        Client { addr, tls: None, pki: None }
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: impl Into<Bytes>) -> (u16, Value) {
        let (status, bytes) = self.request("POST", path, bearer, body.into()).await;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    pub async fn post_json(&self, path: &str, bearer: &str, body: &Value) -> (u16, Value) {
        self.post(path, Some(bearer), serde_json::to_vec(body).unwrap()).await
    }

    pub async fn request(&self, method: &str, path: &str, bearer: Option<&str>, body: Bytes) -> (u16, Bytes) {
        self.try_request(method, path, bearer, body).await.unwrap()
    }

    /// Like `post_json`, but a refused or broken connection is an `Err`, not a panic.
    pub async fn try_post_json(&self, path: &str, bearer: &str, body: &Value) -> Result<(u16, Value), String> {
        let (status, bytes) =
            self.try_request("POST", path, Some(bearer), serde_json::to_vec(body).unwrap().into()).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| e.to_string())?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let req = req.body(Full::new(body)).unwrap();
        match &self.tls {
            None => send(TokioIo::new(tcp), req).await,
            Some(t) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(t.ca.clone()).unwrap();
                let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
                let mut cfg = match &t.client {
                    Some((cert, key)) => builder.with_client_auth_cert(vec![cert.clone()], key.clone_key()).unwrap(),
                    None => builder.with_no_client_auth(),
                };
                cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
                let stream = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                send(TokioIo::new(stream), req).await
            }
        }
    }
}

async fn send<T>(io: T, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// A Luhn-valid card number: `prefix`, random digits, check digit; `len` digits in all.
pub fn random_pan(prefix: &str, len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut s: String = prefix.to_owned();
    while s.len() < len - 1 {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    for d in 0..10u8 {
        let candidate = format!("{s}{d}");
        if luhn_valid(&candidate) {
            return candidate;
        }
    }
    unreachable!()
}

/// Starts the `veil` binary (`veil run -c config`); returns it with its vault API's address, read from its log.
pub async fn spawn_veil(config: &Path) -> (tokio::process::Child, SocketAddr) {
    spawn_veil_listening(config, "vault API listening").await
}

/// Starts the `veil` binary (`veil run -c config`); returns it with the address of the listener whose log line
/// contains `what` (`"proxy listening"`, `"vault API listening"`).
pub async fn spawn_veil_listening(config: &Path, what: &str) -> (tokio::process::Child, SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["run", "-c"])
        .arg(config)
        .env("VEIL_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(what) {
                let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
                return addr.trim_start_matches("Some(").trim_end_matches(')').parse::<SocketAddr>().unwrap();
            }
        }
        panic!("veil exited before listening")
    })
    .await
    .expect("veil did not start in time");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Plain-HTTP GET (admin listener).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let c = Client { addr, tls: None, pki: None };
    let (s, b) = c.request("GET", path, None, Bytes::new()).await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

pub fn luhn_valid(digits: &str) -> bool {
    let digits: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// One request as the upstream app saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Seen {
    /// Every byte the app received: request line, headers, body.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {}\n", self.method, self.uri).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A recording upstream app on 127.0.0.1:0: stores every request, answers 200 `{"ok":true}` (or `reply`).
#[derive(Clone)]
pub struct App {
    pub addr: SocketAddr,
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl App {
    pub async fn start() -> App {
        Self::start_with(Arc::new(|_| Bytes::from_static(b"{\"ok\":true}"))).await
    }

    pub async fn start_with(reply: Arc<dyn Fn(&Seen) -> Bytes + Send + Sync>) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
        let app = App { addr, seen: seen.clone() };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (seen, reply) = (seen.clone(), reply.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, reply) = (seen.clone(), reply.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let s = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                                    .collect(),
                                body,
                            };
                            // The reply may block (slow-app tests): keep it off the runtime's workers.
                            let s2 = s.clone();
                            let out = tokio::task::spawn_blocking(move || reply(&s2)).await.unwrap();
                            seen.lock().unwrap().push(s);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(out)))
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        app
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Sends one request over TLS with HTTP/1.1 or h2 (ALPN), or plain HTTP/1.1.
pub async fn send_request(
    addr: SocketAddr,
    tls_ca: Option<&CertificateDer<'static>>,
    h2: bool,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, http::HeaderMap, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let Some(ca) = tls_ca else {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        return Ok((status, headers, body));
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, headers, body))
}
