//! XML and SOAP bodies: fields chosen by element path, detection in every other place that holds text, edits
//! spliced into the original bytes.
//!
//! [`XmlDoc::parse`] checks well-formedness ([`parse`]) and refuses, as `Unsupported("DTD")`, a document type
//! that declares entities or names an external DTD (XXE, billion laughs). The body must be UTF-8.
//!
//! A selector ([`XmlPath`]) matches elements by local name, namespace prefixes ignored. A matched element whose
//! content is only text (CDATA and comments allowed) is reported with its unescaped text. A matched element with
//! child elements and only whitespace beside them is reported with the value `""`: it can be kept or removed,
//! and `Replace` on it is an error. A matched element with both text and child elements (mixed content) is
//! refused by `find` (`Unsupported`): its value is neither its text nor its children, so it cannot be decided.
//! An element matching several selectors is reported once, for the first.
//!
//! Detection then reads, in document order, every text the application may read, as it decodes it:
//! - **text**: the text nodes and CDATA sections of an element that follow one another with only comments and
//!   processing instructions between them are read as *one* text (`5555 5555<!-- -->5555 4444` and
//!   `5555555555<![CDATA[554444]]>` hold one card each), except inside an element a selector reported with its
//!   text. A match is rewritten across the pieces it spans: the first piece gets the replacement, the others
//!   lose their part of the value, and the comments between stay; each piece is written escaped again (a CDATA
//!   section as CDATA). A value split by a child element (`5555<b/>5555…`) is two texts, not one.
//! - **attribute values**, of every element, normalised and unescaped as XML 1.0 §3.3.3 says (a line break in the
//!   value is a space, `&#10;` a line feed); an edited value is written escaped again in its own quotes.
//! - **comments** and **processing instructions**: edited in place; a replacement that would end the comment or
//!   the instruction (`--`, `?>`) is `Unsupported`.
//! - **the document type declaration** (an internal subset, `ATTLIST` defaults…), raw: edited in place when the
//!   replacement has no markup characters; a value that shows only once character references are resolved
//!   (`"&#52;111…"`) cannot be rewritten there and is `Unsupported`.
//! - **names** (elements, attributes, processing instruction targets) and **the XML declaration**: never
//!   rewritten, so a value found there is `Unsupported`.
//!
//! [`XmlDoc::apply`] copies every untouched byte as it was. `Replace(v)` of a selected element writes `v`
//! escaped as its whole content (comments inside it go); `Remove` drops the element from its start tag to its
//! end tag, which makes any edit inside it moot (the root cannot be removed). A detected value's `Remove` cuts
//! it out of its text.

mod parse;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::ops::Range;
use std::str::FromStr;

use super::{Edit, Found, Origin, RewriteError};
use crate::detect;
use crate::domain::Class;
use parse::{bad, Element, Item, Kind, Parsed};

pub use parse::MAX_DEPTH;

const MIXED: RewriteError = RewriteError::Unsupported("a selected XML element holds both text and child elements");
const IN_NAME: RewriteError = RewriteError::Unsupported("a value in an XML name");
const IN_DECL: RewriteError = RewriteError::Unsupported("a value in the XML declaration");
const IN_DTD: RewriteError =
    RewriteError::Unsupported("a value in the XML document type declaration that cannot be rewritten there");
const OUT_OF_RANGE: RewriteError = RewriteError::Malformed("XML offsets out of range");

/// An element selector: `number` (any depth), `card/number` (a `number` child of a `card`, anywhere) or
/// `/Envelope/Body/card/number` (from the root). Prefixes (`soap:Body`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    absolute: bool,
    segments: Vec<String>,
}

/// Writes the path as it parses back (namespace prefixes, which matching ignores, are left out).
impl std::fmt::Display for XmlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.absolute {
            f.write_str("/")?;
        }
        f.write_str(&self.segments.join("/"))
    }
}

impl XmlPath {
    pub fn parse(s: &str) -> Result<XmlPath, String> {
        let (absolute, rest) = s.strip_prefix('/').map_or((false, s), |rest| (true, rest));
        let name_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.') || !c.is_ascii();
        let segment = |seg: &str| {
            let local = match seg.split_once(':') {
                Some((prefix, local)) if !prefix.is_empty() => local,
                Some(_) => "",
                None => seg,
            };
            if local.is_empty() || !local.chars().all(|c| name_char(c) && !c.is_whitespace()) {
                return Err(format!(
                    "XML selector part {seg:?} is not an element name (use name, a/name or /a/…/name)"
                ));
            }
            Ok(local.to_owned())
        };
        let segments = rest.split('/').map(segment).collect::<Result<_, _>>()?;
        Ok(XmlPath { absolute, segments })
    }

    fn matches(&self, elements: &[Element], index: usize) -> bool {
        let mut current = Some(index);
        for segment in self.segments.iter().rev() {
            match current.and_then(|i| elements.get(i)) {
                Some(el) if el.name == *segment => current = el.parent,
                _ => return false,
            }
        }
        !self.absolute || current.is_none()
    }
}

impl FromStr for XmlPath {
    type Err = String;
    fn from_str(s: &str) -> Result<XmlPath, String> {
        XmlPath::parse(s)
    }
}

/// A found value: a selected element, or a detection match in a run's text or in a place.
enum Target {
    Element(usize),
    Run { run: usize, range: Range<usize> },
    Place { place: usize, range: Range<usize> },
}

/// A parsed XML body and the values found in it.
pub struct XmlDoc {
    body: String,
    doc: Parsed,
    targets: Vec<Target>,
}

/// Never the body's content: it holds the values veil is there to protect.
impl std::fmt::Debug for XmlDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmlDoc").field("bytes", &self.body.len()).finish_non_exhaustive()
    }
}

impl XmlDoc {
    pub fn parse(body: &[u8]) -> Result<XmlDoc, RewriteError> {
        let text = std::str::from_utf8(body).map_err(|_| bad("XML body is not UTF-8"))?;
        let doc = parse::parse(text)?;
        Ok(XmlDoc { body: text.to_owned(), doc, targets: Vec::new() })
    }

    /// Lists the selected elements (each once, for the first selector matching it), then the values detected in
    /// every other text, in document order. Replaces the result of an earlier call. Fails (`Unsupported`) on a
    /// selected element with mixed content and on a value found where it cannot be rewritten.
    pub fn find(&mut self, fields: &[&XmlPath], detect: &[Class]) -> Result<Vec<Found>, RewriteError> {
        self.targets.clear();
        let Parsed { elements, pieces, runs, places, order } = &self.doc;
        let mut found = Vec::new();
        let mut taken = vec![false; elements.len()];
        // Elements whose text is a selector's value: detection does not read it again.
        let mut covered = vec![false; elements.len()];
        for (field, path) in fields.iter().enumerate() {
            for (i, el) in elements.iter().enumerate() {
                if taken.get(i).copied().unwrap_or(true) || !path.matches(elements, i) {
                    continue;
                }
                if el.has_children && el.has_text {
                    return Err(MIXED);
                }
                taken[i] = true;
                covered[i] = !el.has_children;
                self.targets.push(Target::Element(i));
                found.push(Found { origin: Origin::Field(field), value: el.text.clone() });
            }
        }
        if detect.is_empty() {
            return Ok(found);
        }
        for &item in order {
            let text = match item {
                Item::Run(r) => match runs.get(r).filter(|run| !covered.get(run.element).copied().unwrap_or(true)) {
                    Some(run) => Cow::Owned(
                        pieces.get(run.pieces.clone()).unwrap_or_default().iter().map(|p| &*p.value).collect(),
                    ),
                    None => continue,
                },
                Item::Place(p) => match places.get(p) {
                    Some(place) => Cow::Borrowed(place.text(&self.body)),
                    None => continue,
                },
            };
            let matches = detect::find_tokens(&text, detect);
            if let Some(place) = if let Item::Place(p) = item { places.get(p) } else { None } {
                match place.kind {
                    Kind::Name if !matches.is_empty() => return Err(IN_NAME),
                    Kind::Decl if !matches.is_empty() => return Err(IN_DECL),
                    Kind::Pi { target } if matches.iter().any(|m| m.start < target) => return Err(IN_NAME),
                    Kind::DocType => hidden_by_references(&text, &matches, detect)?,
                    _ => {}
                }
            }
            for m in matches {
                let Some(value) = text.get(m.start..m.end) else { continue };
                found.push(Found { origin: Origin::Detected(m.class), value: value.to_owned() });
                self.targets.push(match item {
                    Item::Run(run) => Target::Run { run, range: m.start..m.end },
                    Item::Place(place) => Target::Place { place, range: m.start..m.end },
                });
            }
        }
        Ok(found)
    }

    /// Writes the body with one edit per value of the last [`XmlDoc::find`], in the same order.
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.targets.len() {
            return Err(RewriteError::EditCount);
        }
        let part = |r: &Range<usize>| self.body.get(r.clone()).ok_or(OUT_OF_RANGE);
        let mut splices: Vec<(Range<usize>, String)> = Vec::new();
        // Edits of detected values: (run or place, range in its text, new text), in document order.
        let (mut in_runs, mut in_places) = (Vec::new(), Vec::new());
        for (target, edit) in self.targets.iter().zip(edits) {
            let with = match edit {
                Edit::Replace(v) => v.as_str(),
                Edit::Remove => "",
                Edit::Keep => continue,
            };
            let i = match target {
                Target::Element(i) => *i,
                Target::Run { run, range } => {
                    in_runs.push((*run, range.clone(), with));
                    continue;
                }
                Target::Place { place, range } => {
                    in_places.push((*place, range.clone(), with));
                    continue;
                }
            };
            let el = self.doc.elements.get(i).ok_or(OUT_OF_RANGE)?;
            match edit {
                Edit::Keep => {}
                Edit::Remove if el.parent.is_none() => return Err(RewriteError::Unsupported("removing the XML root")),
                Edit::Remove => splices.push((el.span.clone(), String::new())),
                Edit::Replace(_) if el.has_children => {
                    return Err(RewriteError::Unsupported("replacing an XML element that has child elements"));
                }
                Edit::Replace(v) => match &el.content {
                    Some(content) => splices.push((content.clone(), escape(v)?)),
                    None => {
                        // `<x a="…"/>` becomes `<x a="…">v</x>`: only the `/>` is replaced, so that edits of the
                        // attributes still apply.
                        let close = el.span.end.saturating_sub(2)..el.span.end;
                        if part(&close)? != "/>" {
                            return Err(OUT_OF_RANGE);
                        }
                        splices.push((close, format!(">{}</{}>", escape(v)?, part(&el.qname)?)));
                    }
                },
            }
        }
        for group in in_runs.chunk_by(|a, b| a.0 == b.0) {
            self.run_splices(group, &mut splices)?;
        }
        for group in in_places.chunk_by(|a, b| a.0 == b.0) {
            let place = group.first().and_then(|e| self.doc.places.get(e.0)).ok_or(OUT_OF_RANGE)?;
            let value = splice_str(place.text(&self.body), group.iter().map(|(_, r, with)| (r.clone(), *with)))?;
            let written = match place.kind {
                Kind::Attr(quote) => escape_attribute(&value, quote)?,
                Kind::Comment if value.contains("--") || value.ends_with('-') => {
                    return Err(RewriteError::Unsupported("a replacement an XML comment cannot carry"));
                }
                Kind::Pi { .. } if value.contains("?>") => {
                    return Err(RewriteError::Unsupported("a replacement an XML processing instruction cannot carry"));
                }
                Kind::DocType
                    if group.iter().any(|(_, _, with)| {
                        with.contains(['<', '>', '&', '%', '"', '\'', '[', ']']) || with.contains("--")
                    }) =>
                {
                    return Err(IN_DTD);
                }
                Kind::Comment | Kind::Pi { .. } | Kind::DocType => {
                    check_chars(&value)?;
                    value
                }
                Kind::Name => return Err(IN_NAME),
                Kind::Decl => return Err(IN_DECL),
            };
            splices.push((place.span.clone(), written));
        }
        // Longest first at one start; a splice starting inside the previous one is inside a removed or replaced
        // element: moot.
        splices.sort_by_key(|(r, _)| (r.start, Reverse(r.end)));
        let mut last_end = 0;
        splices.retain(|(r, _)| {
            let keep = r.start >= last_end;
            last_end = if keep { r.end } else { last_end };
            keep
        });
        splice(self.body.as_bytes(), splices.iter().map(|(r, s)| (r.clone(), s.as_bytes())))
    }

    /// Splices for the edits of one run: each match's replacement goes into the first piece it touches, and the
    /// value's part in the other pieces is cut; every edited piece is written escaped again.
    fn run_splices(
        &self,
        group: &[(usize, Range<usize>, &str)],
        splices: &mut Vec<(Range<usize>, String)>,
    ) -> Result<(), RewriteError> {
        let run = group.first().and_then(|e| self.doc.runs.get(e.0)).ok_or(OUT_OF_RANGE)?;
        let pieces = self.doc.pieces.get(run.pieces.clone()).ok_or(OUT_OF_RANGE)?;
        let mut per_piece: Vec<Vec<(Range<usize>, &str)>> = vec![Vec::new(); pieces.len()];
        for (_, range, with) in group {
            let (mut offset, mut first) = (0, true);
            for (k, piece) in pieces.iter().enumerate() {
                let end = offset + piece.value.len();
                if offset < range.end && range.start < end {
                    let local = range.start.max(offset) - offset..range.end.min(end) - offset;
                    per_piece[k].push((local, if std::mem::take(&mut first) { with } else { "" }));
                }
                offset = end;
            }
        }
        for (piece, edits) in pieces.iter().zip(per_piece).filter(|(_, e)| !e.is_empty()) {
            let value = splice_str(&piece.value, edits)?;
            splices.push((piece.span.clone(), if piece.cdata { cdata(&value)? } else { escape(&value)? }));
        }
        Ok(())
    }
}

/// Refuses a document type declaration (`raw`) whose values show only once its character references are
/// resolved (in an `ATTLIST` default, say): `raw_matches` are the values found in it as written.
fn hidden_by_references(raw: &str, raw_matches: &[detect::Match], detect: &[Class]) -> Result<(), RewriteError> {
    if !raw.contains("&#") {
        return Ok(());
    }
    let resolved = resolve_char_refs(raw);
    let seen: Vec<&str> = raw_matches.iter().filter_map(|m| raw.get(m.start..m.end)).collect();
    let hidden = detect::find_tokens(&resolved, detect)
        .iter()
        .any(|m| !seen.contains(&resolved.get(m.start..m.end).unwrap_or_default()));
    match hidden {
        true => Err(IN_DTD),
        false => Ok(()),
    }
}

/// `raw` with its character references (`&#52;`, `&#x34;`) resolved; anything else is left as written.
fn resolve_char_refs(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find("&#") {
        out.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at + 2..).unwrap_or_default();
        let (hex, digits) = match after.strip_prefix(['x', 'X']) {
            Some(h) => (true, h),
            None => (false, after),
        };
        let len = digits.find(';').unwrap_or(0);
        let code = digits.get(..len).and_then(|d| u32::from_str_radix(d, if hex { 16 } else { 10 }).ok());
        match code.and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                rest = digits.get(len + 1..).unwrap_or_default();
            }
            None => {
                out.push_str("&#");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with each (ordered, non-overlapping) range replaced.
fn splice_str<'a>(
    text: &str,
    edits: impl IntoIterator<Item = (Range<usize>, &'a str)>,
) -> Result<String, RewriteError> {
    let out = splice(text.as_bytes(), edits.into_iter().map(|(r, with)| (r, with.as_bytes())))?;
    String::from_utf8(out).map_err(|_| OUT_OF_RANGE)
}

/// `bytes` with each (ordered, non-overlapping) range replaced.
fn splice<'a>(
    bytes: &[u8],
    edits: impl IntoIterator<Item = (Range<usize>, &'a [u8])>,
) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    for (range, with) in edits {
        out.extend_from_slice(bytes.get(pos..range.start).ok_or(OUT_OF_RANGE)?);
        out.extend_from_slice(with);
        pos = range.end;
    }
    out.extend_from_slice(bytes.get(pos..).ok_or(OUT_OF_RANGE)?);
    Ok(out)
}

/// XML 1.0 `Char`.
fn check_chars(value: &str) -> Result<(), RewriteError> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}');
    match value.chars().all(allowed) {
        true => Ok(()),
        false => Err(RewriteError::Unsupported("value has characters XML cannot carry")),
    }
}

/// Text content: `&`, `<`, `>` escaped, carriage returns as references so that parsers keep them.
fn escape(value: &str) -> Result<String, RewriteError> {
    check_chars(value)?;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// An attribute value inside `quote`s: `&`, `<` and that quote escaped, and tabs and line breaks as references
/// (written as they are, they would be read back as spaces).
fn escape_attribute(value: &str, quote: u8) -> Result<String, RewriteError> {
    check_chars(value)?;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' if quote == b'"' => out.push_str("&quot;"),
            '\'' if quote == b'\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn cdata(value: &str) -> Result<String, RewriteError> {
    check_chars(value)?;
    Ok(format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>")))
}
