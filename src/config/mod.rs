//! Configuration: raw TOML (serde, unknown keys refused) validated into typed values.
//!
//! `load` reads and parses; `validate` checks everything and reports *every* problem with its path
//! (`vault.listen: ...`, `caller[1].allow[0]: ...`), so `veil check` can print them all at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod egress;
pub mod master_key;
pub mod proxy;
pub mod reveal;
pub mod smtp;
pub mod vault_client;

pub use egress::EgressConfig;
pub use master_key::MasterKeySpec;
pub use proxy::{canonical_ip, Cidr, Field, FieldAction, FieldRule, ProxyConfig, Reveal, Route, Selector, Unmatched};
pub use smtp::SmtpConfig;
pub use vault_client::VaultClientConfig;

use crate::budget::Rate;
use crate::domain::duration;
use crate::domain::permission::Permission;
use crate::domain::Class;
use crate::token::ClassFormats;
pub use crate::vault::auth::CallerConfig;
use crate::vault::retention::Retention;

/// A configuration that failed to load or validate: every problem, each with its path.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> ConfigError {
        ConfigError { problems: vec![problem] }
    }
}

// ---------------------------------------------------------------- raw (as written)

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    proxy: Option<proxy::RawProxy>,
    #[serde(default)]
    route: Vec<proxy::RawRoute>,
    #[serde(default)]
    egress: Vec<egress::RawEgress>,
    #[serde(default)]
    smtp: Vec<smtp::RawSmtp>,
    vault: Option<RawVault>,
    vault_client: Option<vault_client::RawVaultClient>,
    admin: Option<RawAdmin>,
    #[serde(default)]
    caller: Vec<RawCaller>,
    #[serde(default)]
    class: BTreeMap<String, RawClass>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    listen: String,
    store: String,
    /// Provider `file`, the older spelling of `master_key = { provider = "file", path = … }`.
    master_key_file: Option<PathBuf>,
    master_key: Option<master_key::RawMasterKey>,
    audit_log: PathBuf,
    /// The audit signing key (Ed25519; `veil keygen --audit-key`), apart from the master key.
    audit_key_file: Option<PathBuf>,
    /// Names this log's head in the store (default: host name and the log's absolute path).
    audit_log_id: Option<String>,
    max_body_bytes: Option<u64>,
    max_batch: Option<u64>,
    /// How often the vault purges records past their class's retention, e.g. "1h".
    purge_interval: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) for client certificates.
    #[serde(default)]
    crl: Vec<PathBuf>,
    /// Every connection presents a client certificate (a bearer key is then a second factor). Default: on when
    /// the vault listens off loopback.
    require_client_cert: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    name: String,
    api_key_sha256: Option<String>,
    tls_identity: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    purpose: Option<String>,
    /// New values of enumerable classes (pan, iban, phone) this caller may tokenise per minute.
    new_values_per_minute: Option<u64>,
    /// Values this caller may see revealed on `reveal` routes per hour; past it, values are masked.
    reveals_per_hour: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    format: Option<String>,
    /// e.g. "180d", "7y": counted from the last time the value was tokenised.
    retention: Option<String>,
    /// false: every tokenisation draws a new token (no lookup by value; nothing to enumerate against).
    deterministic: Option<bool>,
    /// `pan` only: new cards taken per BIN + last four per day (0: unbudgeted).
    new_values_per_range_per_day: Option<u64>,
    /// `cvc` only: how long a CVC is kept for its card (default "1h", at most "24h").
    ttl: Option<String>,
    /// `cvc` only: how many reveals a CVC allows (default 1).
    uses: Option<u64>,
    /// `email` with `format = "relay"`: the domain (the operator's) the tokens are addresses at.
    relay_domain: Option<String>,
    /// `phone` with `format = "reserved-range"`: the operator's own number block (`+49 30 555 000`).
    reserved_prefix: Option<String>,
}

// ---------------------------------------------------------------- validated

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: Option<ProxyConfig>,
    pub routes: Vec<Route>,
    pub egress: Vec<EgressConfig>,
    /// SMTP listeners: the shop's smarthost, revealing as their caller.
    pub smtp: Vec<SmtpConfig>,
    /// The vault this process holds (`veil run`, `veil vault`); absent in a `veil proxy` config.
    pub vault: Option<VaultConfig>,
    /// The remote vault `veil proxy` calls.
    pub vault_client: Option<VaultClientConfig>,
    pub admin: Option<AdminConfig>,
    pub callers: Vec<CallerConfig>,
    pub formats: ClassFormats,
    pub retention: Retention,
}

impl Config {
    /// The clear key file this process reads: the vault's master keyring (provider `file`), or (for `veil proxy`)
    /// its encrypt-only key.
    pub fn master_key_file(&self) -> Option<&Path> {
        self.vault
            .as_ref()
            .and_then(|v| v.master_key.key_file())
            .or_else(|| self.vault_client.as_ref().and_then(|c| c.encrypt_key_file.as_deref()))
    }

    /// What is valid but unsafe for the data subjects, with the setting's path: tokens a stranger could receive
    /// mail at or be called on. (Only a config that tokenises, one with a vault, has formats that matter.)
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(vault) = &self.vault else {
            return out;
        };
        if vault.audit_key_file.is_none() {
            out.push(
                "vault.audit_key_file: not set, so audit lines are signed with a key derived from the master key: \
                 whoever holds the master key can rewrite the audit log. Create a separate key with `veil keygen \
                 --audit-key --out keys/audit.key` and set audit_key_file"
                    .into(),
            );
        }
        if self.formats.email == crate::token::email::EmailFormat::KeepDomain {
            out.push(
                "class.email.format: keep-domain tokens are deliverable addresses at the customer's provider: mail \
                 the shop sends to one reaches a stranger (a personal-data breach). Use format = \"relay\" with \
                 relay_domain = \"<a domain you own>\", or \"reserved-domain\""
                    .into(),
            );
        }
        if self.formats.phone == crate::token::phone::PhoneFormat::KeepCountry {
            out.push(
                "class.phone.format: keep-country tokens can be real numbers: an SMS or a call to one can reach a \
                 stranger. Do not let the app call or text a phone token"
                    .into(),
            );
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub listen: SocketAddr,
    pub store: StoreUrl,
    /// Where the master keyring is kept: `master_key = { provider = … }` or `master_key_file`.
    pub master_key: MasterKeySpec,
    pub audit_log: PathBuf,
    /// The audit signing key file (its public key beside it as `….pub`); `None`: derived from the master key.
    pub audit_key_file: Option<PathBuf>,
    /// Names this log's head in the store; `None`: host name and the log's absolute path.
    pub audit_log_id: Option<String>,
    /// Begin a new audit chain if the log is broken or missing (`--new-audit-chain`; not a config key).
    pub new_audit_chain: bool,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub purge_interval: std::time::Duration,
    pub tls: Option<TlsFiles>,
}

impl VaultConfig {
    /// The clear key file, where the keyring is kept in one (provider `file`).
    pub fn master_key_file(&self) -> Option<&Path> {
        self.master_key.key_file()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(String),
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub crls: Vec<PathBuf>,
    /// With `client_ca`: connections without a certificate are refused.
    pub require_client_cert: bool,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_BATCH: usize = 1000;
pub const DEFAULT_PURGE_INTERVAL_SECS: i64 = 3600;

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
    parse(&text)
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().trim().to_owned();
        ConfigError::one(if path == "." { msg } else { format!("{path}: {msg}") })
    })?;
    validate(raw)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut p = |path: &str, msg: String| problems.push(format!("{path}: {msg}"));

    let has_client = raw.vault_client.is_some();
    let raw_has_vault = raw.vault.is_some();
    let vault = match raw.vault {
        None => {
            if !has_client {
                p("vault", "missing section [vault] (or [vault_client] for `veil proxy`)".into());
            }
            None
        }
        Some(v) => {
            let listen = addr(&v.listen, "vault.listen", &mut p);
            let store = match StoreUrl::parse(&v.store) {
                Ok(s) => Some(s),
                Err(e) => {
                    p("vault.store", e);
                    None
                }
            };
            let max_body_bytes =
                bounded(v.max_body_bytes, DEFAULT_MAX_BODY_BYTES, 1024, 64 << 20, "vault.max_body_bytes", &mut p);
            let max_batch = bounded(v.max_batch, DEFAULT_MAX_BATCH, 1, 100_000, "vault.max_batch", &mut p);
            if let (Some(l), None) = (listen, &v.tls) {
                if !l.ip().is_loopback() {
                    p(
                        "vault.listen",
                        "plain HTTP is allowed on loopback only; add [vault.tls] or listen on 127.0.0.1".into(),
                    );
                }
            }
            let off_loopback = listen.is_some_and(|l| !l.ip().is_loopback());
            let tls = v.tls.map(|t| {
                if t.client_ca.is_none() && (!t.crl.is_empty() || t.require_client_cert == Some(true)) {
                    p("vault.tls", "crl and require_client_cert need client_ca".into());
                }
                TlsFiles {
                    require_client_cert: t.require_client_cert.unwrap_or(off_loopback),
                    cert: t.cert,
                    key: t.key,
                    client_ca: t.client_ca,
                    crls: t.crl,
                }
            });
            let purge_secs = match v.purge_interval.as_deref().map(duration::parse_secs) {
                None => DEFAULT_PURGE_INTERVAL_SECS,
                Some(Ok(secs)) if secs <= 7 * 86_400 => secs,
                Some(Ok(_)) => {
                    p("vault.purge_interval", "at most 7d".into());
                    DEFAULT_PURGE_INTERVAL_SECS
                }
                Some(Err(e)) => {
                    p("vault.purge_interval", e);
                    DEFAULT_PURGE_INTERVAL_SECS
                }
            };
            let purge_interval = std::time::Duration::from_secs(purge_secs.unsigned_abs());
            let master_key = master_key::validate(v.master_key_file, v.master_key, &mut p);
            match (listen, store, master_key) {
                (Some(listen), Some(store), Some(master_key)) => Some(VaultConfig {
                    listen,
                    store,
                    master_key,
                    audit_log: v.audit_log,
                    audit_key_file: v.audit_key_file,
                    audit_log_id: v.audit_log_id,
                    new_audit_chain: false,
                    max_body_bytes,
                    max_batch,
                    purge_interval,
                    tls,
                }),
                _ => None,
            }
        }
    };

    if has_client && raw_has_vault {
        p("vault_client", "use either [vault] (this process holds the vault) or [vault_client] (a remote one)".into());
    }
    let vault_client = raw.vault_client.and_then(|c| vault_client::validate(c, &mut p));

    let has_routes = !raw.route.is_empty();
    let proxy = raw.proxy.and_then(|r| proxy::validate_proxy(r, &mut p));
    let routes = proxy::validate_routes(raw.route, &mut p);
    if vault_client.as_ref().is_some_and(|c| c.encrypt_key_file.is_none()) {
        for (i, r) in routes.iter().enumerate() {
            if r.fields.iter().any(|f| matches!(f.action, FieldAction::Encrypt(_))) {
                p(
                    &format!("route[{i}]"),
                    "an `encrypt` field needs the proxy's own key: [vault_client] encrypt_key_file (veil keygen \
                     --encrypt-only)"
                        .into(),
                );
            }
        }
    }
    if has_routes && proxy.is_none() {
        p("route", "routes need a valid [proxy] section".into());
    }

    let admin = raw.admin.and_then(|a| addr(&a.listen, "admin.listen", &mut p).map(|listen| AdminConfig { listen }));

    let mut callers = Vec::new();
    let mut keyless: Vec<(String, String)> = Vec::new();
    for (i, c) in raw.caller.into_iter().enumerate() {
        let at = format!("caller[{i}]");
        check_name(&c.name, &at, &mut p);
        if callers.iter().any(|o: &CallerConfig| o.name == c.name) {
            p(&format!("{at}.name"), "duplicate caller name".into());
        }
        let api_key_sha256 = c.api_key_sha256.as_deref().and_then(|h| {
            let mut out = [0u8; 32];
            match hex::decode_to_slice(h, &mut out) {
                Ok(()) => Some(out),
                Err(_) => {
                    p(&format!("{at}.api_key_sha256"), "expected 64 hex digits (sha-256 of the key)".into());
                    None
                }
            }
        });
        // A staff member named by a trusted identity header needs neither (checked once routes are known).
        if c.api_key_sha256.is_none() && c.tls_identity.is_none() {
            keyless.push((at.clone(), c.name.clone()));
        }
        if matches!(&c.tls_identity, Some(id) if id.is_empty()) {
            p(&format!("{at}.tls_identity"), "must not be empty".into());
        }
        let mut allow = Vec::new();
        for (j, rule) in c.allow.iter().enumerate() {
            match rule.parse::<Permission>() {
                Ok(perm) => allow.push(perm),
                Err(e) => p(&format!("{at}.allow[{j}]"), e),
            }
        }
        let purpose = purpose(c.purpose, &format!("{at}.purpose"), &mut p);
        let at_budget = format!("{at}.new_values_per_minute");
        let per_minute =
            bounded(c.new_values_per_minute, CALLER_NEW_VALUES_PER_MINUTE, 1, 10_000_000, &at_budget, &mut p);
        let new_values = Some(Rate::per_minute(u32::try_from(per_minute).unwrap_or(u32::MAX)));
        let reveals = c.reveals_per_hour.map(|n| {
            let n = bounded(Some(n), 0, 1, 10_000_000, &format!("{at}.reveals_per_hour"), &mut p);
            Rate::per_hour(u32::try_from(n).unwrap_or(u32::MAX))
        });
        callers.push(CallerConfig {
            name: c.name,
            api_key_sha256,
            tls_identity: c.tls_identity,
            allow,
            purpose,
            new_values,
            reveals,
        });
    }
    // One credential, one caller: a key or certificate shared by two callers would act as whichever comes first.
    for (j, c) in callers.iter().enumerate() {
        let earlier = &callers[..j];
        if let Some(o) = earlier.iter().find(|o| c.api_key_sha256.is_some() && o.api_key_sha256 == c.api_key_sha256) {
            p(&format!("caller[{j}].api_key_sha256"), format!("the same key as caller {:?}", o.name));
        }
        if let Some(o) = earlier.iter().find(|o| c.tls_identity.is_some() && o.tls_identity == c.tls_identity) {
            p(&format!("caller[{j}].tls_identity"), format!("the same identity as caller {:?}", o.name));
        }
        // The shipped demo keys are in the README: fine on loopback, never where others can reach the vault.
        let exposed = vault.as_ref().is_some_and(|v| !v.listen.ip().is_loopback());
        if let Some(demo) = DEMO_KEYS.iter().find(|d| exposed && c.api_key_sha256 == Some(demo_hash(d))) {
            p(
                &format!("caller[{j}].api_key_sha256"),
                format!(
                    "the published demo key {demo:?} on a vault others can reach: generate a key of your own \
                     (`veil keygen --api-key --out FILE` prints the line for here)"
                ),
            );
        }
    }
    let header_identity = routes
        .iter()
        .any(|r| matches!(&r.reveal, Some(reveal::RevealRule { identity: reveal::Identity::Header { .. }, .. })));
    for (at, _) in keyless.iter().filter(|_| !header_identity) {
        p(at, "needs api_key_sha256 or tls_identity to authenticate (or a reveal route naming it by header)".into());
    }

    // Egress routes and SMTP listeners reveal as a caller: a [[caller]] of the local vault, or one the proxy holds a key file for.
    let caller_names: Vec<&str> = match &vault_client {
        Some(c) => c.api_keys.keys().map(String::as_str).collect(),
        None => callers.iter().map(|c| c.name.as_str()).collect(),
    };
    let egress = egress::validate(raw.egress, &caller_names, &mut p);
    let smtp = smtp::validate(raw.smtp, &caller_names, &mut p);
    for s in &smtp {
        if routes.iter().any(|r| r.name == s.name) || egress.iter().any(|e| e.name() == s.name) {
            p("smtp", format!("{:?} is also a route or egress name; names label metrics, keep them apart", s.name));
        }
    }
    for e in &egress {
        if routes.iter().any(|r| r.name == e.name()) {
            p(
                "egress",
                format!("{:?} is both a route and an egress name; names label metrics, keep them apart", e.name()),
            );
        }
    }

    let mut formats = ClassFormats { pan_range_per_day: Some(PAN_RANGE_PER_DAY), ..ClassFormats::default() };
    let mut retention = Retention::default();
    for (name, c) in &raw.class {
        let at = format!("class.{name}");
        match name.parse::<Class>() {
            Err(e) => p(&at, e),
            Ok(class) => {
                match (class, c.format.as_deref(), &c.relay_domain) {
                    (Class::Email, Some("relay"), Some(domain)) => match relay_domain(domain) {
                        Ok(d) => formats.email = crate::token::email::EmailFormat::Relay(d),
                        Err(e) => p(&format!("{at}.relay_domain"), e),
                    },
                    (_, _, Some(_)) => {
                        p(&format!("{at}.relay_domain"), "only for class.email with format = \"relay\"".into())
                    }
                    (Class::Phone, Some("reserved-range"), None) if c.reserved_prefix.is_some() => {
                        match reserved_prefix(c.reserved_prefix.as_deref().unwrap_or_default()) {
                            Ok(prefix) => formats.phone = crate::token::phone::PhoneFormat::ReservedRange(prefix),
                            Err(e) => p(&format!("{at}.reserved_prefix"), e),
                        }
                    }
                    (_, Some(f), None) => {
                        if let Err(e) = formats.set(class, f) {
                            p(&format!("{at}.format"), e);
                        }
                    }
                    (_, None, None) => {}
                }
                if c.reserved_prefix.is_some()
                    && !(class == Class::Phone && c.format.as_deref() == Some("reserved-range"))
                {
                    p(&format!("{at}.reserved_prefix"), "only for class.phone with format = \"reserved-range\"".into());
                }
                formats.fresh[class.index()] = c.deterministic == Some(false);
                match (class, c.ttl.as_deref().map(duration::parse_secs)) {
                    (_, None) => {}
                    (Class::Cvc, Some(Ok(secs))) if (1..=86_400).contains(&secs) => formats.cvc_ttl = secs as u64,
                    (Class::Cvc, Some(Ok(_))) => p(&format!("{at}.ttl"), "a cvc is kept 1s to 24h".into()),
                    (Class::Cvc, Some(Err(e))) => p(&format!("{at}.ttl"), e),
                    (_, Some(_)) => p(&format!("{at}.ttl"), "only class.cvc has a ttl (others: retention)".into()),
                }
                match (class, c.uses) {
                    (_, None) => {}
                    (Class::Cvc, Some(n @ 1..=100)) => formats.cvc_uses = n as u32,
                    (Class::Cvc, Some(n)) => p(&format!("{at}.uses"), format!("{n} is outside 1..=100")),
                    (_, Some(_)) => p(&format!("{at}.uses"), "only class.cvc has uses".into()),
                }
                if let Some(n) = c.new_values_per_range_per_day {
                    let at = format!("{at}.new_values_per_range_per_day");
                    match (class, u32::try_from(n)) {
                        (Class::Pan, Ok(0)) => formats.pan_range_per_day = None,
                        (Class::Pan, Ok(n)) => formats.pan_range_per_day = Some(n),
                        (Class::Pan, Err(_)) => p(&at, format!("{n} is outside 0..={}", u32::MAX)),
                        _ => p(&at, "only class.pan has card ranges".into()),
                    }
                }
                match c.retention.as_deref().map(duration::parse_secs) {
                    None => {}
                    Some(Ok(secs)) => retention.classes.push((class, secs)),
                    Some(Err(e)) => p(&format!("{at}.retention"), e),
                }
            }
        }
    }

    // Tokens are found inside text by their formats: name, address and text tokens only when tagged.
    for (i, e) in egress.iter().enumerate() {
        for f in &e.route.fields {
            let Reveal::InText(classes) = f.action else { continue };
            for class in classes.to_vec().into_iter().filter(|c| !formats.findable(*c)) {
                p(
                    &format!("egress[{i}].fields"),
                    format!("{class} tokens cannot be found inside text unless [class.{class}] format = \"tagged\""),
                );
            }
        }
    }

    for (i, r) in routes.iter().enumerate() {
        let Some(rule) = &r.reveal else { continue };
        for class in rule.classes.iter().filter(|c| !formats.findable(**c)) {
            p(
                &format!("route[{i}].reveal.classes"),
                format!("{class} tokens cannot be found in responses unless [class.{class}] format = \"tagged\""),
            );
        }
        let mtls = matches!(rule.identity, reveal::Identity::Mtls);
        if mtls && proxy.as_ref().is_some_and(|pc| pc.client_ca.is_none()) {
            p(&format!("route[{i}].reveal.identity"), "\"mtls\" needs [proxy.tls] client_ca".into());
        }
    }

    if problems.is_empty() {
        Ok(Config { proxy, routes, egress, smtp, vault, vault_client, admin, callers, formats, retention })
    } else {
        Err(ConfigError { problems })
    }
}

/// A name that labels metrics and logs (routes, egress, smtp listeners, callers): letters, digits, '-', '_', '.'.
pub(super) fn check_name(name: &str, at: &str, p: &mut impl FnMut(&str, String)) {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        p(&format!("{at}.name"), "use letters, digits, '-', '_' or '.'".into());
    }
}

pub(super) fn addr(s: &str, path: &str, p: &mut impl FnMut(&str, String)) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p(path, format!("expected an ip:port socket address, got {s:?}"));
            None
        }
    }
}

/// New cards the vault takes per BIN + last four per day, unless `[class.pan] new_values_per_range_per_day` says
/// otherwise. A shop's real customers rarely share both; walking one `keep-bin-last4` token's ~10^5 candidates
/// (half of them on average) takes 500 days at this rate, however many addresses the walk comes from.
pub const PAN_RANGE_PER_DAY: u32 = 100;

/// A relay domain: a valid domain name (letters, digits, hyphens, dots; two labels at least), kept for the life
/// of the process (leaked once at config load: formats are copied freely and hold it by reference).
fn relay_domain(domain: &str) -> Result<&'static str, String> {
    let d = domain.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    match d.len() <= 200 && d.split('.').count() >= 2 && d.split('.').all(label_ok) {
        true => Ok(Box::leak(d.into_boxed_str())),
        false => Err(format!("{domain:?} is not a domain name (e.g. \"customers.shop.example\")")),
    }
}

/// An operator's number block for phone tokens: `+`, then 4 to 12 digits (separators allowed), kept for the
/// life of the process like a relay domain.
fn reserved_prefix(prefix: &str) -> Result<&'static str, String> {
    let digits: String = prefix.chars().filter(char::is_ascii_digit).collect();
    let shape = prefix.trim().starts_with('+') && prefix.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
    match shape && (4..=12).contains(&digits.len()) {
        true => Ok(Box::leak(digits.into_boxed_str())),
        false => {
            Err(format!("{prefix:?} is not a number block (`+`, country code, 4 to 12 digits: \"+49 30 555 000\")"))
        }
    }
}

/// A caller's budget of new values of enumerable classes per minute, unless it sets its own: a bound on what a
/// stolen API key can add (the card range budget is what stops a walk), with room for the busiest service and
/// for a split deployment's proxy, which sends all its clients' values as one caller.
pub const CALLER_NEW_VALUES_PER_MINUTE: usize = 60_000;

fn bounded(v: Option<u64>, default: usize, min: u64, max: u64, path: &str, p: &mut impl FnMut(&str, String)) -> usize {
    match v {
        None => default,
        Some(v) if (min..=max).contains(&v) => v as usize,
        Some(v) => {
            p(path, format!("{v} is outside {min}..={max}"));
            default
        }
    }
}

/// The API keys of the shipped demo callers (README quick start): public, so refused off loopback.
const DEMO_KEYS: [&str; 2] = ["demo-app-key", "demo-payments-key"];

fn demo_hash(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// Longest `purpose` text accepted.
pub const MAX_PURPOSE_CHARS: usize = 500;

/// A `purpose = "…"`: one line of non-empty text (trimmed), at most [`MAX_PURPOSE_CHARS`] characters.
fn purpose(v: Option<String>, path: &str, p: &mut (impl FnMut(&str, String) + ?Sized)) -> Option<String> {
    let text = v?.trim().to_owned();
    if text.is_empty() {
        p(path, "must not be empty; say why the data is processed".into());
    } else if text.chars().any(char::is_control) {
        p(path, "must be one line of text (no control characters)".into());
    } else if text.chars().count() > MAX_PURPOSE_CHARS {
        p(path, format!("longer than {MAX_PURPOSE_CHARS} characters"));
    } else {
        return Some(text);
    }
    None
}

impl StoreUrl {
    fn parse(s: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = s.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://data/vault.db".into());
            }
            Ok(StoreUrl::Sqlite(s.to_owned()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(s.to_owned()))
        } else {
            Err("expected sqlite://PATH or postgres://USER:PASS@HOST/DB".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[vault]
listen = "127.0.0.1:8444"
store = "sqlite://data/vault.db"
master_key_file = "keys/master.key"
audit_log = "data/audit.jsonl"
"#;

    #[test]
    fn shipped_config_is_valid() {
        let cfg = parse(include_str!("../../config/veil.toml")).unwrap();
        assert!(!cfg.callers.is_empty());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = parse(MINIMAL).unwrap();
        let vault = cfg.vault.unwrap();
        assert_eq!(vault.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(vault.max_batch, DEFAULT_MAX_BATCH);
        assert_eq!(vault.store, StoreUrl::Sqlite("sqlite://data/vault.db".into()));
        assert!(cfg.admin.is_none());
    }

    #[test]
    fn budgets_and_fresh_classes_have_defaults_and_can_be_set() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(cfg.formats.pan_range_per_day, Some(PAN_RANGE_PER_DAY));
        assert!(Class::ALL.iter().all(|c| cfg.formats.deterministic(*c)));
        let text = format!(
            "{MINIMAL}[[caller]]\nname = \"a\"\napi_key_sha256 = \"{}\"\n\
             [[caller]]\nname = \"b\"\napi_key_sha256 = \"{}\"\nnew_values_per_minute = 7\n\
             [class.pan]\nnew_values_per_range_per_day = 0\n[class.phone]\ndeterministic = false\n",
            "0".repeat(64),
            "1".repeat(64)
        );
        let cfg = parse(&text).unwrap();
        let per_minute = |i: usize| cfg.callers[i].new_values.map(|r| (r.amount, r.per.as_secs()));
        assert_eq!(per_minute(0), Some((CALLER_NEW_VALUES_PER_MINUTE as u32, 60)));
        assert_eq!(per_minute(1), Some((7, 60)));
        assert_eq!(cfg.formats.pan_range_per_day, None, "0 lifts the range budget");
        assert!(!cfg.formats.deterministic(Class::Phone) && cfg.formats.deterministic(Class::Pan));
    }

    #[test]
    fn shared_credentials_and_published_demo_keys_are_refused() {
        let demo = hex::encode(demo_hash("demo-app-key"));
        let callers = format!(
            "[[caller]]\nname = \"a\"\napi_key_sha256 = \"{demo}\"\ntls_identity = \"spiffe://x\"\n\
             [[caller]]\nname = \"b\"\napi_key_sha256 = \"{demo}\"\n\
             [[caller]]\nname = \"c\"\ntls_identity = \"spiffe://x\"\n"
        );
        let all = parse(&format!("{MINIMAL}{callers}")).unwrap_err().problems.join("\n");
        assert!(all.contains("caller[1].api_key_sha256: the same key as caller \"a\""), "{all}");
        assert!(all.contains("caller[2].tls_identity: the same identity as caller \"a\""), "{all}");
        assert!(!all.contains("demo key"), "on loopback the demo keys are fine: {all}");
        let exposed = MINIMAL.replace("127.0.0.1:8444", "0.0.0.0:8444");
        assert_ne!(exposed, MINIMAL);
        let one = format!("[[caller]]\nname = \"a\"\napi_key_sha256 = \"{demo}\"\n");
        let all = parse(&format!("{exposed}{one}")).unwrap_err().problems.join("\n");
        assert!(all.contains("caller[0].api_key_sha256: the published demo key \"demo-app-key\""), "{all}");
    }

    #[test]
    fn unknown_key_is_reported_with_its_path() {
        let err = parse(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err();
        assert!(err.problems[0].contains("vault"), "{err}");
        assert!(err.problems[0].contains("bogus"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
[vault]
listen = "0.0.0.0:8444"
store = "mysql://x"
master_key_file = "k"
audit_log = "a"
max_batch = 0
purge_interval = "30d"

[admin]
listen = "nope"

[[caller]]
name = "payments"
api_key_sha256 = "xyz"
allow = ["detokenize:pan", "fly:pan", "tokenize:bogus"]

[[caller]]
name = "payments"
new_values_per_minute = 0

[class.pan]
format = "sparkly"
new_values_per_range_per_day = 5000000000
[class.email]
retention = "forever"
new_values_per_range_per_day = 10
[class.phone]
retention = "0d"
[class.ssn]
format = "x"
"#;
        let err = parse(text).unwrap_err();
        let all = err.problems.join("\n");
        for needle in [
            "vault.store:",
            "vault.max_batch:",
            "vault.purge_interval:",
            "admin.listen:",
            "caller[0].api_key_sha256:",
            "caller[0].allow[1]:",
            "caller[0].allow[2]:",
            "caller[1].name: duplicate",
            "caller[1]: needs api_key_sha256 or tls_identity",
            "caller[1].new_values_per_minute:",
            "class.pan.format:",
            "class.pan.new_values_per_range_per_day:",
            "class.email.new_values_per_range_per_day: only class.pan",
            "class.email.retention:",
            "class.phone.retention:",
            "class.ssn:",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
    }

    #[test]
    fn retention_and_purge_interval() {
        let cfg = parse(&format!("{MINIMAL}purge_interval = \"10m\"\n[class.pan]\nretention = \"7y\"\n")).unwrap();
        assert_eq!(cfg.vault.as_ref().unwrap().purge_interval, std::time::Duration::from_secs(600));
        assert_eq!(cfg.retention.classes, vec![(Class::Pan, 7 * 365 * 86_400)]);
        let cfg = parse(MINIMAL).unwrap();
        assert!(cfg.retention.classes.is_empty());
        assert_eq!(cfg.vault.as_ref().unwrap().purge_interval, std::time::Duration::from_secs(3600));
    }

    #[test]
    fn plain_http_vault_only_on_loopback() {
        let err = parse(&MINIMAL.replace("127.0.0.1:8444", "0.0.0.0:8444")).unwrap_err();
        assert!(err.problems[0].starts_with("vault.listen: plain HTTP"), "{err}");
        let ok = parse(&MINIMAL.replace("127.0.0.1:8444", "[::1]:8444"));
        assert!(ok.is_ok());
    }

    #[test]
    fn purposes_are_one_line_of_non_empty_text() {
        let route = |purpose: &str| {
            format!(
                "{MINIMAL}\n[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n\
                 [[route]]\nname = \"r\"\nmatch = {{ path = \"/\" }}\npurpose = {purpose}\n\
                 [[caller]]\nname = \"c\"\ntls_identity = \"x\"\npurpose = {purpose}\n"
            )
        };
        let cfg = parse(&route("\"  order fulfilment  \"")).unwrap();
        assert_eq!(cfg.routes[0].purpose.as_deref(), Some("order fulfilment"));
        assert_eq!(cfg.callers[0].purpose.as_deref(), Some("order fulfilment"));
        let long = format!("\"{}\"", "x".repeat(MAX_PURPOSE_CHARS + 1));
        for bad in ["\"\"", "\"   \"", "\"two\\nlines\"", long.as_str()] {
            let err = parse(&route(bad)).unwrap_err();
            let all = err.problems.join("\n");
            assert!(all.contains("route[0].purpose: "), "{bad}: {all}");
            assert!(all.contains("caller[0].purpose: "), "{bad}: {all}");
        }
        assert!(parse(&route("3")).is_err(), "a purpose is text");
    }
}
