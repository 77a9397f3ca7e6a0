//! The `[proxy]` section and `[[route]]`s: raw TOML shapes and their validation into typed, compiled values.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use serde::Deserialize;

use crate::budget::Rate;
use crate::domain::path::{method_matches, PathPattern, PatternOptions};
use crate::domain::Class;
use crate::rewrite::select::JsonPath;
use crate::rewrite::xml::XmlPath;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    listen: String,
    upstream: String,
    upstream_ca: Option<PathBuf>,
    max_body_bytes: Option<u64>,
    max_header_bytes: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_client: Option<u64>,
    max_pending_per_client: Option<u64>,
    handshake_timeout: Option<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    write_timeout: Option<String>,
    upstream_timeout: Option<String>,
    vault_timeout: Option<String>,
    unmatched: Option<String>,
    max_values_per_request: Option<u64>,
    new_values_per_hour: Option<u64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    tls: Option<RawProxyTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxyTls {
    cert: PathBuf,
    key: PathBuf,
    /// Client certificates verified against this CA (optional for clients: browsers connect without one); their
    /// identities name `[[caller]]`s for `reveal` routes with `identity = "mtls"`.
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelector {
    json: Option<String>,
    form: Option<String>,
    multipart: Option<String>,
    xml: Option<String>,
    header: Option<String>,
    query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(flatten)]
    selector: RawSelector,
    class: Option<String>,
    action: Option<String>,
    /// A `cvc` field: the card field it belongs to, in the same selector kind (`bind = "$.card.number"`).
    bind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    methods: Vec<String>,
    path: String,
    /// `/Checkout` is another path than `/checkout` (default: the same, as most app routers treat it).
    case_sensitive: Option<bool>,
    /// `/checkout/` is the same path as `/checkout` (default: true).
    trailing_slash: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    name: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    detect: Vec<String>,
    subject: Option<RawSelector>,
    mode: Option<String>,
    purpose: Option<String>,
    /// Back office: tokens in the app's responses revealed to the staff member (`reveal = { classes, identity }`).
    reveal: Option<super::reveal::RawReveal>,
}

/// The ingress proxy: where it listens, the one app it forwards to, and its limits.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub upstream: Uri,
    /// A CA trusted for an https:// upstream in addition to the system roots.
    pub upstream_ca: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Connections one client address may hold (behind a load balancer every client has its address: raise it).
    pub max_connections_per_client: usize,
    /// Connections one client address may hold before their first request (TLS handshake, request head).
    pub max_pending_per_client: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// A response write that makes no progress this long closes the connection.
    pub write_timeout: Duration,
    pub upstream_timeout: Duration,
    pub vault_timeout: Duration,
    /// What happens to requests no route takes.
    pub unmatched: Unmatched,
    /// Most values one request may send to the vault (selected and detected); more are refused with 422.
    pub max_values_per_request: usize,
    /// New values of enumerable classes (pan, iban, phone) one client may have tokenised; `None`: unbudgeted.
    pub new_values: Option<Rate>,
    /// Peers whose `X-Forwarded-For` names the client (load balancers, CDNs in front of veil).
    pub trusted_proxies: Vec<Cidr>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `[proxy.tls] client_ca`: client certificates are asked for and verified against it.
    pub client_ca: Option<PathBuf>,
}

/// Per client and hour unless `[proxy] new_values_per_hour` sets one: none. Addresses are shared (carrier NAT,
/// offices, a proxy not listed in `trusted_proxies`), so a default small enough to matter would refuse real
/// customers; the card range budget, on by default, is what stops a walk of one card's candidates from any
/// number of addresses. Set it (with `trusted_proxies`) to bound what one address can add.
pub const CLIENT_NEW_VALUES_PER_HOUR: usize = 0;

/// An address range, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a range of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical_ip(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    let mask = (0xffu16 << (8 - rest)) as u8;
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] & mask) == (b[whole] & mask))
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("expected an address or a range like 10.0.0.0/8, got {s:?}");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net = canonical_ip(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }
}

/// `[proxy] unmatched`: the policy for requests no route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// Forwarded untouched, streamed (`"pass"`).
    Pass,
    /// Bodies and query strings scanned for every detectable class, what is found tokenised (`"detect"`).
    #[default]
    Detect,
    /// Refused with 404 `no_route` (`"refuse"`).
    Refuse,
}

/// Where a field is found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Json(JsonPath),
    Form(String),
    Multipart(String),
    Xml(XmlPath),
    Header(HeaderName),
    Query(String),
}

/// What an ingress route does with a selected field. Each action that changes a value names the class it is
/// a value of; `drop` and `reject` may name one to label their metrics. Revealing is an egress action
/// ([`Reveal`]), so an ingress route cannot hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAction {
    /// Replace by a format-preserving token (one vault batch per request).
    Tokenize(Class),
    /// Replace by a vaultless AES-GCM-SIV blob.
    Encrypt(Class),
    /// Replace by an irreversible masked form.
    Mask(Class),
    /// Remove the field (minimisation).
    Drop(Option<Class>),
    /// Refuse a request that carries the field (422).
    Reject(Option<Class>),
}

impl FieldAction {
    /// The action's config name (and `action` label of `veil_fields_total`).
    pub fn name(self) -> &'static str {
        match self {
            FieldAction::Tokenize(_) => "tokenize",
            FieldAction::Encrypt(_) => "encrypt",
            FieldAction::Mask(_) => "mask",
            FieldAction::Drop(_) => "drop",
            FieldAction::Reject(_) => "reject",
        }
    }

    /// The class the field holds, where the config names one.
    pub fn class(self) -> Option<Class> {
        match self {
            FieldAction::Tokenize(c) | FieldAction::Encrypt(c) | FieldAction::Mask(c) => Some(c),
            FieldAction::Drop(c) | FieldAction::Reject(c) => c,
        }
    }
}

/// What an egress route does with a selected field, with the route's caller's rights: reveal the token found there
/// as a value of a class (`class = "…"`), or reveal the tokens of these classes found inside its text (`detect =
/// […]`; a string that merely looks like a token, unknown to the vault, is left as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    Value(Class),
    InText(crate::domain::ClassSet),
    /// A recipient (`class = "email" | "phone"`, `audience = true`): revealed, and whom the request goes to —
    /// every other token of the request is revealed only where it is linked to the recipients' subjects.
    Audience(Class),
}

impl Reveal {
    /// The classes this field may reveal.
    pub fn classes(self) -> Vec<Class> {
        match self {
            Reveal::Value(c) | Reveal::Audience(c) => vec![c],
            Reveal::InText(set) => set.to_vec(),
        }
    }

    /// For the record of processing: `pan`, or `tokens of pan, email in the text`.
    pub fn describe(self) -> String {
        match self {
            Reveal::Value(c) => c.name().to_owned(),
            Reveal::Audience(c) => format!("{} (the recipient)", c.name()),
            Reveal::InText(set) => {
                let names: Vec<&str> = set.to_vec().into_iter().map(Class::name).collect();
                format!("tokens of {} in the text", names.join(", "))
            }
        }
    }
}

/// One configured field of a route: where it is, and what the route does with it.
#[derive(Debug, Clone)]
pub struct Field<A> {
    pub selector: Selector,
    pub action: A,
    /// A `cvc` field's card field (same selector kind): the CVC is kept for, or revealed by, that card's token.
    pub bind: Option<Selector>,
}

/// The selector `bind` names: of the same kind as `raw`'s.
pub(super) fn bind_selector(raw: &RawSelector, bind: &str, at: &str, p: &mut Problems<'_>) -> Option<Selector> {
    let some = || Some(bind.to_owned());
    let rebound = RawSelector {
        json: raw.json.as_ref().and_then(|_| some()),
        form: raw.form.as_ref().and_then(|_| some()),
        multipart: raw.multipart.as_ref().and_then(|_| some()),
        xml: raw.xml.as_ref().and_then(|_| some()),
        header: raw.header.as_ref().and_then(|_| some()),
        query: raw.query.as_ref().and_then(|_| some()),
    };
    selector(&rebound, at, p)
}

/// Checks the `bind` of every field of a route: required exactly for `cvc` fields (`cvc` says whether a field is
/// one that keeps or reveals a CVC), and naming a field of the route that `card` says is a card's.
pub(super) fn check_binds<A>(
    fields: &[Field<A>],
    at: &str,
    cvc: impl Fn(&A) -> bool,
    card: impl Fn(&A) -> bool,
    p: &mut Problems<'_>,
) {
    for (j, f) in fields.iter().enumerate() {
        let fat = format!("{at}.fields[{j}]");
        match (&f.bind, cvc(&f.action)) {
            (None, true) => {
                p(&format!("{fat}.bind"), "a cvc field needs bind = the selector of its card's field".into())
            }
            (Some(_), false) => p(&format!("{fat}.bind"), "only a cvc field is bound to a card".into()),
            (Some(b), true) if !fields.iter().any(|o| &o.selector == b && card(&o.action)) => {
                p(&format!("{fat}.bind"), "names no pan field of this route".into())
            }
            _ => {}
        }
    }
}

/// An ingress route's field.
pub type FieldRule = Field<FieldAction>;

/// A route: which requests it takes, the fields it acts on (`A`: [`FieldAction`] on ingress, [`Reveal`] on
/// egress), what it detects, and where the request names its data subject.
#[derive(Debug, Clone)]
pub struct Route<A = FieldAction> {
    pub name: String,
    /// Empty: any method. Matched case-insensitively.
    pub methods: Vec<Method>,
    /// Matched against the request's canonical path (`domain::path::canonical_path`).
    pub path: PathPattern,
    pub fields: Vec<Field<A>>,
    pub detect: Vec<Class>,
    pub subject: Option<Selector>,
    /// `mode = "observe"`: forward unchanged, only count.
    pub observe: bool,
    /// Why this route processes personal data (for `veil register`).
    pub purpose: Option<String>,
    /// Back office: the app's responses shown to staff with the values they may see.
    pub reveal: Option<super::reveal::RevealRule>,
}

impl<A> Route<A> {
    /// Does the route take a request with this method and canonical path?
    pub fn matches(&self, method: &Method, canonical_path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| method_matches(m, method)))
            && self.path.matches(canonical_path)
    }
}

pub(super) type Problems<'a> = dyn FnMut(&str, String) + 'a;

pub(super) fn dur(v: &Option<String>, default: Duration, path: &str, p: &mut Problems<'_>) -> Duration {
    match v.as_deref().map(crate::domain::duration::parse) {
        None => default,
        Some(Ok(d)) if d > Duration::ZERO && d <= Duration::from_secs(3600) => d,
        Some(Ok(_)) => {
            p(path, "must be between 1ms and 1h".into());
            default
        }
        Some(Err(e)) => {
            p(path, e);
            default
        }
    }
}

pub(super) fn validate_proxy(raw: RawProxy, mut p: &mut Problems<'_>) -> Option<ProxyConfig> {
    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p("proxy.listen", format!("expected an ip:port socket address, got {:?}", raw.listen));
            None
        }
    };
    let upstream = match raw.upstream.parse::<Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some()
                && matches!(u.path(), "" | "/")
                && u.query().is_none() =>
        {
            Some(u)
        }
        _ => {
            p("proxy.upstream", "expected http://host:port or https://host:port (no path)".into());
            None
        }
    };
    let cfg = ProxyConfig {
        listen: listen?,
        upstream: upstream?,
        upstream_ca: raw.upstream_ca,
        max_body_bytes: super::bounded(raw.max_body_bytes, 1 << 20, 1024, 1 << 30, "proxy.max_body_bytes", &mut p),
        max_header_bytes: super::bounded(
            raw.max_header_bytes,
            16 * 1024,
            8192,
            1 << 20,
            "proxy.max_header_bytes",
            &mut p,
        ),
        max_connections: super::bounded(raw.max_connections, 4096, 1, 1_000_000, "proxy.max_connections", &mut p),
        max_connections_per_client: super::bounded(
            raw.max_connections_per_client,
            1024,
            1,
            1_000_000,
            "proxy.max_connections_per_client",
            &mut p,
        ),
        max_pending_per_client: super::bounded(
            raw.max_pending_per_client,
            256,
            1,
            1_000_000,
            "proxy.max_pending_per_client",
            &mut p,
        ),
        handshake_timeout: dur(&raw.handshake_timeout, Duration::from_secs(10), "proxy.handshake_timeout", p),
        header_timeout: dur(&raw.header_timeout, Duration::from_secs(10), "proxy.header_timeout", p),
        body_timeout: dur(&raw.body_timeout, Duration::from_secs(30), "proxy.body_timeout", p),
        write_timeout: dur(&raw.write_timeout, Duration::from_secs(30), "proxy.write_timeout", p),
        upstream_timeout: dur(&raw.upstream_timeout, Duration::from_secs(30), "proxy.upstream_timeout", p),
        vault_timeout: dur(&raw.vault_timeout, Duration::from_secs(5), "proxy.vault_timeout", p),
        unmatched: match raw.unmatched.as_deref() {
            None | Some("detect") => Unmatched::Detect,
            Some("pass") => Unmatched::Pass,
            Some("refuse") => Unmatched::Refuse,
            Some(_) => {
                p("proxy.unmatched", "expected \"pass\", \"detect\" or \"refuse\"".into());
                Unmatched::Detect
            }
        },
        max_values_per_request: super::bounded(
            raw.max_values_per_request,
            64,
            1,
            100_000,
            "proxy.max_values_per_request",
            &mut p,
        ),
        new_values: match super::bounded(
            raw.new_values_per_hour,
            CLIENT_NEW_VALUES_PER_HOUR,
            0,
            10_000_000,
            "proxy.new_values_per_hour",
            &mut p,
        ) {
            0 => None,
            n => Some(Rate::per_hour(u32::try_from(n).unwrap_or(u32::MAX))),
        },
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.parse().map_err(|e| p(&format!("proxy.trusted_proxies[{i}]"), e)).ok())
            .collect(),
        client_ca: raw.tls.as_ref().and_then(|t| t.client_ca.clone()),
        tls: raw.tls.map(|t| (t.cert, t.key)),
    };
    Some(cfg)
}

pub(super) fn selector(raw: &RawSelector, at: &str, p: &mut Problems<'_>) -> Option<Selector> {
    let given: Vec<(&str, &String)> = [
        ("json", &raw.json),
        ("form", &raw.form),
        ("multipart", &raw.multipart),
        ("xml", &raw.xml),
        ("header", &raw.header),
        ("query", &raw.query),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let [(kind, value)] = given.as_slice() else {
        p(at, "name exactly one selector: json, form, multipart, xml, header or query".into());
        return None;
    };
    let at = format!("{at}.{kind}");
    let empty = |p: &mut Problems<'_>| {
        p(&at, "must not be empty".into());
        None
    };
    if value.is_empty() {
        return empty(p);
    }
    let result = match *kind {
        "json" => value.parse::<JsonPath>().map(Selector::Json),
        "xml" => value.parse::<XmlPath>().map(Selector::Xml),
        "header" => HeaderName::from_bytes(value.as_bytes())
            .map(Selector::Header)
            .map_err(|_| "not a valid header name".to_owned()),
        "form" => Ok(Selector::Form((*value).clone())),
        "multipart" => Ok(Selector::Multipart((*value).clone())),
        _ => Ok(Selector::Query((*value).clone())),
    };
    result.map_err(|e| p(&at, e)).ok()
}

pub(super) fn validate_routes(raw: Vec<RawRoute>, p: &mut Problems<'_>) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("route[{i}]");
        super::check_name(&r.name, &at, &mut &mut *p);
        if routes.iter().any(|o| o.name == r.name) {
            p(&format!("{at}.name"), "duplicate route name".into());
        }
        let mut methods = Vec::new();
        for (j, m) in r.matcher.methods.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => p(&format!("{at}.match.methods[{j}]"), "not an HTTP method".into()),
            }
        }
        let options = PatternOptions {
            case_sensitive: r.matcher.case_sensitive.unwrap_or(false),
            trailing_slash: r.matcher.trailing_slash.unwrap_or(true),
        };
        let path = PathPattern::new(&r.matcher.path, options).map_err(|e| p(&format!("{at}.match.path"), e)).ok();
        let mut fields = Vec::new();
        for (j, f) in r.fields.iter().enumerate() {
            let fat = format!("{at}.fields[{j}]");
            let sel = selector(&f.selector, &fat, p);
            let class = match f.class.as_deref().map(str::parse::<Class>) {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    p(&format!("{fat}.class"), e);
                    None
                }
                None => None,
            };
            // Actions that change a value need its class (a class that did not parse is reported above).
            let with_class = |make: fn(Class) -> FieldAction, p: &mut Problems<'_>| {
                if f.class.is_none() {
                    p(&format!("{fat}.class"), format!("required for action {}", make(Class::Text).name()));
                }
                class.map(make)
            };
            let action = match f.action.as_deref().unwrap_or("tokenize") {
                "tokenize" => with_class(FieldAction::Tokenize, p),
                "encrypt" => with_class(FieldAction::Encrypt, p),
                "mask" => with_class(FieldAction::Mask, p),
                "drop" => Some(FieldAction::Drop(class)),
                "reject" => Some(FieldAction::Reject(class)),
                _ => {
                    p(&format!("{fat}.action"), "expected tokenize, encrypt, mask, drop or reject".into());
                    None
                }
            };
            let bind = f.bind.as_deref().and_then(|b| bind_selector(&f.selector, b, &format!("{fat}.bind"), p));
            if action == Some(FieldAction::Encrypt(Class::Cvc)) {
                // PCI DSS: a CVC is kept only until authorisation, never by the app, not even encrypted.
                p(
                    &format!("{fat}.action"),
                    "a cvc is never given to the app, even encrypted: tokenize (with bind) or drop".into(),
                );
            }
            if let (Some(selector), Some(action)) = (sel, action) {
                fields.push(FieldRule { selector, action, bind });
            }
        }
        check_binds(
            &fields,
            &at,
            |a| matches!(a, FieldAction::Tokenize(Class::Cvc)),
            |a| matches!(a, FieldAction::Tokenize(Class::Pan)),
            p,
        );
        let mut detect = Vec::new();
        for (j, d) in r.detect.iter().enumerate() {
            match d.parse::<Class>() {
                Ok(c) if c.detectable() => detect.push(c),
                Ok(_) => p(&format!("{at}.detect[{j}]"), "detection covers pan, iban, email and phone".into()),
                Err(e) => p(&format!("{at}.detect[{j}]"), e),
            }
        }
        let subject = r.subject.as_ref().and_then(|s| selector(s, &format!("{at}.subject"), p));
        let observe = match r.mode.as_deref() {
            None | Some("enforce") => false,
            Some("observe") => true,
            Some(_) => {
                p(&format!("{at}.mode"), "expected \"enforce\" or \"observe\"".into());
                false
            }
        };
        let purpose = super::purpose(r.purpose, &format!("{at}.purpose"), &mut *p);
        let reveal = r.reveal.and_then(|raw| super::reveal::validate(raw, &format!("{at}.reveal"), &mut *p));
        let Some(path) = path else { continue };
        routes.push(Route { name: r.name, methods, path, fields, detect, subject, observe, purpose, reveal });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_budgets_and_trusted_proxies_are_validated_with_their_paths() {
        let base = "[vault]\nlisten = \"127.0.0.1:0\"\nstore = \"sqlite://v.db\"\nmaster_key_file = \"k\"\n\
                    audit_log = \"a\"\n[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n";
        let cfg = crate::config::parse(base).unwrap();
        let proxy = cfg.proxy.unwrap();
        assert_eq!((proxy.new_values, proxy.trusted_proxies.len()), (None, 0), "off by default");
        let text = format!("{base}new_values_per_hour = 30\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
        let proxy = crate::config::parse(&text).unwrap().proxy.unwrap();
        assert_eq!(proxy.new_values, Some(Rate::per_hour(30)));
        assert!(proxy.trusted_proxies[1].contains("::1".parse().unwrap()));
        let text =
            format!("{base}new_values_per_hour = 20000000\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n");
        let err = crate::config::parse(&text).unwrap_err().problems.join("\n");
        assert!(err.contains("proxy.trusted_proxies[1]:"), "{err}");
    }

    #[test]
    fn ranges_hold_their_addresses() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.200.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()), "an IPv4-mapped address is that IPv4 address");
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let c: Cidr = "2001:db8::/33".parse().unwrap();
        assert!(c.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!c.contains("2001:db8:8000::1".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()) && !one.contains("192.0.2.8".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn route(matcher: &str) -> Result<Route, Vec<String>> {
        let text = format!("[[route]]\nname = \"r\"\nmatch = {matcher}\n");
        #[derive(Deserialize)]
        struct Doc {
            route: Vec<RawRoute>,
        }
        let doc: Doc = toml::from_str(&text).unwrap();
        let mut problems = Vec::new();
        let mut routes = validate_routes(doc.route, &mut |path: &str, m: String| problems.push(format!("{path}: {m}")));
        match problems.is_empty() {
            true => Ok(routes.remove(0)),
            false => Err(problems),
        }
    }

    #[test]
    fn routes_match_the_canonical_path_and_any_case_of_the_method() {
        let r = route(r#"{ methods = ["POST"], path = "/checkout" }"#).unwrap();
        let post = Method::from_bytes(b"post").unwrap();
        for path in ["/checkout", "/Checkout/", "/x/../checkout;jsessionid=1", "//checkout", "/%63heckout"] {
            let canonical = crate::domain::path::canonical_path(path).unwrap();
            assert!(r.matches(&Method::POST, &canonical) && r.matches(&post, &canonical), "{path}");
        }
        assert!(!r.matches(&Method::GET, "/checkout"));
        let strict = route(r#"{ path = "/Checkout", case_sensitive = true, trailing_slash = false }"#).unwrap();
        assert!(strict.matches(&Method::GET, "/Checkout"));
        assert!(!strict.matches(&Method::GET, "/checkout") && !strict.matches(&Method::GET, "/Checkout/"));
    }

    #[test]
    fn a_path_that_is_not_canonical_is_a_config_problem() {
        for bad in [r#"{ path = "checkout" }"#, r#"{ path = "/a/*/b" }"#, r#"{ path = "/a/../b" }"#] {
            let problems = route(bad).unwrap_err();
            assert!(problems.iter().all(|p| p.starts_with("route[0].match.path")), "{problems:?}");
        }
    }
}
