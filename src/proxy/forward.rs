//! The upstream client: pooled HTTP/1.1 and h2 over plain TCP or rustls, hop-by-hop headers stripped,
//! `X-Forwarded-For`/`-Proto` set, and a deadline for the response headers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::ProxyError;
use super::ProxyBody;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header names. Transfer-Encoding goes too:
/// hyper frames the forwarded body itself.
///
/// On the hot path of every request and response: one pass comparing names (standard names compare as tags, no
/// hashing), and removals only for headers that are present.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let is_hop = |n: &HeaderName| *n == header::TRANSFER_ENCODING || HOP_BY_HOP.contains(n);
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|n| is_hop(n)).cloned().collect();
    if doomed.contains(&header::CONNECTION) {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok());
        doomed.extend(named);
    }
    for name in doomed {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// An IP address as text; IPv4 without the formatting machinery (this runs for every request).
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

/// Who the forwarded request is sent for.
#[derive(Debug, Clone, Copy)]
pub enum Hop {
    /// Ingress: the app learns the client's address and scheme (`X-Forwarded-For`/`-Proto`); Host is kept.
    Ingress { peer: SocketAddr, tls: bool },
    /// Egress: the provider sees its own origin as Host, and nothing about the app's network.
    Egress,
}

/// One upstream origin and a connection pool to it.
pub struct Upstream {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    timeout: Duration,
}

impl Upstream {
    /// `base` is `http(s)://host:port`; `extra_ca` is trusted in addition to the system roots.
    pub fn new(base: &Uri, timeout: Duration, extra_ca: Option<&Path>) -> Result<Upstream, crate::tls::TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(ca) = extra_ca {
            for cert in crate::tls::load_certs(ca)? {
                roots.add(cert).map_err(|e| crate::tls::TlsError::Config(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(10))));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned()) else {
            return Err(crate::tls::TlsError::Config("upstream needs a scheme and a host".into()));
        };
        Ok(Upstream { client, scheme, authority, timeout })
    }

    /// Sends `req` to the upstream origin. Only the path and query of its URI are used: an absolute-form URI or
    /// a Host header cannot point the request anywhere else.
    pub async fn send(&self, mut req: Request<ProxyBody>, hop: Hop) -> Result<Response<Incoming>, ProxyError> {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
        match hop {
            Hop::Ingress { .. } => {
                // h2 clients carry the host in :authority; give the app a Host header either way.
                if !req.headers().contains_key(header::HOST) {
                    if let Some(host) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                        req.headers_mut().insert(header::HOST, host);
                    }
                }
            }
            Hop::Egress => {
                let host = HeaderValue::from_str(self.authority.as_str()).map_err(|_| ProxyError::Internal)?;
                req.headers_mut().insert(header::HOST, host);
            }
        }
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        if let Hop::Ingress { peer, tls } = hop {
            let ip = ip_text(peer.ip());
            let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(prev) => HeaderValue::from_str(&format!("{prev}, {ip}")),
                None => HeaderValue::from_str(&ip),
            };
            if let Ok(v) = xff {
                headers.insert(X_FORWARDED_FOR, v);
            }
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if tls { "https" } else { "http" }));
        }

        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, connect = e.is_connect(), "upstream request failed");
                Err(ProxyError::UpstreamUnavailable)
            }
            Ok(Ok(mut resp)) => {
                strip_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
        }
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
