//! The `encrypt` action's keys: vaultless AES-256-GCM-SIV blobs `veil:v<version>:<base64url(nonce ‖ ct ‖ tag)>`,
//! per class and key version (`HKDF(…, info = "veil/blob/<class>/v<v>")`). In one process (`veil run`) they come
//! from the vault's keyring; a split proxy derives them from its own encrypt-only key file, which opens nothing
//! of the vault's.

use std::collections::HashMap;
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

impl BlobKeys {
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
