//! The upstream client: pooled HTTP/1.1 (see `pool`) and h2 over plain TCP or rustls (see `connect`), hop-by-hop
//! headers stripped, `X-Forwarded-For`/`-Proto` set, and a deadline for the response headers.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use super::connect::{DialError, Dialer, Fresh};
use super::error::ProxyError;
use super::pool::{Pool, PooledBody};
use super::ProxyBody;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1). Transfer-Encoding counts too: hyper frames
/// the forwarded body itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
];

/// Is `name` (lowercase, as `HeaderName`s are) one of [`HOP_BY_HOP`]? String compares check the length first.
fn is_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Does a `Connection` option name a header the first pass does not already remove? (`close` names none; the
/// usual `keep-alive` is removed anyway.)
fn names_other_header(option: &str) -> bool {
    !option.is_empty()
        && !option.eq_ignore_ascii_case("close")
        && !HOP_BY_HOP.iter().any(|h| option.eq_ignore_ascii_case(h))
}

/// Removes hop-by-hop headers ([`is_hop`]), including those the `Connection` header names.
///
/// On the hot path of every request and response: one pass over the names, removals only for those found, and
/// no allocation unless the `Connection` header names a header outside [`HOP_BY_HOP`] (nginx answers with
/// `Connection: keep-alive` every time).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // `keys()` yields each name once, so at most one slot per hop-by-hop name is filled.
    let mut doomed: [Option<HeaderName>; HOP_BY_HOP.len()] = Default::default();
    for (slot, name) in doomed.iter_mut().zip(headers.keys().filter(|n| is_hop(n))) {
        *slot = Some(name.clone());
    }
    let named: Vec<HeaderName> = match doomed.contains(&Some(header::CONNECTION)) {
        true => headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| names_other_header(n))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect(),
        false => Vec::new(),
    };
    for name in doomed.into_iter().flatten().chain(named) {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// An IP address as text; IPv4 without the formatting machinery.
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// A client's address as `X-Forwarded-For` gives it, made once per connection: each request then shares it
/// (a reference count) instead of formatting and copying it again.
#[derive(Debug, Clone)]
pub struct ClientAddr(HeaderValue, std::net::IpAddr, Arc<Vec<String>>);

impl ClientAddr {
    pub fn new(ip: std::net::IpAddr) -> ClientAddr {
        // An address's text is always a valid header value; the fallback is never taken.
        let text = bytes::Bytes::from(ip_text(ip));
        let value = HeaderValue::from_maybe_shared(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientAddr(value, ip, Arc::default())
    }

    /// The identities (URI and DNS names) of the connection's verified client certificate.
    pub fn with_identities(mut self, identities: Arc<Vec<String>>) -> ClientAddr {
        self.2 = identities;
        self
    }

    pub fn identities(&self) -> &[String] {
        &self.2
    }

    /// The connection's peer.
    pub fn ip(&self) -> std::net::IpAddr {
        self.1
    }
}

/// Who the forwarded request is sent for.
#[derive(Debug, Clone, Copy)]
pub enum Hop<'a> {
    /// Ingress: the app learns the client's address and scheme (`X-Forwarded-For`/`-Proto`); Host is kept.
    Ingress { client: &'a ClientAddr, tls: bool },
    /// Egress: the provider sees its own origin as Host, and nothing about the app's network.
    Egress,
}

/// Idle HTTP/1.1 connections kept per upstream origin.
const MAX_IDLE: usize = 512;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type H1 = http1::SendRequest<ProxyBody>;

/// The body of an upstream response: its HTTP/1.1 connection goes back to the pool once it is read to the end.
pub type UpstreamBody = PooledBody<Incoming, H1>;

/// Why a request could not be sent; logged, never shown to the client.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("request: {0}")]
    Request(#[from] hyper::Error),
}

/// One upstream origin and a connection pool to it: idle HTTP/1.1 connections in a LIFO, or one shared h2
/// connection when the origin's TLS ALPN picked h2.
pub struct Upstream {
    dialer: Dialer,
    pool: Arc<Pool<H1>>,
    h2: Mutex<Option<http2::SendRequest<ProxyBody>>>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Host header for requests that arrive without one: the origin's host, and its port unless the default.
    default_host: HeaderValue,
    timeout: Duration,
}

impl Upstream {
    /// `base` is `http(s)://host:port`; `extra_ca` is trusted in addition to the system roots.
    pub fn new(base: &Uri, timeout: Duration, extra_ca: Option<&Path>) -> Result<Upstream, crate::tls::TlsError> {
        let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned()) else {
            return Err(crate::tls::TlsError::Config("upstream needs a scheme and a host".into()));
        };
        let dialer = Dialer::new(&scheme, &authority, timeout.min(Duration::from_secs(10)), extra_ca)?;
        let default_port = if scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => authority.as_str(),
            _ => authority.host(),
        };
        let default_host = HeaderValue::from_str(host)
            .map_err(|_| crate::tls::TlsError::Config("upstream host is not a valid Host header".into()))?;
        Ok(Upstream {
            dialer,
            pool: Pool::new(MAX_IDLE, IDLE_TIMEOUT),
            h2: Mutex::new(None),
            scheme,
            authority,
            default_host,
            timeout,
        })
    }

    /// Sends `req` to the upstream origin. Only the path and query of its URI are used: an absolute-form URI or
    /// a Host header cannot point the request anywhere else.
    pub async fn send(&self, mut req: Request<ProxyBody>, hop: Hop<'_>) -> Result<Response<UpstreamBody>, ProxyError> {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        match hop {
            Hop::Ingress { .. } => {
                // h2 clients carry the host in :authority; give the app a Host header either way.
                if !req.headers().contains_key(header::HOST) {
                    let host = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                    req.headers_mut().insert(header::HOST, host.unwrap_or_else(|| self.default_host.clone()));
                }
            }
            Hop::Egress => {
                let host = HeaderValue::from_str(self.authority.as_str()).map_err(|_| ProxyError::Internal)?;
                req.headers_mut().insert(header::HOST, host);
            }
        }
        // Origin-form for HTTP/1.1 (CONNECT: the origin's authority); h2 gets the absolute form when it is sent.
        *req.uri_mut() =
            if req.method() == http::Method::CONNECT { Uri::from(self.authority.clone()) } else { Uri::from(path) };
        *req.version_mut() = http::Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        if let Hop::Ingress { client, tls } = hop {
            let ip = &client.0;
            // A previous value that is not text is replaced, as before.
            let xff = match headers.get(X_FORWARDED_FOR).filter(|v| v.to_str().is_ok()) {
                Some(prev) => {
                    let mut both = Vec::with_capacity(prev.len() + 2 + ip.len());
                    both.extend_from_slice(prev.as_bytes());
                    both.extend_from_slice(b", ");
                    both.extend_from_slice(ip.as_bytes());
                    HeaderValue::from_maybe_shared(bytes::Bytes::from(both)).ok()
                }
                None => Some(ip.clone()),
            };
            if let Some(v) = xff {
                headers.insert(X_FORWARDED_FOR, v);
            }
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if tls { "https" } else { "http" }));
        }

        match tokio::time::timeout(self.timeout, self.dispatch(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, connect = matches!(e, SendError::Dial(_)), "upstream request failed");
                Err(ProxyError::UpstreamUnavailable)
            }
            Ok(Ok(mut resp)) => {
                strip_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
        }
    }

    /// Sends on a pooled connection when one is usable; a request that failed there before it was written is
    /// sent once more on a fresh connection.
    async fn dispatch(&self, req: Request<ProxyBody>) -> Result<Response<UpstreamBody>, SendError> {
        let req = match self.shared_h2() {
            Some(mut h2) => match h2.try_send_request(self.absolute(req)).await {
                Ok(resp) => return Ok(resp.map(|b| PooledBody::new(b, None))),
                Err(mut e) => match e.take_message() {
                    Some(req) => req,
                    None => return Err(e.into_error().into()),
                },
            },
            None => match self.pooled_h1(req).await {
                ControlFlow::Break(outcome) => return outcome,
                ControlFlow::Continue(req) => req,
            },
        };
        // Boxed: dialing (TCP, TLS, the HTTP handshake) is the largest state of this future, and only a request
        // that finds no pooled connection needs it; unboxed, every request's future would carry and move it.
        match Box::pin(self.dialer.dial()).await? {
            Fresh::H1(mut sender) => {
                let mut req = req;
                if req.uri().scheme().is_some() && req.method() != http::Method::CONNECT {
                    // Given back by a closed h2 connection, and the origin now speaks HTTP/1.1: origin-form again.
                    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
                    *req.uri_mut() = Uri::from(path);
                }
                let resp = sender.send_request(req).await?;
                Ok(resp.map(|b| PooledBody::new(b, Some((self.pool.clone(), sender)))))
            }
            Fresh::H2(mut sender) => {
                *self.h2.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender.clone());
                let resp = sender.send_request(self.absolute(req)).await?;
                Ok(resp.map(|b| PooledBody::new(b, None)))
            }
        }
    }

    /// Tries the idle HTTP/1.1 connections, most recent first: the outcome once one took the request, or the
    /// request back when none was usable or the one tried failed before writing it.
    async fn pooled_h1(
        &self,
        req: Request<ProxyBody>,
    ) -> ControlFlow<Result<Response<UpstreamBody>, SendError>, Request<ProxyBody>> {
        while let Some(mut sender) = self.pool.checkout() {
            if !sender.is_ready() {
                // Just given back, its connection task may not have asked for the next request yet: give it a turn.
                // Still busy after that (e.g. still sending a request body the upstream answered early), it is not
                // worth waiting for: dropped, it closes once done.
                tokio::task::yield_now().await;
                if !sender.is_ready() {
                    continue;
                }
            }
            return match sender.try_send_request(req).await {
                Ok(resp) => ControlFlow::Break(Ok(resp.map(|b| PooledBody::new(b, Some((self.pool.clone(), sender)))))),
                Err(mut e) => match e.take_message() {
                    Some(req) => ControlFlow::Continue(req),
                    None => ControlFlow::Break(Err(e.into_error().into())),
                },
            };
        }
        ControlFlow::Continue(req)
    }

    /// The shared h2 connection, unless there is none or the upstream closed it.
    fn shared_h2(&self) -> Option<http2::SendRequest<ProxyBody>> {
        let mut slot = self.h2.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_ref() {
            Some(h2) if !h2.is_closed() => Some(h2.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// h2 carries scheme and authority in the request: the absolute form of the origin-form URI.
    fn absolute(&self, mut req: Request<ProxyBody>) -> Request<ProxyBody> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = req.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "192.168.100.9", "::1", "fe80::1"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// hyper moves each request's future by value, and every layer moves its own: sending upstream must stay
    /// small. The dial, the largest state, is boxed: inline, it made this future 7.8 KiB in a test build (1.8 KiB
    /// boxed), and every request paid to move it.
    #[tokio::test]
    async fn the_future_of_a_request_sent_upstream_stays_small() {
        use http_body_util::{BodyExt, Empty};
        let up = Upstream::new(&"http://127.0.0.1:9".parse().unwrap(), Duration::from_secs(1), None).unwrap();
        let client = ClientAddr::new([127, 0, 0, 1].into());
        let body: ProxyBody = Empty::new().map_err(|never| match never {}).boxed();
        let send = up.send(Request::new(body), Hop::Ingress { client: &client, tls: false });
        let size = std::mem::size_of_val(&send);
        assert!(size <= 3072, "Upstream::send's future is {size} bytes");
    }

    #[test]
    fn a_client_address_is_its_text() {
        for ip in ["127.0.0.1", "10.20.30.40", "::1", "2001:db8::7"] {
            let addr = ClientAddr::new(ip.parse().unwrap());
            assert_eq!(addr.0.to_str().unwrap(), ip);
        }
    }

    #[test]
    fn headers_without_hop_by_hop_ones_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("shop"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn every_hop_by_hop_name_goes_whatever_its_case() {
        let names = [
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "TE",
            "Trailer",
            "Upgrade",
            "Transfer-Encoding",
        ];
        for name in names {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("x"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"], "{name}");
        }
        for kept in ["tee", "connections", "x-upgrade", "trailers"] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(kept.as_bytes()).unwrap(), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{kept}");
        }
    }

    #[test]
    fn hop_by_hop_headers_go_including_connection_named_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
