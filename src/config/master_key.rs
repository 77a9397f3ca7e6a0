//! `[vault] master_key = { provider = "file" | "shares" | "pkcs11" | "kms", … }` (or the older `master_key_file`):
//! where the vault's master keyring is kept, validated into a [`MasterKeySpec`] with every problem at its path
//! (`vault.master_key.provider: …`).

use std::path::PathBuf;

use serde::Deserialize;

pub use crate::crypto::provider::kms::KmsSpec;
pub use crate::crypto::provider::pkcs11::{PinSource, Pkcs11Spec};
pub use crate::crypto::MasterKeySpec;

/// The inline table as written: one field set for every provider, each checked against the provider named.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMasterKey {
    provider: String,
    /// `file`: the clear key file.
    path: Option<PathBuf>,
    /// `shares`: the sealed keyring `veil keygen --shares` wrote.
    sealed: Option<PathBuf>,
    /// `pkcs11`: the module (shared library), token, PIN (file or environment variable), key, wrapped keyring.
    module: Option<PathBuf>,
    token_label: Option<String>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    key_label: Option<String>,
    /// `pkcs11`, `kms`: the wrapped keyring `veil keys init` writes.
    wrapped: Option<PathBuf>,
    /// `kms`: the KMS endpoint URL, its region, and the KMS key (id, ARN or alias).
    endpoint: Option<String>,
    region: Option<String>,
    key_id: Option<String>,
}

const PROVIDERS: &str = "\"file\", \"shares\", \"pkcs11\" or \"kms\"";

/// Which of `master_key_file` and `master_key` the vault uses; exactly one must be given.
pub(super) fn validate(
    file: Option<PathBuf>,
    raw: Option<RawMasterKey>,
    p: &mut impl FnMut(&str, String),
) -> Option<MasterKeySpec> {
    let raw = match (file, raw) {
        (Some(path), None) => return Some(MasterKeySpec::File { path }),
        (Some(_), Some(_)) => {
            p("vault.master_key", "give master_key or master_key_file, not both".into());
            return None;
        }
        (None, None) => {
            p("vault.master_key", format!("missing: master_key = {{ provider = {PROVIDERS}, … }} or master_key_file"));
            return None;
        }
        (None, Some(raw)) => raw,
    };
    let at = |field: &str| format!("vault.master_key.{field}");
    // Settings of another provider are refused by name, so a typo'd provider does not pass silently.
    let mut only = |field: &str, present: bool, allowed: &[&str]| {
        if present && !allowed.contains(&raw.provider.as_str()) {
            p(&at(field), format!("not a setting of provider {:?}", raw.provider));
        }
    };
    only("path", raw.path.is_some(), &["file"]);
    only("sealed", raw.sealed.is_some(), &["shares"]);
    for (field, present) in [
        ("module", raw.module.is_some()),
        ("token_label", raw.token_label.is_some()),
        ("pin_file", raw.pin_file.is_some()),
        ("pin_env", raw.pin_env.is_some()),
        ("key_label", raw.key_label.is_some()),
    ] {
        only(field, present, &["pkcs11"]);
    }
    only("wrapped", raw.wrapped.is_some(), &["pkcs11", "kms"]);
    for (field, present) in
        [("endpoint", raw.endpoint.is_some()), ("region", raw.region.is_some()), ("key_id", raw.key_id.is_some())]
    {
        only(field, present, &["kms"]);
    }
    match raw.provider.as_str() {
        "file" => match raw.path {
            Some(path) => Some(MasterKeySpec::File { path }),
            None => {
                p(&at("path"), "provider \"file\" needs path = \"keys/master.key\" (veil keygen --out)".into());
                None
            }
        },
        "shares" => match raw.sealed {
            Some(sealed) => Some(MasterKeySpec::Shares { sealed }),
            None => {
                p(
                    &at("sealed"),
                    "provider \"shares\" needs sealed = \"keys/custody/keyring.sealed\" (veil keygen --shares)".into(),
                );
                None
            }
        },
        "pkcs11" => {
            let mut need = |field: &str, v: Option<PathBuf>, example: &str| {
                if v.is_none() {
                    p(&at(field), format!("provider \"pkcs11\" needs {field} = {example}"));
                }
                v
            };
            let module = need("module", raw.module, "\"/usr/lib/softhsm/libsofthsm2.so\"");
            let wrapped = need("wrapped", raw.wrapped, "\"keys/keyring.hsm\" (veil keys init)");
            let token_label = need("token_label", raw.token_label.map(PathBuf::from), "\"veil\"");
            let key_label = need("key_label", raw.key_label.map(PathBuf::from), "\"veil-kek\"");
            let pin = match (raw.pin_file, raw.pin_env) {
                (Some(f), None) => Some(PinSource::File(f)),
                (None, Some(e)) => Some(PinSource::Env(e)),
                _ => {
                    p(
                        &at("pin_file"),
                        "provider \"pkcs11\" needs one of pin_file or pin_env (never the PIN itself)".into(),
                    );
                    None
                }
            };
            let label = |v: PathBuf| v.to_string_lossy().into_owned();
            match (module, wrapped, token_label, key_label, pin) {
                (Some(module), Some(wrapped), Some(t), Some(k), Some(pin)) => Some(MasterKeySpec::Pkcs11(Pkcs11Spec {
                    module,
                    token_label: label(t),
                    pin,
                    key_label: label(k),
                    wrapped,
                })),
                _ => None,
            }
        }
        "kms" => {
            let endpoint = match raw.endpoint.as_deref().map(str::parse::<http::Uri>) {
                Some(Ok(u)) if matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some() => Some(u),
                Some(_) => {
                    p(
                        &at("endpoint"),
                        "expected https://kms.REGION.amazonaws.com (http:// for a local test KMS)".into(),
                    );
                    None
                }
                None => {
                    p(&at("endpoint"), "provider \"kms\" needs endpoint = \"https://kms.REGION.amazonaws.com\"".into());
                    None
                }
            };
            let mut need = |field: &str, v: Option<String>| {
                if v.as_deref().is_none_or(str::is_empty) {
                    p(&at(field), format!("provider \"kms\" needs {field}"));
                    return None;
                }
                v
            };
            let region = need("region", raw.region);
            let key_id = need("key_id", raw.key_id);
            let wrapped = need("wrapped", raw.wrapped.map(|w| w.to_string_lossy().into_owned()));
            match (endpoint, region, key_id, wrapped) {
                (Some(endpoint), Some(region), Some(key_id), Some(wrapped)) => {
                    Some(MasterKeySpec::Kms(KmsSpec { endpoint, region, key_id, wrapped: PathBuf::from(wrapped) }))
                }
                _ => None,
            }
        }
        other => {
            p(&at("provider"), format!("{other:?} is not a key provider; expected {PROVIDERS}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::crypto::MasterKeySpec;

    fn vault(key: &str) -> String {
        format!("[vault]\nlisten = \"127.0.0.1:8444\"\nstore = \"sqlite://v.db\"\naudit_log = \"a.jsonl\"\n{key}\n")
    }

    #[test]
    fn master_key_file_is_provider_file() {
        let cfg = parse(&vault("master_key_file = \"keys/master.key\"")).unwrap();
        assert_eq!(cfg.vault.unwrap().master_key, MasterKeySpec::File { path: "keys/master.key".into() });
        let cfg = parse(&vault("master_key = { provider = \"file\", path = \"k\" }")).unwrap();
        assert_eq!(cfg.vault.unwrap().master_key, MasterKeySpec::File { path: "k".into() });
        let cfg = parse(&vault("master_key = { provider = \"shares\", sealed = \"s\" }")).unwrap();
        assert_eq!(cfg.vault.unwrap().master_key, MasterKeySpec::Shares { sealed: "s".into() });
    }

    #[test]
    fn pkcs11_takes_its_module_token_pin_source_key_and_wrapped_file() {
        let key = "master_key = { provider = \"pkcs11\", module = \"m.so\", token_label = \"veil\", \
                   pin_env = \"PIN\", key_label = \"kek\", wrapped = \"w\" }";
        let cfg = parse(&vault(key)).unwrap();
        let MasterKeySpec::Pkcs11(spec) = cfg.vault.unwrap().master_key else { panic!("pkcs11") };
        assert_eq!((spec.token_label.as_str(), spec.key_label.as_str()), ("veil", "kek"));
        assert_eq!(spec.pin, super::PinSource::Env("PIN".into()));
        for (bad, needle) in [
            (key.replace("pin_env = \"PIN\", ", ""), "vault.master_key.pin_file: provider \"pkcs11\" needs one of"),
            (key.replace("pin_env", "pin_file = \"f\", pin_env"), "vault.master_key.pin_file: provider"),
            (key.replace("module = \"m.so\", ", ""), "vault.master_key.module: provider \"pkcs11\" needs"),
            (key.replace("wrapped = \"w\"", "sealed = \"s\""), "vault.master_key.sealed: not a setting"),
        ] {
            let err = parse(&vault(&bad)).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn kms_takes_an_endpoint_region_key_and_wrapped_file() {
        let key = "master_key = { provider = \"kms\", endpoint = \"https://kms.eu-central-1.amazonaws.com\", \
                   region = \"eu-central-1\", key_id = \"alias/veil\", wrapped = \"w\" }";
        let MasterKeySpec::Kms(spec) = parse(&vault(key)).unwrap().vault.unwrap().master_key else { panic!("kms") };
        assert_eq!((spec.region.as_str(), spec.key_id.as_str()), ("eu-central-1", "alias/veil"));
        for (bad, needle) in [
            (key.replace("https://kms.eu-central-1.amazonaws.com", "ftp://x"), "vault.master_key.endpoint: expected"),
            (key.replace("region = \"eu-central-1\", ", ""), "vault.master_key.region: provider \"kms\" needs"),
            (key.replace("key_id = \"alias/veil\"", "key_label = \"k\""), "vault.master_key.key_label: not a"),
        ] {
            let err = parse(&vault(&bad)).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn problems_are_reported_with_their_paths() {
        for (key, needle) in [
            ("", "vault.master_key: missing"),
            ("master_key_file = \"k\"\nmaster_key = { provider = \"file\", path = \"k\" }", "not both"),
            ("master_key = { provider = \"hsm\" }", "vault.master_key.provider: \"hsm\" is not a key provider"),
            ("master_key = { provider = \"file\" }", "vault.master_key.path: provider \"file\" needs path"),
            ("master_key = { provider = \"file\", path = \"k\", sealed = \"s\" }", "vault.master_key.sealed: not a"),
            ("master_key = { provider = \"file\", pin = \"1234\" }", "unknown field"),
            ("master_key = { provider = \"shares\" }", "vault.master_key.sealed: provider \"shares\" needs"),
            ("master_key = { provider = \"shares\", path = \"k\", sealed = \"s\" }", "vault.master_key.path: not a"),
        ] {
            let err = parse(&vault(key)).unwrap_err().to_string();
            assert!(err.contains(needle), "{key:?}: {err}");
        }
    }
}
