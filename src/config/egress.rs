//! `[[egress]]` routes: payment flows leaving the app. Each listens on its own address, forwards to its one
//! https:// upstream only, and reveals the configured fields as its caller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::proxy::{bind_selector, check_binds, dur, selector, Field, Problems, RawSelector, Reveal, Route, Selector};
use crate::domain::path::PathPattern;
use crate::domain::Class;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgress {
    name: String,
    listen: String,
    upstream: String,
    ca: Option<PathBuf>,
    caller: String,
    #[serde(default)]
    fields: Vec<RawEgressField>,
    response_detect: Option<Vec<String>>,
    purpose: Option<String>,
    max_body_bytes: Option<u64>,
    body_timeout: Option<String>,
    upstream_timeout: Option<String>,
    vault_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgressField {
    #[serde(flatten)]
    selector: RawSelector,
    class: Option<String>,
    /// Reveal the tokens of these classes found inside the field's text.
    #[serde(default)]
    detect: Vec<String>,
    /// A `cvc` field: the card field whose token the CVC is revealed by.
    bind: Option<String>,
    /// The field names whom the request goes to (an e-mail or phone token): the request's other tokens are
    /// revealed only where they are linked to its subjects.
    #[serde(default)]
    audience: bool,
}

/// One validated egress route.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub listen: SocketAddr,
    /// `https://host[:port]`: the only origin this route ever connects to.
    pub upstream: Uri,
    /// A CA trusted for the upstream in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// The `[[caller]]` whose rights the route reveals with, and under whose name reveals are audited.
    pub caller: String,
    /// The fields to reveal, as a route (any method, any path; every field's action is `detokenize`).
    pub route: Route<Reveal>,
    /// Classes tokenised again when the upstream's response carries them.
    pub response_detect: Vec<Class>,
    /// The purpose recorded with every reveal in the audit log.
    pub purpose: String,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub upstream_timeout: Duration,
    pub vault_timeout: Duration,
}

impl EgressConfig {
    pub fn name(&self) -> &str {
        &self.route.name
    }
}

pub(super) fn validate(raw: Vec<RawEgress>, callers: &[&str], mut p: &mut Problems<'_>) -> Vec<EgressConfig> {
    let mut out: Vec<EgressConfig> = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let at = format!("egress[{i}]");
        super::check_name(&e.name, &at, &mut p);
        if out.iter().any(|o| o.name() == e.name) {
            p(&format!("{at}.name"), "duplicate egress name".into());
        }
        let listen = super::addr(&e.listen, &format!("{at}.listen"), &mut p).ok_or(());
        let upstream = match e.upstream.parse::<Uri>() {
            Ok(u)
                if u.scheme_str() == Some("https")
                    && u.authority().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none() =>
            {
                Ok(u)
            }
            _ => {
                p(&format!("{at}.upstream"), "expected https://host[:port] (no path): egress is TLS only".into());
                Err(())
            }
        };
        if !callers.contains(&e.caller.as_str()) {
            p(&format!("{at}.caller"), format!("no [[caller]] is named {:?}", e.caller));
        }
        let mut fields = Vec::new();
        for (j, f) in e.fields.iter().enumerate() {
            let fat = format!("{at}.fields[{j}]");
            let action = match (&f.class, f.detect.is_empty()) {
                (Some(c), true) => c.parse::<Class>().map(Reveal::Value).map_err(|err| p(&format!("{fat}.class"), err)),
                (None, false) => {
                    let mut set = crate::domain::ClassSet::default();
                    for (k, d) in f.detect.iter().enumerate() {
                        match d.parse::<Class>() {
                            Ok(Class::Cvc) => {
                                p(&format!("{fat}.detect[{k}]"), "a cvc is never in text: reveal it by `bind`".into())
                            }
                            Ok(c) => set.insert(c),
                            Err(e) => p(&format!("{fat}.detect[{k}]"), e),
                        }
                    }
                    if set.is_empty() {
                        Err(())
                    } else {
                        Ok(Reveal::InText(set))
                    }
                }
                _ => {
                    p(
                        &fat,
                        "name a class (the field is a token) or detect = [classes] (tokens inside its text)".into(),
                    );
                    Err(())
                }
            };
            let action = match action {
                Ok(Reveal::Value(class @ (Class::Email | Class::Phone))) if f.audience => Ok(Reveal::Audience(class)),
                Ok(_) if f.audience => {
                    p(
                        &format!("{fat}.audience"),
                        "the audience is a recipient field: class = \"email\" or \"phone\"".into(),
                    );
                    Err(())
                }
                other => other,
            };
            match (selector(&f.selector, &fat, p), action) {
                (Some(Selector::Multipart(_)), _) => {
                    p(&fat, "egress fields use json, form, xml, header or query selectors".into())
                }
                (Some(selector), Ok(action)) => {
                    let bind = f.bind.as_deref().and_then(|b| bind_selector(&f.selector, b, &format!("{fat}.bind"), p));
                    fields.push(Field { selector, action, bind })
                }
                _ => {}
            }
        }
        check_binds(&fields, &at, |a| *a == Reveal::Value(Class::Cvc), |a| *a == Reveal::Value(Class::Pan), p);
        if fields.is_empty() {
            p(&format!("{at}.fields"), "name at least one field to reveal".into());
        }
        let mut response_detect = Vec::new();
        let detect = e.response_detect.unwrap_or_else(|| vec!["pan".into(), "iban".into()]);
        for (j, d) in detect.iter().enumerate() {
            match d.parse::<Class>() {
                Ok(c) if c.detectable() => response_detect.push(c),
                Ok(_) => p(&format!("{at}.response_detect[{j}]"), "detection covers pan, iban, email and phone".into()),
                Err(err) => p(&format!("{at}.response_detect[{j}]"), err),
            }
        }
        // The vault API refuses purposes that are not short labels: check the one every reveal will carry.
        let purpose = e.purpose.unwrap_or_else(|| format!("egress:{}", e.name.to_ascii_lowercase()));
        if purpose.trim().is_empty() {
            p(&format!("{at}.purpose"), "must not be empty".into());
        } else if let Some(problem) = crate::domain::purpose::problem(&purpose) {
            p(&format!("{at}.purpose"), problem.into());
        }
        let max_body_bytes =
            super::bounded(e.max_body_bytes, 1 << 20, 1024, 64 << 20, &format!("{at}.max_body_bytes"), &mut p);
        let body_timeout = dur(&e.body_timeout, Duration::from_secs(30), &format!("{at}.body_timeout"), p);
        let upstream_timeout = dur(&e.upstream_timeout, Duration::from_secs(30), &format!("{at}.upstream_timeout"), p);
        let vault_timeout = dur(&e.vault_timeout, Duration::from_secs(5), &format!("{at}.vault_timeout"), p);
        let (Ok(listen), Ok(upstream)) = (listen, upstream) else { continue };
        out.push(EgressConfig {
            listen,
            upstream,
            ca: e.ca,
            caller: e.caller,
            purpose,
            route: Route {
                name: e.name,
                methods: Vec::new(),
                path: PathPattern::any(),
                fields,
                detect: Vec::new(),
                subject: None,
                observe: false,
                purpose: None,
                reveal: None,
            },
            response_detect,
            max_body_bytes,
            body_timeout,
            upstream_timeout,
            vault_timeout,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const VAULT: &str = r#"
[vault]
listen = "127.0.0.1:0"
store = "sqlite://x.db"
master_key_file = "k"
audit_log = "a"
[[caller]]
name = "payments"
api_key_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
allow = ["detokenize:pan"]
"#;

    #[test]
    fn a_valid_egress_route() {
        let cfg = parse(&format!(
            "{VAULT}\n[[egress]]\nname = \"psp\"\nlisten = \"127.0.0.1:8445\"\nupstream = \"https://api.psp.example\"\n\
             caller = \"payments\"\nfields = [ {{ json = \"$.source.number\", class = \"pan\" }}, \
             {{ header = \"x-card\", class = \"pan\" }} ]\n"
        ))
        .unwrap();
        let e = &cfg.egress[0];
        assert_eq!((e.name(), e.caller.as_str(), e.purpose.as_str()), ("psp", "payments", "egress:psp"));
        assert_eq!(e.route.fields.len(), 2);
        assert_eq!(e.response_detect.len(), 2, "pan and iban by default");
        let cfg = parse(&format!(
            "{VAULT}\n[[egress]]\nname = \"sms\"\nlisten = \"127.0.0.1:8445\"\nupstream = \"https://sms.example\"\n\
             caller = \"payments\"\nfields = [ {{ json = \"$.body\", detect = [\"phone\", \"email\"] }} ]\n"
        ))
        .unwrap();
        let super::Reveal::InText(set) = cfg.egress[0].route.fields[0].action else { panic!("not a text field") };
        assert_eq!(set.to_vec(), [crate::domain::Class::Email, crate::domain::Class::Phone]);

        // Name tokens are found in text only when tagged.
        let names = |class: &str| {
            format!(
                "{VAULT}\n{class}[[egress]]\nname = \"mail\"\nlisten = \"127.0.0.1:8445\"\n\
                 upstream = \"https://mail.example\"\ncaller = \"payments\"\n\
                 fields = [ {{ json = \"$.body\", detect = [\"name\", \"email\"] }} ]\n"
            )
        };
        let err = parse(&names("")).unwrap_err().to_string();
        assert!(err.contains("egress[0].fields: name tokens cannot be found inside text unless"), "{err}");
        assert!(parse(&names("[class.name]\nformat = \"tagged\"\n")).is_ok());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let err = parse(&format!(
            "{VAULT}\n[[egress]]\nname = \"psp\"\nlisten = \"nowhere\"\nupstream = \"http://api.psp.example/v1\"\n\
             caller = \"nobody\"\nfields = [ {{ multipart = \"card\", class = \"pan\" }}, \
             {{ json = \"$.x\", class = \"cheese\" }}, {{ json = \"$.t\", class = \"pan\", detect = [\"pan\"] }}, \
             {{ json = \"$.u\", detect = [\"cvc\"] }}, {{ json = \"$.v\", class = \"pan\", audience = true }} ]\n\
             response_detect = [\"name\"]\npurpose = \" \"\n"
        ))
        .unwrap_err()
        .to_string();
        for expected in [
            "egress[0].listen: expected an ip:port",
            "egress[0].upstream: expected https://",
            "egress[0].caller: no [[caller]] is named \"nobody\"",
            "egress[0].fields[0]: egress fields use json",
            "egress[0].fields[1].class:",
            "egress[0].fields[2]: name a class",
            "egress[0].fields[3].detect[0]: a cvc is never in text",
            "egress[0].fields[4].audience: the audience is a recipient field",
            "egress[0].fields: name at least one field",
            "egress[0].response_detect[0]: detection covers",
            "egress[0].purpose: must not be empty",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }
}
