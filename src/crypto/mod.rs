//! Cryptography: the master keyring and its derived subkeys, record sealing, keyed fingerprints, secrets, and
//! the audit log's own signing key.

pub mod aead;
pub mod audit_key;
pub mod blob;
pub mod fingerprint;
pub mod keys;
pub mod provider;
pub mod secret;

pub use blob::{BlobKeys, BlobSlot};
pub use keys::{KeySet, Keyring};
pub use provider::{KeyProvider, MasterKeySpec, ProviderError};
pub use secret::Secret;
