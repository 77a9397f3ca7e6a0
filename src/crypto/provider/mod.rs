//! Key providers: where the master keyring comes from, behind one trait ([`KeyProvider`]).
//!
//! Every provider yields the same thing — the keyring's text in the key-file format (`<version> <64 hex>` lines,
//! see [`super::keys`]) as a [`Secret`] — and takes a changed keyring back (`veil keys rotate`). What differs is
//! custody: `file` keeps it in a 0600 file in clear (development); `shares` keeps it sealed under a key split
//! M-of-N among custodians (the vault starts sealed until M shares arrive). Chosen by `[vault] master_key =
//! { provider = "…", … }` ([`MasterKeySpec`]); the older `master_key_file = "…"` is provider `file`.

pub mod atomic;
pub mod file;
pub mod kms;
pub mod pkcs11;
pub mod sealed;
pub mod share;
pub mod shares;

use std::path::{Path, PathBuf};

use super::keys::{KeyError, Keyring};
use super::Secret;

/// The validated `[vault] master_key` (or `master_key_file`): which provider, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySpec {
    /// The keyring in clear in a 0600 file (development; `veil keygen --out FILE`).
    File { path: PathBuf },
    /// The keyring sealed under a key split into custodians' shares (`veil keygen --shares N --threshold M`).
    Shares { sealed: PathBuf },
    /// The keyring wrapped by an AES key inside an HSM (PKCS#11).
    Pkcs11(pkcs11::Pkcs11Spec),
    /// The keyring sealed under a data key a cloud KMS wraps (AWS KMS API).
    Kms(kms::KmsSpec),
}

impl MasterKeySpec {
    /// The provider's name as configured.
    pub fn provider(&self) -> &'static str {
        match self {
            MasterKeySpec::File { .. } => "file",
            MasterKeySpec::Shares { .. } => "shares",
            MasterKeySpec::Pkcs11(_) => "pkcs11",
            MasterKeySpec::Kms(_) => "kms",
        }
    }

    /// The clear key file, for provider `file` only.
    pub fn key_file(&self) -> Option<&Path> {
        match self {
            MasterKeySpec::File { path } => Some(path),
            MasterKeySpec::Shares { .. } | MasterKeySpec::Pkcs11(_) | MasterKeySpec::Kms(_) => None,
        }
    }

    /// Whether the vault starts sealed and waits for custodians (`veil unseal`).
    pub fn starts_sealed(&self) -> bool {
        matches!(self, MasterKeySpec::Shares { .. })
    }

    /// The provider for this spec; `shares` are the custodians' share texts (provider `shares` only).
    pub fn provider_with(&self, shares: &[Secret<String>]) -> Result<Box<dyn KeyProvider>, ProviderError> {
        match self {
            MasterKeySpec::File { path } => Ok(Box::new(file::FileProvider::new(path.clone()))),
            MasterKeySpec::Shares { sealed } => {
                let mut unsealer = shares::Unsealer::open(sealed)?;
                for s in shares {
                    unsealer.add(s.expose())?;
                }
                Ok(Box::new(unsealer.into_provider()?))
            }
            MasterKeySpec::Pkcs11(spec) => Ok(Box::new(pkcs11::Pkcs11Provider::connect(spec)?)),
            MasterKeySpec::Kms(spec) => Ok(Box::new(kms::KmsProvider::new(spec)?)),
        }
    }
}

/// Why a provider could not give (or take back) the keyring. Never carries key or share bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: String },
    #[error(
        "the keyring is sealed: {have} of the {need} shares it needs were given (--share FILE, once per custodian)"
    )]
    Sealed { have: usize, need: usize },
    #[error("{0}")]
    Share(#[from] share::ShareError),
    #[error("the shares given do not open the keyring (a share of another set, or a damaged one); none was kept")]
    WrongShares,
    #[error("HSM: {0}")]
    Hsm(String),
    #[error("{0}")]
    Kms(String),
    #[error("{lock} exists: another rotation is running, or one was interrupted (then remove it and retry)")]
    Busy { lock: String },
}

/// Where the master keyring is kept.
pub trait KeyProvider: Send + Sync {
    /// For logs and errors: the provider and where it keeps the keyring (never a secret).
    fn describe(&self) -> String;

    /// The keyring's text (key-file format).
    fn load(&self) -> Result<Secret<String>, ProviderError>;

    /// Puts a changed keyring's text back into custody, atomically.
    fn store(&self, text: &Secret<String>) -> Result<(), ProviderError>;

    /// Appends a fresh master key as the next version (every older version kept) and returns that version.
    fn rotate(&self) -> Result<u32, ProviderError> {
        let (text, version) = Keyring::with_new_version(&self.load()?, &self.describe())?;
        self.store(&text)?;
        Ok(version)
    }

    /// Removes master key `version` from the keyring (every other line kept), atomically — never the newest.
    /// Whoever still needs that version must have been moved off it first (`veil keys retire` checks).
    fn retire(&self, version: u32) -> Result<(), ProviderError> {
        let text = Keyring::without_version(&self.load()?, &self.describe(), version)?;
        self.store(&text)
    }

    /// The keyring, parsed.
    fn keyring(&self) -> Result<Keyring, ProviderError> {
        Ok(Keyring::from_text(&self.load()?, &self.describe())?)
    }
}
