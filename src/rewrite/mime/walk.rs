//! Reading a message: its top-level headers that may hold tokens, then every text part, walked through nested
//! multiparts; each becomes a [`Slot`] with a [`Source`] saying which bytes it came from and how to write it back.

use std::ops::Range;

use super::header::{self, Head, Transfer};
use super::lines::{lines, without_final_break};
use super::{address, charset, transfer, words};
use super::{Limits, MimeError, Place, Slot};

/// Where a slot's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    Header(HeaderSource),
    Body(BodySource),
}

/// A top-level header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderSource {
    /// The whole field, final line break included.
    pub whole: Range<usize>,
    pub name: Range<usize>,
    pub address: bool,
}

/// A text part's body and the header fields that describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BodySource {
    /// The encoded body (for the top-level body, without the message's final line break).
    pub body: Range<usize>,
    pub transfer: Transfer,
    /// Where new header fields go (the start of the blank line).
    pub head_end: usize,
    /// The `Content-Type` value and its `charset` parameter's value, when the part has them.
    pub content_type: Option<(Range<usize>, Option<Range<usize>>)>,
    /// The `Content-Transfer-Encoding` value, when the part has one.
    pub transfer_value: Option<Range<usize>>,
    /// A message without MIME-Version: its Content-Type/-Transfer-Encoding fields (ignored when read, dropped
    /// when the body must be re-encoded, as MIME fields are added then).
    pub no_mime: Option<Vec<Range<usize>>>,
    /// The message did not end in a line break: one is added after a new top-level body.
    pub add_break: bool,
    /// The boundaries of the multiparts around the part: a new text may not hold their delimiter lines.
    pub boundaries: Vec<Vec<u8>>,
}

struct Walk<'a> {
    raw: &'a [u8],
    limits: &'a Limits,
    parts: usize,
    /// The boundaries of the multiparts being walked, outermost first.
    boundaries: Vec<Vec<u8>>,
    slots: Vec<Slot>,
    sources: Vec<Source>,
}

/// The slots of `raw` and their sources, in order: top-level header fields as they appear, then text parts.
pub(super) fn walk(raw: &[u8], limits: &Limits) -> Result<(Vec<Slot>, Vec<Source>), MimeError> {
    if raw.is_empty() {
        return Err(MimeError::Empty);
    }
    let head = header::parse_head(raw, 0..raw.len())?;
    let mut w = Walk { raw, limits, parts: 0, boundaries: Vec::new(), slots: Vec::new(), sources: Vec::new() };
    for f in &head.fields {
        let name = &raw[f.name.clone()];
        let place = ["To", "Cc", "Bcc", "Reply-To"]
            .into_iter()
            .find(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            .map(Place::Address)
            .or_else(|| name.eq_ignore_ascii_case(b"Subject").then_some(Place::Subject));
        let Some(place) = place else { continue };
        let value = String::from_utf8(header::unfold(raw, f.value.clone())).map_err(|_| MimeError::HeaderNotUtf8)?;
        let (text, address) = match place {
            Place::Address(_) => (address::decode(&value), true),
            _ => (words::decode_unstructured(&value), false),
        };
        w.slots.push(Slot { place, text });
        w.sources.push(Source::Header(HeaderSource { whole: f.whole.clone(), name: f.name.clone(), address }));
    }
    if head.get(raw, "MIME-Version").is_some() {
        w.entity(&head, raw.len(), 0, false, true)?;
    } else if let Some(start) = head.body {
        // Not MIME: the body is text/plain in US-ASCII (read as UTF-8) whatever other fields say.
        let (body, had_break) = without_final_break(raw, start..raw.len());
        let text = body_text(raw, body.clone(), Transfer::Identity, charset::Charset::Utf8)?;
        let drop = ["Content-Type", "Content-Transfer-Encoding"];
        let no_mime = head
            .fields
            .iter()
            .filter(|f| drop.iter().any(|d| raw[f.name.clone()].eq_ignore_ascii_case(d.as_bytes())))
            .map(|f| f.whole.clone())
            .collect();
        w.push_body(text, false, body, &head, Transfer::Identity, None, Some(no_mime), !had_break);
    }
    Ok((w.slots, w.sources))
}

/// A body's text: transfer-decoded, then charset-decoded; an identity-encoded body reads bare LF as CRLF.
fn body_text(raw: &[u8], body: Range<usize>, t: Transfer, cs: charset::Charset) -> Result<String, MimeError> {
    let bytes = &raw[body];
    let decoded = match t {
        Transfer::Identity => super::lines::crlf(bytes.to_vec()),
        Transfer::QuotedPrintable => transfer::qp_decode(bytes)?,
        Transfer::Base64 => transfer::b64_decode(bytes)?,
    };
    charset::decode(cs, &decoded).ok_or(MimeError::BadCharset)
}

impl Walk<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push_body(
        &mut self,
        text: String,
        html: bool,
        body: Range<usize>,
        head: &Head,
        transfer: Transfer,
        content_type: Option<(Range<usize>, Option<Range<usize>>)>,
        no_mime: Option<Vec<Range<usize>>>,
        add_break: bool,
    ) {
        let transfer_value = head.get(self.raw, "Content-Transfer-Encoding").map(|f| f.value.clone());
        self.slots.push(Slot { place: Place::Body { html }, text });
        self.sources.push(Source::Body(BodySource {
            body,
            transfer,
            head_end: head.end,
            content_type,
            transfer_value,
            no_mime,
            add_break,
            boundaries: self.boundaries.clone(),
        }));
    }

    /// One MIME entity whose header section is `head` and whose content ends at `end`: a multipart is walked, a
    /// text/plain or text/html part read, anything else left alone.
    fn entity(&mut self, head: &Head, end: usize, depth: usize, digest: bool, top: bool) -> Result<(), MimeError> {
        let raw = self.raw;
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            return Err(MimeError::TooManyParts);
        }
        let Some(start) = head.body else { return Ok(()) };
        let start = start.min(end);
        let ct_field = head.get(raw, "Content-Type");
        let ct = match ct_field {
            Some(f) => header::structured(raw, f.value.clone(), true),
            None => Some(header::Structured {
                kind: if digest { "message/rfc822" } else { "text/plain" }.to_string(),
                params: Vec::new(),
            }),
        };
        let Some(ct) = ct else { return Ok(()) };
        if ct.kind.starts_with("multipart/") {
            if depth + 1 > self.limits.max_depth {
                return Err(MimeError::TooDeep);
            }
            let boundary = ct.param("boundary").map_or("", |p| p.value.as_str());
            if boundary.is_empty() {
                return Err(MimeError::NoBoundary);
            }
            self.boundaries.push(boundary.as_bytes().to_vec());
            for part in split(raw, start..end, boundary.as_bytes())? {
                let part_head = header::parse_head(raw, part.clone())?;
                self.entity(&part_head, part.end, depth + 1, ct.kind == "multipart/digest", false)?;
            }
            self.boundaries.pop();
            return Ok(());
        }
        let html = match ct.kind.as_str() {
            "text/plain" => false,
            "text/html" => true,
            _ => return Ok(()),
        };
        let attachment = head
            .get(raw, "Content-Disposition")
            .and_then(|f| header::structured(raw, f.value.clone(), false))
            .is_some_and(|d| d.kind == "attachment");
        let transfer = match head.get(raw, "Content-Transfer-Encoding") {
            Some(f) => header::transfer(raw, f.value.clone()),
            None => Some(Transfer::Identity),
        };
        let cs = charset::lookup(ct.param("charset").map_or("us-ascii", |p| p.value.as_str()));
        let (Some(transfer), Some(cs), false) = (transfer, cs, attachment) else { return Ok(()) };
        let (body, had_break) = if top { without_final_break(raw, start..end) } else { (start..end, true) };
        let text = body_text(raw, body.clone(), transfer, cs)?;
        let content_type = ct_field.map(|f| (f.value.clone(), ct.param("charset").map(|p| p.range.clone())));
        self.push_body(text, html, body, head, transfer, content_type, None, !had_break);
        Ok(())
    }
}

/// Whether a line is a delimiter of `boundary`: `Some(true)` for the close delimiter `--boundary--`, `Some(false)`
/// for `--boundary`; white space may follow either.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let end = rest.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    match &rest[..end] {
        b"" => Some(false),
        b"--" => Some(true),
        _ => None,
    }
}

/// The parts of a multipart body in `range` (preamble and epilogue left out). The line break before a delimiter
/// belongs to the delimiter, not to the part. No close delimiter is an error.
fn split(raw: &[u8], range: Range<usize>, boundary: &[u8]) -> Result<Vec<Range<usize>>, MimeError> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    let mut prev_end = range.start;
    for line in lines(raw, range) {
        if let Some(close) = delimiter(&raw[line.start..line.end], boundary) {
            if let Some(s) = open {
                parts.push(s..prev_end.max(s));
            }
            if close {
                return Ok(parts);
            }
            open = Some(line.next);
        }
        prev_end = line.end;
    }
    Err(MimeError::BoundaryNeverCloses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(delimiter(b"--b1", b"b1"), Some(false));
        assert_eq!(delimiter(b"--b1-- \t", b"b1"), Some(true));
        assert_eq!(delimiter(b"--b1x", b"b1"), None);
        assert_eq!(delimiter(b"-b1", b"b1"), None);
    }

    #[test]
    fn splits_parts_without_the_break_before_a_delimiter() {
        let raw = b"pre\r\n--b\r\nA: 1\r\n\r\none\r\n--b\r\n--b\n\ntwo\n--b--\r\nepi";
        let parts = split(raw, 0..raw.len(), b"b").unwrap();
        let texts: Vec<&[u8]> = parts.iter().map(|r| &raw[r.clone()]).collect();
        assert_eq!(texts, vec![&b"A: 1\r\n\r\none"[..], b"", b"\ntwo"]);
        assert_eq!(split(b"--b\r\nx\r\n--b\r\n", 0..18, b"b"), Err(MimeError::BoundaryNeverCloses));
        assert_eq!(split(b"no parts", 0..8, b"b"), Err(MimeError::BoundaryNeverCloses));
    }
}
