//! The master keyring (versioned, from the key file) and the subkeys derived from it with HKDF-SHA256.
//!
//! Key file format (written by `veil keygen`, mode 0600), one version per line:
//! ```text
//! # veil master keyring: keep secret
//! 1 <64 hex digits>
//! ```
//! Subkeys: `HKDF-SHA256(salt = "veil-hkdf-v1", ikm = master[v], info = "veil/<purpose>/<class>/v<v>")`.
//! Every derived key of new data comes from the newest version: records are sealed under it, and value, subject
//! and audit fingerprints and receipt signatures are made under it; older versions still open, find and verify
//! what they made (each stored row names the version of its fingerprint). `veil keys rotate` appends a new
//! version with [`Keyring::rotate_file`] (atomic replace, old lines kept); `veil keys rewrap` moves every row to
//! the newest; `veil keys retire` then removes an old version's line ([`Keyring::without_version`]).
//! Only the fallback audit signing key (no `audit_key_file`) stays with the oldest version.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroize;

use super::aead::Sealer;
use super::blob::BlobKeys;
use super::fingerprint::Fingerprinter;
use super::Secret;

const SALT: &[u8] = b"veil-hkdf-v1";

/// Problems with the key file. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists { path: String },
    #[error("key file {path} line {line}: {reason}")]
    Format { path: String, line: usize, reason: &'static str },
    #[error("key file {path} holds no key")]
    Empty { path: String },
    #[error("key file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    Permissions { path: String, mode: u32 },
    #[error("{lock} exists: another rotation is running, or one was interrupted (then remove it and retry)")]
    Busy { lock: String },
    #[error("key file {path} already holds the highest possible version")]
    VersionsExhausted { path: String },
    #[error("{path} is not an encrypt-only key file; a proxy never loads the master keyring: create its own with `veil keygen --encrypt-only --out {path}`")]
    NotEncryptOnly { path: String },
    #[error("{path} is a proxy's encrypt-only key file, not a master keyring")]
    EncryptOnly { path: String },
    #[error("{path} holds no master key version {version}")]
    NoSuchVersion { path: String, version: u32 },
    #[error("version {version} is the newest master key version of {path}: it can never be retired")]
    Newest { path: String, version: u32 },
}

/// Every master key version from the key file.
pub struct Keyring {
    keys: BTreeMap<u32, Secret<[u8; 32]>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("versions", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl Keyring {
    /// A keyring from raw keys (tests, tools).
    pub fn from_keys(keys: impl IntoIterator<Item = (u32, [u8; 32])>) -> Keyring {
        Keyring { keys: keys.into_iter().map(|(v, k)| (v, Secret::new(k))).collect() }
    }

    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        Self::parse(Self::read_text(path)?.expose(), &path.display().to_string())
    }

    /// The text of a key file, refused when group or others may read it.
    pub fn read_text(path: &Path) -> Result<Secret<String>, KeyError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: shown, mode });
        }
        Ok(Secret::new(std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown, source })?))
    }

    /// A keyring from its text (key-file format) as a provider gave it; `source` names where it came from.
    pub fn from_text(text: &Secret<String>, source: &str) -> Result<Keyring, KeyError> {
        Self::parse(text.expose(), source)
    }

    /// The text of a new keyring: one fresh version-1 key.
    pub fn generate_text() -> Secret<String> {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let key = Secret::new(raw);
        raw.zeroize();
        Secret::new(format!("# veil master keyring: keep secret\n1 {}\n", hex::encode(key.expose())))
    }

    /// `text` with a fresh master key appended as the next version (every line kept), and that version.
    pub fn with_new_version(text: &Secret<String>, source: &str) -> Result<(Secret<String>, u32), KeyError> {
        let ring = Self::parse(text.expose(), source)?;
        let next =
            ring.current_version().checked_add(1).ok_or(KeyError::VersionsExhausted { path: source.to_owned() })?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let key = Secret::new(raw);
        raw.zeroize();
        let old = text.expose();
        let sep = if old.is_empty() || old.ends_with('\n') { "" } else { "\n" };
        let new = Secret::new(format!("{old}{sep}{next} {}\n", hex::encode(key.expose())));
        Self::parse(new.expose(), source)?;
        Ok((new, next))
    }

    /// `text` without the line of master key `version` (every other line kept verbatim). Refused for a version
    /// the text does not hold and for the newest (new data is made under it).
    pub fn without_version(text: &Secret<String>, source: &str, version: u32) -> Result<Secret<String>, KeyError> {
        let ring = Self::parse(text.expose(), source)?;
        if !ring.keys.contains_key(&version) {
            return Err(KeyError::NoSuchVersion { path: source.to_owned(), version });
        }
        if ring.current_version() == version {
            return Err(KeyError::Newest { path: source.to_owned(), version });
        }
        let mut out = String::with_capacity(text.expose().len());
        for line in text.expose().split_inclusive('\n') {
            let named = line.trim().split_once(' ').and_then(|(v, _)| v.parse::<u32>().ok());
            if named != Some(version) || line.trim().starts_with('#') {
                out.push_str(line);
            }
        }
        let out = Secret::new(out);
        Self::parse(out.expose(), source)?;
        Ok(out)
    }

    fn parse(text: &str, shown: &str) -> Result<Keyring, KeyError> {
        let format = |line: usize, reason| KeyError::Format { path: shown.to_owned(), line, reason };
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (version, hex_key) =
                line.split_once(' ').ok_or_else(|| format(n + 1, "expected `<version> <hex key>`"))?;
            let version: u32 = version.parse().map_err(|_| format(n + 1, "version is not a number"))?;
            if version == 0 {
                return Err(format(n + 1, "versions start at 1"));
            }
            let mut key = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| format(n + 1, "key is not 64 hex digits"))?;
            if keys.insert(version, Secret::new(key)).is_some() {
                return Err(format(n + 1, "version appears twice"));
            }
            key.zeroize();
        }
        if keys.is_empty() {
            return Err(KeyError::Empty { path: shown.to_owned() });
        }
        Ok(Keyring { keys })
    }

    /// Writes a new key file with one fresh version-1 key, mode 0600; never overwrites.
    pub fn generate_file(path: &Path) -> Result<(), KeyError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| KeyError::Write { path: shown.clone(), source })?;
        }
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(KeyError::Exists { path: shown }),
            Err(source) => return Err(KeyError::Write { path: shown, source }),
        };
        let line = Self::generate_text();
        file.write_all(line.expose().as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|source| KeyError::Write { path: shown, source })
    }

    /// Appends a fresh master key as the next version and returns that version. Every existing line (older
    /// versions, comments) is kept. The file is replaced atomically: the new text goes to a 0600 file beside it
    /// (created exclusively, so it also serves as a lock against a concurrent rotation), is fsynced, renamed
    /// over the key file, and the directory is fsynced. A crash leaves either the old or the new file.
    /// A symlinked key file (a mounted secret, say) is rotated where it points, and the link is kept.
    pub fn rotate_file(path: &Path) -> Result<u32, KeyError> {
        let shown = path.display().to_string();
        // Refuses a loose or malformed key file before anything is written.
        Keyring::load(path)?;
        let target = std::fs::canonicalize(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        let path = target.as_path();
        let old = Secret::new(
            std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?,
        );
        // What is written loads back (every old version and the new one).
        let (text, next) = Keyring::with_new_version(&old, &shown)?;

        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => std::path::PathBuf::from("."),
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".rotating");
        let tmp = dir.join(tmp_name);
        let lock = tmp.display().to_string();
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(KeyError::Busy { lock }),
            Err(source) => return Err(KeyError::Write { path: lock, source }),
        };
        let written = file
            .write_all(text.expose().as_bytes())
            .and_then(|_| file.sync_all())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| KeyError::Write { path: shown.clone(), source });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyError::Write { path: dir.display().to_string(), source })?;
        Ok(next)
    }

    pub fn current_version(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(1)
    }

    pub fn oldest_version(&self) -> u32 {
        self.keys.keys().next().copied().unwrap_or(1)
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// HKDF-SHA256 subkey for a purpose and class under one master version.
    pub fn derive(&self, purpose: &str, class: &str, version: u32) -> Option<Secret<[u8; 32]>> {
        let master = self.keys.get(&version)?;
        let hk = Hkdf::<Sha256>::new(Some(SALT), master.expose());
        let info = format!("veil/{purpose}/{class}/v{version}");
        let mut okm = [0u8; 32];
        hk.expand(info.as_bytes(), &mut okm).ok()?;
        let out = Secret::new(okm);
        okm.zeroize();
        Some(out)
    }
}

/// Subkeys derived once at start, ready for the hot path.
pub struct KeySet {
    current: u32,
    oldest: u32,
    /// By class name, then key version: looked up with a borrowed name (no allocation per lookup).
    sealers: HashMap<String, HashMap<u32, Sealer>>,
    blobs: Arc<BlobKeys>,
    /// By class name, then key version.
    value_fp: HashMap<String, HashMap<u32, Fingerprinter>>,
    /// Per key version: audit (token fingerprints in audit lines), subject ids, erasure receipts.
    by_version: BTreeMap<u32, Versioned>,
    /// Fingerprints tokens and subjects in audit lines (newest version).
    pub audit: Fingerprinter,
    /// Fingerprints subject ids (newest version).
    pub subject: Fingerprinter,
    /// Signs erasure receipts (HMAC-SHA256, newest version).
    pub receipt: Fingerprinter,
    /// The oldest version's audit key: only the seed of the fallback audit signing key (no `audit_key_file`),
    /// which must not change while its log is kept.
    oldest_audit: Fingerprinter,
}

/// The per-version keys that are not per class.
struct Versioned {
    audit: Fingerprinter,
    subject: Fingerprinter,
    receipt: Fingerprinter,
    /// Seals subject ids (kept so that a subject's links can be re-fingerprinted).
    subject_sealer: Sealer,
}

/// The pseudo-class subject ids are sealed under (never a data class name: those have no leading `-`).
pub const SUBJECT_SEAL: &str = "-subject";

impl KeySet {
    pub fn derive(ring: &Keyring, classes: &[&str]) -> Result<KeySet, KeyError> {
        let empty = || KeyError::Empty { path: "keyring".into() };
        let (first, current) = (ring.oldest_version(), ring.current_version());
        let mut sealers: HashMap<String, HashMap<u32, Sealer>> = HashMap::new();
        let mut value_fp: HashMap<String, HashMap<u32, Fingerprinter>> = HashMap::new();
        for class in classes {
            for v in ring.versions() {
                let k = ring.derive("seal", class, v).ok_or_else(empty)?;
                sealers.entry((*class).to_owned()).or_default().insert(v, Sealer::new(k.expose()));
                let k = ring.derive("value-fingerprint", class, v).ok_or_else(empty)?;
                value_fp.entry((*class).to_owned()).or_default().insert(v, Fingerprinter::new(k.expose()));
            }
        }
        let mut by_version = BTreeMap::new();
        for v in ring.versions() {
            let fp = |purpose: &str| ring.derive(purpose, "-", v).map(|k| Fingerprinter::new(k.expose()));
            let sealer = ring.derive("seal", SUBJECT_SEAL, v).map(|k| Sealer::new(k.expose()));
            let keys = Versioned {
                audit: fp("audit").ok_or_else(empty)?,
                subject: fp("subject").ok_or_else(empty)?,
                receipt: fp("erasure-receipt").ok_or_else(empty)?,
                subject_sealer: sealer.ok_or_else(empty)?,
            };
            by_version.insert(v, keys);
        }
        let newest = by_version.get(&current).ok_or_else(empty)?;
        let (audit, subject, receipt) = (newest.audit.clone(), newest.subject.clone(), newest.receipt.clone());
        let oldest_audit = by_version.get(&first).ok_or_else(empty)?.audit.clone();
        let blobs = Arc::new(BlobKeys::derive(ring, classes)?);
        Ok(KeySet {
            current,
            oldest: first,
            sealers,
            blobs,
            value_fp,
            by_version,
            audit,
            subject,
            receipt,
            oldest_audit,
        })
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// The oldest version held: legacy rows (written before rows named their fingerprint's version) were
    /// fingerprinted under it.
    pub fn oldest_version(&self) -> u32 {
        self.oldest
    }

    /// Every version held, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_version.keys().copied()
    }

    pub fn sealer(&self, class: &str, version: u32) -> Option<&Sealer> {
        self.sealers.get(class)?.get(&version)
    }

    /// The sealer of subject ids under `version`.
    pub fn subject_sealer(&self, version: u32) -> Option<&Sealer> {
        self.by_version.get(&version).map(|k| &k.subject_sealer)
    }

    /// The subject-id fingerprinter of `version`.
    pub fn subject_at(&self, version: u32) -> Option<&Fingerprinter> {
        self.by_version.get(&version).map(|k| &k.subject)
    }

    /// The audit fingerprinter of `version`.
    pub fn audit_at(&self, version: u32) -> Option<&Fingerprinter> {
        self.by_version.get(&version).map(|k| &k.audit)
    }

    /// The receipt key of `version`.
    pub fn receipt_at(&self, version: u32) -> Option<&Fingerprinter> {
        self.by_version.get(&version).map(|k| &k.receipt)
    }

    /// The seed key of the fallback audit signing key (the oldest version's audit key).
    pub fn audit_signing_seed(&self) -> &Fingerprinter {
        &self.oldest_audit
    }

    /// The `encrypt` action's keys, for a proxy in the same process.
    pub fn blobs(&self) -> &Arc<BlobKeys> {
        &self.blobs
    }

    /// The `encrypt` action: a vaultless AES-GCM-SIV blob, `veil:v<version>:<base64url(nonce ‖ ct ‖ tag)>`.
    pub fn encrypt_blob(&self, class: &str, plaintext: &str) -> Option<String> {
        self.blobs.encrypt_blob(class, plaintext)
    }

    /// Opens a blob made by [`KeySet::encrypt_blob`] for the same class.
    pub fn decrypt_blob(&self, class: &str, blob: &str) -> Option<Secret<String>> {
        self.blobs.decrypt_blob(class, blob)
    }

    /// The value fingerprint under the newest version (what new rows are stored under).
    pub fn value_fingerprint(&self, class: &str, canonical: &str) -> Option<[u8; 32]> {
        self.value_fingerprint_at(class, canonical, self.current)
    }

    /// The value fingerprint under `version`.
    pub fn value_fingerprint_at(&self, class: &str, canonical: &str, version: u32) -> Option<[u8; 32]> {
        self.value_fp.get(class)?.get(&version).map(|f| f.fingerprint(canonical.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(hex::encode(prk), "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn rfc5869_test_case_3_no_salt_no_info() {
        let ikm = [0x0bu8; 22];
        let hk = Hkdf::<Sha256>::new(None, &ikm);
        let mut okm = [0u8; 42];
        hk.expand(&[], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn subkeys_differ_by_purpose_class_and_version() {
        let ring = Keyring::from_keys([(1, [1u8; 32]), (2, [2u8; 32])]);
        let a = ring.derive("seal", "pan", 1).unwrap();
        assert_ne!(a.expose(), ring.derive("seal", "iban", 1).unwrap().expose());
        assert_ne!(a.expose(), ring.derive("value-fingerprint", "pan", 1).unwrap().expose());
        assert_ne!(a.expose(), ring.derive("seal", "pan", 2).unwrap().expose());
        assert!(ring.derive("seal", "pan", 3).is_none());
        assert_eq!(ring.current_version(), 2);
    }

    #[test]
    fn blobs_round_trip_and_are_bound_to_their_class() {
        let keys = KeySet::derive(&Keyring::from_keys([(1, [5u8; 32])]), &["pan", "text"]).unwrap();
        let blob = keys.encrypt_blob("text", "allergic to nuts").unwrap();
        assert!(blob.starts_with("veil:v1:") && !blob.contains("nuts"));
        assert_eq!(keys.decrypt_blob("text", &blob).unwrap().expose(), "allergic to nuts");
        assert!(keys.decrypt_blob("pan", &blob).is_none());
        assert_ne!(blob, keys.encrypt_blob("text", "allergic to nuts").unwrap(), "fresh nonce");
    }

    #[test]
    fn keygen_writes_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        Keyring::generate_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(Keyring::generate_file(&path), Err(KeyError::Exists { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(ring.current_version(), 1);
        assert!(!format!("{ring:?}").contains(&hex::encode(ring.keys[&1].expose())));
    }

    #[test]
    fn load_refuses_loose_permissions_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("1 {}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Keyring::load(&path), Err(KeyError::Permissions { .. })));
        let zero_version = format!("0 {}", "ab".repeat(32));
        for bad in ["1 abcd", "x ab", zero_version.as_str(), "# only a comment"] {
            let err = Keyring::parse(bad, "k").unwrap_err().to_string();
            assert!(!err.contains("abab"), "no key bytes in errors: {err}");
        }
    }

    #[test]
    fn rotate_appends_a_version_and_keeps_every_old_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        Keyring::generate_file(&path).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let v1 = Keyring::load(&path).unwrap();
        assert_eq!(Keyring::rotate_file(&path).unwrap(), 2);
        assert_eq!(Keyring::rotate_file(&path).unwrap(), 3);
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.starts_with(&before), "old lines kept verbatim");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(ring.keys[&1].expose(), v1.keys[&1].expose());
        assert_ne!(ring.keys[&2].expose(), ring.keys[&1].expose());
        assert_ne!(ring.keys[&3].expose(), ring.keys[&2].expose());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("master.key")], "no temp file left behind");
    }

    #[test]
    fn rotate_handles_a_file_without_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("7 {}", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Keyring::rotate_file(&path).unwrap(), 8);
        assert_eq!(Keyring::load(&path).unwrap().versions().collect::<Vec<_>>(), vec![7, 8]);
    }

    #[test]
    fn rotate_refuses_while_another_rotation_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        Keyring::generate_file(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        std::fs::write(dir.path().join("master.key.rotating"), "").unwrap();
        let err = Keyring::rotate_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("master.key.rotating"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn rotate_refuses_missing_loose_or_full_key_files_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Keyring::rotate_file(&dir.path().join("none")), Err(KeyError::Read { .. })));
        let loose = dir.path().join("loose");
        std::fs::write(&loose, format!("1 {}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(Keyring::rotate_file(&loose), Err(KeyError::Permissions { .. })));
        let full = dir.path().join("full");
        let text = format!("{} {}\n", u32::MAX, "cd".repeat(32));
        std::fs::write(&full, &text).unwrap();
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Keyring::rotate_file(&full).unwrap_err();
        assert!(matches!(err, KeyError::VersionsExhausted { .. }), "{err}");
        assert!(!err.to_string().contains("cdcd"), "no key bytes in errors: {err}");
        assert_eq!(std::fs::read_to_string(&full).unwrap(), text);
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "1 nothex\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Keyring::rotate_file(&bad), Err(KeyError::Format { .. })));
    }

    #[test]
    fn after_rotation_new_records_use_the_new_version_and_old_ones_still_open() {
        let old = KeySet::derive(&Keyring::from_keys([(1, [1u8; 32])]), &["pan", "text"]).unwrap();
        let sealed_v1 = old.sealer("pan", 1).unwrap().seal("pan", "tok", 1, b"4111111111111111").unwrap();
        let blob_v1 = old.encrypt_blob("text", "allergic to nuts").unwrap();

        let new = KeySet::derive(&Keyring::from_keys([(1, [1u8; 32]), (2, [2u8; 32])]), &["pan", "text"]).unwrap();
        assert_eq!(new.current_version(), 2);
        assert_eq!(new.sealer("pan", 1).unwrap().open("pan", "tok", 1, &sealed_v1).unwrap(), b"4111111111111111");
        let sealed_v2 = new.sealer("pan", 2).unwrap().seal("pan", "tok", 2, b"5500000000000004").unwrap();
        assert!(old.sealer("pan", 2).is_none(), "the old keyring has no v2");
        assert!(new.sealer("pan", 1).unwrap().open("pan", "tok", 1, &sealed_v2).is_err(), "v2 needs the v2 key");
        assert_eq!(new.decrypt_blob("text", &blob_v1).unwrap().expose(), "allergic to nuts");
        let blob_v2 = new.encrypt_blob("text", "allergic to nuts").unwrap();
        assert!(blob_v2.starts_with("veil:v2:"), "{blob_v2}");
        assert!(old.decrypt_blob("text", &blob_v2).is_none());
        // New fingerprints are made under the newest version; the old version's still answer for old rows.
        assert_ne!(old.value_fingerprint("pan", "4111"), new.value_fingerprint("pan", "4111"));
        assert_eq!(old.value_fingerprint("pan", "4111"), new.value_fingerprint_at("pan", "4111", 1));
        assert_ne!(old.audit.fingerprint(b"x"), new.audit.fingerprint(b"x"));
        assert_eq!(old.audit.fingerprint(b"x"), new.audit_at(1).unwrap().fingerprint(b"x"));
        assert_ne!(old.subject.fingerprint(b"x"), new.subject.fingerprint(b"x"));
        assert_eq!(old.subject.fingerprint(b"x"), new.subject_at(1).unwrap().fingerprint(b"x"));
        assert_ne!(old.receipt.fingerprint(b"x"), new.receipt.fingerprint(b"x"));
        // The fallback audit signing key does not move (its log would break).
        assert_eq!(old.audit_signing_seed().fingerprint(b"x"), new.audit_signing_seed().fingerprint(b"x"));
    }

    #[test]
    fn rotate_follows_a_symlink_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        let real = dir.path().join("secrets/master.key");
        Keyring::generate_file(&real).unwrap();
        let link = dir.path().join("master.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(Keyring::rotate_file(&link).unwrap(), 2);
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
        assert_eq!(Keyring::load(&real).unwrap().current_version(), 2);
    }

    #[test]
    fn rotate_reports_a_temp_file_it_cannot_create_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The longest name a directory entry can have: the temp name beside it is too long to create.
        let path = dir.path().join("k".repeat(255));
        Keyring::generate_file(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Keyring::rotate_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::Write { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn retiring_a_version_removes_only_its_line_and_never_the_newest() {
        let (a, b, c) = ("ab".repeat(32), "cd".repeat(32), "ef".repeat(32));
        let text = Secret::new(format!("# veil master keyring: keep secret\n1 {a}\n2 {b}\n# note\n3 {c}"));
        let out = Keyring::without_version(&text, "k", 1).unwrap();
        assert_eq!(out.expose(), &format!("# veil master keyring: keep secret\n2 {b}\n# note\n3 {c}"));
        assert!(!out.expose().contains(&a), "version 1's key material is gone");
        let out = Keyring::without_version(&out, "k", 2).unwrap();
        assert_eq!(Keyring::from_text(&out, "k").unwrap().versions().collect::<Vec<_>>(), vec![3]);
        let err = Keyring::without_version(&out, "k", 3).unwrap_err();
        assert!(matches!(err, KeyError::Newest { version: 3, .. }), "{err}");
        assert!(matches!(Keyring::without_version(&out, "k", 1), Err(KeyError::NoSuchVersion { version: 1, .. })));
        assert!(!err.to_string().contains("efef"), "no key bytes in errors");
    }
}
