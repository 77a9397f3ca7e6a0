//! An HTTPS server for tests (a payment provider, an https:// upstream): HTTP/1.1 and h2 by ALPN, a certificate
//! from a test CA, every request recorded, replies chosen by the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;

use super::Seen;

/// A reply: status, headers, body.
pub type Reply = (u16, Vec<(&'static str, String)>, Bytes);

#[derive(Clone)]
pub struct TlsApp {
    pub addr: SocketAddr,
    /// Each request with the HTTP version it came in (`HTTP/1.1`, `HTTP/2.0`).
    pub seen: Arc<Mutex<Vec<(String, Seen)>>>,
}

/// A TLS server config with `server.pem`/`server.key` from `pki_dir` (see `Pki::new`), offering `alpn`.
pub fn server_config(pki_dir: &Path, alpn: &[&[u8]]) -> rustls::ServerConfig {
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(pki_dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki_dir.join("server.key")).unwrap();
    let mut cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

impl TlsApp {
    /// Serves with `server.pem`/`server.key` from `pki_dir` (see `Pki::new`); answers 200 `{"ok":true}`.
    pub async fn start(pki_dir: &Path) -> TlsApp {
        Self::start_with(pki_dir, Arc::new(|_| (200, vec![], Bytes::from_static(b"{\"ok\":true}")))).await
    }

    pub async fn start_with(pki_dir: &Path, reply: Arc<dyn Fn(&Seen) -> Reply + Send + Sync>) -> TlsApp {
        let cfg = server_config(pki_dir, &[b"h2", b"http/1.1"]);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(String, Seen)>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, record, reply) = (acceptor.clone(), record.clone(), reply.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (record, reply) = (record.clone(), reply.clone());
                        async move {
                            let version = format!("{:?}", req.version());
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                                    .collect(),
                                body,
                            };
                            let (status, headers, out) = reply(&seen);
                            record.lock().unwrap().push((version, seen));
                            let mut resp = hyper::Response::new(Full::new(out));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            for (k, v) in headers {
                                resp.headers_mut().insert(k, v.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsApp { addr, seen }
    }

    pub fn requests(&self) -> Vec<(String, Seen)> {
        self.seen.lock().unwrap().clone()
    }
}
