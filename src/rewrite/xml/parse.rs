//! Reading an XML body into what [`super::XmlDoc`] finds and edits: the elements, the runs of text an
//! application reads as one, and every other place that holds text (attribute values, comments, processing
//! instructions, names, the XML declaration, the document type declaration), each with its byte range.
//!
//! Well-formedness is quick-xml's (with comment checks), plus: one root, no text outside it, known entities only,
//! characters XML allows, at most [`MAX_DEPTH`] levels, UTF-8 only, and no document type that declares entities
//! or names an external DTD (XXE, billion laughs: `Unsupported("DTD")`).

use std::ops::Range;

use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::events::Event;
use quick_xml::Reader;

use super::{check_chars, RewriteError};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 256;

pub(super) struct Element {
    /// Local name.
    pub name: String,
    pub parent: Option<usize>,
    /// Start of the start tag to the end of the end tag.
    pub span: Range<usize>,
    /// Between the tags; `None` for an empty-element tag `<x/>`.
    pub content: Option<Range<usize>>,
    /// The qualified name in the body (to close an empty-element tag).
    pub qname: Range<usize>,
    pub has_children: bool,
    /// Text other than whitespace directly inside (in a text node or a CDATA section).
    pub has_text: bool,
    /// Unescaped text content (left empty once a child element is seen).
    pub text: String,
}

/// A text node or a CDATA section.
pub(super) struct Piece {
    pub span: Range<usize>,
    pub cdata: bool,
    /// The text as the application reads it: entities resolved, CDATA as is.
    pub value: String,
}

/// Text and CDATA pieces one after the other in an element, with nothing but comments and processing
/// instructions between them: the application reads them as one text (`5555<!-- -->5555` is `55555555`).
pub(super) struct Run {
    pub element: usize,
    /// Indexes into [`Parsed::pieces`].
    pub pieces: Range<usize>,
}

/// What kind of text a [`Place`] is, which says how an edit in it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An attribute value, in these quotes.
    Attr(u8),
    /// A comment's content.
    Comment,
    /// A processing instruction's content, whose first `target` bytes are its target (a name).
    Pi { target: usize },
    /// An element or attribute name.
    Name,
    /// The content of the XML declaration.
    Decl,
    /// The whole document type declaration.
    DocType,
}

/// A text outside the runs that the application may read.
pub(super) struct Place {
    pub kind: Kind,
    /// Where it is written in the body (raw).
    pub span: Range<usize>,
    /// The text as the application reads it, when that differs from what is written (an attribute value with
    /// references or line breaks): most places are read as written and cost no copy.
    pub decoded: Option<String>,
}

impl Place {
    /// The text as the application reads it; `body` is the whole body.
    pub fn text<'a>(&'a self, body: &'a str) -> &'a str {
        self.decoded.as_deref().unwrap_or_else(|| body.get(self.span.clone()).unwrap_or_default())
    }
}

/// A run or a place, in document order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Item {
    Run(usize),
    Place(usize),
}

pub(super) struct Parsed {
    pub elements: Vec<Element>,
    pub pieces: Vec<Piece>,
    pub runs: Vec<Run>,
    pub places: Vec<Place>,
    pub order: Vec<Item>,
}

pub(super) const fn bad(reason: &'static str) -> RewriteError {
    RewriteError::Malformed(reason)
}

fn malformed(e: XmlError) -> RewriteError {
    bad(match e {
        XmlError::IllFormed(IllFormedError::MismatchedEndTag { .. } | IllFormedError::UnmatchedEndTag(_)) => {
            "XML end tag does not match its start tag"
        }
        XmlError::IllFormed(IllFormedError::MissingEndTag(_)) => "XML element is not closed",
        XmlError::Escape(_) => "XML has an unknown entity or a bad character reference",
        XmlError::InvalidAttr(_) => "XML has a malformed attribute",
        _ => "XML is not well-formed",
    })
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

impl Parsed {
    fn place(&mut self, kind: Kind, span: Range<usize>, decoded: Option<String>) {
        self.order.push(Item::Place(self.places.len()));
        self.places.push(Place { kind, span, decoded });
    }

    /// Adds a text or CDATA piece to `element`, continuing its open run if there is one.
    fn piece(&mut self, open_run: &mut Option<usize>, element: usize, piece: Piece) {
        let index = self.pieces.len();
        match open_run.and_then(|r| self.runs.get_mut(r)).filter(|r| r.element == element) {
            Some(run) => run.pieces.end = index + 1,
            None => {
                *open_run = Some(self.runs.len());
                self.order.push(Item::Run(self.runs.len()));
                self.runs.push(Run { element, pieces: index..index + 1 });
            }
        }
        self.pieces.push(piece);
    }
}

/// Parses `text` (the whole body, a UTF-8 BOM included) strictly.
pub(super) fn parse(text: &str) -> Result<Parsed, RewriteError> {
    // A UTF-8 byte order mark is kept in the body but not shown to the reader (its positions would skip it).
    let bom = if text.starts_with('\u{FEFF}') { '\u{FEFF}'.len_utf8() } else { 0 };
    let mut reader = Reader::from_str(text.get(bom..).unwrap_or_default());
    reader.config_mut().check_comments = true;
    let mut doc =
        Parsed { elements: Vec::new(), pieces: Vec::new(), runs: Vec::new(), places: Vec::new(), order: Vec::new() };
    let mut stack = Vec::<usize>::new();
    let (mut root_done, mut first, mut open_run) = (false, true, None);
    let position = |r: &Reader<&[u8]>| usize::try_from(r.buffer_position()).map_or(usize::MAX, |p| p + bom);
    loop {
        let start = position(&reader);
        let event = reader.read_event().map_err(malformed)?;
        let end = position(&reader);
        let raw = text.get(start..end).ok_or(bad("XML is not well-formed"))?;
        let value = match &event {
            Event::Text(t) => Some((t.unescape().map_err(malformed)?, false)),
            Event::CData(c) => Some((c.decode().map_err(|e| malformed(e.into()))?, true)),
            _ => None,
        };
        if !matches!(event, Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_)) {
            open_run = None;
        }
        match (&event, value, stack.last().copied()) {
            (Event::Start(tag) | Event::Empty(tag), _, parent) => {
                if root_done {
                    return Err(bad("XML has content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(bad("XML is nested more than 256 levels deep"));
                }
                let mut checked = 0;
                for attr in tag.attributes() {
                    attr.map_err(|e| malformed(e.into()))?.unescape_value().map_err(malformed)?;
                    checked += 1;
                }
                let name =
                    std::str::from_utf8(tag.local_name().into_inner()).map_err(|_| bad("XML body is not UTF-8"))?;
                if let Some(p) = parent.and_then(|p| doc.elements.get_mut(p)) {
                    p.has_children = true;
                    p.text = String::new();
                }
                let qname = start + 1..start + 1 + tag.name().as_ref().len();
                doc.place(Kind::Name, qname.clone(), None);
                let attrs = attributes(raw, qname.len());
                if attrs.len() != checked {
                    return Err(bad("XML has a malformed attribute"));
                }
                for (name, value, quote) in attrs {
                    let (name, value) = (start + name.start..start + name.end, start + value.start..start + value.end);
                    doc.place(Kind::Name, name, None);
                    let decoded = attribute_value(text.get(value.clone()).unwrap_or_default())?;
                    doc.place(Kind::Attr(quote), value, decoded);
                }
                let empty = matches!(event, Event::Empty(_));
                doc.elements.push(Element {
                    name: name.to_owned(),
                    parent,
                    span: start..end,
                    content: (!empty).then_some(end..end),
                    qname,
                    has_children: false,
                    has_text: false,
                    text: String::new(),
                });
                match empty {
                    true => root_done = parent.is_none(),
                    false => stack.push(doc.elements.len() - 1),
                }
            }
            (Event::End(_), _, _) => {
                let el =
                    stack.pop().and_then(|i| doc.elements.get_mut(i)).ok_or(bad("XML end tag has no start tag"))?;
                el.span.end = end;
                el.content = el.content.as_ref().map(|c| c.start..start);
                root_done = stack.is_empty();
            }
            (_, Some((value, cdata)), None) if cdata || !value.chars().all(|c| " \t\r\n".contains(c)) => {
                return Err(bad("XML has text outside the root element"));
            }
            (_, Some((value, cdata)), Some(element)) => {
                check_chars(&value).map_err(|_| bad("XML has a character XML does not allow"))?;
                if let Some(el) = doc.elements.get_mut(element) {
                    el.has_text |= !value.chars().all(|c| " \t\r\n".contains(c));
                    if !el.has_children {
                        el.text.push_str(&value);
                    }
                }
                doc.piece(&mut open_run, element, Piece { span: start..end, cdata, value: value.into_owned() });
            }
            (Event::Comment(_), _, _) => {
                doc.place(Kind::Comment, start + 4..end - 3, None);
            }
            (Event::PI(_), _, _) => {
                let content = start + 2..end - 2;
                let value = text.get(content.clone()).unwrap_or_default();
                let target = value.find(|c: char| c.is_ascii_whitespace()).unwrap_or(value.len());
                doc.place(Kind::Pi { target }, content, None);
            }
            (Event::Decl(d), _, _) => {
                if !first {
                    return Err(bad("XML declaration is not at the start"));
                }
                let encoding = d.encoding().transpose().map_err(|e| malformed(e.into()))?;
                if encoding.is_some_and(|e| !e.eq_ignore_ascii_case(b"utf-8") && !e.eq_ignore_ascii_case(b"utf8")) {
                    return Err(RewriteError::Unsupported("XML encoding other than UTF-8"));
                }
                doc.place(Kind::Decl, start + 2..end - 2, None);
            }
            (Event::DocType(d), _, _) => {
                let head = d.split(|&b| b == b'[').next().unwrap_or_default();
                let external = contains_ignore_case(head, b"SYSTEM") || contains_ignore_case(head, b"PUBLIC");
                if external || contains_ignore_case(d, b"<!ENTITY") {
                    return Err(RewriteError::Unsupported("DTD"));
                }
                if !doc.elements.is_empty() {
                    return Err(bad("XML document type is misplaced"));
                }
                doc.place(Kind::DocType, start..end, None);
            }
            (Event::Eof, _, _) => break,
            _ => {}
        }
        first = false;
    }
    if !stack.is_empty() || !root_done {
        return Err(bad(if root_done { "XML element is not closed" } else { "XML has no root element" }));
    }
    Ok(doc)
}

/// The attributes of the start tag `tag` (its raw text from `<` to `>`, quick-xml has checked its syntax) after
/// its name of `name_len` bytes: each attribute's name and value ranges in `tag`, and the value's quote.
fn attributes(tag: &str, name_len: usize) -> Vec<(Range<usize>, Range<usize>, u8)> {
    let b = tag.as_bytes();
    let space = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
            *i += 1;
        }
    };
    let mut i = 1 + name_len;
    let mut out = Vec::new();
    loop {
        space(&mut i);
        let name = i;
        while b.get(i).is_some_and(|&c| !matches!(c, b'=' | b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')) {
            i += 1;
        }
        let name = name..i;
        space(&mut i);
        if name.is_empty() || b.get(i) != Some(&b'=') {
            return out;
        }
        i += 1;
        space(&mut i);
        let Some(&quote @ (b'"' | b'\'')) = b.get(i) else { return out };
        let value = i + 1;
        let Some(len) = b.get(value..).and_then(|rest| rest.iter().position(|&c| c == quote)) else { return out };
        out.push((name, value..value + len, quote));
        i = value + len + 1;
    }
}

/// An attribute value as the application reads it, if that is not `raw`: literal whitespace (a CRLF as one)
/// normalised to spaces, then references resolved (so `&#10;` stays a line feed), as XML 1.0 §3.3.3 says.
fn attribute_value(raw: &str) -> Result<Option<String>, RewriteError> {
    if !raw.contains(['&', '\t', '\r', '\n']) {
        return Ok(None);
    }
    let normal = raw.replace("\r\n", " ").replace(['\r', '\n', '\t'], " ");
    let value = quick_xml::escape::unescape(&normal).map_err(|e| malformed(e.into()))?;
    check_chars(&value).map_err(|_| bad("XML has a character XML does not allow"))?;
    Ok(Some(value.into_owned()))
}
