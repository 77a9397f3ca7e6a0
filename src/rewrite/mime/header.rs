//! A header section (RFC 5322 §2.2): its fields with exact byte ranges, unfolding, and the MIME fields' parameters
//! (`Content-Type`, `Content-Transfer-Encoding`, `Content-Disposition`).

use std::ops::Range;

use super::lines::lines;
use super::MimeError;

/// One header field. Offsets are into the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    /// The field name (without the colon and any white space before it).
    pub name: Range<usize>,
    /// Everything after the colon up to the field's final line break (folds included).
    pub value: Range<usize>,
    /// The whole field, its final line break included.
    pub whole: Range<usize>,
}

/// A header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub fields: Vec<Field>,
    /// Where a new field may be added: the start of the blank line, or the end of the section when it has none.
    pub end: usize,
    /// Where the body starts (after the blank line); `None` for a header-only entity.
    pub body: Option<usize>,
}

impl Head {
    /// The first field called `name` (ASCII case-insensitive).
    pub fn get<'a>(&'a self, raw: &[u8], name: &str) -> Option<&'a Field> {
        self.fields.iter().find(|f| raw[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Reads the header section at the start of `raw[range]`. A line that is neither a field, a fold, nor the blank
/// line is an error: it would be body text with no blank line before it.
pub(super) fn parse_head(raw: &[u8], range: Range<usize>) -> Result<Head, MimeError> {
    let mut fields: Vec<Field> = Vec::new();
    for line in lines(raw, range.clone()) {
        let content = &raw[line.start..line.end];
        if content.is_empty() {
            return Ok(Head { fields, end: line.start, body: Some(line.next) });
        }
        if is_wsp(content[0]) {
            let field = fields.last_mut().ok_or(MimeError::FoldFirst)?;
            field.value.end = line.end;
            field.whole.end = line.next;
            continue;
        }
        let colon = content.iter().position(|&b| b == b':').ok_or(MimeError::HeaderNoEnd)?;
        let mut name_end = colon;
        while name_end > 0 && is_wsp(content[name_end - 1]) {
            name_end -= 1;
        }
        let name = &content[..name_end];
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
            return Err(MimeError::HeaderNoEnd);
        }
        fields.push(Field {
            name: line.start..line.start + name_end,
            value: line.start + colon + 1..line.end,
            whole: line.start..line.next,
        });
    }
    Ok(Head { fields, end: range.end, body: None })
}

/// A field's value unfolded (line breaks inside it removed) and trimmed of white space at both ends.
pub(super) fn unfold(raw: &[u8], value: Range<usize>) -> Vec<u8> {
    let out: Vec<u8> = raw[value].iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let start = out.iter().position(|&b| !is_wsp(b)).unwrap_or(out.len());
    let end = out.iter().rposition(|&b| !is_wsp(b)).map_or(start, |i| i + 1);
    out[start..end].to_vec()
}

/// A parameter of a structured MIME field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Param {
    /// Lower-cased.
    pub name: String,
    /// Unquoted.
    pub value: String,
    /// Where the value (quotes included) is in the message.
    pub range: Range<usize>,
}

/// `type/subtype` (or a disposition type) lower-cased, and the parameters after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Structured {
    pub kind: String,
    pub params: Vec<Param>,
}

impl Structured {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// A cursor over a structured field value that skips folding white space and comments.
struct Cursor<'a> {
    raw: &'a [u8],
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.raw[self.pos])
    }

    fn skip_cfws(&mut self) {
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'(' => depth += 1,
                b')' if depth > 0 => depth -= 1,
                b'\\' if depth > 0 => self.pos += 1,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if depth > 0 => {}
                _ => return,
            }
            self.pos += 1;
        }
    }

    /// An RFC 2045 token (may be empty).
    fn token(&mut self) -> &str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b <= b' ' || b >= 0x7f || b"()<>@,;:\\\"/[]?=".contains(&b) {
                break;
            }
            self.pos += 1;
        }
        std::str::from_utf8(&self.raw[start..self.pos]).unwrap_or("")
    }

    /// A token or a quoted string: its unquoted text and its range.
    fn value(&mut self) -> Option<(String, Range<usize>)> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            let t = self.token().to_string();
            return (!t.is_empty()).then_some((t, start..self.pos));
        }
        self.pos += 1;
        let mut text = Vec::new();
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    self.pos += 1;
                    text.push(self.peek()?);
                }
                b'\r' | b'\n' => {}
                b => text.push(b),
            }
            self.pos += 1;
        }
        self.pos += 1;
        Some((String::from_utf8_lossy(&text).into_owned(), start..self.pos))
    }
}

/// Parses `Content-Type` (`type/subtype; params`) or, with `slash` false, `Content-Disposition` (`type; params`).
/// `None` when the type does not parse; parameters stop at the first one that does not.
pub(super) fn structured(raw: &[u8], value: Range<usize>, slash: bool) -> Option<Structured> {
    let mut c = Cursor { raw, pos: value.start, end: value.end };
    c.skip_cfws();
    let mut kind = c.token().to_ascii_lowercase();
    if kind.is_empty() {
        return None;
    }
    if slash {
        c.skip_cfws();
        if c.peek() != Some(b'/') {
            return None;
        }
        c.pos += 1;
        c.skip_cfws();
        let sub = c.token().to_ascii_lowercase();
        if sub.is_empty() {
            return None;
        }
        kind = format!("{kind}/{sub}");
    }
    let mut params = Vec::new();
    loop {
        c.skip_cfws();
        if c.peek() != Some(b';') {
            break;
        }
        c.pos += 1;
        c.skip_cfws();
        let name = c.token().to_ascii_lowercase();
        c.skip_cfws();
        if name.is_empty() || c.peek() != Some(b'=') {
            break;
        }
        c.pos += 1;
        c.skip_cfws();
        let Some((value, range)) = c.value() else { break };
        params.push(Param { name, value, range });
    }
    Some(Structured { kind, params })
}

/// A part's Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transfer {
    /// 7bit, 8bit, binary, or none given: the bytes are the text.
    Identity,
    QuotedPrintable,
    Base64,
}

/// The transfer encoding a `Content-Transfer-Encoding` value names; `None` for one this module cannot read.
pub(super) fn transfer(raw: &[u8], value: Range<usize>) -> Option<Transfer> {
    let v = unfold(raw, value).to_ascii_lowercase();
    match v.as_slice() {
        b"7bit" | b"8bit" | b"binary" => Some(Transfer::Identity),
        b"quoted-printable" => Some(Transfer::QuotedPrintable),
        b"base64" => Some(Transfer::Base64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_folds_and_blank_line() {
        let raw = b"To: a@b\r\nSubject: one\r\n two\r\n\r\nbody";
        let h = parse_head(raw, 0..raw.len()).unwrap();
        assert_eq!(h.fields.len(), 2);
        assert_eq!(&raw[h.fields[1].name.clone()], b"Subject");
        assert_eq!(unfold(raw, h.fields[1].value.clone()), b"one two");
        assert_eq!(&raw[h.fields[1].whole.clone()], b"Subject: one\r\n two\r\n");
        assert_eq!(h.end, 29);
        assert_eq!(h.body, Some(31));
        assert!(h.get(raw, "SUBJECT").is_some());
    }

    #[test]
    fn header_only_and_errors() {
        let raw = b"To: a@b\nCc: c@d";
        let h = parse_head(raw, 0..raw.len()).unwrap();
        assert_eq!((h.fields.len(), h.body, h.end), (2, None, raw.len()));
        assert_eq!(parse_head(b"To: a\r\nHello world\r\n", 0..20), Err(MimeError::HeaderNoEnd));
        assert_eq!(parse_head(b" folded\r\n", 0..9), Err(MimeError::FoldFirst));
        assert_eq!(parse_head(b": x\r\n", 0..5), Err(MimeError::HeaderNoEnd));
    }

    #[test]
    fn content_type_parameters() {
        let raw = b"Text/Plain (c); format=flowed;\r\n charset=\"ISO-8859-1\" ; x=\"a\\\"b\"";
        let ct = structured(raw, 0..raw.len(), true).unwrap();
        assert_eq!(ct.kind, "text/plain");
        let cs = ct.param("charset").unwrap();
        assert_eq!(cs.value, "ISO-8859-1");
        assert_eq!(&raw[cs.range.clone()], b"\"ISO-8859-1\"");
        assert_eq!(ct.param("x").unwrap().value, "a\"b");
        assert!(structured(b"text", 0..4, true).is_none());
        assert_eq!(structured(b"attachment; filename=a.txt", 0..26, false).unwrap().kind, "attachment");
        assert_eq!(transfer(b" Quoted-Printable ", 0..18), Some(Transfer::QuotedPrintable));
        assert_eq!(transfer(b"x-uuencode", 0..10), None);
    }
}
