//! SMTP listeners (`[[smtp]]`): the shop's mailer sends through veil as its smarthost; veil reveals the tokens of
//! each message as the listener's caller and forwards it to the one configured mail server.
//!
//! Per connection (one task each, at most `max_connections`): loopback peers only unless AUTH is configured;
//! STARTTLS with the listener's certificate; AUTH PLAIN over TLS; every command line within 1000 bytes and
//! `command_timeout`. Per message:
//! 1. each `RCPT TO` is decided as it is given: an e-mail token the vault knows is revealed; an unknown address
//!    at the relay or reserved domain is refused (550), any other address passes as it is; vault down → 451;
//! 2. DATA is read to its final dot within `max_message_bytes` (552 past it, the rest read and dropped) and
//!    `data_timeout`; a bare LF refuses the message (554);
//! 3. the message is parsed as MIME; tokens in To/Cc/Bcc/Reply-To, Subject and text parts are revealed or masked
//!    by the caller's rights, in one detokenize and one mask call (vault down → 451; bad MIME → 554);
//! 4. it is sent to the upstream over verified TLS; the shop gets the upstream's reply, with any revealed value
//!    in its text put back as its token. Nothing is forwarded on any failure.

pub mod command;
pub mod io;
pub mod reply;
pub mod reveal;
pub mod session;
pub mod upstream;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::SmtpConfig;
use crate::metrics::Metrics;
use crate::vault::auth::Caller;
use crate::vault::Vault;
use reply::Reply;
use reveal::{Revealer, Rights};
use upstream::Upstream;

/// One SMTP listener, shared by its connections.
pub struct Listener {
    cfg: SmtpConfig,
    tls: Option<TlsAcceptor>,
    revealer: Revealer,
    upstream: Upstream,
    metrics: Arc<Metrics>,
}

impl Listener {
    /// `rights`: the caller's allow list, or `None` when a remote vault holds it. `relay_domain`: the email
    /// class's relay domain, if its format is `relay`.
    pub fn new(
        cfg: SmtpConfig,
        caller: Caller,
        rights: Option<Vec<crate::domain::Permission>>,
        vault: Arc<dyn Vault>,
        metrics: Arc<Metrics>,
        relay_domain: Option<&'static str>,
    ) -> Result<Listener, crate::tls::TlsError> {
        let upstream = Upstream::new(&cfg.upstream, cfg.ca.as_deref(), cfg.upstream_timeout)?;
        let tls = match &cfg.tls {
            Some((cert, key)) => {
                let mut config = Arc::unwrap_or_clone(crate::tls::server_config(cert, key, None)?);
                config.alpn_protocols.clear();
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let revealer = Revealer {
            vault,
            caller,
            rights: rights.map_or(Rights::Remote, Rights::Known),
            purpose: cfg.purpose.clone(),
            timeout: cfg.vault_timeout,
            metrics: metrics.clone(),
            listener: cfg.name.clone(),
            relay_domain,
            trusted: cfg.trusted_recipients.clone(),
        };
        Ok(Listener { cfg, tls, revealer, upstream, metrics })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Counts a refusal by its code.
    fn refused(&self, r: &Reply) {
        let code = r.code.to_string();
        self.metrics.smtp_refusals.with_label_values(&[&self.cfg.name, &code]).inc();
    }

    /// Accepts connections until `stopped`, then waits for the open ones to finish (each closes at its next
    /// command with 421; a message being delivered is delivered first).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.max_connections));
        let mut sessions = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => break,
            };
            while sessions.try_join_next().is_some() {}
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "smtp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.refused(&reply::TOO_MANY_CONNECTIONS);
                sessions.spawn(async move {
                    let mut lines = io::Lines::new(io::Stream::Plain(tcp));
                    let wire = reply::TOO_MANY_CONNECTIONS.wire();
                    let refusal = lines.send(&wire);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), refusal).await;
                });
                continue;
            };
            let (this, stopped) = (self.clone(), stopped.clone());
            sessions.spawn(async move {
                session::run(&this, tcp, peer, stopped).await;
                drop(permit);
            });
        }
        drop(listener);
        while sessions.join_next().await.is_some() {}
    }
}
