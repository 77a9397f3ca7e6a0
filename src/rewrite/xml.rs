//! XML and SOAP bodies: fields chosen by element path, detection in the other text nodes, edits spliced into the original bytes.
//!
//! [`XmlDoc::parse`] checks well-formedness (one root, matching tags, known entities, characters XML allows, no
//! text outside the root, at most [`MAX_DEPTH`] levels) and refuses, as `Unsupported("DTD")`, a document type that
//! declares entities or names an external DTD (XXE, billion laughs). The body must be UTF-8.
//!
//! A selector ([`XmlPath`]) matches elements by local name, namespace prefixes ignored. A matched element whose
//! content is only text (CDATA and comments allowed) is reported with its unescaped text. A matched element with
//! child elements is reported with the value `""`: it can be kept or removed, and `Replace` on it is an error.
//! An element matching several selectors is reported once, for the first. Detection then scans each text node and
//! CDATA section outside the matched elements (attribute values are not scanned).
//!
//! [`XmlDoc::apply`] copies every untouched byte as it was. `Replace(v)` writes `v` escaped as the element's whole
//! content (comments inside it go); `Remove` drops the element from its start tag to its end tag, which makes any
//! edit inside it moot (the root cannot be removed). A detected value is replaced inside its text node, which is
//! then written escaped again (as CDATA if it was CDATA).

use std::ops::Range;
use std::str::FromStr;

use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::events::Event;
use quick_xml::Reader;

use super::{Edit, Found, Origin, RewriteError};
use crate::detect;
use crate::domain::Class;

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 256;

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

struct Element {
    /// Local name.
    name: String,
    parent: Option<usize>,
    /// Start of the start tag to the end of the end tag.
    span: Range<usize>,
    /// Between the tags; `None` for an empty-element tag `<x/>`.
    content: Option<Range<usize>>,
    /// The qualified name in the body (to close an empty-element tag).
    qname: Range<usize>,
    has_children: bool,
    /// Unescaped text content (left empty once a child element is seen).
    text: String,
}

struct TextNode {
    span: Range<usize>,
    cdata: bool,
    value: String,
    element: usize,
}

enum Target {
    Element(usize),
    Text { node: usize, range: Range<usize> },
}

/// A parsed XML body and the values found in it.
pub struct XmlDoc {
    body: String,
    elements: Vec<Element>,
    texts: Vec<TextNode>,
    targets: Vec<Target>,
}

const fn bad(reason: &'static str) -> RewriteError {
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

impl XmlDoc {
    pub fn parse(body: &[u8]) -> Result<XmlDoc, RewriteError> {
        let text = std::str::from_utf8(body).map_err(|_| bad("XML body is not UTF-8"))?;
        // A UTF-8 byte order mark is kept in the body but not shown to the reader (its positions would skip it).
        let bom = if text.starts_with('\u{FEFF}') { '\u{FEFF}'.len_utf8() } else { 0 };
        let mut reader = Reader::from_str(text.get(bom..).unwrap_or_default());
        reader.config_mut().check_comments = true;
        let (mut elements, mut texts, mut stack) = (Vec::<Element>::new(), Vec::new(), Vec::<usize>::new());
        let (mut root_done, mut first) = (false, true);
        let position = |r: &Reader<&[u8]>| usize::try_from(r.buffer_position()).map_or(usize::MAX, |p| p + bom);
        loop {
            let start = position(&reader);
            let event = reader.read_event().map_err(malformed)?;
            let end = position(&reader);
            if start > end || end > body.len() {
                return Err(bad("XML is not well-formed"));
            }
            let text = match &event {
                Event::Text(t) => Some((t.unescape().map_err(malformed)?, false)),
                Event::CData(c) => Some((c.decode().map_err(|e| malformed(e.into()))?, true)),
                _ => None,
            };
            match (&event, text, stack.last().copied()) {
                (Event::Start(tag) | Event::Empty(tag), _, parent) => {
                    if root_done {
                        return Err(bad("XML has content after the root element"));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(bad("XML is nested more than 256 levels deep"));
                    }
                    for attr in tag.attributes() {
                        attr.map_err(|e| malformed(e.into()))?.unescape_value().map_err(malformed)?;
                    }
                    let name =
                        std::str::from_utf8(tag.local_name().into_inner()).map_err(|_| bad("XML body is not UTF-8"))?;
                    if let Some(p) = parent.and_then(|p| elements.get_mut(p)) {
                        p.has_children = true;
                        p.text = String::new();
                    }
                    let empty = matches!(event, Event::Empty(_));
                    elements.push(Element {
                        name: name.to_owned(),
                        parent,
                        span: start..end,
                        content: (!empty).then_some(end..end),
                        qname: start + 1..start + 1 + tag.name().as_ref().len(),
                        has_children: false,
                        text: String::new(),
                    });
                    match empty {
                        true => root_done = parent.is_none(),
                        false => stack.push(elements.len() - 1),
                    }
                }
                (Event::End(_), _, _) => {
                    let el =
                        stack.pop().and_then(|i| elements.get_mut(i)).ok_or(bad("XML end tag has no start tag"))?;
                    el.span.end = end;
                    el.content = el.content.as_ref().map(|c| c.start..start);
                    root_done = stack.is_empty();
                }
                (_, Some((value, cdata)), None) if cdata || !value.chars().all(|c| " \t\r\n".contains(c)) => {
                    return Err(bad("XML has text outside the root element"));
                }
                (_, Some((value, cdata)), Some(element)) => {
                    check_chars(&value).map_err(|_| bad("XML has a character XML does not allow"))?;
                    if let Some(el) = elements.get_mut(element).filter(|el| !el.has_children) {
                        el.text.push_str(&value);
                    }
                    texts.push(TextNode { span: start..end, cdata, value: value.into_owned(), element });
                }
                (Event::Decl(d), _, _) => {
                    if !first {
                        return Err(bad("XML declaration is not at the start"));
                    }
                    let encoding = d.encoding().transpose().map_err(|e| malformed(e.into()))?;
                    if encoding.is_some_and(|e| !e.eq_ignore_ascii_case(b"utf-8") && !e.eq_ignore_ascii_case(b"utf8")) {
                        return Err(RewriteError::Unsupported("XML encoding other than UTF-8"));
                    }
                }
                (Event::DocType(d), _, _) => {
                    let head = d.split(|&b| b == b'[').next().unwrap_or_default();
                    let external = contains_ignore_case(head, b"SYSTEM") || contains_ignore_case(head, b"PUBLIC");
                    if external || contains_ignore_case(d, b"<!ENTITY") {
                        return Err(RewriteError::Unsupported("DTD"));
                    }
                    if !elements.is_empty() {
                        return Err(bad("XML document type is misplaced"));
                    }
                }
                (Event::Eof, _, _) => break,
                _ => {} // comments, processing instructions
            }
            first = false;
        }
        if !stack.is_empty() || !root_done {
            return Err(bad(if root_done { "XML element is not closed" } else { "XML has no root element" }));
        }
        Ok(XmlDoc { body: text.to_owned(), elements, texts, targets: Vec::new() })
    }

    /// Lists the selected elements (each once, for the first selector matching it), then the values detected in
    /// the text nodes outside them, in document order. Replaces the result of an earlier call.
    pub fn find(&mut self, fields: &[&XmlPath], detect: &[Class]) -> Vec<Found> {
        self.targets.clear();
        let mut found = Vec::new();
        let mut covered = vec![false; self.elements.len()];
        for (field, path) in fields.iter().enumerate() {
            for (i, (el, covered)) in self.elements.iter().zip(covered.iter_mut()).enumerate() {
                if !*covered && path.matches(&self.elements, i) {
                    *covered = true;
                    self.targets.push(Target::Element(i));
                    found.push(Found { origin: Origin::Field(field), value: el.text.clone() });
                }
            }
        }
        if detect.is_empty() {
            return found;
        }
        // Parents come before their children: one pass marks everything inside a matched element.
        for i in 0..covered.len() {
            let parent = self.elements.get(i).and_then(|el| el.parent);
            if parent.and_then(|p| covered.get(p)).copied().unwrap_or(false) {
                covered[i] = true;
            }
        }
        for (n, node) in self.texts.iter().enumerate() {
            if covered.get(node.element).copied().unwrap_or(true) {
                continue;
            }
            for m in detect::find(&node.value, detect) {
                let value = node.value.get(m.start..m.end).unwrap_or_default().to_owned();
                self.targets.push(Target::Text { node: n, range: m.start..m.end });
                found.push(Found { origin: Origin::Detected(m.class), value });
            }
        }
        found
    }

    /// Writes the body with one edit per value of the last [`XmlDoc::find`], in the same order.
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.targets.len() {
            return Err(RewriteError::EditCount);
        }
        let part = |r: &Range<usize>| self.body.get(r.clone()).ok_or(bad("XML offsets out of range"));
        let mut splices: Vec<(Range<usize>, String)> = Vec::new();
        // Edits of detected values: (text node, range in its value, new value), in document order.
        let mut in_nodes: Vec<(usize, Range<usize>, &[u8])> = Vec::new();
        for (target, edit) in self.targets.iter().zip(edits) {
            let el = match target {
                Target::Element(i) => self.elements.get(*i).ok_or(bad("XML offsets out of range"))?,
                Target::Text { node, range } => {
                    let with = match edit {
                        Edit::Replace(v) => v.as_bytes(),
                        Edit::Remove => b"",
                        Edit::Keep => continue,
                    };
                    in_nodes.push((*node, range.clone(), with));
                    continue;
                }
            };
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
                        let open = part(&el.span)?.strip_suffix("/>").ok_or(bad("XML offsets out of range"))?;
                        let (escaped, qname) = (escape(v)?, part(&el.qname)?);
                        splices.push((el.span.clone(), format!("{open}>{escaped}</{qname}>")));
                    }
                },
            }
        }
        for edits in in_nodes.chunk_by(|a, b| a.0 == b.0) {
            let node = edits.first().and_then(|e| self.texts.get(e.0)).ok_or(bad("XML offsets out of range"))?;
            let edits = edits.iter().map(|(_, r, with)| (r.clone(), *with));
            let value = String::from_utf8(splice(node.value.as_bytes(), edits)?).map_err(|_| bad("XML offsets"))?;
            splices.push((node.span.clone(), if node.cdata { cdata(&value)? } else { escape(&value)? }));
        }
        splices.sort_by_key(|(r, _)| r.start);
        // A splice starting inside the previous one is inside a removed element: moot.
        let mut last_end = 0;
        splices.retain(|(r, _)| {
            let keep = r.start >= last_end;
            last_end = if keep { r.end } else { last_end };
            keep
        });
        splice(self.body.as_bytes(), splices.iter().map(|(r, s)| (r.clone(), s.as_bytes())))
    }
}

/// `bytes` with each (ordered, non-overlapping) range replaced.
fn splice<'a>(
    bytes: &[u8],
    edits: impl IntoIterator<Item = (Range<usize>, &'a [u8])>,
) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    for (range, with) in edits {
        out.extend_from_slice(bytes.get(pos..range.start).ok_or(bad("XML offsets out of range"))?);
        out.extend_from_slice(with);
        pos = range.end;
    }
    out.extend_from_slice(bytes.get(pos..).ok_or(bad("XML offsets out of range"))?);
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

fn cdata(value: &str) -> Result<String, RewriteError> {
    check_chars(value)?;
    Ok(format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Class; 4] = [Class::Pan, Class::Iban, Class::Email, Class::Phone];
    const SOAP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- order --><soap:Envelope xmlns:soap="urn:soap" xmlns:p="urn:pay"><soap:Body>
  <p:card type="visa" note="a &amp; b"><p:number>4111 1111 1111 1111</p:number>
    <p:holder>J&#246;rg &amp; Co</p:holder><p:cvv><![CDATA[123]]></p:cvv><p:empty/></p:card>
  <p:note>Refund to DE89370400440532013000 &lt;asap&gt; or mail <b>jo@example.com</b></p:note>
  <p:memo><![CDATA[card 5500 0000 0000 0004 <raw>]]></p:memo>
</soap:Body></soap:Envelope>
"#;

    fn path(s: &str) -> XmlPath {
        s.parse().unwrap()
    }

    fn run(body: &str, fields: &[&str], detect: &[Class]) -> (XmlDoc, Vec<(String, Origin)>) {
        let paths: Vec<XmlPath> = fields.iter().map(|f| path(f)).collect();
        let mut doc = XmlDoc::parse(body.as_bytes()).unwrap();
        let found = doc.find(&paths.iter().collect::<Vec<_>>(), detect);
        (doc, found.into_iter().map(|f| (f.value, f.origin)).collect())
    }

    fn apply(doc: XmlDoc, edits: &[Edit]) -> String {
        String::from_utf8(doc.apply(edits).unwrap()).unwrap()
    }

    fn replace(v: &str) -> Edit {
        Edit::Replace(v.to_owned())
    }

    #[test]
    fn selectors_then_detection_and_keep_is_byte_identical() {
        let (doc, found) = run(SOAP, &["number", "card/holder", "/Envelope/Body/card/cvv", "empty", "card"], &ALL);
        let expected = [
            ("4111 1111 1111 1111", Origin::Field(0)),
            ("Jörg & Co", Origin::Field(1)),
            ("123", Origin::Field(2)),
            ("", Origin::Field(3)),
            ("", Origin::Field(4)), // has child elements: reported empty, removable only
            ("DE89370400440532013000", Origin::Detected(Class::Iban)),
            ("jo@example.com", Origin::Detected(Class::Email)),
            ("5500 0000 0000 0004", Origin::Detected(Class::Pan)),
        ];
        assert_eq!(found, expected.map(|(v, o)| (v.to_owned(), o)));
        assert_eq!(apply(doc, &vec![Edit::Keep; found.len()]), SOAP);
        let (_, found) = run(SOAP, &["/Body/card/number", "x/number", "number", "p:number"], &[]);
        assert_eq!(found, [("4111 1111 1111 1111".to_owned(), Origin::Field(2))], "absolute from the root; once");
        let bom = format!("\u{FEFF}{SOAP}");
        let (doc, found) = run(&bom, &["number"], &ALL);
        assert_eq!(apply(doc, &vec![Edit::Keep; found.len()]), bom);
        let (doc, _) = run("\u{FEFF}<a><n>1</n></a>", &["n"], &[]);
        assert_eq!(apply(doc, &[replace("2")]), "\u{FEFF}<a><n>2</n></a>");
    }

    #[test]
    fn replace_and_remove() {
        let (doc, _) = run(SOAP, &["number", "holder", "cvv", "empty", "memo"], &[]);
        let out = apply(doc, &[replace("4111 11<&>11"), replace("x\r\ny"), replace("999"), replace("f"), Edit::Remove]);
        for part in ["<p:number>4111 11&lt;&amp;&gt;11</p:number>", "<p:holder>x&#13;\ny</p:holder>"] {
            assert!(out.contains(part), "{out}");
        }
        assert!(out.contains("<p:cvv>999</p:cvv><p:empty>f</p:empty>") && out.contains("</p:note>\n  \n</soap:Body>"));
        let (doc, found) = run(&out, &["number", "holder"], &[]);
        assert_eq!((found[0].0.as_str(), found[1].0.as_str()), ("4111 11<&>11", "x\r\ny"));
        assert_eq!(doc.apply(&[Edit::Keep]), Err(RewriteError::EditCount));
        // Removing a parent makes edits inside it moot; a parent cannot be replaced; the root cannot go.
        let (doc, _) = run(SOAP, &["card", "number"], &[]);
        let out = apply(doc, &[Edit::Remove, replace("x")]);
        assert!(!out.contains("<p:card") && !out.contains("4111") && out.contains("<p:note>"));
        let (doc, _) = run(SOAP, &["card"], &[]);
        assert!(matches!(doc.apply(&[replace("x")]), Err(RewriteError::Unsupported(_))));
        let (doc, _) = run(SOAP, &["Envelope"], &[]);
        assert!(matches!(doc.apply(&[Edit::Remove]), Err(RewriteError::Unsupported(_))));
    }

    #[test]
    fn detected_values_are_replaced_in_their_text_node() {
        let (doc, _) = run(SOAP, &["number", "card"], &ALL);
        let out = apply(doc, &[Edit::Keep, Edit::Keep, replace("DE00<X>"), Edit::Remove, replace("]]>")]);
        assert!(out.contains("<p:note>Refund to DE00&lt;X&gt; &lt;asap&gt; or mail <b></b></p:note>"));
        assert!(out.contains("<p:memo><![CDATA[card ]]]]><![CDATA[> <raw>]]></p:memo>"));
        assert!(XmlDoc::parse(out.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_bodies_and_dtds_are_refused() {
        let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(XmlDoc::parse(deep(MAX_DEPTH).as_bytes()).is_ok());
        assert!(XmlDoc::parse(b"<!DOCTYPE a><a/>\n").is_ok());
        let malformed = "<a><b></a></b>|<a>|<a></a></b>|<a>&nope;</a>|<a>&#xD800;</a>|<a x=\"&bad;\"/>|<a x='1' x='2'/>|\
                         <a/>trailing|<a/><b/>|text<a/>||   |<a><!-- x -- y --></a>|<a/><?xml version=\"1.0\"?>|<a>\0</a>";
        for body in malformed.split('|').map(str::to_owned).chain([deep(MAX_DEPTH + 1)]) {
            assert!(matches!(XmlDoc::parse(body.as_bytes()), Err(RewriteError::Malformed(_))), "{body:?}");
        }
        assert!(matches!(XmlDoc::parse(b"<a>\xff</a>"), Err(RewriteError::Malformed(_))));
        assert!(XmlDoc::parse(b"<?xml version='1.0' encoding='ISO-8859-1'?><a/>").is_err());
        let dtds = "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>|\
                    <!DOCTYPE a [<!ENTITY l \"lol\"><!ENTITY l2 \"&l;&l;&l;\">]><a>&l2;</a>|\
                    <!DOCTYPE a [<!ENTITY % p SYSTEM \"http://evil/x\"> %p;]><a/>|\
                    <!DOCTYPE a SYSTEM \"http://evil/x.dtd\"><a/>|<!DOCTYPE a PUBLIC \"-//x\" \"http://x/x.dtd\"><a/>";
        for body in dtds.split('|') {
            assert_eq!(XmlDoc::parse(body.as_bytes()).err(), Some(RewriteError::Unsupported("DTD")), "{body}");
        }
    }

    #[test]
    fn selector_syntax() {
        assert_eq!(path("/soap:Envelope/Body"), path("/Envelope/Body"));
        for bad in ["", "/", "a//b", "a/", "a b", ":x", "a:", "*", "a[1]", "@id"] {
            assert!(XmlPath::parse(bad).is_err(), "{bad}");
        }
    }

    /// Well-formed documents: nested elements (prefixed or not) with text, entities, CDATA, comments, values.
    fn document() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            "[ a-z.]{0,8}",
            prop::sample::select(vec![
                "4111 1111 1111 1111",
                "a@b.io",
                "&amp;&lt;&#65;",
                "<![CDATA[x]]>y]]>",
                "<!---->"
            ])
            .prop_map(str::to_owned),
        ];
        let leaf = ("[abc]", text.clone()).prop_map(|(n, t)| format!("<{n}>{t}</{n}>"));
        let tree = leaf.prop_recursive(4, 32, 4, move |inner| {
            let kids = proptest::collection::vec((inner, text.clone()), 0..4);
            ("(p:)?[abc]", kids).prop_map(|(n, kids)| match kids.is_empty() {
                true => format!("<{n} x='1'/>"),
                false => format!("<{n}>{}</{n}>", kids.into_iter().map(|(k, t)| k + &t).collect::<String>()),
            })
        });
        let prolog = prop::sample::select(vec!["", "\u{FEFF}", "<?xml version=\"1.0\"?>\n", "\u{FEFF}<!-- x -->"]);
        (prolog, tree).prop_map(|(p, t)| format!("{p}<root xmlns:p=\"urn:p\">{t}</root>\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Arbitrary bytes and generated documents: no panic; all Keep is byte-identical; any mix of edits gives
        /// a well-formed body; a truncated document is refused.
        #[test]
        fn round_trips_and_never_panics(
            body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), document().prop_map(String::into_bytes)],
            cut in any::<prop::sample::Index>(),
        ) {
            let Ok(doc) = String::from_utf8(body) else { return Ok(()) };
            let fields = ["a", "b/c", "/root/p:b"];
            let Ok(mut parsed) = XmlDoc::parse(doc.as_bytes()) else { return Ok(()) };
            let n = parsed.find(&fields.map(path).iter().collect::<Vec<_>>(), &ALL).len();
            prop_assert_eq!(apply(parsed, &vec![Edit::Keep; n]), doc.clone());
            let (parsed, found) = run(&doc, &fields, &ALL);
            let pick = |i: usize| [Edit::Remove, replace("v<&]]>\r"), Edit::Keep][(i + cut.index(3)) % 3].clone();
            if let Ok(out) = parsed.apply(&(0..found.len()).map(pick).collect::<Vec<_>>()) {
                prop_assert!(XmlDoc::parse(&out).is_ok());
            }
            // Replacing every selected element (when none has children) reads back through a new parse.
            let (parsed, found) = run(&doc, &fields, &[]);
            if let Ok(out) = parsed.apply(&vec![replace("v<&"); found.len()]) {
                let (_, again) = run(std::str::from_utf8(&out).unwrap(), &fields, &[]);
                prop_assert!(again.len() == found.len() && again.iter().all(|(v, _)| v == "v<&"));
            }
            let end = cut.index(doc.len());
            if doc.is_char_boundary(end) && doc[..end].trim_end().len() < doc.trim_end().len() {
                prop_assert!(XmlDoc::parse(&doc.as_bytes()[..end]).is_err());
            }
        }
    }
}
