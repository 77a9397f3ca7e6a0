//! SMTP replies: a code and text (starting with its enhanced status code, RFC 3463), one line or several, and
//! the replies veil gives itself.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Lines joined by `\n`; each is sent as `code-line` / `code line`.
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, text: &'static str) -> Reply {
        Reply { code, text: Cow::Borrowed(text) }
    }

    /// The reply on the wire, CRLF-terminated lines, continuation marked with `-`.
    pub fn wire(&self) -> Vec<u8> {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            // Replies carry no control characters, whatever a text came from.
            let clean: String = line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            out.extend_from_slice(format!("{}{sep}{}\r\n", self.code, clean.trim_end()).as_bytes());
        }
        out
    }

    /// The outcome class the metrics and the session need: 2xx, 4xx or 5xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

pub const OK: Reply = Reply::new(250, "2.0.0 OK");
pub const BYE: Reply = Reply::new(221, "2.0.0 Bye");
pub const VRFY: Reply = Reply::new(252, "2.5.0 Cannot VRFY; send the message and it will be delivered");
pub const HELP: Reply = Reply::new(214, "2.0.0 See RFC 5321");
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0 Sender OK");
pub const RECIPIENT_OK: Reply = Reply::new(250, "2.1.5 Recipient OK");
pub const START_DATA: Reply = Reply::new(354, "End data with <CR><LF>.<CR><LF>");
pub const START_TLS: Reply = Reply::new(220, "2.0.0 Ready to start TLS");
pub const AUTH_OK: Reply = Reply::new(235, "2.7.0 Authentication successful");
pub const AUTH_CONTINUE: Reply = Reply::new(334, "");

pub const NOT_LOOPBACK: Reply = Reply::new(554, "5.7.1 Only local clients may relay here (no AUTH configured)");
pub const TOO_MANY_CONNECTIONS: Reply = Reply::new(421, "4.7.0 Too many connections, try again later");
pub const SHUTTING_DOWN: Reply = Reply::new(421, "4.3.2 Service shutting down, try again later");
pub const TIMEOUT: Reply = Reply::new(421, "4.4.2 Timeout, closing connection");
pub const TOO_MANY_ERRORS: Reply = Reply::new(421, "4.7.0 Too many errors, closing connection");
pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2 Line too long");
pub const UNKNOWN: Reply = Reply::new(500, "5.5.2 Command not recognised");
pub const BAD_PARAMETER: Reply = Reply::new(555, "5.5.4 Parameter not recognised");
pub const BAD_SEQUENCE: Reply = Reply::new(503, "5.5.1 Bad sequence of commands");
pub const NOT_OFFERED: Reply = Reply::new(502, "5.5.1 Not offered here");
pub const NO_RECIPIENTS: Reply = Reply::new(554, "5.5.1 No valid recipients");
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3 Too many recipients");
pub const AUTH_REQUIRED: Reply = Reply::new(530, "5.7.0 Authentication required");
pub const ENCRYPTION_REQUIRED: Reply = Reply::new(538, "5.7.11 Encryption required for AUTH");
pub const AUTH_FAILED: Reply = Reply::new(535, "5.7.8 Authentication credentials invalid");
pub const AUTH_MECHANISM: Reply = Reply::new(504, "5.5.4 Only AUTH PLAIN is offered");
pub const AUTH_CANCELLED: Reply = Reply::new(501, "5.0.0 Authentication cancelled");
pub const TOO_BIG: Reply = Reply::new(552, "5.3.4 Message size exceeds the fixed limit");
pub const BARE_LF: Reply = Reply::new(554, "5.6.0 Lines must end in CRLF");
pub const MALFORMED: Reply = Reply::new(554, "5.6.0 Message could not be parsed as MIME");
pub const UNKNOWN_RECIPIENT: Reply = Reply::new(550, "5.1.1 Unknown recipient");
pub const VAULT_UNAVAILABLE: Reply = Reply::new(451, "4.3.0 Temporary failure, try again later");
pub const UPSTREAM_UNAVAILABLE: Reply = Reply::new(451, "4.4.1 The mail server could not be reached, try again later");
pub const UPSTREAM_NO_TLS: Reply = Reply::new(451, "4.7.5 The mail server does not offer STARTTLS; nothing was sent");
pub const UPSTREAM_TLS: Reply = Reply::new(451, "4.7.5 TLS with the mail server failed; nothing was sent");
pub const UPSTREAM_PROTOCOL: Reply = Reply::new(451, "4.5.0 The mail server answered unexpectedly; try again later");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_and_several() {
        assert_eq!(OK.wire(), b"250 2.0.0 OK\r\n");
        let r = Reply { code: 250, text: "veil\nSIZE 10\nPIPELINING".into() };
        assert_eq!(r.wire(), b"250-veil\r\n250-SIZE 10\r\n250 PIPELINING\r\n");
        let r = Reply { code: 550, text: "5.1.1 a\rb".into() };
        assert_eq!(r.wire(), b"550 5.1.1 a b\r\n");
        assert_eq!(AUTH_CONTINUE.wire(), b"334 \r\n");
    }
}
