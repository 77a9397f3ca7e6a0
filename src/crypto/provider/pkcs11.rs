//! Provider `pkcs11`: the keyring wrapped (AES-256-GCM, inside the HSM) by an AES key that never leaves the HSM
//! (generated there: sensitive, not extractable). The wrapped keyring is a file on the vault host; opening it
//! takes the HSM, its token, the user PIN and the key. PCI DSS 3.6.1.2 ("within a secure cryptographic device").
//!
//! ```toml
//! master_key = { provider = "pkcs11", module = "/usr/lib/softhsm/libsofthsm2.so", token_label = "veil",
//!                pin_file = "/etc/veil/hsm.pin", key_label = "veil-kek", wrapped = "keys/keyring.hsm" }
//! ```
//! `veil keys init -c CONFIG` creates the key in the HSM (if the token has none of that label) and the wrapped
//! keyring (never overwriting it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{atomic, KeyProvider, ProviderError};
use crate::crypto::{Keyring, Secret};

const FORMAT: &str = "hsm-wrapped-keyring-v1";
const AAD: &[u8] = b"veil keyring v1";

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    File(PathBuf),
    Env(String),
}

/// The validated `master_key = { provider = "pkcs11", … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Spec {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: PinSource,
    pub key_label: String,
    pub wrapped: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    veil: String,
    key_label: String,
    iv: String,
    sealed: String,
}

fn hsm(reason: impl std::fmt::Display) -> ProviderError {
    ProviderError::Hsm(reason.to_string())
}

/// A logged-in session on the token, and the wrapping key's handle.
pub struct Pkcs11Provider {
    spec: Pkcs11Spec,
    session: Mutex<Session>,
    key: Option<ObjectHandle>,
    // Kept alive for the session's sake (finalised on drop).
    _context: Pkcs11,
}

impl Pkcs11Provider {
    /// Loads the module, finds the token by label, logs in with the PIN, and looks up the key by label.
    pub fn connect(spec: &Pkcs11Spec) -> Result<Pkcs11Provider, ProviderError> {
        let pin = read_pin(&spec.pin)?;
        let context = Pkcs11::new(&spec.module)
            .map_err(|e| hsm(format!("cannot load the PKCS#11 module {}: {e}", spec.module.display())))?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| hsm(format!("the PKCS#11 module does not initialise: {e}")))?;
        let slots = context.get_slots_with_token().map_err(|e| hsm(format!("cannot list the HSM's slots: {e}")))?;
        let slot = slots
            .into_iter()
            .find(|s| context.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == spec.token_label))
            .ok_or_else(|| hsm(format!("no token labelled {:?} in {}", spec.token_label, spec.module.display())))?;
        let session = context.open_rw_session(slot).map_err(|e| hsm(format!("cannot open a session: {e}")))?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.expose().clone().into())))
            .map_err(|e| hsm(format!("login to token {:?} refused (wrong PIN?): {e}", spec.token_label)))?;
        let key = find_key(&session, &spec.key_label)?;
        Ok(Pkcs11Provider { spec: spec.clone(), session: Mutex::new(session), key, _context: context })
    }

    /// `veil keys init`: the AES key in the HSM (made there unless the token has one of that label) and a new
    /// keyring wrapped under it. Refuses to overwrite the wrapped file.
    pub fn init(spec: &Pkcs11Spec) -> Result<(), ProviderError> {
        if spec.wrapped.exists() {
            return Err(ProviderError::Exists { path: spec.wrapped.display().to_string() });
        }
        let mut p = Pkcs11Provider::connect(spec)?;
        if p.key.is_none() {
            let session = p.session.lock().map_err(|_| hsm("session lock poisoned"))?;
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(spec.key_label.as_bytes().to_vec()),
            ];
            let key = session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(|e| hsm(format!("the HSM did not generate the key: {e}")))?;
            drop(session);
            p.key = Some(key);
        }
        let wrapped = p.wrap(&Keyring::generate_text())?;
        atomic::create_new(&spec.wrapped, wrapped.as_bytes())
    }

    fn key(&self) -> Result<ObjectHandle, ProviderError> {
        self.key.ok_or_else(|| {
            hsm(format!(
                "no AES key labelled {:?} on token {:?} (veil keys init creates it)",
                self.spec.key_label, self.spec.token_label
            ))
        })
    }

    fn wrap(&self, text: &Secret<String>) -> Result<String, ProviderError> {
        let mut iv = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, AAD, 128u64.into()).map_err(hsm)?;
        let session = self.session.lock().map_err(|_| hsm("session lock poisoned"))?;
        let sealed = session
            .encrypt(&Mechanism::AesGcm(params), self.key()?, text.expose().as_bytes())
            .map_err(|e| hsm(format!("the HSM did not wrap the keyring: {e}")))?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let w = Wrapped {
            veil: FORMAT.into(),
            key_label: self.spec.key_label.clone(),
            iv: b64.encode(iv),
            sealed: b64.encode(sealed),
        };
        serde_json::to_string(&w).map(|s| s + "\n").map_err(hsm)
    }
}

fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, ProviderError> {
    let template = [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.as_bytes().to_vec())];
    let found = session.find_objects(&template).map_err(|e| hsm(format!("cannot search the token: {e}")))?;
    Ok(found.into_iter().next())
}

fn read_pin(source: &PinSource) -> Result<Secret<String>, ProviderError> {
    let raw = match source {
        PinSource::File(path) => Secret::new(
            std::fs::read_to_string(path)
                .map_err(|source| ProviderError::Read { path: path.display().to_string(), source })?,
        ),
        PinSource::Env(var) => Secret::new(
            std::env::var(var).map_err(|_| hsm(format!("the PIN's environment variable {var} is not set")))?,
        ),
    };
    Ok(Secret::new(raw.expose().trim().to_owned()))
}

fn read_wrapped(path: &Path) -> Result<Wrapped, ProviderError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ProviderError::Read { path: shown.clone(), source })?;
    let w: Wrapped = serde_json::from_str(&text)
        .map_err(|e| ProviderError::Format { path: shown.clone(), reason: format!("not a wrapped keyring: {e}") })?;
    if w.veil != FORMAT {
        return Err(ProviderError::Format { path: shown, reason: format!("expected veil = {FORMAT:?}") });
    }
    Ok(w)
}

impl KeyProvider for Pkcs11Provider {
    fn describe(&self) -> String {
        format!(
            "keyring {} wrapped by HSM key {:?} on token {:?}",
            self.spec.wrapped.display(),
            self.spec.key_label,
            self.spec.token_label
        )
    }

    fn load(&self) -> Result<Secret<String>, ProviderError> {
        let w = read_wrapped(&self.spec.wrapped)?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bad =
            |_| ProviderError::Format { path: self.spec.wrapped.display().to_string(), reason: "bad base64".into() };
        let mut iv = b64.decode(&w.iv).map_err(bad)?;
        let sealed = b64.decode(&w.sealed).map_err(bad)?;
        let params = GcmParams::new(&mut iv, AAD, 128u64.into()).map_err(hsm)?;
        let session = self.session.lock().map_err(|_| hsm("session lock poisoned"))?;
        let plain = Secret::new(
            session
                .decrypt(&Mechanism::AesGcm(params), self.key()?, &sealed)
                .map_err(|e| hsm(format!("the HSM did not unwrap the keyring (another key?): {e}")))?,
        );
        String::from_utf8(plain.expose().clone()).map(Secret::new).map_err(|_| hsm("the unwrapped keyring is not text"))
    }

    fn store(&self, text: &Secret<String>) -> Result<(), ProviderError> {
        Keyring::from_text(text, &self.describe())?;
        atomic::replace(&self.spec.wrapped, self.wrap(text)?.as_bytes())
    }
}
