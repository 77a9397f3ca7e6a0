//! Deployment-test helpers: required outside tools (promtool, prometheus, sslscan, systemd-analyze), the `veil`
//! binary with all its listener addresses, a real Prometheus server on a free loopback port, and certificates
//! with a chosen expiry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The path of an outside tool; panics with the package to install when it is missing (never skips).
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{tool}` is not installed: this test needs Debian's `{package}` package \
         (`apt-get install -y {package}`; .ci/run installs it)"
    )
}

/// Runs a tool to completion; returns (success, stdout, stderr).
pub fn run_tool(tool: &Path, args: &[&str], dir: Option<&Path>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(tool);
    cmd.args(args).stdin(Stdio::null());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port on 127.0.0.1 that was free a moment ago (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `veil run` child process and the addresses it logged.
pub struct VeilProcess {
    pub child: tokio::process::Child,
    pub vault: SocketAddr,
    pub proxy: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// `x=127.0.0.1:1` or `x=Some(127.0.0.1:1)` from a log line.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    let raw = line.split("addr=").nth(1)?.split_whitespace().next()?;
    let raw = raw.trim_start_matches("Some(").trim_end_matches(')');
    raw.parse().ok()
}

/// Starts the `veil` binary (`veil run -c config`) and waits until its admin listener is up.
pub async fn spawn_veil_process(config: &Path) -> VeilProcess {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["run", "-c"])
        .arg(config)
        .env("VEIL_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (vault, proxy, admin) = tokio::time::timeout(Duration::from_secs(30), async {
        let (mut vault, mut proxy) = (None, None);
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("vault API listening") {
                vault = logged_addr(&line);
            } else if line.contains("proxy listening") {
                proxy = logged_addr(&line);
            } else if line.contains("admin listening") {
                return (vault.expect("vault address logged first"), proxy, logged_addr(&line).unwrap());
            }
        }
        panic!("veil exited before its admin listener was up")
    })
    .await
    .expect("veil did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    VeilProcess { child, vault, proxy, admin }
}

/// A Prometheus server (Debian's `prometheus`) on a free 127.0.0.1 port with its data in a temp dir.
pub struct Prometheus {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes `config` (and `files`, e.g. rule files it names) to a temp dir and starts Prometheus on it;
    /// returns once `/-/ready` answers 200.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let bin = require("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        // The port is chosen before Prometheus binds it: try again if another process took it meanwhile.
        for _attempt in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = tokio::process::Command::new(&bin)
                .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken
                }
                if let Ok((200, _)) = http_get(addr, "/-/ready").await {
                    return Prometheus { addr, child, _dir: dir };
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = child.kill().await;
        }
        panic!("prometheus did not become ready")
    }

    /// `GET /api/v1/{endpoint}?query=…`: the `data` of a successful answer.
    pub async fn api(&self, endpoint: &str, query: Option<&str>) -> Value {
        let path = match query {
            Some(q) => format!(
                "/api/v1/{endpoint}?query={}",
                percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
            ),
            None => format!("/api/v1/{endpoint}"),
        };
        let (status, body) = http_get(self.addr, &path).await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!((status, v["status"].as_str()), (200, Some("success")), "{path}: {body}");
        v["data"].clone()
    }

    /// The value of a one-sample instant query, or `None` if it has no result (yet).
    pub async fn scalar(&self, query: &str) -> Option<f64> {
        let data = self.api("query", Some(query)).await;
        let result = data["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Polls `query` until its value is `want`; panics after `within`.
    pub async fn wait_for(&self, query: &str, want: f64, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.scalar(query).await;
            if last == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("prometheus: `{query}` is {last:?} after {within:?}, expected {want}")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Plain-HTTP GET that reports a refused connection as an error (for polling).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client = super::Client::plain(addr);
    let (status, body) = client.try_request("GET", path, None, bytes::Bytes::new()).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A self-signed server certificate for localhost/127.0.0.1 expiring on `not_after` (y, m, d), written to
/// `dir/name.pem` and `dir/name.key`; returns its DER for clients to trust.
pub fn write_cert(dir: &Path, name: &str, not_after: (i32, u8, u8)) -> rustls::pki_types::CertificateDer<'static> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    cert.der().clone()
}

/// Unix seconds of midnight UTC on (y, m, d) (days-from-civil, proleptic Gregorian).
pub fn unix_day(y: i32, m: u8, d: u8) -> i64 {
    let (y, m, d) = (i64::from(y) - i64::from(m <= 2), i64::from(m), i64::from(d));
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400
}
