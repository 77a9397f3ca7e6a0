//! Provider `kms`: the keyring sealed (AES-256-GCM-SIV, here) under a data key that a cloud KMS wraps
//! (envelope encryption): `GenerateDataKey` once at `veil keys init`, `Decrypt` of the wrapped data key at every
//! start. On disk: the KMS-wrapped data key and the sealed keyring, never either in clear. The AWS KMS JSON API,
//! signed with SigV4 by hand ([`sigv4`]); credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
//! `AWS_SESSION_TOKEN`). KMS down or refusing → the vault does not start, and says why.
//!
//! ```toml
//! master_key = { provider = "kms", endpoint = "https://kms.eu-central-1.amazonaws.com", region = "eu-central-1",
//!                key_id = "alias/veil", wrapped = "keys/keyring.kms" }
//! ```

pub mod client;
pub mod sigv4;

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{atomic, KeyProvider, ProviderError};
use crate::crypto::aead::Sealer;
use crate::crypto::{Keyring, Secret};
use client::KmsClient;
use sigv4::Credentials;

const FORMAT: &str = "kms-wrapped-keyring-v1";

/// The validated `master_key = { provider = "kms", … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSpec {
    pub endpoint: http::Uri,
    pub region: String,
    pub key_id: String,
    pub wrapped: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    veil: String,
    key_id: String,
    /// The data key as KMS encrypted it (`CiphertextBlob`, base64).
    data_key: String,
    /// The keyring sealed under the data key (base64url).
    sealed: String,
}

fn kms(reason: impl std::fmt::Display) -> ProviderError {
    ProviderError::Kms(reason.to_string())
}

fn credentials() -> Result<Credentials, ProviderError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(access_key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        return Err(kms("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set for provider \"kms\""));
    };
    Ok(Credentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
    })
}

/// The keyring of a KMS-wrapped file, reached through the KMS.
pub struct KmsProvider {
    spec: KmsSpec,
    client: KmsClient,
}

impl KmsProvider {
    pub fn new(spec: &KmsSpec) -> Result<KmsProvider, ProviderError> {
        let client =
            KmsClient { endpoint: spec.endpoint.clone(), region: spec.region.clone(), credentials: credentials()? };
        Ok(KmsProvider { spec: spec.clone(), client })
    }

    /// `veil keys init`: a new data key from the KMS and a new keyring sealed under it. Never overwrites.
    pub fn init(spec: &KmsSpec) -> Result<(), ProviderError> {
        if spec.wrapped.exists() {
            return Err(ProviderError::Exists { path: spec.wrapped.display().to_string() });
        }
        let p = KmsProvider::new(spec)?;
        let answer =
            p.client.call("GenerateDataKey", &json!({ "KeyId": spec.key_id, "KeySpec": "AES_256" })).map_err(kms)?;
        let data_key = decode_key(answer["Plaintext"].as_str())?;
        let blob =
            answer["CiphertextBlob"].as_str().ok_or_else(|| kms("GenerateDataKey answered no CiphertextBlob"))?;
        let text = p.seal(&data_key, blob, &Keyring::generate_text())?;
        atomic::create_new(&spec.wrapped, text.as_bytes())
    }

    fn read(&self) -> Result<Wrapped, ProviderError> {
        let shown = self.spec.wrapped.display().to_string();
        let text = std::fs::read_to_string(&self.spec.wrapped)
            .map_err(|source| ProviderError::Read { path: shown.clone(), source })?;
        let w: Wrapped = serde_json::from_str(&text).map_err(|e| ProviderError::Format {
            path: shown.clone(),
            reason: format!("not a KMS-wrapped keyring: {e}"),
        })?;
        if w.veil != FORMAT {
            return Err(ProviderError::Format { path: shown, reason: format!("expected veil = {FORMAT:?}") });
        }
        Ok(w)
    }

    /// The data key in clear, from the KMS.
    fn data_key(&self, w: &Wrapped) -> Result<Secret<[u8; 32]>, ProviderError> {
        let answer =
            self.client.call("Decrypt", &json!({ "CiphertextBlob": w.data_key, "KeyId": w.key_id })).map_err(kms)?;
        decode_key(answer["Plaintext"].as_str())
    }

    fn seal(&self, data_key: &Secret<[u8; 32]>, blob: &str, text: &Secret<String>) -> Result<String, ProviderError> {
        let sealed = Sealer::new(data_key.expose())
            .seal("keyring", &self.spec.key_id, 1, text.expose().as_bytes())
            .map_err(|_| kms("cannot seal the keyring"))?;
        let w = Wrapped {
            veil: FORMAT.into(),
            key_id: self.spec.key_id.clone(),
            data_key: blob.to_owned(),
            sealed: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed),
        };
        serde_json::to_string(&w).map(|s| s + "\n").map_err(kms)
    }
}

fn decode_key(b64: Option<&str>) -> Result<Secret<[u8; 32]>, ProviderError> {
    let raw = Secret::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.ok_or_else(|| kms("the KMS answered no Plaintext"))?)
            .map_err(|_| kms("the KMS's Plaintext is not base64"))?,
    );
    let mut key = [0u8; 32];
    if raw.expose().len() != 32 {
        return Err(kms("the KMS's data key is not 256 bits"));
    }
    key.copy_from_slice(raw.expose());
    let out = Secret::new(key);
    zeroize::Zeroize::zeroize(&mut key);
    Ok(out)
}

impl KeyProvider for KmsProvider {
    fn describe(&self) -> String {
        format!("keyring {} under KMS key {} at {}", self.spec.wrapped.display(), self.spec.key_id, self.spec.endpoint)
    }

    fn load(&self) -> Result<Secret<String>, ProviderError> {
        let w = self.read()?;
        let key = self.data_key(&w)?;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&w.sealed).map_err(|_| {
            ProviderError::Format { path: self.spec.wrapped.display().to_string(), reason: "bad base64".into() }
        })?;
        let plain = Secret::new(
            Sealer::new(key.expose())
                .open("keyring", &w.key_id, 1, &sealed)
                .map_err(|_| kms("the keyring does not open under the KMS's data key"))?,
        );
        String::from_utf8(plain.expose().clone()).map(Secret::new).map_err(|_| kms("the keyring is not text"))
    }

    fn store(&self, text: &Secret<String>) -> Result<(), ProviderError> {
        Keyring::from_text(text, &self.describe())?;
        let w = self.read()?;
        let key = self.data_key(&w)?;
        atomic::replace(&self.spec.wrapped, self.seal(&key, &w.data_key, text)?.as_bytes())
    }
}
