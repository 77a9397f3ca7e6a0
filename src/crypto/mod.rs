//! Cryptography: the master keyring and its derived subkeys, record sealing, keyed fingerprints, secrets, and
//! the audit log's own signing key.

pub mod aead;
pub mod audit_key;
pub mod fingerprint;
pub mod keys;
pub mod secret;

pub use keys::{KeySet, Keyring};
pub use secret::Secret;
