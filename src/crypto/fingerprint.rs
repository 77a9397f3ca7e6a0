//! Keyed fingerprints (HMAC-SHA256): deterministic lookup of a value, subject or token without storing it.
//!
//! Never an unkeyed hash: a card number has too little entropy (BIN + last four are often known), so an
//! unkeyed digest could be brute-forced from a stolen database. Without the key, a fingerprint reveals nothing.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC key for one purpose and class, ready to fingerprint.
#[derive(Clone)]
pub struct Fingerprinter {
    mac: HmacSha256,
}

impl Fingerprinter {
    pub fn new(key: &[u8; 32]) -> Fingerprinter {
        // HMAC zero-pads short keys to the block size; doing it here gives the infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        let mac = <HmacSha256 as KeyInit>::new(&block.into());
        block.zeroize();
        Fingerprinter { mac }
    }

    pub fn fingerprint(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// A short hex form for audit lines (first 16 bytes).
    pub fn short_hex(&self, data: &[u8]) -> String {
        hex::encode(&self.fingerprint(data)[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_deterministic_and_key_dependent() {
        let a = Fingerprinter::new(&[1u8; 32]);
        let b = Fingerprinter::new(&[2u8; 32]);
        assert_eq!(a.fingerprint(b"4111111111111111"), a.fingerprint(b"4111111111111111"));
        assert_ne!(a.fingerprint(b"4111111111111111"), a.fingerprint(b"4111111111111112"));
        assert_ne!(a.fingerprint(b"4111111111111111"), b.fingerprint(b"4111111111111111"));
    }

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2 (HMAC-SHA256, key "Jefe"): checks the primitive, keyed the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mut mac = Fingerprinter::new(&key).mac;
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
