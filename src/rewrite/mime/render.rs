//! Writing a message back: untouched bytes as they were, replaced slots re-encoded (see the module docs of
//! [`super`] for the rules), every line break CRLF, the last line too.

use std::ops::Range;

use super::header::Transfer;
use super::lines::crlf;
use super::walk::{BodySource, Source};
use super::words::MAX_LINE;
use super::{address, transfer, words, MimeError};

/// One change to the message: `range` (possibly empty, to insert) becomes `with`.
type Edit = (Range<usize>, Vec<u8>);

/// `raw` with each `Some` of `new` written in place of its slot's source.
pub(super) fn render(raw: &[u8], sources: &[Source], new: &[Option<String>]) -> Result<Vec<u8>, MimeError> {
    if new.len() != sources.len() {
        return Err(MimeError::SlotCount);
    }
    let mut edits: Vec<Edit> = Vec::new();
    for (source, text) in sources.iter().zip(new) {
        let Some(text) = text else { continue };
        match source {
            Source::Header(h) => {
                let pieces = if h.address { address::encode(text)? } else { words::encode_unstructured(text) };
                edits.push((h.whole.clone(), words::fold(&raw[h.name.clone()], &pieces)?));
            }
            Source::Body(b) => body_edits(raw, b, text, &mut edits),
        }
    }
    // Stable: insertions at one place keep the order they were made in.
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(raw.len() + edits.iter().map(|(_, w)| w.len()).sum::<usize>());
    let mut pos = 0;
    for (range, with) in edits {
        let kept = raw.get(pos..range.start).ok_or(MimeError::Overlap)?;
        out.extend_from_slice(kept);
        out.extend_from_slice(&with);
        pos = range.end;
    }
    out.extend_from_slice(raw.get(pos..).ok_or(MimeError::Overlap)?);
    let mut out = crlf(out);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Whether text can go out as it is (7bit): ASCII without NUL, line breaks only CRLF, lines at most 998 octets,
/// and no line that would read as a delimiter of one of `boundaries`.
fn identity_ok(text: &str, boundaries: &[Vec<u8>]) -> bool {
    let b = text.as_bytes();
    let breaks_ok = b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        0 => false,
        c => c.is_ascii(),
    });
    let delimiter = |l: &str| {
        let l = l.as_bytes();
        l.starts_with(b"--") && boundaries.iter().any(|b| l[2..].starts_with(b))
    };
    breaks_ok && text.split("\r\n").all(|l| l.len() <= MAX_LINE && !delimiter(l))
}

fn body_edits(raw: &[u8], b: &BodySource, text: &str, edits: &mut Vec<Edit>) {
    let ascii = text.is_ascii();
    let (mut body, to_qp) = match b.transfer {
        Transfer::QuotedPrintable => (transfer::qp_encode(text.as_bytes()), false),
        Transfer::Base64 => (transfer::b64_encode(text.as_bytes()), false),
        Transfer::Identity if identity_ok(text, &b.boundaries) => (text.as_bytes().to_vec(), false),
        Transfer::Identity => (transfer::qp_encode(text.as_bytes()), true),
    };
    if b.add_break && !body.is_empty() {
        body.extend_from_slice(b"\r\n");
    }
    edits.push((b.body.clone(), body));
    let at = b.head_end..b.head_end;
    if let Some(fields) = &b.no_mime {
        if to_qp {
            edits.extend(fields.iter().map(|f| (f.clone(), Vec::new())));
            let head = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                        Content-Transfer-Encoding: quoted-printable\r\n";
            edits.push((at, head.as_bytes().to_vec()));
        }
        return;
    }
    if !ascii {
        match &b.content_type {
            Some((_, Some(charset))) => edits.push((charset.clone(), b"utf-8".to_vec())),
            Some((value, None)) => {
                let v = &raw[value.clone()];
                let semi = v.iter().rev().find(|c| !c.is_ascii_whitespace()) == Some(&b';');
                let add = if semi { "\r\n charset=utf-8" } else { ";\r\n charset=utf-8" };
                edits.push((value.end..value.end, add.as_bytes().to_vec()));
            }
            None => edits.push((at.clone(), b"Content-Type: text/plain; charset=utf-8\r\n".to_vec())),
        }
    }
    if to_qp {
        match &b.transfer_value {
            Some(value) => edits.push((value.clone(), b" quoted-printable".to_vec())),
            None => edits.push((at, b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_needs_ascii_crlf_and_short_lines() {
        let ok = |t: &str| identity_ok(t, &[b"b1".to_vec()]);
        assert!(ok("a\r\nb\r\n") && ok("") && ok("-- \r\nsignature") && ok("--b2"));
        assert!(!ok("é") && !ok("a\nb") && !ok("a\rb") && !ok("a\0") && !ok("x\r\n--b1--"));
        assert!(ok(&"x".repeat(998)) && !ok(&"x".repeat(999)));
    }
}
