//! Opening one connection to the upstream origin: TCP (connect timeout, TCP_NODELAY), rustls for `https://`
//! (system roots + an extra CA, ALPN h2 then http/1.1), then the HTTP/1.1 or h2 handshake. The connection task is
//! spawned and ends when the connection closes or its last sender is dropped.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ProxyBody;
use crate::tls::TlsError;

/// A new connection, by the protocol the upstream agreed to.
pub enum Fresh {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// Why a connection could not be opened. Carries no request data.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
}

/// Everything needed to open connections to one origin, resolved once.
pub struct Dialer {
    host: String,
    port: u16,
    /// The origin's address when its host is an IP literal: no resolver call per connection.
    literal: Option<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl Dialer {
    /// `extra_ca` is trusted in addition to the system roots (`https://` only).
    pub fn new(
        scheme: &http::uri::Scheme,
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        extra_ca: Option<&Path>,
    ) -> Result<Dialer, TlsError> {
        let https = match scheme.as_str() {
            "https" => true,
            "http" => false,
            other => return Err(TlsError::Config(format!("upstream scheme {other} is not http or https"))),
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let literal = host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port));
        // Built for plain upstreams too, so a bad `upstream_ca` is refused at start either way.
        let config = client_config(extra_ca)?;
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| TlsError::Config("upstream host is not a valid TLS server name".into()))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Dialer { host, port, literal, tls, connect_timeout })
    }

    /// Opens one connection and spawns its task.
    pub async fn dial(&self) -> Result<Fresh, DialError> {
        let tcp = tokio::time::timeout(self.connect_timeout, self.tcp())
            .await
            .map_err(|_| DialError::ConnectTimeout)?
            .map_err(DialError::Connect)?;
        tcp.set_nodelay(true).map_err(DialError::Connect)?;
        let Some((connector, name)) = &self.tls else { return h1(TokioIo::new(tcp)).await };
        let stream = connector.connect(name.clone(), tcp).await.map_err(DialError::Tls)?;
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(DialError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
            });
            return Ok(Fresh::H2(sender));
        }
        h1(TokioIo::new(stream)).await
    }

    /// The first address of the origin that accepts a TCP connection.
    async fn tcp(&self) -> std::io::Result<TcpStream> {
        if let Some(addr) = self.literal {
            return TcpStream::connect(addr).await;
        }
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "upstream host has no address");
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

async fn h1<T>(io: T) -> Result<Fresh, DialError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.map_err(DialError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(Fresh::H1(sender))
}

/// System roots plus `extra_ca`, ALPN h2 then http/1.1.
fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut tls = crate::tls::client_config(extra_ca)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::net::TcpSocket;

    fn dialer(addr: SocketAddr, connect_timeout: Duration) -> Dialer {
        let authority: http::uri::Authority = addr.to_string().parse().unwrap();
        Dialer::new(&http::uri::Scheme::HTTP, &authority, connect_timeout, None).unwrap()
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        match dialer(addr, Duration::from_secs(5)).dial().await {
            Err(DialError::Connect(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected to a closed port"),
        }
    }

    /// A listener whose accept queue is full drops further SYNs: the connect gets no answer at all, and the
    /// dial gives up after its timeout instead of waiting for the kernel's (minutes).
    #[tokio::test]
    async fn a_connect_that_gets_no_answer_times_out() {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Never accepted: fill the queue until a connect is left unanswered.
        let mut queued = Vec::new();
        let mut full = false;
        for _ in 0..64 {
            match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "the accept queue never filled ({} connections)", queued.len());

        let started = Instant::now();
        match dialer(addr, Duration::from_millis(200)).dial().await {
            Err(DialError::ConnectTimeout) => {}
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected through a full accept queue"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        drop(listener);
    }
}
