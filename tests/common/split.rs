//! Split deployment harness: rcgen certificates for a vault service and its proxies (plus a rogue CA), config
//! texts for `veil vault` and `veil proxy`, and spawned `veil` processes whose listen addresses are read from
//! their logs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{sha256_hex, TlsClient, APP_KEY, PAYMENTS_KEY};

/// The SAN of the proxies' client certificate; the vault maps it to its `proxy` caller.
pub const PROXY_IDENTITY: &str = "spiffe://shop/veil-proxy";

/// A certificate and its key, as PEM files and DER.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Issued {
    pub fn client(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (self.cert.clone(), self.key.clone_key())
    }
}

/// The test CA (vault server certificate, proxy client certificate) and a rogue CA with a look-alike client
/// certificate (same SAN) that the vault must refuse.
pub struct SplitPki {
    pub ca_file: PathBuf,
    pub ca: CertificateDer<'static>,
    /// `localhost` + `127.0.0.1`: the vault's server certificate, also used by the proxy's TLS listener.
    pub server: Issued,
    pub proxy_client: Issued,
    pub rogue_client: Issued,
}

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca { cert: params.self_signed(&key).unwrap(), key }
    }

    fn issue(&self, dir: &Path, name: &str, params: rcgen::CertificateParams) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued {
            cert_file,
            key_file,
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

fn client_params(san: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names.push(rcgen::SanType::URI(san.try_into().unwrap()));
    p
}

impl SplitPki {
    pub fn new(dir: &Path) -> SplitPki {
        let ca = Ca::new("veil split test CA");
        let rogue = Ca::new("rogue CA");
        let mut sp = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        sp.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        SplitPki {
            ca_file,
            ca: ca.cert.der().clone(),
            server: ca.issue(dir, "vault", sp),
            proxy_client: ca.issue(dir, "proxy-client", client_params(PROXY_IDENTITY)),
            rogue_client: rogue.issue(dir, "rogue-client", client_params(PROXY_IDENTITY)),
        }
    }

    /// A TLS client trusting the test CA, with an optional client certificate.
    pub fn tls(&self, client: Option<&Issued>) -> TlsClient {
        TlsClient { ca: self.ca.clone(), client: client.map(Issued::client) }
    }
}

/// `veil vault` config: mTLS with the test CA; callers `proxy` (by certificate, tokenize only), `payments`
/// (by key, everything) and `app` (by key, tokenize only).
pub fn vault_config(dir: &Path, pki: &SplitPki, listen: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"
[vault]
listen = "{listen}"
store = "sqlite://{d}/vault.db"
master_key_file = "{d}/master.key"
audit_log = "{d}/audit.jsonl"

[vault.tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[admin]
listen = "127.0.0.1:0"

[[caller]]
name = "proxy"
tls_identity = "{PROXY_IDENTITY}"
allow = ["tokenize:*"]

[[caller]]
name = "payments"
api_key_sha256 = "{payments}"
allow = ["tokenize:*", "detokenize:*", "mask:*"]

[[caller]]
name = "app"
api_key_sha256 = "{app}"
allow = ["tokenize:*"]
"#,
        cert = pki.server.cert_file.display(),
        key = pki.server.key_file.display(),
        ca = pki.ca_file.display(),
        payments = sha256_hex(PAYMENTS_KEY),
        app = sha256_hex(APP_KEY),
    )
}

/// `veil proxy` config: TLS ingress to `upstream`, the vault at `vault` over mTLS with `client`'s certificate,
/// batches of at most 2 items (so a request's batch is split), `client_extra` lines in [vault_client] (api_keys),
/// then `routes`.
pub fn proxy_config(
    dir: &Path,
    pki: &SplitPki,
    client: &Issued,
    vault: SocketAddr,
    upstream: &str,
    client_extra: &str,
    routes: &str,
) -> String {
    let d = dir.display();
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
upstream = "{upstream}"
vault_timeout = "5s"

[proxy.tls]
cert = "{server_cert}"
key = "{server_key}"

[vault_client]
url = "https://localhost:{port}"
cert = "{client_cert}"
key = "{client_key}"
ca = "{ca}"
connect_timeout = "1s"
request_timeout = "3s"
max_batch = 2
encrypt_key_file = "{d}/proxy-encrypt.key"
{client_extra}

[admin]
listen = "127.0.0.1:0"
{routes}
"#,
        port = vault.port(),
        server_cert = pki.server.cert_file.display(),
        server_key = pki.server.key_file.display(),
        client_cert = client.cert_file.display(),
        client_key = client.key_file.display(),
        ca = pki.ca_file.display(),
    )
}

/// A spawned `veil` process (killed on drop) and the addresses it logged, by listener (`vault`, `proxy`,
/// `admin`, `egress:NAME`).
pub struct Spawned {
    pub child: tokio::process::Child,
    pub addrs: HashMap<String, SocketAddr>,
}

impl Spawned {
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs[listener]
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The listener a log line announces (`vault API listening addr=…`, `egress listening egress=psp addr=…`), and
/// its address.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    let field =
        |name: &str| Some(line.split(&format!(" {name}=")).nth(1)?.split_whitespace().next()?.trim_matches('"'));
    let key = if line.contains("vault API listening") {
        "vault".to_owned()
    } else if line.contains("proxy listening") {
        "proxy".to_owned()
    } else if line.contains("admin listening") {
        "admin".to_owned()
    } else if line.contains("egress listening") {
        format!("egress:{}", field("egress")?)
    } else {
        return None;
    };
    Some((key, field("addr")?.parse().ok()?))
}

/// Runs `veil COMMAND -c config` and waits until each listener of `expect` has logged its address.
pub async fn spawn(command: &str, config: &Path, expect: &[&str]) -> Spawned {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([command, "-c"])
        .arg(config)
        .env("VEIL_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addrs = HashMap::new();
    let mut log = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while expect.iter().any(|k| !addrs.contains_key(*k)) {
            let Some(line) = lines.next_line().await.unwrap() else { return false };
            if let Some((key, addr)) = listening(&line) {
                addrs.insert(key, addr);
            }
            log.push(line);
        }
        true
    })
    .await;
    assert!(matches!(waited, Ok(true)), "veil {command} did not start:\n{}", log.join("\n"));
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Spawned { child, addrs }
}
