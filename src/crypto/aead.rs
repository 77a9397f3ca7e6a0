//! Record sealing with AES-256-GCM-SIV: random nonce, AAD binding class, token and key version — and, for rows
//! written under the per-row fingerprint version scheme, the row's value fingerprint too ([`Sealer::seal_bound`]).
//!
//! Sealed form: `nonce (12 bytes) ‖ ciphertext ‖ tag`. Because the AAD names the row (class + token + key
//! version [+ value fingerprint]), a ciphertext copied into another row does not open, and a bound row whose
//! fingerprint a database writer swapped for another row's does not open either.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use rand::RngCore;

const NONCE_LEN: usize = 12;

/// Sealing failed or a sealed record did not open (wrong key, wrong row, tampered bytes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sealed record does not open")]
pub struct SealError;

/// A sealing key for one class and key version.
pub struct Sealer {
    cipher: Aes256GcmSiv,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer { cipher: Aes256GcmSiv::new(key.into()) }
    }

    pub fn seal(&self, class: &str, token: &str, version: u32, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with(&aad(class, token, version), plaintext)
    }

    pub fn open(&self, class: &str, token: &str, version: u32, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_with(&aad(class, token, version), sealed)
    }

    /// Like [`Sealer::seal`], the AAD also binding the row's value fingerprint `fp`.
    pub fn seal_bound(
        &self,
        class: &str,
        token: &str,
        version: u32,
        fp: &[u8; 32],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.seal_with(&aad_bound(class, token, version, fp), plaintext)
    }

    /// Opens what [`Sealer::seal_bound`] sealed for this row and fingerprint.
    pub fn open_bound(
        &self,
        class: &str,
        token: &str,
        version: u32,
        fp: &[u8; 32],
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.open_with(&aad_bound(class, token, version, fp), sealed)
    }

    /// Vaultless encryption (the `encrypt` action): the AAD binds only the class and version.
    pub fn seal_blob(&self, class: &str, version: u32, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal(class, "", version, plaintext)
    }

    /// A random nonce, then the ciphertext and tag under `aad`.
    fn seal_with(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct =
            self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad }).map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`Sealer::seal_with`] sealed under `aad`.
    fn open_with(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| SealError)
    }
}

/// `veil-record-v1 \0 class \0 token \0 version(be32)`: unambiguous because class and token never hold NUL.
fn aad(class: &str, token: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(24 + class.len() + token.len());
    aad.extend_from_slice(b"veil-record-v1\0");
    aad.extend_from_slice(class.as_bytes());
    aad.push(0);
    aad.extend_from_slice(token.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// `veil-record-v2 \0 class \0 token \0 version(be32) fp(32)`: the v1 fields, then the value fingerprint (fixed
/// length, so the encoding stays unambiguous); the distinct label keeps v1 and v2 AADs apart.
fn aad_bound(class: &str, token: &str, version: u32, fp: &[u8; 32]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(56 + class.len() + token.len());
    aad.extend_from_slice(b"veil-record-v2\0");
    aad.extend_from_slice(class.as_bytes());
    aad.push(0);
    aad.extend_from_slice(token.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(fp);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8452 Appendix C.2 (AEAD_AES_256_GCM_SIV): key, nonce, aad, plaintext, ciphertext ‖ tag.
    const RFC8452_C2: &[(&str, &str, &str, &str, &str)] = &[
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "01",
            "0200000000000000",
            "1de22967237a813291213f267e3b452f02d01ae33e4ec854",
        ),
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "030000000000000000000000",
            "01",
            "0200000000000000000000000000000003000000000000000000000000000000",
            "07dad364bfc2b9da89116d7bef6daaaf6f255510aa654f920ac81b94e8bad365aea1bad12702e1965604374aab96dbbc",
        ),
        (
            "e66021d5eb8e4f4066d4adb9c33560e4f46e44bb3da0015c94f7088736864200",
            "e0eaf5284d884a0e77d31646",
            "",
            "",
            "169fbb2fbf389a995f6390af22228a62",
        ),
        (
            "bae8e37fc83441b16034566b7a806c46bb91c3c5aedb64a6c590bc84d1a5e269",
            "e4b47801afc0577e34699b9e",
            "4fbdc66f14",
            "671fdd",
            "0eaccb93da9bb81333aee0c785b240d319719d",
        ),
        (
            "3c535de192eaed3822a2fbbe2ca9dfc88255e14a661b8aa82cc54236093bbc23",
            "688089e55540db1872504e1c",
            "734320ccc9d9bbbb19cb81b2af4ecbc3e72834321f7aa0f70b7282b4f33df23f167541",
            "ced532ce4159b035277d4dfbb7db62968b13cd4eec",
            "626660c26ea6612fb17ad91e8e767639edd6c9faee9d6c7029675b89eaf4ba1ded1a286594",
        ),
    ];

    #[test]
    fn rfc8452_known_answers() {
        for (key, nonce, aad, pt, expected) in RFC8452_C2 {
            let key = hex::decode(key).unwrap();
            let cipher = Aes256GcmSiv::new_from_slice(&key).unwrap();
            let nonce = hex::decode(nonce).unwrap();
            let aad = hex::decode(aad).unwrap();
            let pt = hex::decode(pt).unwrap();
            let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad }).unwrap();
            assert_eq!(hex::encode(&ct), *expected);
            let back = cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: &aad }).unwrap();
            assert_eq!(back, pt);
        }
    }

    #[test]
    fn seal_open_round_trip_and_fresh_nonces() {
        let s = Sealer::new(&[7u8; 32]);
        let a = s.seal("pan", "4111118304731111", 1, b"4111111111111111").unwrap();
        let b = s.seal("pan", "4111118304731111", 1, b"4111111111111111").unwrap();
        assert_ne!(a, b, "random nonce per seal");
        assert_eq!(s.open("pan", "4111118304731111", 1, &a).unwrap(), b"4111111111111111");
    }

    #[test]
    fn ciphertext_moved_to_another_row_does_not_open() {
        let s = Sealer::new(&[7u8; 32]);
        let sealed = s.seal("pan", "4111118304731111", 1, b"4111111111111111").unwrap();
        assert_eq!(s.open("pan", "4111119999991111", 1, &sealed), Err(SealError), "other token");
        assert_eq!(s.open("iban", "4111118304731111", 1, &sealed), Err(SealError), "other class");
        assert_eq!(s.open("pan", "4111118304731111", 2, &sealed), Err(SealError), "other key version");
        assert_eq!(Sealer::new(&[8u8; 32]).open("pan", "4111118304731111", 1, &sealed), Err(SealError), "other key");
        let mut tampered = sealed.clone();
        tampered[14] ^= 1;
        assert_eq!(s.open("pan", "4111118304731111", 1, &tampered), Err(SealError), "tampered");
        assert_eq!(s.open("pan", "4111118304731111", 1, &sealed[..10]), Err(SealError), "truncated");
    }

    #[test]
    fn a_bound_row_opens_only_with_its_own_fingerprint_and_scheme() {
        let s = Sealer::new(&[7u8; 32]);
        let sealed = s.seal_bound("pan", "4111118304731111", 2, &[1; 32], b"4111111111111111").unwrap();
        assert_eq!(s.open_bound("pan", "4111118304731111", 2, &[1; 32], &sealed).unwrap(), b"4111111111111111");
        assert_eq!(s.open_bound("pan", "4111118304731111", 2, &[2; 32], &sealed), Err(SealError), "swapped fp");
        assert_eq!(s.open("pan", "4111118304731111", 2, &sealed), Err(SealError), "v1 AAD");
        let v1 = s.seal("pan", "4111118304731111", 2, b"4111111111111111").unwrap();
        assert_eq!(s.open_bound("pan", "4111118304731111", 2, &[1; 32], &v1), Err(SealError), "v2 AAD on a v1 row");
        assert_eq!(s.open_bound("pan", "4111119999991111", 2, &[1; 32], &sealed), Err(SealError), "other token");
    }
}
