//! Address headers (`To`, `Cc`, `Bcc`, `Reply-To`; RFC 5322 §3.4): encoded-words decoded and written only in display
//! names (phrases), never in an address.
//!
//! A value is cut into lexical tokens (atoms, quoted strings, comments, domain literals, specials, white space;
//! UTF-8 allowed as in RFC 6532) and each token is placed: the phrase before `<` or a group's `:` is a display
//! name, everything else is an address. Reading decodes encoded-word atoms in display names (a decoded run that
//! would not read back as a phrase is quoted). Writing keeps ASCII tokens as they are, encodes display-name words
//! that are not plain ASCII, and refuses non-ASCII anywhere else.

use super::words::{self, Decoder, Piece};
use super::MimeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Atom,
    Quoted,
    Comment,
    Literal,
    Special(char),
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: Kind,
    text: &'a str,
}

/// The end (exclusive) of a delimited token that starts at `start` with `open`; nested for comments.
fn delimited(s: &str, start: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    let mut escaped = false;
    for (i, c) in s[start..].char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == close && (i > 0 || open != close) {
            depth -= 1;
            if depth == 0 {
                return Some(start + i + c.len_utf8());
            }
        } else if c == open && (open != close || i == 0) {
            depth += 1;
        }
    }
    None
}

/// Tokens of `s`; `None` when a quoted string, comment or domain literal never ends, or a `)` `]` `\` stands alone.
fn lex(s: &str) -> Option<Vec<Tok<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let (kind, end) = match c {
            ' ' | '\t' => (Kind::Space, i + s[i..].find(|c| c != ' ' && c != '\t').unwrap_or(s.len() - i)),
            '"' => (Kind::Quoted, delimited(s, i, '"', '"')?),
            '(' => (Kind::Comment, delimited(s, i, '(', ')')?),
            '[' => (Kind::Literal, i + s[i..].find(']')? + 1),
            '<' | '>' | '@' | ',' | ';' | ':' | '.' => (Kind::Special(c), i + 1),
            ')' | ']' | '\\' => return None,
            _ => {
                let len = s[i..].find(|c: char| c == ' ' || c == '\t' || "()<>[]:;@\\,.\"".contains(c));
                (Kind::Atom, len.map_or(s.len(), |l| i + l))
            }
        };
        out.push(Tok { kind, text: &s[i..end] });
        i = end;
    }
    Some(out)
}

/// For each token, whether it is in a display name (`true`) or in an address; `None` for unbalanced `<` `>`.
fn places(toks: &[Tok<'_>]) -> Option<Vec<bool>> {
    let mut phrase = vec![false; toks.len()];
    let mut i = 0;
    while i < toks.len() {
        let mut open = None;
        let mut inside = false;
        let mut j = i;
        while j < toks.len() {
            match toks[j].kind {
                Kind::Special('<') if inside => return None,
                Kind::Special('<') => {
                    inside = true;
                    open = open.or(Some(j));
                }
                Kind::Special('>') if !inside => return None,
                Kind::Special('>') => inside = false,
                Kind::Special(',' | ';' | ':') if !inside => break,
                _ => {}
            }
            j += 1;
        }
        if inside {
            return None;
        }
        let group = toks.get(j).is_some_and(|t| t.kind == Kind::Special(':'));
        if let Some(end) = open.or(group.then_some(j)) {
            phrase[i..end].iter_mut().for_each(|p| *p = true);
        }
        i = j + 1;
    }
    Some(phrase)
}

/// An address header's value (unfolded) with the encoded-words of its display names decoded. A value that does not
/// lex is returned as it is.
pub(super) fn decode(s: &str) -> String {
    let Some(toks) = lex(s) else { return s.to_string() };
    let Some(phrase) = places(&toks) else { return s.to_string() };
    let mut d = Decoder::new(true);
    for (t, in_phrase) in toks.iter().zip(phrase) {
        match t.kind {
            Kind::Space => d.space(t.text),
            Kind::Atom if in_phrase => d.word(t.text),
            _ => d.plain(t.text),
        }
    }
    d.finish()
}

fn plain_ascii(s: &str) -> bool {
    s.chars().all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
}

/// The text of a display-name token as a reader sees it (a quoted string without its quotes and escapes).
fn phrase_text(t: &Tok<'_>, out: &mut String) {
    if t.kind != Kind::Quoted {
        return out.push_str(t.text);
    }
    let inner = &t.text[1..t.text.len() - 1];
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
}

/// A display name's words (maximal runs of tokens without white space; a comment stands alone) and spaces.
fn phrase_pieces(toks: &[Tok<'_>], sep: &mut String, out: &mut Vec<Piece>) -> Result<(), MimeError> {
    let mut items: Vec<(bool, Vec<Tok<'_>>)> = Vec::new();
    for t in toks {
        let joins = |last: &(bool, Vec<Tok<'_>>)| {
            !last.0 && t.kind != Kind::Space && t.kind != Kind::Comment && last.1[0].kind != Kind::Comment
        };
        match items.last_mut() {
            Some(last) if joins(last) => last.1.push(*t),
            _ => {
                items.push((t.kind == Kind::Space, vec![*t]));
            }
        }
    }
    let mut enc = Vec::with_capacity(items.len());
    for (space, ts) in &items {
        let mut must = false;
        for t in ts.iter().filter(|_| !space) {
            let text = if t.kind == Kind::Quoted { &t.text[1..t.text.len() - 1] } else { t.text };
            let odd = !plain_ascii(text) || (t.kind == Kind::Atom && text.contains("=?"));
            if odd && matches!(t.kind, Kind::Comment | Kind::Literal) {
                return Err(MimeError::AddressNotAscii);
            }
            must |= odd;
        }
        enc.push(must);
    }
    for i in 1..items.len().saturating_sub(1) {
        if items[i].0 && enc[i - 1] && enc[i + 1] {
            enc[i] = true;
        }
    }
    let mut i = 0;
    while i < items.len() {
        if enc[i] {
            let mut text = String::new();
            while i < items.len() && enc[i] {
                items[i].1.iter().for_each(|t| phrase_text(t, &mut text));
                i += 1;
            }
            words::encoded_words(&text, std::mem::take(sep), out);
            continue;
        }
        if items[i].0 {
            sep.push_str(items[i].1[0].text);
        } else {
            for t in &items[i].1 {
                out.push(Piece { sep: std::mem::take(sep), word: t.text.to_string() });
            }
        }
        i += 1;
    }
    Ok(())
}

/// An address header's value to write: display names with non-ASCII words as encoded-words, addresses as they
/// are. Non-ASCII in an address (or a comment) is an error, as is a value that does not lex.
pub(super) fn encode(text: &str) -> Result<Vec<Piece>, MimeError> {
    let text = text.trim_matches([' ', '\t']);
    let toks = lex(text).ok_or(MimeError::AddressSyntax)?;
    let phrase = places(&toks).ok_or(MimeError::AddressSyntax)?;
    let mut out = Vec::new();
    let mut sep = String::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if phrase[i] {
            let end = (i..toks.len()).find(|&j| !phrase[j]).unwrap_or(toks.len());
            phrase_pieces(&toks[i..end], &mut sep, &mut out)?;
            i = end;
            continue;
        }
        if t.kind == Kind::Space {
            sep.push_str(t.text);
        } else if !plain_ascii(t.text) {
            return Err(MimeError::AddressNotAscii);
        } else {
            out.push(Piece { sep: std::mem::take(&mut sep), word: t.text.to_string() });
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> Result<String, MimeError> {
        Ok(String::from_utf8(words::fold(b"To", &encode(text)?)?).unwrap())
    }

    fn read(field: &str) -> String {
        decode(field.strip_prefix("To:").unwrap().replace("\r\n", "").trim())
    }

    #[test]
    fn lexes_and_places() {
        let toks = lex(r#""Smith, Bob" (x (y)) <bob@example.com>, a@b"#).unwrap();
        let kinds: Vec<Kind> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds[0], Kind::Quoted);
        assert_eq!(kinds[2], Kind::Comment);
        assert_eq!(toks[2].text, "(x (y))");
        let phrase = places(&toks).unwrap();
        assert!(phrase[0] && phrase[2] && !phrase[4] && !phrase[toks.len() - 1]);
        assert!(lex("\"open").is_none() && lex("(open").is_none() && lex("a)").is_none());
        assert!(places(&lex("a <b@c").unwrap()).is_none());
    }

    #[test]
    fn decodes_display_names_only() {
        assert_eq!(decode("=?utf-8?q?J=C3=BCrgen?= =?utf-8?q?_M=C3=BCller?= <j@x>"), "Jürgen Müller <j@x>");
        assert_eq!(decode("=?utf-8?q?M=C3=BCller=2C_Hans?= <h@x>, b@y"), "\"Müller, Hans\" <h@x>, b@y");
        assert_eq!(decode("Team: =?utf-8?q?=C3=A9?= <a@b>;"), "Team: é <a@b>;");
        assert_eq!(decode("<=?utf-8?q?x?=@y>"), "<=?utf-8?q?x?=@y>");
        assert_eq!(decode("\"a <unclosed"), "\"a <unclosed");
    }

    #[test]
    fn writes_non_ascii_names_as_encoded_words() {
        let field = write("Jürgen Müller <jane@example.com>, \"Smith, Bob\" <bob@example.com>").unwrap();
        assert!(field.is_ascii());
        assert!(field.starts_with("To: =?utf-8?b?"), "{field}");
        let unfolded = field.replace("\r\n", "");
        assert!(unfolded.contains("?= <jane@example.com>, \"Smith, Bob\" <bob@example.com>"), "{field}");
        assert_eq!(read(&field), "Jürgen Müller <jane@example.com>, \"Smith, Bob\" <bob@example.com>");
        let field = write("\"Müller, Hans\" <h@x>").unwrap();
        assert_eq!(read(&field), "\"Müller, Hans\" <h@x>");
        let field = write("Hans Müller <h@x>").unwrap();
        assert!(field.starts_with("To: Hans =?utf-8?b?"), "{field}");
        assert_eq!(read(&field), "Hans Müller <h@x>");
    }

    #[test]
    fn refuses_non_ascii_addresses_and_bad_syntax() {
        assert_eq!(write("Jane <jäne@example.com>"), Err(MimeError::AddressNotAscii));
        assert_eq!(write("jäne@example.com"), Err(MimeError::AddressNotAscii));
        assert_eq!(write("Jane (Büro) <j@x>"), Err(MimeError::AddressNotAscii));
        assert_eq!(write("Jane <j@x"), Err(MimeError::AddressSyntax));
        assert_eq!(write("\"Jane <j@x>"), Err(MimeError::AddressSyntax));
        assert_eq!(write(&format!("{}@x", "a".repeat(1000))), Err(MimeError::LineTooLong));
    }

    #[test]
    fn long_lists_fold_between_addresses() {
        let list: Vec<String> = (0..12).map(|i| format!("Customer {i} <c{i}@customers.shop.example>")).collect();
        let field = write(&list.join(", ")).unwrap();
        assert!(field.split("\r\n").all(|l| l.len() <= 78), "{field}");
        assert_eq!(read(&field), list.join(", "));
    }
}
