//! A sealed keyring file: the keyring's text sealed with AES-256-GCM-SIV under a key derived (HKDF) from a
//! key-encrypting key held elsewhere (for `shares`: recombined from custodians' shares), with a key check value
//! that tells a wrong key before anything is opened. The KEK itself is never written.
//!
//! ```json
//! {"veil":"sealed-keyring-v1","custody":"shares","threshold":3,"shares":5,"set":"<16 hex>","kcv":"<16 hex>",
//!  "sealed":"<base64url: nonce ‖ ciphertext ‖ tag>"}
//! ```

use std::path::Path;

use base64::Engine as _;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

use super::ProviderError;
use crate::crypto::aead::Sealer;
use crate::crypto::fingerprint::Fingerprinter;
use crate::crypto::Secret;

const FORMAT: &str = "sealed-keyring-v1";
const SALT: &[u8] = b"veil-custody-v1";

/// The file's content (everything in it may be seen: it opens only with the KEK).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SealedKeyring {
    pub veil: String,
    /// Who holds the KEK: `shares`.
    pub custody: String,
    pub threshold: u8,
    pub shares: u8,
    /// The share set's id (hex): each share names it.
    pub set: String,
    /// Key check value (hex): the first 8 bytes of HMAC-SHA256 under a KEK subkey of a fixed text.
    pub kcv: String,
    pub sealed: String,
}

fn subkey(kek: &Secret<[u8; 32]>, purpose: &str) -> Secret<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(SALT), kek.expose());
    let mut okm = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(format!("veil/custody/{purpose}").as_bytes(), &mut okm);
    let out = Secret::new(okm);
    okm.zeroize();
    out
}

/// The key check value of a KEK (hex).
pub fn kcv(kek: &Secret<[u8; 32]>) -> String {
    let mac = Fingerprinter::new(subkey(kek, "kcv").expose()).fingerprint(b"veil key check value");
    hex::encode(&mac[..8])
}

impl SealedKeyring {
    /// Seals `text` under `kek` for a share set.
    pub fn seal(
        kek: &Secret<[u8; 32]>,
        set: [u8; 8],
        threshold: u8,
        shares: u8,
        text: &Secret<String>,
    ) -> Result<SealedKeyring, ProviderError> {
        let set = hex::encode(set);
        let sealer = Sealer::new(subkey(kek, "seal").expose());
        let sealed = sealer
            .seal("keyring", &set, 1, text.expose().as_bytes())
            .map_err(|_| ProviderError::Format { path: "keyring".into(), reason: "cannot seal".into() })?;
        Ok(SealedKeyring {
            veil: FORMAT.into(),
            custody: "shares".into(),
            threshold,
            shares,
            kcv: kcv(kek),
            set,
            sealed: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed),
        })
    }

    /// The keyring's text, if `kek` is the key it was sealed under.
    pub fn open(&self, kek: &Secret<[u8; 32]>) -> Result<Secret<String>, ProviderError> {
        if !constant_time_eq(kcv(kek).as_bytes(), self.kcv.as_bytes()) {
            return Err(ProviderError::WrongShares);
        }
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.sealed)
            .map_err(|_| ProviderError::Format { path: "sealed keyring".into(), reason: "bad base64".into() })?;
        let sealer = Sealer::new(subkey(kek, "seal").expose());
        let plain = Secret::new(sealer.open("keyring", &self.set, 1, &sealed).map_err(|_| ProviderError::WrongShares)?);
        String::from_utf8(plain.expose().clone()).map(Secret::new).map_err(|_| ProviderError::WrongShares)
    }

    /// The set id as bytes.
    pub fn set_id(&self) -> Option<[u8; 8]> {
        let mut out = [0u8; 8];
        hex::decode_to_slice(&self.set, &mut out).ok().map(|_| out)
    }

    pub fn read(path: &Path) -> Result<SealedKeyring, ProviderError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ProviderError::Read { path: shown.clone(), source })?;
        let bad = |reason: String| ProviderError::Format { path: shown.clone(), reason };
        let sealed: SealedKeyring =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a sealed keyring: {e}")))?;
        if sealed.veil != FORMAT || sealed.custody != "shares" {
            return Err(bad(format!("expected veil = {FORMAT:?} and custody = \"shares\"")));
        }
        if sealed.set_id().is_none() || sealed.threshold < 2 || sealed.threshold > sealed.shares {
            return Err(bad("bad set id or threshold".into()));
        }
        Ok(sealed)
    }

    pub fn to_text(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_its_kek_only() {
        let kek = Secret::new([9u8; 32]);
        let text = Secret::new("1 ".to_owned() + &"ab".repeat(32) + "\n");
        let s = SealedKeyring::seal(&kek, [1; 8], 2, 3, &text).unwrap();
        assert!(!s.to_text().contains("abab") && !s.to_text().contains(&hex::encode([9u8; 32])));
        assert_eq!(s.open(&kek).unwrap().expose(), text.expose());
        assert!(matches!(s.open(&Secret::new([8u8; 32])), Err(ProviderError::WrongShares)));
        let mut moved = s.clone();
        moved.set = hex::encode([2u8; 8]);
        assert!(matches!(moved.open(&kek), Err(ProviderError::WrongShares)), "the set id is bound in the AAD");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.sealed");
        std::fs::write(&path, s.to_text()).unwrap();
        assert_eq!(SealedKeyring::read(&path).unwrap(), s);
        std::fs::write(&path, "{}").unwrap();
        assert!(SealedKeyring::read(&path).unwrap_err().to_string().contains("not a sealed keyring"));
    }
}
