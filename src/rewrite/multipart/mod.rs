//! `multipart/form-data` bodies (RFC 7578 over RFC 2046): find parts by name or by detection, then rewrite.
//!
//! Parsing is strict so that veil and the application cannot disagree about where a part starts or what it is
//! called: lines end in CRLF only, a `--boundary` at the start of a line must be followed by `--` or by optional
//! spaces/tabs and CRLF, the preamble may not hold the boundary and the epilogue may not either, header lines may
//! not be folded, every part has exactly one `Content-Disposition: form-data` with one unambiguous `name`, and a
//! `Content-Transfer-Encoding` other than 7bit/8bit/binary is refused ([`head`]).
//!
//! Detection reads every part, in order, and in each part every place an application reads:
//! - its **header lines** (the `name`, the `filename`, any other header), as written and as an application may
//!   decode them ([`head::scan_line`]); a match is edited in place in the line;
//! - its **body**, unless a selector took it, as its content type says ([`content`]): JSON, form, XML, a
//!   nested multipart body (`multipart/mixed`…, read the same way), binary types by their text runs, anything
//!   else as UTF-8 text. A part that is neither UTF-8 nor of a binary type is malformed: never skipped.
//!
//! The preamble and the epilogue are not read: MIME says to ignore them, and applications do.
//!
//! [`MultipartDoc::apply`] writes untouched parts (headers and body) and the preamble/epilogue byte for byte;
//! only changed header lines and bodies are new. `Remove` of any value found in a part drops the whole part.

mod content;
mod head;
#[cfg(test)]
mod tests;

use std::ops::Range;

use super::{Edit, Found, Origin, RewriteError};
use crate::domain::Class;
use content::Inner;
use head::{valid_boundary, Flavor, Head};

/// More parts than this is refused (no real form has them; bounds the work done per body).
const MAX_PARTS: usize = 1000;

/// The boundary of a `multipart/form-data` content type (quoted or not); `None` for another type, a missing,
/// repeated or invalid boundary, or parameters that do not parse.
pub fn boundary(content_type: &str) -> Option<String> {
    let kind = content_type.split(';').next().unwrap_or_default();
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    head::boundary_param(&content_type[kind.len()..])
}

struct Part {
    /// Where its `--boundary` line starts.
    start: usize,
    /// Its header block: CRLF-separated lines, without the CRLF that ends the last one.
    head: Range<usize>,
    body: Range<usize>,
    head_info: Head,
}

/// A found value: a selected part's body, a detection match in a header line (its byte range in the body), or
/// the next detection match in a part's body (as its [`Inner`] document lists them).
#[derive(Debug, Clone)]
enum Target {
    Field(usize),
    Header { part: usize, range: Range<usize> },
    Body(usize),
}

/// A parsed multipart body.
pub struct MultipartDoc {
    src: Vec<u8>,
    /// `--boundary`.
    delim: Vec<u8>,
    /// Where the first `--boundary` starts (everything before is the preamble).
    first: usize,
    /// Where the closing `--boundary--` starts.
    close: usize,
    parts: Vec<Part>,
    /// How many multipart bodies this one is inside.
    depth: usize,
    /// What the last [`MultipartDoc::find`] returned, in order.
    targets: Vec<Target>,
    /// The part bodies detection read in the last [`MultipartDoc::find`], by part.
    inner: Vec<Option<Inner>>,
}

/// Never the body's content: it holds the values veil is there to protect.
impl std::fmt::Debug for MultipartDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartDoc").field("bytes", &self.src.len()).finish_non_exhaustive()
    }
}

fn malformed(why: &'static str) -> RewriteError {
    RewriteError::Malformed(why)
}

fn find_at(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// `bytes` after its transport padding (spaces and tabs), if a CRLF follows; `tail` also takes the end of input.
fn line_end(bytes: &[u8], tail: bool) -> Option<&[u8]> {
    let padding = bytes.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    let rest = &bytes[padding..];
    rest.strip_prefix(b"\r\n").or_else(|| (tail && rest.is_empty()).then_some(rest))
}

impl MultipartDoc {
    /// Parses a `multipart/form-data` body with this boundary.
    pub fn parse(body: &[u8], boundary: &str) -> Result<MultipartDoc, RewriteError> {
        MultipartDoc::parse_in(body, boundary, Flavor::FormData, 0)
    }

    /// Parses a multipart body of `flavor`, `depth` levels inside the top-level one.
    fn parse_in(body: &[u8], boundary: &str, flavor: Flavor, depth: usize) -> Result<MultipartDoc, RewriteError> {
        if !valid_boundary(boundary) {
            return Err(malformed("invalid multipart boundary"));
        }
        let delim = [b"--", boundary.as_bytes()].concat();
        let line_delim = [b"\r\n", &delim[..]].concat();
        let first = find_at(body, &delim, 0).ok_or(malformed("missing first multipart boundary"))?;
        if first != 0 && !body[..first].ends_with(b"\r\n") {
            return Err(malformed("multipart boundary inside a line"));
        }
        let (mut parts, mut start) = (Vec::new(), first);
        let close = loop {
            let rest = &body[start + delim.len()..];
            if rest.starts_with(b"--") {
                break start;
            }
            let headers_on = line_end(rest, false).ok_or(malformed("multipart boundary line does not end in CRLF"))?;
            let head = body.len() - headers_on.len();
            if parts.len() == MAX_PARTS {
                return Err(malformed("more than 1000 multipart parts"));
            }
            let end = find_at(body, &line_delim, head).ok_or(malformed("missing closing multipart boundary"))?;
            let content = &body[head..end];
            let blank = if content.starts_with(b"\r\n") { Some(0) } else { find_at(content, b"\r\n\r\n", 0) };
            let blank = blank.ok_or(malformed("part header block without blank line"))?;
            let head_info = head::parse(&content[..blank], flavor)?;
            let body_start = head + blank + if blank == 0 { 2 } else { 4 };
            parts.push(Part { start, head: head..head + blank, body: body_start..end, head_info });
            start = end + 2;
        };
        let tail = &body[close + delim.len() + 2..];
        if line_end(tail, true).is_none() {
            return Err(malformed("closing multipart boundary followed by unexpected bytes"));
        }
        if find_at(tail, &delim, 0).is_some() {
            return Err(malformed("multipart boundary in the epilogue"));
        }
        let inner = parts.iter().map(|_| None).collect();
        Ok(MultipartDoc { src: body.to_vec(), delim, first, close, parts, depth, targets: Vec::new(), inner })
    }

    /// Lists the values to decide about: each selector's parts (exact `name`), in order of selector then body
    /// (a part is reported once, for its first selector; a selected body that is not UTF-8 is an error), then with
    /// `detect` non-empty the matches in every part: its header lines, then its body unless a selector took it.
    pub fn find(&mut self, fields: &[&str], detect: &[Class]) -> Result<Vec<Found>, RewriteError> {
        self.targets.clear();
        let mut found = Vec::new();
        let mut taken = vec![false; self.parts.len()];
        for (i, field) in fields.iter().enumerate() {
            for (p, part) in self.parts.iter().enumerate() {
                if !taken[p] && part.head_info.name.as_deref() == Some(*field) {
                    taken[p] = true;
                    let value = std::str::from_utf8(&self.src[part.body.clone()]);
                    let value = value.map_err(|_| malformed("selected part is not text"))?;
                    self.targets.push(Target::Field(p));
                    found.push(Found { origin: Origin::Field(i), value: value.to_owned() });
                }
            }
        }
        if detect.is_empty() {
            return Ok(found);
        }
        // `_charset_` names the charset of the form's text parts (RFC 7578 §4.6): one veil does not read is refused.
        let charset = self.parts.iter().find(|p| p.head_info.name.as_deref() == Some("_charset_"));
        if charset.is_some_and(|p| !std::str::from_utf8(&self.src[p.body.clone()]).is_ok_and(content::utf8_charset)) {
            return Err(RewriteError::Unsupported("a multipart form in a charset other than UTF-8"));
        }
        for (p, part) in self.parts.iter().enumerate() {
            let block = std::str::from_utf8(&self.src[part.head.clone()]).map_err(|_| malformed("part headers"))?;
            for line in &part.head_info.lines {
                let text = block.get(line.clone()).unwrap_or_default();
                for m in head::scan_line(text, detect)? {
                    let Some(value) = text.get(m.start..m.end) else { continue };
                    let at = part.head.start + line.start;
                    self.targets.push(Target::Header { part: p, range: at + m.start..at + m.end });
                    found.push(Found { origin: Origin::Detected(m.class), value: value.to_owned() });
                }
            }
            if taken[p] {
                continue;
            }
            let mut inner =
                Inner::read(part.head_info.content_type.as_deref(), &self.src[part.body.clone()], self.depth)?;
            let in_body = inner.find(detect)?;
            self.targets.extend(in_body.iter().map(|_| Target::Body(p)));
            found.extend(in_body);
            if let Some(slot) = self.inner.get_mut(p) {
                *slot = Some(inner);
            }
        }
        Ok(found)
    }

    /// Writes the body with one edit per value the last `find` returned ([`RewriteError::EditCount`] if the counts
    /// differ). `Remove` drops the whole part, also for a detected value. A replacement that would contain the
    /// boundary delimiter, or break a header line, is refused as [`RewriteError::Unsupported`].
    pub fn apply(mut self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.targets.len() {
            return Err(RewriteError::EditCount);
        }
        let n = self.parts.len();
        let mut removed = vec![false; n];
        let mut fields: Vec<Option<&str>> = vec![None; n];
        let mut in_head: Vec<Vec<(Range<usize>, &str)>> = vec![Vec::new(); n];
        let mut in_body: Vec<Vec<Edit>> = vec![Vec::new(); n];
        for (target, edit) in self.targets.iter().zip(edits) {
            let p = match target {
                Target::Field(p) | Target::Header { part: p, .. } | Target::Body(p) => *p,
            };
            match (target, edit) {
                (_, Edit::Remove) => removed[p] = true,
                (Target::Body(_), edit) => in_body[p].push(edit.clone()),
                (_, Edit::Keep) => {}
                (Target::Field(_), Edit::Replace(v)) => fields[p] = Some(v),
                (Target::Header { range, .. }, Edit::Replace(v)) => in_head[p].push((range.clone(), v)),
            }
        }
        let line_delim = [b"\r\n", &self.delim[..]].concat();
        let mut out = self.src[..self.first].to_vec();
        let mut emitted = false;
        for (p, part) in self.parts.iter().enumerate().filter(|(p, _)| !removed[*p]) {
            if std::mem::replace(&mut emitted, true) {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&self.src[part.start..part.head.start]);
            if in_head[p].is_empty() {
                out.extend_from_slice(&self.src[part.head.clone()]);
            } else {
                out.extend(self.head_with(part, &in_head[p])?);
            }
            out.extend_from_slice(&self.src[part.head.end..part.body.start]);
            let old = &self.src[part.body.clone()];
            let new = match (fields[p], self.inner.get_mut(p).and_then(Option::take)) {
                (Some(v), _) => v.as_bytes().to_vec(),
                (None, Some(inner)) if in_body[p].iter().any(|e| *e != Edit::Keep) => inner.apply(&in_body[p])?,
                _ => {
                    out.extend_from_slice(old);
                    continue;
                }
            };
            // With the CRLF that ends the headers before it, so a boundary at its start is seen too.
            if find_at(&[b"\r\n", &new[..]].concat(), &line_delim, 0).is_some() {
                return Err(RewriteError::Unsupported("replacement contains the multipart boundary"));
            }
            out.extend_from_slice(&new);
        }
        // The closing line and epilogue, with the CRLF that ends the last written part.
        out.extend_from_slice(&self.src[if emitted { self.close - 2 } else { self.close }..]);
        Ok(out)
    }

    /// A part's header block with replacements at `edits` (ordered ranges in the body), which must leave every
    /// line a header line that parses to the same structure.
    fn head_with(&self, part: &Part, edits: &[(Range<usize>, &str)]) -> Result<Vec<u8>, RewriteError> {
        let refused = RewriteError::Unsupported("a replacement a multipart header cannot carry");
        let mut new = Vec::with_capacity(part.head.len() + 16);
        let mut at = part.head.start;
        for (range, with) in edits {
            if with.chars().any(|c| c.is_control() || matches!(c, '"' | '\\' | ';' | ':')) {
                return Err(refused);
            }
            new.extend_from_slice(self.src.get(at..range.start).ok_or(refused.clone())?);
            new.extend_from_slice(with.as_bytes());
            at = range.end;
        }
        new.extend_from_slice(self.src.get(at..part.head.end).ok_or(refused.clone())?);
        let flavor = if self.depth == 0 { Flavor::FormData } else { Flavor::Nested };
        let again = head::parse(&new, flavor).map_err(|_| refused.clone())?;
        if again.lines.len() != part.head_info.lines.len() {
            return Err(refused);
        }
        Ok(new)
    }
}
