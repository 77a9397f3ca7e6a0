//! A route's `reveal = { classes = [...], identity = ... }`: the back office sees, in the app's responses, the
//! values its staff member may see. Who that is: a client certificate (`"mtls"`) or an identity header set by a
//! trusted authenticating proxy (`{ header, trusted }`, the header's value a `[[caller]]` name).

use http::HeaderName;
use serde::Deserialize;

use super::proxy::{Cidr, Problems};
use crate::domain::Class;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReveal {
    classes: Vec<String>,
    identity: RawIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawIdentity {
    Named(String),
    Header(RawHeaderIdentity),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderIdentity {
    header: String,
    trusted: Vec<String>,
}

/// Which responses are revealed, and to whom.
#[derive(Debug, Clone)]
pub struct RevealRule {
    /// Tokens of these classes in the app's responses are revealed or masked per the staff member's rights.
    pub classes: Vec<Class>,
    pub identity: Identity,
}

/// How the staff member behind a request is known.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The client certificate's identity (URI or DNS SAN) is a `[[caller]]`'s `tls_identity`.
    Mtls,
    /// The header names a `[[caller]]`; believed only from these peers, removed from everyone else's requests.
    Header { name: HeaderName, trusted: Vec<Cidr> },
}

pub(super) fn validate(raw: RawReveal, at: &str, p: &mut Problems<'_>) -> Option<RevealRule> {
    let mut classes = Vec::new();
    for (i, c) in raw.classes.iter().enumerate() {
        match c.parse::<Class>() {
            Ok(Class::Cvc) => p(&format!("{at}.classes[{i}]"), "a cvc is never shown: it is kept for its card".into()),
            Ok(class) if !classes.contains(&class) => classes.push(class),
            Ok(_) => {}
            Err(e) => p(&format!("{at}.classes[{i}]"), e),
        }
    }
    if raw.classes.is_empty() {
        p(&format!("{at}.classes"), "name at least one class to reveal".into());
    }
    let identity = match raw.identity {
        RawIdentity::Named(n) if n == "mtls" => Some(Identity::Mtls),
        RawIdentity::Named(n) => {
            p(&format!("{at}.identity"), format!("expected \"mtls\" or {{ header, trusted }}, got {n:?}"));
            None
        }
        RawIdentity::Header(RawHeaderIdentity { header, trusted }) => {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| p(&format!("{at}.identity.header"), "not a valid header name".into()))
                .ok();
            let mut cidrs = Vec::new();
            for (i, t) in trusted.iter().enumerate() {
                match t.parse::<Cidr>() {
                    Ok(c) => cidrs.push(c),
                    Err(e) => p(&format!("{at}.identity.trusted[{i}]"), e),
                }
            }
            if trusted.is_empty() {
                p(&format!("{at}.identity.trusted"), "name the authenticating proxies the header is taken from".into());
            }
            name.map(|name| Identity::Header { name, trusted: cidrs })
        }
    };
    identity.map(|identity| RevealRule { classes, identity })
}
