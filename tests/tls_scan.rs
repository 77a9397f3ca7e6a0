//! TLS scan with Debian's `sslscan`: veil's proxy and vault listeners accept only TLS 1.2 and 1.3 with strong
//! AEAD suites and forward secrecy — no SSLv2/3, TLS 1.0/1.1, NULL/EXPORT/RC4/3DES/CBC suites, no insecure
//! renegotiation, no compression, no heartbleed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::prom;
use common::*;

/// `name="value"` attributes of every `<tag …>` element in sslscan's XML, in order.
fn elements(xml: &str, tag: &str) -> Vec<Vec<(String, String)>> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let end = body.find('>').unwrap();
        let mut attrs = Vec::new();
        let mut a = &body[..end];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_owned();
            let after = &a[eq + 2..];
            let close = after.find('"').unwrap();
            attrs.push((name, after[..close].to_owned()));
            a = &after[close + 1..];
        }
        out.push(attrs);
        rest = &body[end..];
    }
    out
}

fn attr<'a>(el: &'a [(String, String)], name: &str) -> &'a str {
    el.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Everything wrong with a scan result; empty when the listener is as strict as veil promises.
fn problems(xml: &str) -> Vec<String> {
    let mut bad = Vec::new();
    if !xml.contains("<ssltest ") {
        bad.push("no <ssltest> in the output: the scan did not run".to_owned());
    }
    let mut enabled = Vec::new();
    for p in elements(xml, "protocol") {
        let name = format!("{}{}", attr(&p, "type"), attr(&p, "version"));
        if attr(&p, "enabled") == "1" {
            enabled.push(name);
        }
    }
    let tested = elements(xml, "protocol").len();
    if tested < 6 {
        bad.push(format!("only {tested} protocol versions tested (SSLv2, SSLv3, TLS 1.0-1.3 expected)"));
    }
    if enabled != ["tls1.2", "tls1.3"] {
        bad.push(format!("protocols enabled: {enabled:?}, expected exactly TLS 1.2 and TLS 1.3"));
    }
    let ciphers = elements(xml, "cipher");
    if ciphers.is_empty() {
        bad.push("no accepted cipher suite found".to_owned());
    }
    for c in &ciphers {
        let (name, version, strength) = (attr(c, "cipher"), attr(c, "sslversion"), attr(c, "strength"));
        let aead = name.contains("GCM") || name.contains("CHACHA20");
        let weak =
            ["NULL", "EXP", "RC4", "DES", "CBC", "MD5", "ADH", "AECDH", "anon", "PSK", "SRP", "IDEA", "CAMELLIA"]
                .iter()
                .any(|w| name.contains(w));
        if !aead || weak {
            bad.push(format!("weak suite accepted: {name} ({version})"));
        }
        if version != "TLSv1.2" && version != "TLSv1.3" {
            bad.push(format!("suite {name} accepted with {version}"));
        }
        if version == "TLSv1.2" && !name.starts_with("ECDHE-") {
            bad.push(format!("TLS 1.2 suite without forward secrecy: {name}"));
        }
        if !matches!(strength, "strong" | "acceptable" | "") {
            bad.push(format!("sslscan rates {name} as {strength}"));
        }
    }
    for r in elements(xml, "renegotiation") {
        if attr(&r, "supported") == "1" && attr(&r, "secure") != "1" {
            bad.push("insecure renegotiation supported".to_owned());
        }
    }
    for c in elements(xml, "compression") {
        if attr(&c, "supported") == "1" {
            bad.push("TLS compression supported (CRIME)".to_owned());
        }
    }
    for h in elements(xml, "heartbleed") {
        if attr(&h, "vulnerable") != "0" {
            bad.push(format!("heartbleed: {h:?}"));
        }
    }
    for g in elements(xml, "group") {
        let bits: u32 = attr(&g, "bits").parse().unwrap_or(0);
        if bits < 128 {
            bad.push(format!("weak key exchange group: {}", attr(&g, "name")));
        }
    }
    bad
}

/// Runs sslscan against `addr`; returns its XML report.
async fn sslscan(addr: SocketAddr) -> String {
    let tool = prom::require("sslscan", "sslscan");
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("scan.xml");
    let out = tokio::process::Command::new(tool)
        .arg("--no-colour")
        .arg(format!("--xml={}", xml.display()))
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "sslscan failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&xml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_vault_listeners_accept_only_strong_tls() {
    let app = App::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    Pki::new(dir.path()); // server.pem/server.key/ca.pem for the vault (mTLS)
    prom::write_cert(dir.path(), "proxy", (2031, 5, 17));
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n\
         [proxy.tls]\ncert = \"{d}/proxy.pem\"\nkey = \"{d}/proxy.key\"\n{}",
        app.addr,
        config_text(dir.path(), true, None)
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();

    for (listener, addr) in [("proxy", running.proxy_addr.unwrap()), ("vault", running.vault_addr.unwrap())] {
        let xml = sslscan(addr).await;
        assert!(xml.contains(&format!("port=\"{}\"", addr.port())), "{listener}: scanned the wrong port?\n{xml}");
        let bad = problems(&xml);
        assert!(bad.is_empty(), "{listener}: {bad:#?}\n{xml}");
    }
    running.shutdown().await;
}

#[test]
fn the_checker_flags_weak_scan_results() {
    let good = r#"<ssltest host="127.0.0.1" port="1">
  <protocol type="ssl" version="2" enabled="0" />
  <protocol type="ssl" version="3" enabled="0" />
  <protocol type="tls" version="1.0" enabled="0" />
  <protocol type="tls" version="1.1" enabled="0" />
  <protocol type="tls" version="1.2" enabled="1" />
  <protocol type="tls" version="1.3" enabled="1" />
  <renegotiation supported="0" secure="0" />
  <heartbleed sslversion="TLSv1.2" vulnerable="0" />
  <cipher status="preferred" sslversion="TLSv1.3" bits="128" cipher="TLS_AES_128_GCM_SHA256" strength="acceptable" />
  <cipher status="accepted" sslversion="TLSv1.2" bits="256" cipher="ECDHE-ECDSA-AES256-GCM-SHA384" strength="strong" />
  <group sslversion="TLSv1.3" bits="128" name="x25519" id="0x001d" />
</ssltest>"#;
    assert_eq!(problems(good), Vec::<String>::new());
    for (from, to, expect) in [
        (r#"version="1.0" enabled="0""#, r#"version="1.0" enabled="1""#, "protocols enabled"),
        (r#"version="3" enabled="0""#, r#"version="3" enabled="1""#, "protocols enabled"),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "weak suite"),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", "DES-CBC3-SHA", "weak suite"),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", "AES256-GCM-SHA384", "forward secrecy"),
        (r#"TLSv1.2" bits="256""#, r#"TLSv1.1" bits="256""#, "accepted with TLSv1.1"),
        (r#"<renegotiation supported="0" secure="0""#, r#"<renegotiation supported="1" secure="0""#, "renegotiation"),
        (r#"vulnerable="0""#, r#"vulnerable="1""#, "heartbleed"),
        (r#"bits="128" name="x25519""#, r#"bits="80" name="ffdhe1024""#, "weak key exchange"),
        (r#"strength="strong""#, r#"strength="medium""#, "rates"),
    ] {
        let bad = problems(&good.replace(from, to));
        assert!(bad.iter().any(|b| b.contains(expect)), "{to}: {bad:?}");
    }
    let compressed = good.replace("<renegotiation", "<compression supported=\"1\" />\n<renegotiation");
    assert!(problems(&compressed).iter().any(|b| b.contains("compression")));
    assert!(!problems("").is_empty(), "an empty report is a failure, not a pass");
}

/// A TLS 1.2 ClientHello offering `compression` methods (0 = null, 1 = DEFLATE).
fn client_hello(compression: &[u8]) -> Vec<u8> {
    let mut ext = Vec::new();
    // supported_groups: x25519, secp256r1
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-ECDSA/RSA-AES128-GCM-SHA256
    body.push(compression.len() as u8);
    body.extend_from_slice(compression);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Sends a ClientHello; returns the first record's content type and (for a ServerHello) its compression method.
async fn hello(addr: SocketAddr, compression: &[u8]) -> (u8, Option<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&client_hello(compression)).await.unwrap();
    let mut header = [0u8; 5];
    s.read_exact(&mut header).await.unwrap();
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut rec = vec![0u8; len];
    s.read_exact(&mut rec).await.unwrap();
    if header[0] != 0x16 || rec[0] != 0x02 {
        return (header[0], None);
    }
    // ServerHello: type(1) len(3) version(2) random(32) session_id(1+n) cipher(2) compression(1)
    let sid = usize::from(rec[38]);
    (header[0], Some(rec[39 + sid + 2]))
}

/// Debian's sslscan is built without zlib and cannot test TLS compression: ask for it directly.
#[tokio::test]
async fn tls_compression_is_never_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    Pki::new(dir.path());
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\
         [proxy.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n{}",
        config_text(dir.path(), true, None)
    );
    let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
    for addr in [running.proxy_addr.unwrap(), running.vault_addr.unwrap()] {
        // DEFLATE and null offered: the server picks null.
        assert_eq!(hello(addr, &[1, 0]).await, (0x16, Some(0)), "{addr}");
        // Only DEFLATE offered: refused with an alert.
        assert_eq!(hello(addr, &[1]).await.0, 0x15, "{addr}");
    }
    running.shutdown().await;
}
