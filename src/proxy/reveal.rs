//! Back-office reveal: on a route with `reveal = { classes, identity }`, the app's responses are shown to the staff
//! member behind the request with the values they may see — revealed where they hold `detokenize:CLASS`, masked
//! where they hold `mask:CLASS`, left as tokens otherwise — every reveal through the vault, audited under them.
//!
//! For one response, in order:
//! 1. **who** (before the request is forwarded): the staff member is the `[[caller]]` named by the verified
//!    client certificate (`"mtls"`) or by the identity header, believed only from its trusted peers and removed
//!    from every other request; nobody known → the response streams through as it is (tokens stay tokens);
//!    the app is asked for an uncompressed answer;
//! 2. **read**: the answer, within `max_body_bytes` and the upstream timeout (larger or compressed: streamed on
//!    as it is);
//! 3. **find**: tokens of the route's classes, by their formats (`detect::find_tokens`) inside JSON strings,
//!    XML text and attributes, or anywhere in text (HTML, CSV, plain); candidates only;
//! 4. **reveal**: per class, the staff member's right picks detokenize or mask, within their `reveals_per_hour`
//!    (past it, masked); one vault call per class and operation; a token the vault does not know stays as it is;
//!    a vault that cannot answer leaves every token as it is (never an error page with half the values);
//! 5. **write**: each value in place, escaped for its format (HTML, CSV, JSON, XML); `Cache-Control: no-store`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};

use super::body::{self, Doc, Kind};
use super::error::ProxyError;
use super::forward::{ClientAddr, UpstreamBody};
use super::request::{read_prefix, BodyLimits};
use super::ProxyBody;
use crate::budget::{Budgets, Rate};
use crate::config::reveal::{Identity, RevealRule};
use crate::config::{Cidr, Route};
use crate::domain::permission::allowed;
use crate::domain::{Class, Op};
use crate::metrics::Metrics;
use crate::rewrite::{html_escape, Edit, Found};
use crate::vault::auth::{Caller, Origin};

use crate::vault::{Vault, VaultError};

/// A staff member who may be shown responses.
pub struct Staff {
    pub caller: Caller,
    /// Their client certificate's identity, for `identity = "mtls"`.
    pub tls_identity: Option<String>,
    /// `reveals_per_hour`.
    pub reveals: Option<Rate>,
    /// Their rights are held by a remote vault: each class is tried, detokenize then mask.
    pub remote: bool,
}

/// Reveals responses of `reveal` routes; one per proxy.
pub struct Revealer {
    staff: Vec<Staff>,
    /// Every reveal route's identity header, with the peers it is believed from.
    headers: Vec<(HeaderName, Vec<Cidr>)>,
    budgets: Budgets<usize>,
    vault: Arc<dyn Vault>,
    metrics: Arc<Metrics>,
    vault_timeout: Duration,
    limits: BodyLimits,
}

/// Who sees one response: an index into the staff list, and where they called from (for the audit log).
#[derive(Debug, Clone)]
pub struct Viewer(usize, Origin);

impl Revealer {
    pub fn new(
        staff: Vec<Staff>,
        routes: &[Route],
        vault: Arc<dyn Vault>,
        metrics: Arc<Metrics>,
        vault_timeout: Duration,
        limits: BodyLimits,
    ) -> Revealer {
        let mut headers: Vec<(HeaderName, Vec<Cidr>)> = Vec::new();
        for rule in routes.iter().filter_map(|r| r.reveal.as_ref()) {
            if let Identity::Header { name, trusted } = &rule.identity {
                match headers.iter_mut().find(|(n, _)| n == name) {
                    Some((_, t)) => t.extend(trusted.iter().copied()),
                    None => headers.push((name.clone(), trusted.clone())),
                }
            }
        }
        // Each staff member's series from the start, so an alert on it has a baseline.
        for s in &staff {
            metrics.reveal_budget_exhausted.with_label_values(&[&s.caller.name]);
        }
        Revealer { staff, headers, budgets: Budgets::default(), vault, metrics, vault_timeout, limits }
    }

    /// Removes identity headers a peer may not set (from every request, routed or not), and names the staff
    /// member a `rule`'s response is for; for them, the app is asked for an uncompressed answer.
    pub fn prepare(&self, rule: Option<&RevealRule>, client: &ClientAddr, headers: &mut HeaderMap) -> Option<Viewer> {
        if !self.headers.is_empty() {
            // Spellings an app may read as the same header (CGI, Rack and PHP turn `_` and `-` alike into
            // HTTP_X_FORWARDED_USER) are never believed: removed from every request, trusted peer or not.
            let aliases: Vec<HeaderName> = headers
                .keys()
                .filter(|k| k.as_str().contains('_'))
                .filter(|k| self.headers.iter().any(|(n, _)| k.as_str().replace('_', "-") == n.as_str()))
                .cloned()
                .collect();
            for alias in aliases {
                headers.remove(alias);
            }
        }
        for (name, trusted) in &self.headers {
            if !trusted.iter().any(|c| c.contains(client.ip())) {
                headers.remove(name);
            }
        }
        let rule = rule?;
        let found = match &rule.identity {
            Identity::Mtls => self
                .staff
                .iter()
                .position(|s| s.tls_identity.as_ref().is_some_and(|id| client.identities().iter().any(|c| c == id))),
            Identity::Header { name, .. } => {
                // Present only if a trusted peer sent it (removed above otherwise); one value, a caller's name.
                let mut values = headers.get_all(name).iter();
                match (values.next().and_then(|v| v.to_str().ok()), values.next()) {
                    (Some(n), None) => self.staff.iter().position(|s| s.caller.name == n.trim()),
                    _ => None,
                }
            }
        };
        let origin = Origin {
            client: Some(client.ip().to_string()),
            identity: (!client.identities().is_empty()).then(|| client.identities().join(",")),
        };
        let viewer = Viewer(found?, origin);
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        Some(viewer)
    }

    /// The app's response with the route's tokens revealed for `viewer` (see the module documentation).
    pub async fn respond(
        &self,
        resp: Response<UpstreamBody>,
        viewer: Viewer,
        route: &Route,
        rule: &RevealRule,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, mut body) = resp.into_parts();
        let staff = self.staff.get(viewer.0).ok_or(ProxyError::Internal)?;
        // A compressed answer (the app ignored the request for identity) cannot be read: tokens stay.
        if body::content_encoding(&parts.headers).is_some() {
            return Ok(Response::from_parts(parts, body.map_err(Into::into).boxed()));
        }
        let bytes = match read_prefix(&mut body, self.limits).await {
            Ok(Ok(whole)) => whole,
            // Too large to hold: streamed on as it is.
            Ok(Err(prefix)) => {
                let head = futures_util::stream::once(async move { Ok(hyper::body::Frame::data(prefix)) });
                let rest = BodyStream::new(body).map(|f| f.map_err(Into::into));
                return Ok(Response::from_parts(parts, BodyExt::boxed(StreamBody::new(head.chain(rest)))));
            }
            Err(ProxyError::BodyTimeout) => return Err(ProxyError::UpstreamTimeout),
            Err(_) => return Err(ProxyError::UpstreamResponse("it could not be read")),
        };
        let kind = Kind::of(&parts.headers);
        let essence = body::essence(&parts.headers);
        let shown = match self.reveal(&kind, &essence, &bytes, staff, &viewer, route, rule).await {
            Some(rewritten) => {
                parts.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                parts.headers.remove(header::ETAG);
                parts.headers.remove(header::LAST_MODIFIED);
                body::replace(&mut parts.headers, Bytes::from(rewritten))
            }
            None => Full::new(bytes).map_err(|never| match never {}).boxed(),
        };
        Ok(Response::from_parts(parts, shown))
    }

    /// The body with what `staff` may see, or `None` when nothing changed.
    #[allow(clippy::too_many_arguments)]
    async fn reveal(
        &self,
        kind: &Kind,
        essence: &str,
        bytes: &[u8],
        staff: &Staff,
        viewer: &Viewer,
        route: &Route,
        rule: &RevealRule,
    ) -> Option<Vec<u8>> {
        let text = || Doc::parse(&Kind::Text, bytes).ok();
        let mut doc = match kind {
            Kind::Json | Kind::Xml => Doc::parse(kind, bytes).ok().or_else(text)?,
            _ => text()?,
        };
        let found = doc.find(&[], None, &rule.classes).ok()?;
        if found.is_empty() {
            return None;
        }
        let shown = self.values(&found, staff, viewer, route).await;
        if shown.iter().all(Option::is_none) {
            return None;
        }
        let source = std::str::from_utf8(bytes).unwrap_or_default();
        let escape = Escape::of(kind, essence);
        let mut cursor = 0;
        let edits: Vec<Edit> = found
            .iter()
            .zip(shown)
            .map(|(f, v)| match v {
                None => Edit::Replace(f.value.clone()),
                Some(v) => Edit::Replace(escape.apply(&v, source, &f.value, &mut cursor)),
            })
            .collect();
        doc.apply(&edits).ok()
    }

    /// What `staff` sees of each found token: its value, its masked form, or `None` (stays as it is).
    async fn values(&self, found: &[Found], staff: &Staff, viewer: &Viewer, route: &Route) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = vec![None; found.len()];
        let caller = staff.caller.clone().from_origin(viewer.1.clone());
        let purpose = format!("{} (route {})", route.purpose.as_deref().unwrap_or("back office"), route.name);
        let purpose = purpose.as_str();
        // Per class: the operation the staff member holds, one call each.
        for class in Class::ALL {
            let idx: Vec<usize> = (0..found.len()).filter(|&i| origin_class(&found[i]) == Some(class)).collect();
            if idx.is_empty() {
                continue;
            }
            let mut ops: Vec<Op> = [Op::Detokenize, Op::Mask]
                .into_iter()
                .filter(|op| staff.remote || allowed(&staff.caller.allow, *op, class))
                .collect();
            // Reveals within the budget; past it, the rest masked (a reservation refunds what is not shown).
            let mut reveal_idx = idx.clone();
            let mut mask_idx: Vec<usize> = Vec::new();
            let mut reservation = None;
            if ops.first() == Some(&Op::Detokenize) {
                if let Some(rate) = staff.reveals {
                    let r = self.budgets.reserve(&viewer.0, rate, idx.len());
                    let granted = r.granted();
                    if granted < idx.len() {
                        self.metrics
                            .reveal_budget_exhausted
                            .with_label_values(&[&staff.caller.name])
                            .inc_by((idx.len() - granted) as u64);
                        mask_idx = reveal_idx.split_off(granted);
                    }
                    reservation = Some(r);
                }
            } else {
                mask_idx = std::mem::take(&mut reveal_idx);
            }
            let mut revealed = 0;
            for (op, list) in [(Op::Detokenize, reveal_idx), (Op::Mask, mask_idx)] {
                if list.is_empty() || !ops.contains(&op) {
                    continue;
                }
                let items: Vec<(Class, &str)> = list.iter().map(|&i| (class, found[i].value.as_str())).collect();
                match self.call(op, &caller, &items, purpose).await {
                    Ok(answers) => {
                        for (&i, answer) in list.iter().zip(answers) {
                            if let Ok(v) = answer {
                                if op == Op::Detokenize {
                                    revealed += 1;
                                }
                                self.metrics.fields.with_label_values(&[&route.name, class.name(), op.name()]).inc();
                                out[i] = Some(v);
                            }
                        }
                    }
                    // A remote vault said no: the next operation may still be allowed.
                    Err(VaultError::Forbidden { .. }) => ops.retain(|o| *o != op),
                    Err(_) => tracing::warn!(route = %route.name, op = op.name(), "reveal: vault unavailable"),
                }
            }
            if let Some(mut r) = reservation {
                r.spend(revealed);
            }
        }
        out
    }

    async fn call(
        &self,
        op: Op,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: &str,
    ) -> Result<Vec<crate::vault::ItemResult>, VaultError> {
        let call = async {
            match op {
                Op::Mask => self.vault.mask(caller, items, Some(purpose)).await,
                _ => self.vault.detokenize(caller, items, Some(purpose)).await,
            }
        };
        tokio::time::timeout(self.vault_timeout, call).await.unwrap_or(Err(VaultError::Unavailable))
    }
}

fn origin_class(f: &Found) -> Option<Class> {
    match f.origin {
        crate::rewrite::Origin::Detected(c) => Some(c),
        _ => None,
    }
}

/// How a value is written into the body it replaces a token in. JSON and XML documents escape what they write
/// themselves; in text, HTML and CSV need it here.
enum Escape {
    None,
    Html,
    Csv,
}

impl Escape {
    fn of(kind: &Kind, essence: &str) -> Escape {
        match (kind, essence) {
            (Kind::Json | Kind::Xml, _) => Escape::None,
            (_, "text/html" | "application/xhtml+xml") => Escape::Html,
            (_, "text/csv") => Escape::Csv,
            _ => Escape::None,
        }
    }

    /// `value` escaped for where `token` stands in `source` (found from `cursor` on, in order).
    fn apply(&self, value: &str, source: &str, token: &str, cursor: &mut usize) -> String {
        match self {
            Escape::None => value.to_owned(),
            Escape::Html => html_escape(value),
            Escape::Csv => {
                let at = source.get(*cursor..).and_then(|s| s.find(token)).map(|i| i + *cursor);
                let quoted = at.is_some_and(|a| {
                    a > 0
                        && source.as_bytes().get(a - 1) == Some(&b'"')
                        && source.as_bytes().get(a + token.len()) == Some(&b'"')
                });
                if let Some(a) = at {
                    *cursor = a + token.len();
                }
                csv_escape(value, quoted)
            }
        }
    }
}

/// A value inside a CSV field: quotes doubled inside a quoted field; an unquoted field that now needs quotes
/// gets them.
fn csv_escape(value: &str, quoted: bool) -> String {
    let doubled = value.replace('"', "\"\"");
    if quoted || !value.contains([',', '"', '\n', '\r']) {
        doubled
    } else {
        format!("\"{doubled}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_where_they_go() {
        assert_eq!(html_escape("<b>O'Brien & \"Co\"</b>"), "&lt;b&gt;O&#39;Brien &amp; &quot;Co&quot;&lt;/b&gt;");
        assert_eq!(csv_escape("12 High St, London", false), "\"12 High St, London\"");
        assert_eq!(csv_escape("12 High St, London", true), "12 High St, London");
        assert_eq!(csv_escape("say \"hi\"", true), "say \"\"hi\"\"");
        assert_eq!(csv_escape("plain", false), "plain");
        let source = "id,name\n1,\"ZqAbqZ\",ZqAbqZ\n";
        let mut cursor = 0;
        assert_eq!(Escape::Csv.apply("Doe, J", source, "ZqAbqZ", &mut cursor), "Doe, J");
        assert_eq!(Escape::Csv.apply("Doe, J", source, "ZqAbqZ", &mut cursor), "\"Doe, J\"");
    }
}
