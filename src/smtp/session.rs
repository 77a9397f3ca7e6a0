//! One SMTP connection from the shop's mailer: the command loop (pipelining: commands are answered in order as
//! they are read), STARTTLS, AUTH PLAIN, the envelope with each recipient decided as it is given, and DATA,
//! whose message is revealed and forwarded before the final reply.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::command::{self, Bad, Command};
use super::io::{read_data, Data, Line, Lines, Stream};
use super::reply::{self, Reply};
use super::reveal::{scrub, Revealed};
use super::Listener;

/// Longest command line (RFC 5321 §4.5.3.1.4: 512; veil allows the 1000 of a text line).
const MAX_COMMAND_LINE: usize = 1000;
/// Longest AUTH response line (RFC 4954 §4: 12288).
const MAX_AUTH_LINE: usize = 12_288;
/// Errors (bad commands, failed AUTH) a connection may make before it is closed.
const MAX_ERRORS: u32 = 10;
const MAX_AUTH_FAILURES: u32 = 3;
/// Time for a STARTTLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One message being given: sender and recipients decided so far.
struct Transaction {
    from: String,
    /// Addresses to deliver to (revealed or as given).
    to: Vec<String>,
    /// Recipients that were tokens, and their addresses.
    revealed: Vec<Revealed>,
    /// Recipients that were no token (as given).
    plain: Vec<String>,
}

struct Session<'a> {
    listener: &'a Listener,
    lines: Lines,
    tls: bool,
    /// The EHLO/HELO name, once greeted (again after STARTTLS).
    helo: Option<String>,
    authenticated: bool,
    transaction: Option<Transaction>,
    errors: u32,
    auth_failures: u32,
}

/// What the loop does after a reply.
enum Next {
    Continue,
    Close,
}

/// Serves one connection to its end.
pub async fn run(listener: &Listener, tcp: TcpStream, peer: SocketAddr, mut stopped: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let mut lines = Lines::new(Stream::Plain(tcp));
    if !admitted(listener.cfg.auth.is_some(), peer.ip()) {
        listener.refused(&reply::NOT_LOOPBACK);
        let _ = send(&mut lines, &reply::NOT_LOOPBACK).await;
        return;
    }
    let greeting = Reply { code: 220, text: "veil ESMTP ready".into() };
    if send(&mut lines, &greeting).await.is_err() {
        return;
    }
    let mut s = Session {
        listener,
        lines,
        tls: false,
        helo: None,
        authenticated: false,
        transaction: None,
        errors: 0,
        auth_failures: 0,
    };
    loop {
        let line = tokio::select! {
            line = tokio::time::timeout(listener.cfg.command_timeout, s.lines.line(MAX_COMMAND_LINE)) => line,
            _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => {
                let _ = send(&mut s.lines, &reply::SHUTTING_DOWN).await;
                return;
            }
        };
        let line = match line {
            Err(_) => {
                let _ = send(&mut s.lines, &reply::TIMEOUT).await;
                return;
            }
            Ok(Err(_)) => return,
            Ok(Ok(Line::TooLong)) => match s.error(&reply::LINE_TOO_LONG).await {
                Ok(Next::Continue) => continue,
                _ => return,
            },
            Ok(Ok(Line::Complete(l))) => l,
        };
        let text = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(&line);
        let next = match command::parse(text) {
            Ok(cmd) => s.command(cmd).await,
            Err(bad) => {
                let r = match bad {
                    Bad::Unknown => reply::UNKNOWN,
                    Bad::Parameter => reply::BAD_PARAMETER,
                    Bad::Syntax(why) => Reply { code: 501, text: format!("5.5.4 Syntax: {why}").into() },
                };
                s.error(&r).await
            }
        };
        if !matches!(next, Ok(Next::Continue)) {
            return;
        }
    }
}

/// Without AUTH, only clients on this host may send through the listener.
fn admitted(auth: bool, peer: std::net::IpAddr) -> bool {
    auth || crate::config::canonical_ip(peer).is_loopback()
}

async fn send(lines: &mut Lines, r: &Reply) -> std::io::Result<()> {
    lines.send(&r.wire()).await
}

/// Compares without telling by timing how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let da: [u8; 32] = Sha256::digest(a).into();
    let db: [u8; 32] = Sha256::digest(b).into();
    bool::from(da.ct_eq(&db))
}

impl Session<'_> {
    async fn reply(&mut self, r: &Reply) -> std::io::Result<Next> {
        send(&mut self.lines, r).await.map(|_| Next::Continue)
    }

    /// A refusal that counts towards [`MAX_ERRORS`]; past it the connection is closed.
    async fn error(&mut self, r: &Reply) -> std::io::Result<Next> {
        self.errors += 1;
        self.listener.refused(r);
        if self.errors > MAX_ERRORS {
            send(&mut self.lines, &reply::TOO_MANY_ERRORS).await?;
            return Ok(Next::Close);
        }
        self.reply(r).await
    }

    /// A refusal of the shop's message or recipient (counted, not an error of the client's).
    async fn refuse(&mut self, r: &Reply) -> std::io::Result<Next> {
        self.listener.refused(r);
        self.reply(r).await
    }

    async fn command(&mut self, cmd: Command) -> std::io::Result<Next> {
        let cfg = &self.listener.cfg;
        match cmd {
            Command::Ehlo(name) => {
                self.transaction = None;
                self.helo = Some(name);
                let mut text =
                    format!("veil\nSIZE {}\n8BITMIME\nPIPELINING\nENHANCEDSTATUSCODES", cfg.max_message_bytes);
                if self.listener.tls.is_some() && !self.tls {
                    text.push_str("\nSTARTTLS");
                }
                if cfg.auth.is_some() && self.tls {
                    text.push_str("\nAUTH PLAIN");
                }
                self.reply(&Reply { code: 250, text: text.into() }).await
            }
            Command::Helo(name) => {
                self.transaction = None;
                self.helo = Some(name);
                self.reply(&Reply::new(250, "veil")).await
            }
            Command::StartTls => self.start_tls().await,
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await,
            Command::Mail { from, size } => {
                if self.helo.is_none() || self.transaction.is_some() {
                    return self.error(&reply::BAD_SEQUENCE).await;
                }
                if cfg.auth.is_some() && !self.authenticated {
                    return self.error(&reply::AUTH_REQUIRED).await;
                }
                if size.is_some_and(|n| n > cfg.max_message_bytes as u64) {
                    return self.refuse(&reply::TOO_BIG).await;
                }
                self.transaction = Some(Transaction { from, to: Vec::new(), revealed: Vec::new(), plain: Vec::new() });
                self.reply(&reply::SENDER_OK).await
            }
            Command::Rcpt { to } => {
                let Some(t) = &self.transaction else { return self.error(&reply::BAD_SEQUENCE).await };
                if t.to.len() >= cfg.max_recipients {
                    return self.refuse(&reply::TOO_MANY_RECIPIENTS).await;
                }
                match self.listener.revealer.recipient(&to).await {
                    Ok((address, revealed)) => {
                        if let Some(t) = &mut self.transaction {
                            match revealed {
                                Some(revealed) => t.revealed.push(revealed),
                                None => t.plain.push(address.clone()),
                            }
                            t.to.push(address);
                        }
                        self.reply(&reply::RECIPIENT_OK).await
                    }
                    Err(r) => self.refuse(&r).await,
                }
            }
            Command::Data => {
                let Some(t) = self.transaction.take() else { return self.error(&reply::BAD_SEQUENCE).await };
                if t.to.is_empty() {
                    self.transaction = Some(t);
                    return self.refuse(&reply::NO_RECIPIENTS).await;
                }
                self.reply(&reply::START_DATA).await?;
                let data = tokio::time::timeout(cfg.data_timeout, read_data(&mut self.lines, cfg.max_message_bytes));
                let answer = match data.await {
                    Err(_) => {
                        let _ = send(&mut self.lines, &reply::TIMEOUT).await;
                        return Ok(Next::Close);
                    }
                    Ok(data) => match data? {
                        Data::TooBig => reply::TOO_BIG,
                        Data::BareLf => reply::BARE_LF,
                        Data::Message(raw) => self.listener.deliver(self.helo.as_deref(), t, raw).await,
                    },
                };
                if !answer.is_positive() {
                    self.listener.refused(&answer);
                }
                self.reply(&answer).await
            }
            Command::Rset => {
                self.transaction = None;
                self.reply(&reply::OK).await
            }
            Command::Noop => self.reply(&reply::OK).await,
            Command::Vrfy => self.reply(&reply::VRFY).await,
            Command::Help => self.reply(&reply::HELP).await,
            Command::Quit => {
                send(&mut self.lines, &reply::BYE).await?;
                Ok(Next::Close)
            }
        }
    }

    async fn start_tls(&mut self) -> std::io::Result<Next> {
        let Some(acceptor) = self.listener.tls.clone() else { return self.error(&reply::NOT_OFFERED).await };
        if self.tls {
            return self.error(&reply::BAD_SEQUENCE).await;
        }
        self.reply(&reply::START_TLS).await?;
        // Commands sent before the handshake would be taken as if they came over TLS (CVE-2011-0411): dropped.
        self.lines.discard_buffered();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.lines.stream, Stream::Gone) else {
            return Ok(Next::Close);
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.lines = Lines::new(Stream::Server(Box::new(tls)));
                self.tls = true;
                self.helo = None;
                self.authenticated = false;
                self.transaction = None;
                Ok(Next::Continue)
            }
            _ => Ok(Next::Close),
        }
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<Next> {
        let Some(auth) = self.listener.cfg.auth.clone() else { return self.error(&reply::NOT_OFFERED).await };
        if !self.tls {
            return self.error(&reply::ENCRYPTION_REQUIRED).await;
        }
        if self.helo.is_none() || self.authenticated || self.transaction.is_some() {
            return self.error(&reply::BAD_SEQUENCE).await;
        }
        if mechanism != "PLAIN" {
            return self.error(&reply::AUTH_MECHANISM).await;
        }
        let response = match initial {
            Some(r) => r,
            None => {
                self.reply(&reply::AUTH_CONTINUE).await?;
                let line = tokio::time::timeout(self.listener.cfg.command_timeout, self.lines.line(MAX_AUTH_LINE));
                match line.await {
                    Ok(Ok(Line::Complete(l))) => String::from_utf8_lossy(&l).trim_end().to_owned(),
                    Ok(Ok(Line::TooLong)) => return self.error(&reply::LINE_TOO_LONG).await,
                    _ => return Ok(Next::Close),
                }
            }
        };
        if response == "*" {
            return self.error(&reply::AUTH_CANCELLED).await;
        }
        // authzid NUL authcid NUL password (RFC 4616); an authzid, if given, must be the user itself.
        let decoded = base64::engine::general_purpose::STANDARD.decode(response.as_bytes()).unwrap_or_default();
        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        let ok = match parts.as_slice() {
            [authz, user, password] => {
                let user_ok = same(user, auth.username.as_bytes());
                let digest: [u8; 32] = Sha256::digest(password).into();
                let password_ok = bool::from(digest.ct_eq(&auth.password_sha256));
                user_ok & password_ok & (authz.is_empty() || *authz == *user)
            }
            _ => false,
        };
        if ok {
            self.authenticated = true;
            return self.reply(&reply::AUTH_OK).await;
        }
        self.auth_failures += 1;
        tracing::info!(listener = %self.listener.cfg.name, "AUTH PLAIN failed");
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.listener.refused(&reply::AUTH_FAILED);
            send(&mut self.lines, &reply::AUTH_FAILED).await?;
            return Ok(Next::Close);
        }
        self.error(&reply::AUTH_FAILED).await
    }
}

impl Listener {
    /// Reveals `raw`'s tokens and forwards it: the reply to the final dot.
    async fn deliver(&self, helo: Option<&str>, t: Transaction, raw: Vec<u8>) -> Reply {
        let audience = self.revealer.audience(&t.revealed, &t.plain);
        let (message, mut revealed) = match self.revealer.message(&raw, &audience).await {
            Ok(m) => m,
            Err(r) => {
                let outcome = if r == reply::VAULT_UNAVAILABLE { "vault_unavailable" } else { "malformed" };
                return self.outcome(r, outcome);
            }
        };
        drop((raw, audience));
        revealed.extend(t.revealed);
        let helo = helo.filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c)));
        match self.upstream.send(helo.unwrap_or("localhost"), &t.from, &t.to, &message).await {
            Ok(answer) => {
                // What the server says about a recipient must not tell the shop the real address.
                let text = scrub(&answer.text, &revealed);
                let outcome = if answer.is_positive() { "delivered" } else { "upstream_refused" };
                self.outcome(Reply { code: answer.code, text: text.into() }, outcome)
            }
            Err(e) => {
                tracing::warn!(listener = %self.cfg.name, error = %e, "message not forwarded");
                self.metrics.upstream_errors.with_label_values(&[&self.cfg.name, e.kind()]).inc();
                self.outcome(e.reply(), "upstream_unavailable")
            }
        }
    }

    fn outcome(&self, r: Reply, outcome: &str) -> Reply {
        self.metrics.smtp_messages.with_label_values(&[&self.cfg.name, outcome]).inc();
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn without_auth_only_loopback_peers_are_admitted() {
        for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(admitted(false, local.parse().unwrap()), "{local}");
        }
        for remote in ["10.0.0.7", "192.0.2.1", "2001:db8::1", "::ffff:10.0.0.7"] {
            assert!(!admitted(false, remote.parse().unwrap()), "{remote}");
            assert!(admitted(true, remote.parse().unwrap()), "{remote} with AUTH configured");
        }
    }

    #[test]
    fn credentials_compare_by_value() {
        assert!(same(b"shop", b"shop"));
        assert!(!same(b"shop", b"shop2") && !same(b"", b"shop"));
    }
}
