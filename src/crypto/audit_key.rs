//! The audit signing key: Ed25519, kept in its own file (never derived from the data master key), so whoever
//! holds the master key or the public key can check the audit log but cannot rewrite it.
//!
//! Files (written by `veil keygen --audit-key --out keys/audit.key`, never overwritten):
//! ```text
//! keys/audit.key      mode 0600: "# veil audit signing key: keep secret\ned25519 <64 hex digits of the seed>\n"
//! keys/audit.key.pub  mode 0644: "ed25519 <64 hex digits of the public key>\n"
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use zeroize::Zeroize;

use super::keys::KeyError;
use super::Secret;

const PRIVATE_HEADER: &str = "# veil audit signing key: keep secret";
const ALGORITHM: &str = "ed25519";

/// Signs audit lines.
#[derive(Clone)]
pub struct AuditSigner {
    key: SigningKey,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner").field("public", &self.verifier().id()).finish_non_exhaustive()
    }
}

/// Checks audit line signatures; holds only the public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditVerifier {
    key: VerifyingKey,
}

/// The public key file beside a private one: `<path>.pub`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

impl AuditSigner {
    /// A signer from a 32-byte seed (tests; the fallback derived from the master key, see `app::audit_signer`).
    pub fn from_seed(seed: &[u8; 32]) -> AuditSigner {
        AuditSigner { key: SigningKey::from_bytes(seed) }
    }

    /// Writes a new key to `path` (mode 0600, created exclusively: an existing file is never overwritten) and its
    /// public key to `path.pub`.
    pub fn generate_file(path: &Path) -> Result<AuditVerifier, KeyError> {
        let shown = path.display().to_string();
        let write_err = |source| KeyError::Write { path: shown.clone(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let pub_path = public_path(path);
        if pub_path.exists() {
            return Err(KeyError::Exists { path: pub_path.display().to_string() });
        }
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(KeyError::Exists { path: shown }),
            Err(source) => return Err(write_err(source)),
        };
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let signer = AuditSigner::from_seed(&raw);
        let text = Secret::new(format!("{PRIVATE_HEADER}\n{ALGORITHM} {}\n", hex::encode(raw)));
        raw.zeroize();
        file.write_all(text.expose().as_bytes()).and_then(|_| file.sync_all()).map_err(write_err)?;
        let verifier = signer.verifier();
        let pub_shown = pub_path.display().to_string();
        let mut pub_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&pub_path)
            .map_err(|source| KeyError::Write { path: pub_shown.clone(), source })?;
        pub_file
            .write_all(verifier.to_text().as_bytes())
            .and_then(|_| pub_file.sync_all())
            .map_err(|source| KeyError::Write { path: pub_shown, source })?;
        Ok(verifier)
    }

    /// Reads a key file written by [`AuditSigner::generate_file`]; refuses one group or others can read.
    pub fn load(path: &Path) -> Result<AuditSigner, KeyError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: shown, mode });
        }
        let text = Secret::new(
            std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?,
        );
        let mut seed = parse_key_line(text.expose(), &shown)?;
        let signer = AuditSigner::from_seed(&seed);
        seed.zeroize();
        Ok(signer)
    }

    /// Signature of `data` (64 bytes).
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.key.sign(data).to_bytes()
    }

    pub fn verifier(&self) -> AuditVerifier {
        AuditVerifier { key: self.key.verifying_key() }
    }
}

impl AuditVerifier {
    /// Reads a public key file (`ed25519 <hex>`).
    pub fn load(path: &Path) -> Result<AuditVerifier, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        AuditVerifier::parse(&text, &shown)
    }

    /// Parses the text of a public key file.
    pub fn parse(text: &str, shown: &str) -> Result<AuditVerifier, KeyError> {
        let raw = parse_key_line(text, shown)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Format {
            path: shown.to_owned(),
            line: 1,
            reason: "not an Ed25519 public key",
        })?;
        Ok(AuditVerifier { key })
    }

    /// Whether `signature` is this key's signature of `data`.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else { return false };
        self.key.verify_strict(data, &sig).is_ok()
    }

    /// The public key file's text.
    pub fn to_text(&self) -> String {
        format!("{ALGORITHM} {}\n", hex::encode(self.key.as_bytes()))
    }

    /// A short id of the public key (first 8 bytes of its hex), to name it in messages.
    pub fn id(&self) -> String {
        hex::encode(&self.key.as_bytes()[..8])
    }
}

/// The 32 bytes of the one `ed25519 <hex>` line of a key file (comments and blank lines skipped).
fn parse_key_line(text: &str, shown: &str) -> Result<[u8; 32], KeyError> {
    let format = |line, reason| KeyError::Format { path: shown.to_owned(), line, reason };
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if found.is_some() {
            return Err(format(i + 1, "more than one key"));
        }
        let Some(hex_part) = line.strip_prefix(ALGORITHM).and_then(|r| r.strip_prefix(' ')) else {
            return Err(format(i + 1, "expected `ed25519 <64 hex digits>`"));
        };
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex_part.trim(), &mut raw).map_err(|_| format(i + 1, "expected 64 hex digits"))?;
        found = Some(raw);
    }
    found.ok_or(KeyError::Empty { path: shown.to_owned() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_key_signs_and_its_public_file_verifies_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let verifier = AuditSigner::generate_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let signer = AuditSigner::load(&path).unwrap();
        assert_eq!(signer.verifier(), verifier);
        let from_pub = AuditVerifier::load(&public_path(&path)).unwrap();
        let sig = signer.sign(b"line");
        assert!(from_pub.verify(b"line", &sig));
        assert!(!from_pub.verify(b"lime", &sig));
        assert!(!from_pub.verify(b"line", &sig[..63]));
        assert!(!AuditSigner::from_seed(&[1; 32]).verifier().verify(b"line", &sig));
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(AuditSigner::generate_file(&path), Err(KeyError::Exists { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // The private key's text never shows in Debug.
        assert!(!format!("{signer:?}").contains(&hex::encode(&before[40..60])));
    }

    #[test]
    fn readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        AuditSigner::generate_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(AuditSigner::load(&path), Err(KeyError::Permissions { .. })));
    }

    #[test]
    fn bad_key_files_are_format_errors() {
        for text in ["", "# only a comment\n", "rsa 00\n", "ed25519 zz\n", "ed25519 00\n"] {
            assert!(AuditVerifier::parse(text, "x").is_err(), "{text:?}");
        }
        let one = format!("ed25519 {}\n", "11".repeat(32));
        assert!(parse_key_line(&format!("{one}{one}"), "x").is_err());
    }

    proptest! {
        #[test]
        fn public_key_text_round_trips(seed in proptest::array::uniform32(any::<u8>())) {
            let v = AuditSigner::from_seed(&seed).verifier();
            prop_assert_eq!(AuditVerifier::parse(&v.to_text(), "x").unwrap(), v);
        }

        #[test]
        fn any_text_parses_or_errs_without_panic(text in "\\PC{0,120}") {
            let _ = AuditVerifier::parse(&text, "x");
        }
    }
}
