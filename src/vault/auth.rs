//! Authentication: who is calling — by API key (sha-256 compared in constant time) or client certificate SAN.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::budget::Rate;
use crate::domain::permission::Permission;

/// The name the proxy's own calls are made and audited under.
pub const PROXY_CALLER: &str = "proxy";

/// A configured `[[caller]]`: how it authenticates and what it may do.
#[derive(Clone)]
pub struct CallerConfig {
    pub name: String,
    pub api_key_sha256: Option<[u8; 32]>,
    pub tls_identity: Option<String>,
    pub allow: Vec<Permission>,
    /// Why this caller uses the vault (for `veil register`).
    pub purpose: Option<String>,
    /// Its budget of new values of enumerable classes (`new_values_per_minute`); `None`: unbudgeted.
    pub new_values: Option<Rate>,
    /// Values it may see revealed on `reveal` routes (`reveals_per_hour`); `None`: unbudgeted.
    pub reveals: Option<Rate>,
}

impl std::fmt::Debug for CallerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerConfig").field("name", &self.name).field("allow", &self.allow).finish_non_exhaustive()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub allow: Vec<Permission>,
    /// Its budget of new values; `None`: unbudgeted (the in-process proxy, which budgets its clients instead).
    pub new_values: Option<Rate>,
    /// Where this call came from, for the audit log.
    pub origin: Origin,
}

/// Where a call came from (PCI DSS 10.2: the origination of each audited event): the network peer of an API
/// call and its verified TLS client identity. `None` everywhere: a call made in this process (the proxy, the
/// egress routes, the command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `ip:port` of the API call's peer.
    pub client: Option<String>,
    /// The SANs of the client certificate the peer presented (verified against `client_ca`), joined by `,`.
    pub identity: Option<String>,
}

impl Caller {
    /// The same caller, calling from `origin`.
    pub fn from_origin(mut self, origin: Origin) -> Caller {
        self.origin = origin;
        self
    }
}

impl Caller {
    /// The identity the proxy tokenises as in-process: `tokenize:*`, nothing else.
    pub fn proxy() -> Caller {
        let tokenize_any = Permission { op: Some(crate::domain::Op::Tokenize), class: None };
        Caller { name: PROXY_CALLER.into(), allow: vec![tokenize_any], new_values: None, origin: Origin::default() }
    }

    /// The operator at the command line: every right (the commands are for the operator who holds the key
    /// file), audited under this name.
    pub fn operator() -> Caller {
        Caller {
            name: "cli".into(),
            allow: vec![Permission { op: None, class: None }],
            new_values: None,
            origin: Origin::default(),
        }
    }
}

/// The configured callers.
pub struct Callers {
    list: Vec<CallerConfig>,
}

impl Callers {
    pub fn new(list: Vec<CallerConfig>) -> Callers {
        Callers { list }
    }

    /// The caller presenting this bearer key, or one of these verified certificate identities.
    /// Every key hash is compared (constant time, no early exit) so timing does not tell which key is close.
    pub fn authenticate(&self, bearer: Option<&str>, tls_identities: &[String]) -> Option<Caller> {
        let mut found: Option<&CallerConfig> = None;
        if let Some(key) = bearer {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            for c in &self.list {
                if let Some(expected) = &c.api_key_sha256 {
                    if bool::from(expected.ct_eq(&digest)) && found.is_none() {
                        found = Some(c);
                    }
                }
            }
            // A bearer key that matches nobody is a failed authentication, even with a certificate.
            found?;
        } else if !tls_identities.is_empty() {
            found = self.list.iter().find(|c| c.tls_identity.as_ref().is_some_and(|id| tls_identities.contains(id)));
        }
        found.map(|c| Caller {
            name: c.name.clone(),
            allow: c.allow.clone(),
            new_values: c.new_values,
            origin: Origin::default(),
        })
    }
}

/// The bearer key of an `Authorization: Bearer <key>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty()).then(|| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers() -> Callers {
        let hash: [u8; 32] = Sha256::digest(b"s3cret").into();
        Callers::new(vec![
            CallerConfig {
                name: "payments".into(),
                api_key_sha256: Some(hash),
                tls_identity: None,
                allow: vec![],
                purpose: None,
                new_values: None,
                reveals: None,
            },
            CallerConfig {
                name: "proxy".into(),
                api_key_sha256: None,
                tls_identity: Some("spiffe://shop/proxy".into()),
                allow: vec!["tokenize:*".parse().unwrap()],
                purpose: None,
                new_values: None,
                reveals: None,
            },
        ])
    }

    #[test]
    fn api_key_and_certificate_identities() {
        let c = callers();
        assert_eq!(c.authenticate(Some("s3cret"), &[]).unwrap().name, "payments");
        assert!(c.authenticate(Some("wrong"), &[]).is_none());
        assert!(c.authenticate(None, &[]).is_none());
        let ids = vec!["dns.example".to_owned(), "spiffe://shop/proxy".to_owned()];
        assert_eq!(c.authenticate(None, &ids).unwrap().name, "proxy");
        assert!(c.authenticate(Some("wrong"), &ids).is_none(), "a wrong key is not rescued by a certificate");
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
