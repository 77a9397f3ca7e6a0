//! The vault API's client certificates (issue 24, item 6): with `require_client_cert` (the default off loopback)
//! a bearer key alone over one-way TLS is refused at the handshake, and a certificate its CA revoked (`crl`) is
//! refused like no certificate; a valid one passes, with the key as a second factor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

struct Client {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A CA, the vault's certificate, two client certificates of the same identity (serials 1 and 2), and a CRL
/// revoking serial 2; PEM files in `dir`.
fn pki(dir: &std::path::Path) -> (CertificateDer<'static>, Client, Client) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut sp = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    sp.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
    let client = |serial: u64| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        p.subject_alt_names.push(rcgen::SanType::URI("spiffe://shop/payments".try_into().unwrap()));
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        Client { cert: cert.der().clone(), key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    };
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(2u64),
            revocation_time: rcgen::date_time_ymd(2025, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &ca_key)
    .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("revoked.crl.pem"), crl.pem().unwrap()).unwrap();
    (ca.der().clone(), client(1), client(2))
}

/// One tokenize call over TLS, with or without a client certificate; `Err` when the handshake or the call fails.
async fn tokenize(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
    cert: Option<&Client>,
) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cfg = match cert {
        Some(c) => builder.with_client_auth_cert(vec![c.cert.clone()], c.key.clone_key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/v1/tokenize")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {PAYMENTS_KEY}"))
        .body(Full::new(Bytes::from(r#"{"items":[{"class":"email","value":"a@b.co"}]}"#)))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(status)
}

#[tokio::test]
async fn a_bearer_key_alone_or_a_revoked_certificate_is_refused_when_certificates_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, good, revoked) = pki(dir.path());
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let d = dir.path().display();
    for (extra, bearer_alone, revoked_passes) in [
        // Certificates optional (the loopback default): the key alone passes; a certificate presented is still
        // checked, so a revoked one is refused.
        ("", true, false),
        ("require_client_cert = true\n", false, false),
    ] {
        let text = format!("{}{extra}crl = [\"{d}/revoked.crl.pem\"]\n", config_text(dir.path(), true, None));
        let cfg = veil::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let running = veil::app::start(cfg, veil::vault::engine::system_clock()).await.unwrap();
        let addr = running.vault_addr.unwrap();
        assert_eq!(tokenize(addr, &ca, Some(&good)).await, Ok(200), "{extra}");
        assert_eq!(tokenize(addr, &ca, None).await.is_ok(), bearer_alone, "{extra}: bearer key alone");
        assert_eq!(tokenize(addr, &ca, Some(&revoked)).await.is_ok(), revoked_passes, "{extra}: revoked");
        running.shutdown().await;
    }
}

#[test]
fn certificates_are_required_off_loopback_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let vault = |listen: &str, extra: &str| {
        format!(
            "[vault]\nlisten = \"{listen}\"\nstore = \"sqlite://{d}/v.db\"\nmaster_key_file = \"{d}/k\"\n\
             audit_log = \"{d}/a\"\n[vault.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n{extra}"
        )
    };
    let required = |text: String| veil::config::parse(&text).unwrap().vault.unwrap().tls.unwrap().require_client_cert;
    assert!(required(vault("0.0.0.0:8444", "")));
    assert!(!required(vault("127.0.0.1:8444", "")));
    assert!(!required(vault("0.0.0.0:8444", "require_client_cert = false\n")));
    let err = veil::config::parse(&vault("127.0.0.1:0", "").replace("client_ca = \"ca\"\n", "crl = [\"x\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("vault.tls: crl and require_client_cert need client_ca"), "{err}");
}
