//! A minimal blocking client for the AWS KMS JSON API (`POST /`, `X-Amz-Target: TrentService.<Op>`, SigV4):
//! one HTTP/1.1 request per call over TCP, TLS (rustls, system roots) for `https://` endpoints. Blocking on
//! purpose: key providers run at start and in commands, before anything is served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::sigv4::{self, Credentials, ToSign};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: u64 = 1 << 20;

/// A KMS endpoint and the credentials to call it with.
pub struct KmsClient {
    pub endpoint: http::Uri,
    pub region: String,
    pub credentials: Credentials,
}

fn host_port(uri: &http::Uri) -> Result<(String, u16, bool), String> {
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the KMS endpoint must be http:// or https://".into()),
    };
    let host = uri.host().ok_or("the KMS endpoint has no host")?.to_owned();
    Ok((host, uri.port_u16().unwrap_or(if tls { 443 } else { 80 }), tls))
}

impl KmsClient {
    /// Calls `TrentService.<op>` with `body`; the answer's JSON, or a sentence naming the endpoint and the error.
    pub fn call(&self, op: &str, body: &Value) -> Result<Value, String> {
        let (host, port, tls) = host_port(&self.endpoint)?;
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let date = sigv4::amz_date(now);
        let host_header = match (tls, port) {
            (true, 443) | (false, 80) => host.clone(),
            _ => format!("{host}:{port}"),
        };
        let target = format!("TrentService.{op}");
        let token = self.credentials.session_token.as_ref().map(|t| t.expose().clone());
        let mut headers: Vec<(&str, &str)> =
            vec![("content-type", "application/x-amz-json-1.1"), ("host", &host_header), ("x-amz-date", &date)];
        if let Some(t) = &token {
            headers.push(("x-amz-security-token", t));
        }
        headers.push(("x-amz-target", &target));
        let req = ToSign { method: "POST", path: "/", query: "", headers: &headers, body: &body };
        let auth = sigv4::authorization(&req, &self.credentials, &date, &self.region, "kms");
        let mut head = format!("POST / HTTP/1.1\r\nauthorization: {auth}\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("connection: close\r\n\r\n");
        let shown = self.endpoint.to_string();
        let down = |e: std::io::Error| format!("KMS at {shown} unreachable: {e}");
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map_err(down)?
            .next()
            .ok_or_else(|| format!("KMS at {shown}: no address for {host}"))?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(down)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(down)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(down)?;
        let mut raw = Vec::new();
        if tls {
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(crate::tls::system_roots())
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            exchange(&mut stream, head.as_bytes(), &body, &mut raw).map_err(down)?;
        } else {
            let mut stream = tcp;
            exchange(&mut stream, head.as_bytes(), &body, &mut raw).map_err(down)?;
        }
        let text = String::from_utf8_lossy(&raw);
        let (head, answer) = text.split_once("\r\n\r\n").ok_or_else(|| format!("KMS at {shown}: no HTTP answer"))?;
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json: Value = serde_json::from_str(answer.trim()).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(json);
        }
        // KMS errors carry `__type` and `message`, never key material.
        let kind = json["__type"].as_str().unwrap_or("error");
        let message = json["message"].as_str().or(json["Message"].as_str()).unwrap_or("");
        Err(format!("KMS at {shown} refused {op}: {status} {kind} {message}").trim().to_owned())
    }
}

fn exchange(stream: &mut (impl Read + Write), head: &[u8], body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    stream.write_all(head)?;
    stream.write_all(body)?;
    stream.flush()?;
    stream.take(MAX_ANSWER).read_to_end(out).map(|_| ())
}
