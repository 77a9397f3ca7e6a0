//! rustls configurations: server (TLS 1.2/1.3, ALPN h2 + http/1.1, optional client-certificate verification)
//! and the identities (URI and DNS SANs) of a verified client certificate.
//!
//! Every server config is built from [`provider`]: TLS 1.3 and TLS 1.2 only, and only AEAD suites with
//! forward secrecy (ECDHE + AES-GCM / ChaCha20-Poly1305), pinned here so a crate default can never widen them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error names the file only: never key material.
    PrivateKeyDer::from_pem_file(path).map_err(|_| file_err(path, "no readable PEM private key"))
}

/// The operating system's trusted roots (certificates it cannot parse are skipped).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_err(path, e))?;
    }
    Ok(roots)
}

/// A client config that verifies servers against the system roots plus `extra_ca` (no ALPN: callers set their
/// own). Used for every upstream veil connects to: HTTP upstreams, egress providers, SMTP relays.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = system_roots();
    if let Some(ca) = extra_ca {
        for cert in load_certs(ca)? {
            roots.add(cert).map_err(|e| TlsError::Config(e.to_string()))?;
        }
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// Protocol versions every veil server accepts: TLS 1.3 and TLS 1.2, nothing older.
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider of every veil server: aws-lc-rs, restricted to AEAD suites with ECDHE key exchange.
pub fn provider() -> Arc<CryptoProvider> {
    use aws_lc_rs::cipher_suite as cs;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..aws_lc_rs::default_provider()
    })
}

fn server_builder() -> Result<ConfigBuilder<ServerConfig, WantsVerifier>, TlsError> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// `notAfter` of a certificate as Unix seconds (`None` if it does not parse).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// `notAfter` (Unix seconds) of the first certificate of the PEM chain at `path`.
pub fn chain_not_after(path: &Path) -> Result<i64, TlsError> {
    let certs = load_certs(path)?;
    certs.first().and_then(not_after).ok_or_else(|| file_err(path, "the certificate does not parse"))
}

/// How a server checks client certificates.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuth<'a> {
    /// Certificates are verified against this CA.
    pub ca: &'a Path,
    /// Certificates these CRLs (PEM files) revoke are refused.
    pub crls: &'a [PathBuf],
    /// A connection without a certificate is refused (else certificates are optional: API-key callers).
    pub required: bool,
}

/// A server config; with `client`, client certificates are verified as it says.
pub fn server_config(cert: &Path, key: &Path, client: Option<ClientAuth<'_>>) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = client_auth(client)?.with_single_cert(certs, key).map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server builder that asks for client certificates as `client` says, or none.
fn client_auth(
    client: Option<ClientAuth<'_>>,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, TlsError> {
    let builder = server_builder()?;
    let Some(client) = client else { return Ok(builder.with_no_client_auth()) };
    let mut crls = Vec::new();
    for path in client.crls {
        for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
            crls.push(crl.map_err(|e| file_err(path, e))?);
        }
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(client.ca)?), provider()).with_crls(crls);
    if !client.required {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(builder.with_client_cert_verifier(verifier))
}

/// URI and DNS subject-alternative names of a (verified) end-entity certificate.
pub fn identities(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_from_sans() {
        let mut params = rcgen::CertificateParams::new(vec!["payments.internal".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://shop/payments".try_into().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ids = identities(cert.der());
        assert_eq!(ids, vec!["payments.internal".to_owned(), "spiffe://shop/payments".to_owned()]);
    }

    #[test]
    fn only_tls12_and_tls13_with_aead_ecdhe_suites() {
        let p = provider();
        assert_eq!(p.cipher_suites.len(), 9);
        for suite in &p.cipher_suites {
            let name = format!("{:?}", suite.suite());
            let version = suite.version().version;
            assert!(
                version == rustls::ProtocolVersion::TLSv1_3 || version == rustls::ProtocolVersion::TLSv1_2,
                "{name}"
            );
            assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "not AEAD: {name}");
            assert!(!name.contains("CBC") && !name.contains("NULL") && !name.contains("RC4"), "{name}");
            if version == rustls::ProtocolVersion::TLSv1_2 {
                assert!(name.starts_with("TLS_ECDHE_"), "no forward secrecy: {name}");
            }
        }
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(versions, vec![rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2]);
    }

    #[test]
    fn not_after_reads_the_certificate_expiry() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        // 2031-05-17T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_936_742_400));
        assert_eq!(not_after(&CertificateDer::from(vec![1u8, 2, 3])), None);
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("c.pem");
        std::fs::write(&pem, cert.pem()).unwrap();
        assert_eq!(chain_not_after(&pem).unwrap(), 1_936_742_400);
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = server_config(Path::new("/nonexistent/c.pem"), Path::new("/nonexistent/k.pem"), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.pem"));
    }
}

/// A server certificate that can be swapped without a restart (`veil` reloads it on SIGHUP).
#[derive(Debug)]
pub struct ReloadableCert {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ReloadableCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ReloadableCert>, TlsError> {
        let current = std::sync::RwLock::new(certified_key(cert, key)?);
        Ok(Arc::new(ReloadableCert { cert: cert.to_path_buf(), key: key.to_path_buf(), current }))
    }

    /// Reads the files again; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.cert, &self.key)?;
        match self.current.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// A server config (TLS 1.2/1.3, ALPN h2 + http/1.1) serving this certificate; with `client`, client
    /// certificates are verified as it says.
    pub fn server_config(self: &Arc<Self>, client: Option<ClientAuth<'_>>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = client_auth(client)?.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// `notAfter` (Unix seconds) of the certificate served now.
    pub fn not_after(&self) -> Option<i64> {
        let current = match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        current.cert.first().and_then(not_after)
    }
}

impl rustls::server::ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        match self.current.read() {
            Ok(g) => Some(g.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let provider = provider();
    let signing =
        provider.key_provider.load_private_key(key_der).map_err(|_| file_err(key, "unsupported private key"))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(certs, signing)))
}
