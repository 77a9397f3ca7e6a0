//! The one mail server a listener forwards to: per message a new connection (connect timeout), EHLO, STARTTLS
//! required for `smtp://` (not offered: nothing is sent), implicit TLS for `smtps://`, the certificate always
//! verified (system roots + the listener's `ca`), then MAIL, RCPT (any refusal: RSET, nothing delivered), DATA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::io::{dot_stuff, Line, Lines, Stream};
use super::reply::{self, Reply};
use crate::config::smtp::SmtpUpstream;
use crate::tls::TlsError;

/// Why a message did not reach the upstream's final answer. Carries no message data.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("the server does not offer STARTTLS")]
    NoStartTls,
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected reply {0}")]
    Unexpected(u16),
    #[error("reply does not parse")]
    BadReply,
}

impl UpstreamError {
    /// The reply the shop gets (always transient: the mailer tries again later).
    pub fn reply(&self) -> Reply {
        match self {
            UpstreamError::NoStartTls => reply::UPSTREAM_NO_TLS,
            UpstreamError::Tls(_) => reply::UPSTREAM_TLS,
            UpstreamError::Unexpected(_) | UpstreamError::BadReply => reply::UPSTREAM_PROTOCOL,
            _ => reply::UPSTREAM_UNAVAILABLE,
        }
    }

    /// A metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::NoStartTls => "no_starttls",
            UpstreamError::Tls(_) => "tls",
            UpstreamError::Io(_) => "io",
            UpstreamError::Unexpected(_) | UpstreamError::BadReply => "protocol",
        }
    }
}

/// The upstream mail server of one listener.
pub struct Upstream {
    cfg: SmtpUpstream,
    connector: TlsConnector,
    name: ServerName<'static>,
    timeout: Duration,
}

/// Longest reply line read from the upstream, and most lines of one reply.
const MAX_REPLY_LINE: usize = 2048;
const MAX_REPLY_LINES: usize = 64;

impl Upstream {
    pub fn new(cfg: &SmtpUpstream, ca: Option<&Path>, timeout: Duration) -> Result<Upstream, TlsError> {
        let config = crate::tls::client_config(ca)?;
        let name = ServerName::try_from(cfg.host.clone())
            .map_err(|_| TlsError::Config("smtp upstream host is not a valid TLS server name".into()))?;
        Ok(Upstream { cfg: cfg.clone(), connector: TlsConnector::from(Arc::new(config)), name, timeout })
    }

    async fn step<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        tokio::time::timeout(self.timeout, f).await.unwrap_or(Err(UpstreamError::Timeout))
    }

    /// Sends one message; `Ok` is the upstream's answer to it (a refusal of MAIL, of any RCPT or of the data
    /// included), `Err` a failure before there was one.
    pub async fn send(&self, helo: &str, from: &str, to: &[String], message: &[u8]) -> Result<Reply, UpstreamError> {
        let tcp = self
            .step(async {
                TcpStream::connect((self.cfg.host.as_str(), self.cfg.port)).await.map_err(UpstreamError::Connect)
            })
            .await?;
        let _ = tcp.set_nodelay(true);
        let stream = match self.cfg.implicit_tls {
            true => Stream::Client(Box::new(self.step(self.handshake(tcp)).await?)),
            false => Stream::Plain(tcp),
        };
        let mut c = Lines::new(stream);
        expect(self.step(read_reply(&mut c)).await?, 220)?;
        let mut ehlo = self.step(command(&mut c, &format!("EHLO {helo}"))).await?;
        expect_ok(&ehlo)?;
        if !self.cfg.implicit_tls {
            if !offers(&ehlo, "STARTTLS") {
                let _ = self.step(command(&mut c, "QUIT")).await;
                return Err(UpstreamError::NoStartTls);
            }
            expect(self.step(command(&mut c, "STARTTLS")).await?, 220)?;
            if c.has_buffered() {
                return Err(UpstreamError::Unexpected(220));
            }
            let Stream::Plain(tcp) = std::mem::replace(&mut c.stream, Stream::Gone) else {
                return Err(UpstreamError::BadReply);
            };
            c = Lines::new(Stream::Client(Box::new(self.step(self.handshake(tcp)).await?)));
            ehlo = self.step(command(&mut c, &format!("EHLO {helo}"))).await?;
            expect_ok(&ehlo)?;
        }
        let mut mail = format!("MAIL FROM:<{from}>");
        if offers(&ehlo, "SIZE") {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if offers(&ehlo, "8BITMIME") && !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let answer = self.step(command(&mut c, &mail)).await?;
        if !answer.is_positive() {
            let _ = self.step(command(&mut c, "QUIT")).await;
            return Ok(answer);
        }
        for rcpt in to {
            let answer = self.step(command(&mut c, &format!("RCPT TO:<{rcpt}>"))).await?;
            if !answer.is_positive() {
                // One recipient refused: nobody gets the message (the shop's mailer retries or bounces it whole).
                let _ = self.step(command(&mut c, "RSET")).await;
                let _ = self.step(command(&mut c, "QUIT")).await;
                return Ok(answer);
            }
        }
        let answer = self.step(command(&mut c, "DATA")).await?;
        if answer.code != 354 {
            let _ = self.step(command(&mut c, "QUIT")).await;
            return Ok(answer);
        }
        let wire = dot_stuff(message);
        let answer = self
            .step(async {
                c.send(&wire).await?;
                read_reply(&mut c).await
            })
            .await?;
        let _ = self.step(command(&mut c, "QUIT")).await;
        Ok(answer)
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
        self.connector.connect(self.name.clone(), tcp).await.map_err(UpstreamError::Tls)
    }
}

fn expect(r: Reply, code: u16) -> Result<Reply, UpstreamError> {
    match r.code == code {
        true => Ok(r),
        false => Err(UpstreamError::Unexpected(r.code)),
    }
}

fn expect_ok(r: &Reply) -> Result<(), UpstreamError> {
    match r.code == 250 {
        true => Ok(()),
        false => Err(UpstreamError::Unexpected(r.code)),
    }
}

/// Whether an EHLO reply lists `keyword` (first word of a line after the greeting).
fn offers(ehlo: &Reply, keyword: &str) -> bool {
    ehlo.text.split('\n').skip(1).any(|l| l.split(' ').next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
}

async fn command(c: &mut Lines, line: &str) -> Result<Reply, UpstreamError> {
    c.send(format!("{line}\r\n").as_bytes()).await?;
    read_reply(c).await
}

/// One reply, its lines' texts joined by `\n`.
pub async fn read_reply(c: &mut Lines) -> Result<Reply, UpstreamError> {
    let mut text = String::new();
    for n in 0..MAX_REPLY_LINES {
        let Line::Complete(line) = c.line(MAX_REPLY_LINE).await? else { return Err(UpstreamError::BadReply) };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let (code, more, rest) = parse_line(line).ok_or(UpstreamError::BadReply)?;
        if n > 0 {
            text.push('\n');
        }
        text.push_str(rest);
        if !more {
            return Ok(Reply { code, text: text.into() });
        }
    }
    Err(UpstreamError::BadReply)
}

/// `250-text` / `250 text` / `250` → (code, more lines follow, text).
fn parse_line(line: &str) -> Option<(u16, bool, &str)> {
    let code: u16 = line.get(..3)?.parse().ok().filter(|c| (200..600).contains(c))?;
    match line.as_bytes().get(3) {
        None => Some((code, false, "")),
        Some(b' ') => Some((code, false, &line[4..])),
        Some(b'-') => Some((code, true, &line[4..])),
        Some(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reply_lines() {
        assert_eq!(parse_line("250-mail.example PIPELINING"), Some((250, true, "mail.example PIPELINING")));
        assert_eq!(parse_line("550 5.1.1 no"), Some((550, false, "5.1.1 no")));
        assert_eq!(parse_line("250"), Some((250, false, "")));
        assert_eq!(parse_line("25x ok"), None);
        assert_eq!(parse_line("250_x"), None);
        assert_eq!(parse_line("999 x"), None);
        let ehlo = Reply { code: 250, text: "mail\nSIZE 100\nstarttls\n8BITMIME".into() };
        assert!(offers(&ehlo, "STARTTLS") && offers(&ehlo, "SIZE") && !offers(&ehlo, "AUTH"));
        assert!(!offers(&Reply { code: 250, text: "STARTTLS".into() }, "STARTTLS"), "the greeting line is no keyword");
    }

    proptest! {
        #[test]
        fn reply_parsing_never_panics(line in ".{0,40}") {
            let _ = parse_line(&line);
        }
    }
}
