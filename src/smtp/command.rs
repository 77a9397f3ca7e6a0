//! SMTP command lines (RFC 5321 §4.1) parsed into [`Command`]s: verbs case-insensitive, paths in angle brackets,
//! the MAIL parameters veil advertises (SIZE, BODY) and nothing else.

/// Longest reverse- or forward-path (RFC 5321 §4.5.3.1.3), brackets excluded.
pub const MAX_PATH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// `MAIL FROM:<path>`; an empty path is the null sender of bounces.
    Mail {
        from: String,
        size: Option<u64>,
    },
    Rcpt {
        to: String,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
}

/// Why a line is not a command veil takes; each maps to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// 500: not a command.
    Unknown,
    /// 501: a known command with arguments that do not parse.
    Syntax(&'static str),
    /// 555: a MAIL/RCPT parameter veil does not take.
    Parameter,
}

/// Parses one command line (its CRLF already removed).
pub fn parse(line: &[u8]) -> Result<Command, Bad> {
    let line = std::str::from_utf8(line).map_err(|_| Bad::Unknown)?;
    if !line.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
        return Err(Bad::Syntax("commands are printable ASCII"));
    }
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r.trim()),
        None => (line.trim_end(), ""),
    };
    let no_args =
        |c: Command| if rest.is_empty() { Ok(c) } else { Err(Bad::Syntax("this command takes no arguments")) };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" | "HELO" if rest.is_empty() || rest.contains(' ') => Err(Bad::Syntax("give one domain or address")),
        "EHLO" => Ok(Command::Ehlo(rest.to_owned())),
        "HELO" => Ok(Command::Helo(rest.to_owned())),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut parts = rest.split(' ').filter(|p| !p.is_empty());
            let mechanism = parts.next().ok_or(Bad::Syntax("name a mechanism"))?.to_ascii_uppercase();
            let initial = parts.next().map(str::to_owned);
            match parts.next() {
                None => Ok(Command::Auth { mechanism, initial }),
                Some(_) => Err(Bad::Syntax("AUTH mechanism [initial-response]")),
            }
        }
        "MAIL" => {
            let (from, params) = path_after(rest, "FROM:").ok_or(Bad::Syntax("MAIL FROM:<address>"))?;
            let mut size = None;
            for p in params {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                match key.to_ascii_uppercase().as_str() {
                    "SIZE" => size = Some(value.parse::<u64>().map_err(|_| Bad::Syntax("SIZE=<bytes>"))?),
                    "BODY" if matches!(value.to_ascii_uppercase().as_str(), "7BIT" | "8BITMIME") => {}
                    _ => return Err(Bad::Parameter),
                }
            }
            Ok(Command::Mail { from, size })
        }
        "RCPT" => {
            let (to, mut params) = path_after(rest, "TO:").ok_or(Bad::Syntax("RCPT TO:<address>"))?;
            if params.next().is_some() {
                return Err(Bad::Parameter);
            }
            if to.is_empty() {
                return Err(Bad::Syntax("RCPT TO:<address>"));
            }
            Ok(Command::Rcpt { to })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        _ => Err(Bad::Unknown),
    }
}

/// `FROM:<path> params…` → the path (without brackets) and the parameters. A path is an address: no source
/// route, no spaces or brackets inside, at most [`MAX_PATH`] bytes, `local@domain` unless empty.
fn path_after<'a>(rest: &'a str, keyword: &str) -> Option<(String, impl Iterator<Item = &'a str>)> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    let path = &inner[..end];
    let ok_char = |c: char| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c);
    let valid = path.is_empty()
        || (path.len() <= MAX_PATH
            && path.chars().all(ok_char)
            && path.rsplit_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()));
    if !valid {
        return None;
    }
    Some((path.to_owned(), inner[end + 1..].split(' ').filter(|p| !p.is_empty())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"ehlo shop.example"), Ok(Command::Ehlo("shop.example".into())));
        assert_eq!(
            parse(b"MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME"),
            Ok(Command::Mail { from: "a@b.c".into(), size: Some(100) })
        );
        assert_eq!(parse(b"MAIL FROM: <>"), Ok(Command::Mail { from: String::new(), size: None }));
        assert_eq!(
            parse(b"rcpt to:<k3f9x2@customers.shop.example>"),
            Ok(Command::Rcpt { to: "k3f9x2@customers.shop.example".into() })
        );
        assert_eq!(
            parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth { mechanism: "PLAIN".into(), initial: Some("AGEAYg==".into()) })
        );
        assert_eq!(parse(b"DATA"), Ok(Command::Data));
        assert_eq!(parse(b"VRFY someone"), Ok(Command::Vrfy));
        assert_eq!(parse(b"STARTTLS"), Ok(Command::StartTls));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"BDAT 10"), Err(Bad::Unknown));
        assert_eq!(parse(b"MAIL FROM:<a@b> SMTPUTF8"), Err(Bad::Parameter));
        assert_eq!(parse(b"RCPT TO:<a@b> NOTIFY=NEVER"), Err(Bad::Parameter));
        assert!(matches!(parse(b"MAIL FROM:<a@b> SIZE=x"), Err(Bad::Syntax(_))));
        for bad in
            [&b"MAIL FROM:a@b"[..], b"RCPT TO:<>", b"RCPT TO:<@a,@b:c@d>", b"RCPT TO:<a b@c>", b"RCPT TO:<nobody>"]
        {
            assert!(matches!(parse(bad), Err(Bad::Syntax(_))), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(parse(b"DATA now"), Err(Bad::Syntax(_))));
        assert!(matches!(parse(b"EHLO"), Err(Bad::Syntax(_))));
        assert!(matches!(parse("RCPT TO:<ä@b>".as_bytes()), Err(Bad::Syntax(_))));
        let long = format!("RCPT TO:<{}@b.c>", "a".repeat(MAX_PATH));
        assert!(matches!(parse(long.as_bytes()), Err(Bad::Syntax(_))));
    }

    proptest! {
        #[test]
        fn never_panics(line in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&line);
        }

        #[test]
        fn addresses_round_trip(local in "[a-z0-9.+_-]{1,40}", domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
            let addr = format!("{local}@{domain}");
            prop_assert_eq!(parse(format!("RCPT TO:<{addr}>").as_bytes()), Ok(Command::Rcpt { to: addr.clone() }));
            prop_assert_eq!(parse(format!("mail from:<{addr}>").as_bytes()), Ok(Command::Mail { from: addr, size: None }));
        }
    }
}
