//! The `encrypt` action's keys: vaultless AES-256-GCM-SIV blobs `veil:v<version>:<base64url(nonce ‖ ct ‖ tag)>`,
//! per class and key version (`HKDF(…, info = "veil/blob/<class>/v<v>")`). In one process (`veil run`) they come
//! from the vault's keyring; a split proxy derives them from its own **encrypt-only key file** (`veil keygen
//! --encrypt-only`), a keyring of its own marked as such on its first line: the proxy refuses any other key file
//! (a master keyring given by mistake), and the vault refuses this one as a master keyring. Nothing derived from
//! it opens a vault record, fingerprints a value, or signs an audit line or a receipt.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::aead::Sealer;
use super::keys::{KeyError, Keyring};
use super::Secret;

/// Blob sealers by class name, then key version.
pub struct BlobKeys {
    current: u32,
    sealers: HashMap<String, HashMap<u32, Sealer>>,
}

/// The proxy's blob keys, filled once: at start, or when a sealed vault of the same process is unsealed.
pub type BlobSlot = Arc<OnceLock<Arc<BlobKeys>>>;

/// The first line of an encrypt-only key file.
pub const ENCRYPT_ONLY_MARKER: &str = "# veil encrypt-only keyring";

/// Whether a keyring's text is an encrypt-only key file's.
pub fn is_encrypt_only(text: &str) -> bool {
    text.lines().next().is_some_and(|l| l.trim_end().starts_with(ENCRYPT_ONLY_MARKER))
}

impl BlobKeys {
    /// The blob keys of a proxy's encrypt-only key file (mode 0600; refused if it is any other keyring).
    pub fn load_encrypt_only(path: &Path) -> Result<BlobKeys, KeyError> {
        let text = Keyring::read_text(path)?;
        if !is_encrypt_only(text.expose()) {
            return Err(KeyError::NotEncryptOnly { path: path.display().to_string() });
        }
        let ring = Keyring::from_text(&text, &path.display().to_string())?;
        BlobKeys::derive(&ring, &crate::domain::Class::names())
    }

    /// Writes a new encrypt-only key file with one version-1 key, mode 0600; never overwrites.
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
        let ring = Keyring::generate_text();
        let body = ring.expose().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
        let text = Secret::new(format!(
            "{ENCRYPT_ONLY_MARKER} (a proxy's `encrypt` action only; opens no vault record): keep secret\n{body}\n"
        ));
        file.write_all(text.expose().as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|source| KeyError::Write { path: shown, source })
    }

    pub fn derive(ring: &Keyring, classes: &[&str]) -> Result<BlobKeys, KeyError> {
        let mut sealers: HashMap<String, HashMap<u32, Sealer>> = HashMap::new();
        for class in classes {
            for v in ring.versions() {
                let k = ring.derive("blob", class, v).ok_or(KeyError::Empty { path: "keyring".into() })?;
                sealers.entry((*class).to_owned()).or_default().insert(v, Sealer::new(k.expose()));
            }
        }
        Ok(BlobKeys { current: ring.current_version(), sealers })
    }

    /// A slot holding these keys.
    pub fn into_slot(self) -> BlobSlot {
        let slot = BlobSlot::default();
        let _ = slot.set(Arc::new(self));
        slot
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// A new blob of `plaintext` for `class` under the newest version.
    pub fn encrypt_blob(&self, class: &str, plaintext: &str) -> Option<String> {
        use base64::Engine as _;
        let v = self.current;
        let sealed = self.sealers.get(class)?.get(&v)?.seal_blob(class, v, plaintext.as_bytes()).ok()?;
        Some(format!("veil:v{v}:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Opens a blob made by [`BlobKeys::encrypt_blob`] for the same class.
    pub fn decrypt_blob(&self, class: &str, blob: &str) -> Option<Secret<String>> {
        use base64::Engine as _;
        let rest = blob.strip_prefix("veil:v")?;
        let (v, data) = rest.split_once(':')?;
        let v: u32 = v.parse().ok()?;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(data).ok()?;
        let plain = self.sealers.get(class)?.get(&v)?.open(class, "", v, &sealed).ok()?;
        String::from_utf8(plain).ok().map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypt_only_file_loads_as_blob_keys_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy-encrypt.key");
        BlobKeys::generate_file(&path).unwrap();
        assert!(matches!(BlobKeys::generate_file(&path), Err(KeyError::Exists { .. })));
        let keys = BlobKeys::load_encrypt_only(&path).unwrap();
        let blob = keys.encrypt_blob("text", "allergic to nuts").unwrap();
        assert_eq!(keys.decrypt_blob("text", &blob).unwrap().expose(), "allergic to nuts");
        assert!(Keyring::rotate_file(&path).is_ok(), "rotated like a key file, the marker line kept");
        assert_eq!(BlobKeys::load_encrypt_only(&path).unwrap().current_version(), 2);
        let master = dir.path().join("master.key");
        Keyring::generate_file(&master).unwrap();
        let err = BlobKeys::load_encrypt_only(&master).err().unwrap().to_string();
        assert!(err.contains("not an encrypt-only key file"), "{err}");
    }
}
