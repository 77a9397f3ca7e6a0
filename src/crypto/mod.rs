//! Cryptography: the master keyring and its derived subkeys, record sealing, keyed fingerprints, secrets.

pub mod aead;
pub mod fingerprint;
pub mod keys;
pub mod secret;

pub use keys::{KeySet, Keyring};
pub use secret::Secret;
