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
        self.short_hex_of(&[data])
    }

    /// [`Fingerprinter::short_hex`] of the concatenation of `parts` (without building it).
    pub fn short_hex_of(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        let fp: [u8; 32] = mac.finalize().into_bytes().into();
        hex_lower(&fp[..16])
    }
}

/// Lower-case hex of `bytes`, as `hex::encode` writes it, without its per-character iterator (fingerprints and
/// hashes on the audit path, several a request).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
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

    proptest::proptest! {
        #[test]
        fn hex_lower_is_hex_encode(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            proptest::prop_assert_eq!(hex_lower(&bytes), hex::encode(&bytes));
        }

        #[test]
        fn parts_fingerprint_as_their_concatenation(a in ".{0,20}", b in ".{0,40}") {
            let f = Fingerprinter::new(&[3u8; 32]);
            let joined = [a.as_bytes(), b"\0", b.as_bytes()].concat();
            proptest::prop_assert_eq!(f.short_hex_of(&[a.as_bytes(), b"\0", b.as_bytes()]), f.short_hex(&joined));
            proptest::prop_assert_eq!(f.short_hex(&joined), hex::encode(&f.fingerprint(&joined)[..16]));
        }
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
