//! A multipart part's header block: parsed strictly (what it is called, what it holds), and read by detection
//! in every form an application may decode a header value to.
//!
//! Detection reads each header line as written and edits it in place. A value can also hide behind the
//! encodings applications undo in part headers: quoted-pair backslashes (`41\11…`), percent escapes
//! (`filename*=UTF-8''4111%201111…`, `%34111…`) and RFC 2047 encoded words (`=?UTF-8?B?NDExMTEx…?=`). Those
//! cannot be rewritten in place, so a line whose decoded forms show a value that the line as written does not
//! is refused ([`RewriteError::Unsupported`]).

use std::ops::Range;

use base64::Engine as _;

use super::{malformed, RewriteError};
use crate::detect::{self, Match};
use crate::domain::Class;

/// What a part's headers say, and where its header lines are (relative to the block).
pub struct Head {
    /// The `name` of its `Content-Disposition` (required for `form-data` parts).
    pub name: Option<String>,
    /// The `Content-Type` value, as written.
    pub content_type: Option<String>,
    pub lines: Vec<Range<usize>>,
}

/// Which rules a part's headers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A `multipart/form-data` body (RFC 7578): every part has one `Content-Disposition: form-data` with a name.
    FormData,
    /// A multipart body inside a part (`multipart/mixed`…, RFC 2046): a disposition, any, is optional.
    Nested,
}

/// `; param=value` pairs, the value a token or a quoted string; `None` unless they parse unambiguously: no spaces
/// around `=`, and no quote after an odd run of backslashes (parsers with and without `\` escapes would end the
/// value at different places).
pub fn params(mut rest: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    loop {
        // `;` before each parameter; spaces around it, and one final `;`, are allowed.
        rest = match rest.trim_start_matches([' ', '\t']) {
            "" => return Some(out),
            more => more.strip_prefix(';')?.trim_start_matches([' ', '\t']),
        };
        if rest.is_empty() {
            return Some(out);
        }
        let (param, after) = rest.split_once('=')?;
        if param.is_empty() || param.contains([' ', '\t', '"', ';']) {
            return None;
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                let escaped = quoted[..end].bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1;
                (!escaped).then_some((&quoted[..end], &quoted[end + 1..]))?
            }
            None => {
                let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
                let token = &after[..end];
                (!token.is_empty() && !token.contains(['"', '\\'])).then_some((token, &after[end..]))?
            }
        };
        out.push((param, value));
        rest = after;
    }
}

/// RFC 2046 `boundary`: 1 to 70 of `bchars`, not ending in a space.
pub fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// The one `boundary` parameter of a content type's parameters (after its media type), if valid.
pub fn boundary_param(rest: &str) -> Option<String> {
    let params = params(rest)?;
    let mut found = params.iter().filter(|(p, _)| p.eq_ignore_ascii_case("boundary"));
    match (found.next(), found.next()) {
        (Some(&(_, b)), None) if valid_boundary(b) => Some(b.to_owned()),
        _ => None,
    }
}

/// Parses a part's header block (CRLF-separated lines, no final CRLF).
pub fn parse(block: &[u8], flavor: Flavor) -> Result<Head, RewriteError> {
    let block = std::str::from_utf8(block).map_err(|_| malformed("part headers are not UTF-8"))?;
    let (mut disposition, mut content_type, mut lines) = (None, None, Vec::new());
    let mut at = 0;
    for line in block.split("\r\n").filter(|_| !block.is_empty()) {
        lines.push(at..at + line.len());
        at += line.len() + 2;
        let (field, value) = line.split_once(':').ok_or(malformed("part header line without a colon"))?;
        let bad_name = field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic());
        if bad_name || line.contains(['\r', '\n']) {
            return Err(malformed("invalid part header line"));
        }
        let value = value.trim_matches([' ', '\t']);
        if field.eq_ignore_ascii_case("content-disposition") {
            if disposition.replace(disposition_name(value, flavor)?).is_some() {
                return Err(malformed("part with two Content-Disposition headers"));
            }
        } else if field.eq_ignore_ascii_case("content-type") {
            if content_type.replace(value.to_owned()).is_some() {
                return Err(malformed("part with two Content-Type headers"));
            }
        } else if field.eq_ignore_ascii_case("content-transfer-encoding")
            && !["7bit", "8bit", "binary"].iter().any(|e| value.eq_ignore_ascii_case(e))
        {
            return Err(RewriteError::Unsupported("part with a content transfer encoding"));
        }
    }
    let name = match (disposition, flavor) {
        (None, Flavor::FormData) => return Err(malformed("part without Content-Disposition")),
        (None, Flavor::Nested) => None,
        (Some(name), _) => name,
    };
    Ok(Head { name, content_type, lines })
}

/// The `name` of a disposition: for `form-data`, exactly one, without backslashes; never a `name*`.
fn disposition_name(value: &str, flavor: Flavor) -> Result<Option<String>, RewriteError> {
    let kind = value.split(';').next().unwrap_or_default();
    let form_data = kind.trim().eq_ignore_ascii_case("form-data");
    if flavor == Flavor::FormData && !form_data {
        return Err(malformed("part disposition is not form-data"));
    }
    let params = params(&value[kind.len()..]).ok_or(malformed("unparseable part disposition"))?;
    if params.iter().any(|(p, _)| p.eq_ignore_ascii_case("name*")) {
        return Err(malformed("extended part name (name*)"));
    }
    let mut names = params.iter().filter(|(p, _)| p.eq_ignore_ascii_case("name"));
    match (names.next(), names.next(), flavor) {
        (Some(&(_, name)), None, _) if !name.contains('\\') => Ok(Some(name.to_owned())),
        (None, _, Flavor::Nested) => Ok(None),
        (None, _, Flavor::FormData) => Err(malformed("part without a name")),
        _ => Err(malformed("ambiguous part name")),
    }
}

/// The detection matches in one header line, as written; refuses the line when a decoded form of it shows a
/// value the line as written does not.
pub fn scan_line(line: &str, detect: &[Class]) -> Result<Vec<Match>, RewriteError> {
    let matches = detect::find_tokens(line, detect);
    let seen: Vec<&str> = matches.iter().filter_map(|m| line.get(m.start..m.end)).collect();
    for decoded in decoded_forms(line) {
        for m in detect::find_tokens(&decoded, detect) {
            if !seen.contains(&decoded.get(m.start..m.end).unwrap_or_default()) {
                return Err(RewriteError::Unsupported("a value in an encoded part header"));
            }
        }
    }
    Ok(matches)
}

/// The forms of a header line that differ from it once an application undoes an encoding.
fn decoded_forms(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    if line.contains('\\') {
        out.push(unquote(line));
    }
    if line.contains('%') {
        out.push(percent_encoding::percent_decode_str(line).decode_utf8_lossy().into_owned());
    }
    if line.contains("=?") {
        out.push(encoded_words(line));
    }
    out
}

/// `line` with each quoted-pair backslash removed (`\x` is `x`).
fn unquote(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `line` with its RFC 2047 encoded words (`=?charset?B|Q?text?=`) decoded as UTF-8 (lossy); anything that is
/// not one is left as written.
fn encoded_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("=?") {
        out.push_str(rest.get(..at).unwrap_or_default());
        let word = rest.get(at + 2..).unwrap_or_default();
        let mut fields = word.splitn(3, '?');
        let (_charset, encoding, tail) = (fields.next(), fields.next(), fields.next().unwrap_or_default());
        let decoded = tail.find("?=").and_then(|end| {
            let text = tail.get(..end)?;
            let bytes = match encoding? {
                "B" | "b" => {
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('=')).ok()?
                }
                "Q" | "q" => {
                    let text = text.replace('_', " ");
                    let text = text.replace('=', "%");
                    percent_encoding::percent_decode_str(&text).collect()
                }
                _ => return None,
            };
            Some((String::from_utf8_lossy(&bytes).into_owned(), word.len() - (tail.len() - end - 2)))
        });
        match decoded {
            Some((text, used)) => {
                out.push_str(&text);
                rest = word.get(used..).unwrap_or_default();
            }
            None => {
                out.push_str("=?");
                rest = word;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_forms_of_header_lines() {
        assert_eq!(unquote(r#"filename="41\11\"x""#), r#"filename="4111"x""#);
        assert_eq!(encoded_words("a =?UTF-8?B?NDExMTExMTExMTExMTExMQ==?= b"), "a 4111111111111111 b");
        assert_eq!(encoded_words("=?utf-8?q?4111_1111=20?= =?x?Z?y?= =?"), "4111 1111  =?x?Z?y?= =?");
        let pan = [Class::Pan];
        let ok = "Content-Disposition: form-data; name=\"a\"; filename=\"C:\\4111111111111111.txt\"";
        assert_eq!(scan_line(ok, &pan).unwrap().len(), 1, "the decoded form shows the same value");
        for hidden in [
            "Content-Disposition: form-data; name=\"a\"; filename=\"41\\11111111111111\"",
            "Content-Disposition: form-data; name=a; filename*=UTF-8''4111%201111%201111%201111",
            "Content-Disposition: form-data; name=a; filename=\"%34111111111111111\"",
            "Content-Disposition: form-data; name=a; filename=\"=?UTF-8?B?NDExMTExMTExMTExMTExMQ==?=\"",
            "X-Note: =?utf-8?Q?4111=201111=201111=201111?=",
        ] {
            assert!(matches!(scan_line(hidden, &pan), Err(RewriteError::Unsupported(_))), "{hidden}");
        }
        assert!(scan_line("Content-Type: text/plain; charset=\"utf-8\"", &pan).unwrap().is_empty());
    }
}
