//! `[[smtp]]` listeners: the shop's mailer uses one as its smarthost; veil reveals the tokens of each message as
//! the listener's caller and forwards it to the one configured mail server (STARTTLS required, or implicit TLS).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::proxy::{dur, Problems};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    name: String,
    listen: String,
    upstream: String,
    ca: Option<PathBuf>,
    caller: String,
    purpose: Option<String>,
    tls: Option<RawSmtpTls>,
    auth: Option<RawSmtpAuth>,
    max_message_bytes: Option<u64>,
    max_recipients: Option<u64>,
    max_connections: Option<u64>,
    #[serde(default)]
    trusted_recipients: Vec<String>,
    command_timeout: Option<String>,
    data_timeout: Option<String>,
    upstream_timeout: Option<String>,
    vault_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtpTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtpAuth {
    username: String,
    password_sha256: String,
}

/// The mail server a listener forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUpstream {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte; `smtp://`: STARTTLS, refused when the server does not offer it.
    pub implicit_tls: bool,
}

/// `AUTH PLAIN` credentials the shop's mailer must present (over TLS only).
#[derive(Clone)]
pub struct SmtpAuth {
    pub username: String,
    pub password_sha256: [u8; 32],
}

impl std::fmt::Debug for SmtpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpAuth").field("username", &self.username).finish_non_exhaustive()
    }
}

/// One validated SMTP listener.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: SmtpUpstream,
    /// A CA trusted for the upstream in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// The `[[caller]]` whose rights the listener reveals with, and under whose name reveals are audited.
    pub caller: String,
    /// The purpose recorded with every reveal.
    pub purpose: String,
    /// Certificate and key offered to the shop by STARTTLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub auth: Option<SmtpAuth>,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Plain recipients (no token) that may read what the caller may reveal: the shop's own staff, as full
    /// addresses or `@domain`, lower case. A message to anyone else plain shows no value; a message to
    /// customers (token recipients) shows only what is linked to them.
    pub trusted_recipients: Vec<String>,
    /// How long a command line may take to arrive (the idle timeout between commands).
    pub command_timeout: Duration,
    /// How long a whole message (DATA to the final dot) may take to arrive.
    pub data_timeout: Duration,
    /// Each step of the conversation with the upstream (connect, each reply).
    pub upstream_timeout: Duration,
    pub vault_timeout: Duration,
}

pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 10 << 20;

/// `smtp://host[:port]` (port 587 by default) or `smtps://host[:port]` (465), nothing else.
pub fn parse_upstream(s: &str) -> Result<SmtpUpstream, String> {
    let bad = || format!("expected smtp://host[:port] (STARTTLS) or smtps://host[:port] (implicit TLS), got {s:?}");
    let (implicit_tls, rest) = match (s.strip_prefix("smtp://"), s.strip_prefix("smtps://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let authority = rest.parse::<http::uri::Authority>().map_err(|_| bad())?;
    if authority.as_str() != rest || rest.contains('@') || authority.host().is_empty() {
        return Err(bad());
    }
    let port = match authority.port_u16() {
        Some(0) => return Err(bad()),
        Some(p) => p,
        None if authority.as_str().contains(':') && !authority.host().starts_with('[') => return Err(bad()),
        None if implicit_tls => 465,
        None => 587,
    };
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok(SmtpUpstream { host, port, implicit_tls })
}

pub(super) fn validate(raw: Vec<RawSmtp>, callers: &[&str], mut p: &mut Problems<'_>) -> Vec<SmtpConfig> {
    let mut out: Vec<SmtpConfig> = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let at = format!("smtp[{i}]");
        super::check_name(&s.name, &at, &mut p);
        if out.iter().any(|o| o.name == s.name) {
            p(&format!("{at}.name"), "duplicate smtp name".into());
        }
        let listen = super::addr(&s.listen, &format!("{at}.listen"), &mut p).ok_or(());
        let upstream = parse_upstream(&s.upstream).map_err(|e| p(&format!("{at}.upstream"), e));
        if !callers.contains(&s.caller.as_str()) {
            p(&format!("{at}.caller"), format!("no [[caller]] is named {:?}", s.caller));
        }
        let purpose = s.purpose.unwrap_or_else(|| format!("smtp:{}", s.name.to_ascii_lowercase()));
        if let Some(problem) = crate::domain::purpose::problem(&purpose) {
            p(&format!("{at}.purpose"), problem.into());
        }
        let auth = s.auth.and_then(|a| {
            if a.username.is_empty() || a.username.len() > 255 || a.username.chars().any(char::is_control) {
                p(&format!("{at}.auth.username"), "1 to 255 characters, no control characters".into());
            }
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(&a.password_sha256, &mut hash) {
                Ok(()) => Some(SmtpAuth { username: a.username, password_sha256: hash }),
                Err(_) => {
                    p(&format!("{at}.auth.password_sha256"), "expected 64 hex digits (sha-256 of the password)".into());
                    None
                }
            }
        });
        let tls = s.tls.map(|t| (t.cert, t.key));
        if auth.is_some() && tls.is_none() {
            p(&format!("{at}.auth"), "AUTH is offered over STARTTLS only: add tls = { cert, key }".into());
        }
        let max_message_bytes = super::bounded(
            s.max_message_bytes,
            DEFAULT_MAX_MESSAGE_BYTES,
            1024,
            256 << 20,
            &format!("{at}.max_message_bytes"),
            &mut p,
        );
        let max_recipients = super::bounded(s.max_recipients, 100, 1, 1000, &format!("{at}.max_recipients"), &mut p);
        let max_connections =
            super::bounded(s.max_connections, 100, 1, 10_000, &format!("{at}.max_connections"), &mut p);
        let trusted_recipients: Vec<String> = s.trusted_recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
        for (i, r) in trusted_recipients.iter().enumerate() {
            let ok = r.rsplit_once('@').is_some_and(|(_, domain)| !domain.is_empty())
                && r.chars().all(|c| c.is_ascii_graphic() && !"<>,;".contains(c));
            if !ok {
                p(&format!("{at}.trusted_recipients[{i}]"), "expected an address or @domain".into());
            }
        }
        let command_timeout = dur(&s.command_timeout, Duration::from_secs(300), &format!("{at}.command_timeout"), p);
        let data_timeout = dur(&s.data_timeout, Duration::from_secs(600), &format!("{at}.data_timeout"), p);
        let upstream_timeout = dur(&s.upstream_timeout, Duration::from_secs(60), &format!("{at}.upstream_timeout"), p);
        let vault_timeout = dur(&s.vault_timeout, Duration::from_secs(5), &format!("{at}.vault_timeout"), p);
        let (Ok(listen), Ok(upstream)) = (listen, upstream) else { continue };
        out.push(SmtpConfig {
            name: s.name,
            listen,
            upstream,
            ca: s.ca,
            caller: s.caller,
            purpose,
            tls,
            auth,
            max_message_bytes,
            max_recipients,
            max_connections,
            trusted_recipients,
            command_timeout,
            data_timeout,
            upstream_timeout,
            vault_timeout,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use proptest::prelude::*;

    const VAULT: &str = r#"
[vault]
listen = "127.0.0.1:0"
store = "sqlite://x.db"
master_key_file = "k"
audit_log = "a"
[[caller]]
name = "mailer"
api_key_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
allow = ["detokenize:email"]
"#;

    #[test]
    fn a_valid_listener_gets_defaults() {
        let cfg = parse(&format!(
            "{VAULT}\n[[smtp]]\nname = \"shop-mail\"\nlisten = \"127.0.0.1:2525\"\n\
             upstream = \"smtp://mail.example.net\"\ncaller = \"mailer\"\n"
        ))
        .unwrap();
        let s = &cfg.smtp[0];
        assert_eq!((s.name.as_str(), s.caller.as_str(), s.purpose.as_str()), ("shop-mail", "mailer", "smtp:shop-mail"));
        assert_eq!(s.upstream, SmtpUpstream { host: "mail.example.net".into(), port: 587, implicit_tls: false });
        assert_eq!(s.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert!(s.auth.is_none() && s.tls.is_none());
    }

    #[test]
    fn upstreams() {
        let ok = |s: &str| parse_upstream(s).unwrap();
        assert_eq!(ok("smtps://mail.example.net").port, 465);
        assert!(ok("smtps://mail.example.net:4650").implicit_tls);
        assert_eq!(ok("smtp://127.0.0.1:2500/").host, "127.0.0.1");
        assert_eq!(ok("smtp://[::1]:25").host, "::1");
        for bad in ["http://x", "smtp://", "smtp://u@x:25", "smtp://x:0", "smtp://x/path", "smtp://x:y", "x:25"] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let err = parse(&format!(
            "{VAULT}\n[[smtp]]\nname = \"a b\"\nlisten = \"nowhere\"\nupstream = \"https://mail\"\n\
             caller = \"nobody\"\npurpose = \"Customer Mail\"\nmax_message_bytes = 5\n\
             auth = {{ username = \"shop\", password_sha256 = \"xyz\" }}\ncommand_timeout = \"2h\"\n\
             trusted_recipients = [\"@shop.example\", \"nobody\"]\n"
        ))
        .unwrap_err()
        .to_string();
        for expected in [
            "smtp[0].name: use letters",
            "smtp[0].listen: expected an ip:port",
            "smtp[0].upstream: expected smtp://",
            "smtp[0].caller: no [[caller]] is named \"nobody\"",
            "smtp[0].purpose: purpose must be a short label",
            "smtp[0].max_message_bytes: 5 is outside",
            "smtp[0].auth.password_sha256: expected 64 hex digits",
            "smtp[0].command_timeout:",
            "smtp[0].trusted_recipients[1]: expected an address or @domain",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn auth_needs_tls() {
        let base = format!(
            "{VAULT}\n[[smtp]]\nname = \"m\"\nlisten = \"0.0.0.0:2525\"\nupstream = \"smtps://mail.example.net\"\n\
             caller = \"mailer\"\nauth = {{ username = \"shop\", password_sha256 = \"{}\" }}\n",
            "ab".repeat(32)
        );
        let err = parse(&base).unwrap_err().to_string();
        assert!(err.contains("smtp[0].auth: AUTH is offered over STARTTLS only"), "{err}");
        let cfg = parse(&format!("{base}tls = {{ cert = \"c.pem\", key = \"k.pem\" }}\n")).unwrap();
        assert_eq!(cfg.smtp[0].auth.as_ref().unwrap().password_sha256, [0xab; 32]);
        assert!(!format!("{:?}", cfg.smtp[0].auth).contains("ab"), "no hash in Debug");
    }

    /// The commented `[[smtp]]` example of config/webshop.toml, uncommented, is a valid config.
    #[test]
    fn the_shipped_example_loads() {
        let text = include_str!("../../config/webshop.toml");
        let start = text.find("# --- smtp example\n").unwrap();
        let end = text.find("# --- end smtp example").unwrap();
        let block: String = text[start..end]
            .lines()
            .skip(1)
            .map(|l| format!("{}\n", l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l)))
            .collect();
        let cfg = parse(&format!("{text}\n{block}")).unwrap();
        let s = &cfg.smtp[0];
        assert_eq!((s.name.as_str(), s.caller.as_str(), s.upstream.port), ("shop-mail", "mailer", 587));
        let mailer = cfg.callers.iter().find(|c| c.name == "mailer").unwrap();
        assert_eq!(mailer.allow.len(), 5);
    }

    proptest! {
        #[test]
        fn upstream_parsing_never_panics_and_round_trips(host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,6}){0,2}",
                                                         port in 1u16.., tls: bool, junk in ".{0,40}") {
            let _ = parse_upstream(&junk);
            let scheme = if tls { "smtps" } else { "smtp" };
            let u = parse_upstream(&format!("{scheme}://{host}:{port}")).unwrap();
            prop_assert_eq!(u, SmtpUpstream { host, port, implicit_tls: tls });
        }
    }
}
