//! The `[vault_client]` section: how `veil proxy` reaches a remote vault (url, mTLS files, timeouts, batch size,
//! bearer-key files per caller) and its own encrypt-only key for the vaultless `encrypt` action — never the
//! vault's master keyring.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::proxy::{dur, Problems};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVaultClient {
    url: String,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    max_batch: Option<u64>,
    /// Refused with a clear message: a proxy no longer holds the master keyring.
    master_key_file: Option<PathBuf>,
    /// The proxy's own key for `encrypt` blobs (`veil keygen --encrypt-only`).
    encrypt_key_file: Option<PathBuf>,
    #[serde(default)]
    api_keys: BTreeMap<String, PathBuf>,
}

pub use crate::vault::auth::PROXY_CALLER;
pub use crate::vault::remote::VaultClientConfig;

/// Whether `host` (as in a URI: IPv6 in brackets) is a loopback host.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn validate(raw: RawVaultClient, mut p: &mut Problems<'_>) -> Option<VaultClientConfig> {
    let url = match raw.url.parse::<Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some()
                && matches!(u.path(), "" | "/")
                && u.query().is_none() =>
        {
            Some(u)
        }
        _ => {
            p("vault_client.url", "expected https://host:port (no path)".into());
            None
        }
    };
    if let Some(u) = &url {
        let loopback = u.host().is_some_and(is_loopback_host);
        if u.scheme_str() == Some("http") {
            if !loopback {
                p("vault_client.url", "plain http:// is allowed for a loopback vault only; use https://".into());
            }
            if raw.cert.is_some() || raw.key.is_some() || raw.ca.is_some() {
                p("vault_client", "cert, key and ca are used with an https:// url only".into());
            }
        }
    }
    let identity = match (raw.cert, raw.key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            p("vault_client", "give both cert and key (the proxy's client certificate), or neither".into());
            None
        }
    };
    let mut api_keys = BTreeMap::new();
    for (name, path) in raw.api_keys {
        if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            p(&format!("vault_client.api_keys.{name}"), "use letters, digits, '-', '_' or '.'".into());
        }
        api_keys.insert(name, path);
    }
    if identity.is_none() && !api_keys.contains_key(PROXY_CALLER) {
        p(
            "vault_client",
            format!("the proxy cannot authenticate: give cert + key (mTLS) or an api_keys.{PROXY_CALLER} key file"),
        );
    }
    if raw.master_key_file.is_some() {
        p(
            "vault_client.master_key_file",
            "a proxy no longer holds the vault's master keyring (it would open every record): for `encrypt` \
             fields give it its own key, encrypt_key_file = \"keys/proxy-encrypt.key\" (veil keygen --encrypt-only \
             --out keys/proxy-encrypt.key)"
                .into(),
        );
    }
    // Every field is checked (and reported) before a bad url ends the section.
    let connect_timeout = dur(&raw.connect_timeout, Duration::from_secs(2), "vault_client.connect_timeout", p);
    let request_timeout = dur(&raw.request_timeout, Duration::from_secs(5), "vault_client.request_timeout", p);
    let max_batch =
        super::bounded(raw.max_batch, super::DEFAULT_MAX_BATCH, 1, 100_000, "vault_client.max_batch", &mut p);
    Some(VaultClientConfig {
        url: url?,
        identity,
        ca: raw.ca,
        connect_timeout,
        request_timeout,
        max_batch,
        api_keys,
        encrypt_key_file: raw.encrypt_key_file,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const CLIENT: &str = r#"
[vault_client]
url = "https://vault.internal:8444"
cert = "certs/proxy.crt"
key = "certs/proxy.key"
ca = "certs/vault-ca.pem"
encrypt_key_file = "keys/proxy-encrypt.key"
max_batch = 200
request_timeout = "3s"
api_keys = { payments = "secrets/payments.key" }
"#;

    #[test]
    fn a_valid_client_section() {
        let cfg = parse(CLIENT).unwrap();
        assert!(cfg.vault.is_none());
        let c = cfg.vault_client.unwrap();
        assert_eq!(c.url.host(), Some("vault.internal"));
        assert_eq!(c.max_batch, 200);
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(3));
        assert_eq!(c.connect_timeout, std::time::Duration::from_secs(2));
        assert!(c.identity.is_some());
        assert_eq!(c.api_keys.len(), 1);
    }

    #[test]
    fn plain_http_only_to_a_loopback_vault() {
        let text = "[vault_client]\nurl = \"http://127.0.0.1:8444\"\n\
                    api_keys = { proxy = \"p.key\" }\n";
        assert!(parse(text).is_ok());
        assert!(parse(&text.replace("127.0.0.1", "localhost")).is_ok());
        assert!(parse(&text.replace("127.0.0.1", "[::1]")).is_ok());
        let err = parse(&text.replace("127.0.0.1", "10.0.0.2")).unwrap_err().to_string();
        assert!(err.contains("vault_client.url: plain http://"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
[vault]
listen = "127.0.0.1:8444"
store = "sqlite://x.db"
master_key_file = "k"
audit_log = "a"

[vault_client]
url = "ftp://vault/x"
cert = "c.pem"
connect_timeout = "soon"
request_timeout = "0s"
max_batch = 0
master_key_file = "k"
api_keys = { "bad name" = "x" }
"#;
        let err = parse(text).unwrap_err().to_string();
        for needle in [
            "vault_client.url: expected https://",
            "vault_client: give both cert and key",
            "vault_client: the proxy cannot authenticate",
            "vault_client.connect_timeout:",
            "vault_client.request_timeout:",
            "vault_client.max_batch:",
            "vault_client.api_keys.bad name:",
            "vault_client: use either [vault]",
            "vault_client.master_key_file: a proxy no longer holds the vault's master keyring",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in\n{err}");
        }
    }

    #[test]
    fn cert_files_need_https() {
        let text = "[vault_client]\nurl = \"http://127.0.0.1:8444\"\ncert = \"c\"\nkey = \"k\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("vault_client: cert, key and ca are used with an https:// url only"), "{err}");
    }

    #[test]
    fn a_config_needs_a_vault_or_a_vault_client() {
        let err = parse("[admin]\nlisten = \"127.0.0.1:9464\"\n").unwrap_err().to_string();
        assert!(err.contains("vault: missing section [vault]"), "{err}");
    }

    #[test]
    fn egress_callers_of_a_proxy_need_a_key_file() {
        let text = format!(
            "{CLIENT}\n[[egress]]\nname = \"psp\"\nlisten = \"127.0.0.1:8445\"\nupstream = \"https://psp.example\"\n\
             caller = \"payments\"\nfields = [ {{ json = \"$.card\", class = \"pan\" }} ]\n"
        );
        assert!(parse(&text).is_ok());
        let err = parse(&text.replace("caller = \"payments\"", "caller = \"ops\"")).unwrap_err().to_string();
        assert!(err.contains("egress[0].caller:"), "{err}");
    }
}
