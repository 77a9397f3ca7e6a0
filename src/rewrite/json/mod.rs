//! JSON bodies: find values by [`JsonPath`] and by detection in every other place, then rewrite them in place.
//!
//! - Parsing is strict ([`tape`]: RFC 8259, UTF-8 only, nesting limit 128) and builds no values: the output is
//!   the original body with only the edited values spliced in, so whitespace, key order, number digits and
//!   escapes of everything else stay byte for byte (with every edit `Keep` the output *is* the body).
//! - A selector reports what it matches, in document order: a string's unescaped content, a number's exact text,
//!   `true`/`false`; `null`, objects and arrays report `""`. Objects and arrays can only be kept or removed
//!   (`Replace` on one is `Unsupported`); a value matched by several selectors is reported once, for the first.
//!   A replaced number stays a number when the new value is a JSON number; anything else becomes a string.
//! - Detection reads every place a selector did not take, as the application decodes it, in document order:
//!   - string values, unescaped (`\u0034`, `\/`…): a match is edited inside the string (`Remove` cuts it out);
//!   - object keys, unescaped, also those of selected members and of members inside selected containers: a match
//!     is edited inside the key the same way (the member keeps its place and value);
//!   - numbers, by their raw text and by their plain notation ([`number`]: `5.555555555554444e15` is
//!     `5555555555554444` to an application that reads the value). A match in the plain notation is written
//!     back as the whole number in plain notation with the replacement in it; otherwise a match in the raw text
//!     is replaced in place. Either way the result must be a JSON number (a number stays a number):
//!     a replacement that is not one is `Unsupported`, and `Remove` removes the member or element. A number whose
//!     plain notation is too long to write ([`number::Plain::Cut`]) and holds a value there is `Unsupported`.
//!
//!   `true`, `false`, `null` and whitespace hold no text.
//! - Duplicate object keys are kept as written: a selector matches each of them.

mod number;
mod tape;

use super::select::{JsonPath, Seg, State};
use super::{Edit, Found, Origin, RewriteError};
use crate::detect::Match;
use crate::vault::class::Class;
use number::Plain;
use std::borrow::Cow;
use tape::{Node, Tape, Ty};

const NOT_A_NUMBER: RewriteError =
    RewriteError::Unsupported("a value found in a JSON number can only be replaced by a JSON number");
const TOO_LONG: RewriteError =
    RewriteError::Unsupported("a JSON number holds a value only its plain notation shows, and that is too long");

/// A parsed JSON body, and where the values of the last [`JsonDoc::find`] are.
pub struct JsonDoc {
    body: String,
    tape: Tape,
    targets: Vec<Target>,
}

/// Never the body's content: it holds the values veil is there to protect.
impl std::fmt::Debug for JsonDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDoc").field("bytes", &self.body.len()).finish_non_exhaustive()
    }
}

/// A found value: a node of the tape, whole, or a detection match in one of its texts.
#[derive(Debug, Clone, Copy)]
struct Target {
    node: usize,
    part: Part,
}

/// Which text of a node a value is in; detection matches carry their byte range in that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The whole value (a selector's match).
    Whole,
    /// In a string value's text (raw when it has no escapes, else decoded).
    Str(usize, usize),
    /// In a member's key (raw when it has no escapes, else decoded).
    Key(usize, usize),
    /// In a number's raw text.
    Num(usize, usize),
    /// In a number's plain notation.
    Plain(usize, usize),
}

impl Part {
    fn range(self) -> Option<(usize, usize)> {
        match self {
            Part::Whole => None,
            Part::Str(s, e) | Part::Key(s, e) | Part::Num(s, e) | Part::Plain(s, e) => Some((s, e)),
        }
    }

    /// Detection edits of one node's same text are applied together.
    fn same_text(self, other: Part) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

impl JsonDoc {
    /// Parses a body strictly: valid UTF-8, one JSON value, at most 128 levels deep.
    pub fn parse(body: &[u8]) -> Result<JsonDoc, RewriteError> {
        let text = std::str::from_utf8(body).map_err(|_| RewriteError::Malformed("body is not valid UTF-8"))?;
        let tape = Tape::parse(text)?;
        Ok(JsonDoc { body: text.to_owned(), tape, targets: Vec::new() })
    }

    /// Lists the values to decide about: `fields[0]`'s matches, then `fields[1]`'s…, each in document order,
    /// then detection matches (for `detect` classes) in every place no selector took, in document order.
    /// Fails (`Unsupported`) when a number holds a value that cannot be written back.
    pub fn find(&mut self, fields: &[&JsonPath], detect: &[Class]) -> Result<Vec<Found>, RewriteError> {
        let mut walk = Walk {
            doc: self,
            fields,
            detect,
            states: fields.iter().map(|p| p.start()).collect(),
            by_field: (0..fields.len()).map(|_| Vec::new()).collect(),
            detected: Vec::new(),
            error: None,
        };
        // No selector matches the root itself; a body that is just a string or a number is still scanned.
        match self.tape.nodes.first() {
            Some(Node { ty: Ty::Object | Ty::Array, .. }) if !fields.is_empty() || !detect.is_empty() => {
                walk.children(0, 0)
            }
            Some(root) => walk.scan_value(0, root),
            None => {}
        }
        if let Some(e) = walk.error {
            return Err(e);
        }
        let (found, targets): (Vec<Found>, Vec<Target>) =
            walk.by_field.into_iter().flatten().chain(walk.detected).unzip();
        self.targets = targets;
        Ok(found)
    }

    /// Writes the body with one edit per value of the last `find`, in the same order.
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.targets.len() {
            return Err(RewriteError::EditCount);
        }
        let mut patches = Vec::new();
        let mut removed = Vec::new();
        let mut detected: Vec<(Target, &Edit)> = Vec::new();
        for (&t, e) in self.targets.iter().zip(edits) {
            let Some(node) = self.tape.nodes.get(t.node) else { continue };
            let container = matches!(node.ty, Ty::Object | Ty::Array);
            match (e, t.part) {
                (Edit::Keep, _) => {}
                (_, Part::Str(..) | Part::Key(..) | Part::Num(..) | Part::Plain(..)) => detected.push((t, e)),
                (Edit::Remove, Part::Whole) => removed.push(t.node),
                (Edit::Replace(_), Part::Whole) if container => {
                    return Err(RewriteError::Unsupported("a JSON object or array can be removed but not replaced"))
                }
                (Edit::Replace(v), Part::Whole) if node.ty == Ty::Number && tape::is_number(v) => {
                    patches.push(Patch { start: node.start(), end: node.end(), put: Put::Raw(v.as_str().into()) })
                }
                (Edit::Replace(v), Part::Whole) => {
                    patches.push(Patch { start: node.start(), end: node.end(), put: Put::Quoted(v.as_str().into()) })
                }
            }
        }
        // One text's detection edits are consecutive and in order.
        for run in detected.chunk_by(|a, b| a.0.node == b.0.node && a.0.part.same_text(b.0.part)) {
            let Some(&(t, _)) = run.first() else { continue };
            let Some(node) = self.tape.nodes.get(t.node) else { continue };
            match t.part {
                Part::Str(..) => {
                    let escaped = node.ty == (Ty::Str { escaped: true });
                    self.text_patches((node.start() + 1, node.end() - 1, escaped), run, &mut patches);
                }
                Part::Key(..) => {
                    if let Some(key) = node.key() {
                        self.text_patches(key, run, &mut patches);
                    }
                }
                Part::Num(..) | Part::Plain(..) => self.number_patch(t.node, node, run, &mut patches, &mut removed)?,
                Part::Whole => {}
            }
        }
        if removed.contains(&0) {
            return Err(RewriteError::Unsupported("the whole JSON body cannot be removed"));
        }
        removed.sort_unstable();
        removed.dedup();
        self.cuts(&removed, &mut patches);
        Ok(splice(self.body.as_bytes(), patches))
    }

    /// Patches for the detection edits of one string value or key, whose raw content (between the quotes) is
    /// `start..end`: in place when it has no escapes, else the whole string written again.
    fn text_patches<'e>(
        &self,
        (start, end, escaped): (usize, usize, bool),
        run: &[(Target, &'e Edit)],
        patches: &mut Vec<Patch<'e>>,
    ) {
        let put = |e: &'e Edit| match e {
            Edit::Replace(v) => Put::Escaped(v),
            Edit::Keep | Edit::Remove => Put::Nothing,
        };
        if !escaped {
            for (t, e) in run {
                if let Some((s, z)) = t.part.range() {
                    patches.push(Patch { start: start + s, end: start + z, put: put(e) });
                }
            }
            return;
        }
        let text = tape::decode(self.raw(start, end));
        let out = splice_text(&text, run);
        patches.push(Patch { start: start - 1, end: end + 1, put: Put::Quoted(out.into()) });
    }

    /// The patch for the detection edits of one number: its raw text or plain notation with the replacements
    /// in it, which must still be a JSON number; `Remove` removes the whole member or element.
    fn number_patch<'e>(
        &self,
        index: usize,
        node: &Node,
        run: &[(Target, &'e Edit)],
        patches: &mut Vec<Patch<'e>>,
        removed: &mut Vec<usize>,
    ) -> Result<(), RewriteError> {
        if run.iter().any(|(_, e)| matches!(e, Edit::Remove)) {
            removed.push(index);
            return Ok(());
        }
        let raw = self.raw(node.start(), node.end());
        let text = match (run.first().map(|(t, _)| t.part), number::plain(raw)) {
            (Some(Part::Plain(..)), Plain::Text(p)) => Cow::Owned(p),
            _ => Cow::Borrowed(raw),
        };
        let out = splice_text(&text, run);
        if !tape::is_number(&out) {
            return Err(NOT_A_NUMBER);
        }
        patches.push(Patch { start: node.start(), end: node.end(), put: Put::Raw(out.into()) });
        Ok(())
    }

    /// Cuts that remove the members/elements `removed` (sorted node indexes) with their commas, so the
    /// containers stay valid JSON. In each container, values removed before the first kept one take the comma
    /// after them, the others the comma before them.
    fn cuts(&self, removed: &[usize], patches: &mut Vec<Patch<'_>>) {
        let nodes = &self.tape.nodes;
        let mut parents: Vec<usize> = removed.iter().filter_map(|&n| nodes.get(n).and_then(Node::parent)).collect();
        parents.sort_unstable();
        parents.dedup();
        for p in parents {
            let items: Vec<(usize, bool)> =
                self.tape.children(p).map(|c| (c, removed.binary_search(&c).is_ok())).collect();
            let span = |i: usize| items.get(i).and_then(|&(c, _)| nodes.get(c)).map_or((0, 0), |n| (n.item(), n.end()));
            let Some(first_kept) = items.iter().position(|&(_, gone)| !gone) else {
                let cut = Patch { start: span(0).0, end: span(items.len().saturating_sub(1)).1, put: Put::Nothing };
                patches.push(cut);
                continue;
            };
            for (i, _) in items.iter().enumerate().filter(|(_, &(_, gone))| gone) {
                let (start, end) = if i < first_kept { (span(i).0, span(i + 1).0) } else { (span(i - 1).1, span(i).1) };
                patches.push(Patch { start, end, put: Put::Nothing });
            }
        }
    }

    fn raw(&self, start: usize, end: usize) -> &str {
        self.body.get(start..end).unwrap_or_default()
    }

    /// A string value's text: its raw content, decoded when it has escapes.
    fn text(&self, n: &Node) -> Cow<'_, str> {
        let raw = self.raw(n.start() + 1, n.end() - 1);
        if n.ty == (Ty::Str { escaped: true }) {
            Cow::Owned(tape::decode(raw))
        } else {
            Cow::Borrowed(raw)
        }
    }
}

/// `text` with the edits of `run` (ordered ranges in it) applied: `Replace` puts the value in, the others
/// (`Remove`) cut the range out.
fn splice_text(text: &str, run: &[(Target, &Edit)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (t, e) in run {
        let Some((s, end)) = t.part.range() else { continue };
        out.push_str(text.get(at..s).unwrap_or_default());
        if let Edit::Replace(v) = e {
            out.push_str(v);
        }
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// What goes in place of a patched byte range.
enum Put<'e> {
    Nothing,
    /// Written as is (a JSON number).
    Raw(Cow<'e, str>),
    /// Escaped, inside an existing string.
    Escaped(&'e str),
    /// Escaped, in quotes: a new string value.
    Quoted(Cow<'e, str>),
}

struct Patch<'e> {
    start: usize,
    end: usize,
    put: Put<'e>,
}

/// The body with `patches` applied; a patch inside an earlier (removed) range is dropped with it.
fn splice(body: &[u8], mut patches: Vec<Patch<'_>>) -> Vec<u8> {
    patches.sort_unstable_by_key(|p| (p.start, std::cmp::Reverse(p.end)));
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at = 0;
    for p in patches {
        if p.start < at {
            continue;
        }
        out.extend_from_slice(body.get(at..p.start).unwrap_or_default());
        match p.put {
            Put::Nothing => {}
            Put::Raw(v) => out.extend_from_slice(v.as_bytes()),
            Put::Escaped(v) => tape::escape_into(&mut out, v),
            Put::Quoted(v) => {
                out.push(b'"');
                tape::escape_into(&mut out, &v);
                out.push(b'"');
            }
        }
        at = p.end;
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
    out
}

/// The depth-first walk of `find`, carrying each path's matcher state.
///
/// It runs over every node of every inspected body, so it allocates only for what it reports (and for keys
/// written with escapes); the matcher states of all levels share one stack.
struct Walk<'a> {
    doc: &'a JsonDoc,
    fields: &'a [&'a JsonPath],
    detect: &'a [Class],
    /// One state per field for each level down to the current value (and the root's), level after level.
    states: Vec<State>,
    by_field: Vec<Vec<(Found, Target)>>,
    detected: Vec<(Found, Target)>,
    /// The first value found that cannot be written back.
    error: Option<RewriteError>,
}

impl Walk<'_> {
    /// Walks the children of the object or array `node`, whose fields' states start at `states[base]`.
    fn children(&mut self, node: usize, base: usize) {
        let doc = self.doc;
        for (i, c) in doc.tape.children(node).enumerate() {
            let Some(n) = doc.tape.nodes.get(c) else { continue };
            match n.key() {
                Some((s, e, false)) => self.child(c, Seg::Key(doc.raw(s, e)), base),
                Some((s, e, true)) => self.child(c, Seg::Key(&tape::decode(doc.raw(s, e))), base),
                None => self.child(c, Seg::Index(i), base),
            }
        }
    }

    fn child(&mut self, node: usize, seg: Seg<'_>, parent: usize) {
        let Some(&n) = self.doc.tape.nodes.get(node) else { return };
        self.scan_key(node, &n);
        let fields = self.fields.len();
        let base = self.states.len();
        for i in 0..fields {
            let next = self.fields[i].step(self.states[parent + i], seg);
            self.states.push(next);
        }
        let hit = (0..fields).find(|&i| self.fields[i].accepts(self.states[base + i]));
        let container = matches!(n.ty, Ty::Object | Ty::Array);
        if let Some(i) = hit {
            let value = match n.ty {
                Ty::Str { .. } => self.doc.text(&n).into_owned(),
                Ty::Number | Ty::True | Ty::False => self.doc.raw(n.start(), n.end()).to_owned(),
                Ty::Null | Ty::Object | Ty::Array => String::new(),
            };
            if let Some(list) = self.by_field.get_mut(i) {
                list.push((Found { origin: Origin::Field(i), value }, Target { node, part: Part::Whole }));
            }
        } else {
            self.scan_value(node, &n);
        }
        if container {
            if self.states[base..].iter().any(|s| !s.is_dead()) {
                self.children(node, base);
            } else if !self.detect.is_empty() {
                // No selector can match below: only detection is left, over the subtree's keys and values in order.
                let doc = self.doc;
                for (c, d) in doc.tape.nodes.iter().enumerate().take(n.next()).skip(node + 1) {
                    self.scan_key(c, d);
                    self.scan_value(c, d);
                }
            }
        }
        self.states.truncate(base);
    }

    /// Detection over a string's or a number's text (tape index `node`); other values hold none.
    fn scan_value(&mut self, node: usize, n: &Node) {
        if self.detect.is_empty() {
            return;
        }
        match n.ty {
            Ty::Str { .. } => {
                let s = self.doc.text(n);
                let matches = crate::detect::find(&s, self.detect);
                self.push(node, &s, matches, Part::Str);
            }
            Ty::Number => self.scan_number(node, n),
            _ => {}
        }
    }

    /// Detection over a member's key (unescaped).
    fn scan_key(&mut self, node: usize, n: &Node) {
        let Some((s, e, escaped)) = n.key().filter(|_| !self.detect.is_empty()) else { return };
        let raw = self.doc.raw(s, e);
        let text = if escaped { Cow::Owned(tape::decode(raw)) } else { Cow::Borrowed(raw) };
        let matches = crate::detect::find(&text, self.detect);
        self.push(node, &text, matches, Part::Key);
    }

    /// Detection over a number: its plain notation when that shows a value, else its raw text.
    fn scan_number(&mut self, node: usize, n: &Node) {
        let raw = self.doc.raw(n.start(), n.end());
        match number::plain(raw) {
            Plain::Text(p) => {
                let matches = crate::detect::find(&p, self.detect);
                if !matches.is_empty() {
                    return self.push(node, &p, matches, Part::Plain);
                }
            }
            Plain::Cut(p) => {
                if !crate::detect::find(&p, self.detect).is_empty() {
                    self.error.get_or_insert(TOO_LONG);
                    return;
                }
            }
            Plain::Same => {}
        }
        let matches = crate::detect::find(raw, self.detect);
        self.push(node, raw, matches, Part::Num);
    }

    /// Records the detection `matches` in `text`, a text of the node `node`.
    fn push(&mut self, node: usize, text: &str, matches: Vec<Match>, part: fn(usize, usize) -> Part) {
        let mut last_end = 0;
        for m in matches {
            // Defensive: keep only non-empty, ordered, non-overlapping ranges on char boundaries.
            let Some(value) = text.get(m.start..m.end).filter(|_| m.start >= last_end && m.start < m.end) else {
                continue;
            };
            last_end = m.end;
            let found = Found { origin: Origin::Detected(m.class), value: value.to_owned() };
            self.detected.push((found, Target { node, part: part(m.start, m.end) }));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;
    use Edit::{Keep, Remove};

    const PAN: &str = "4111111111111111";
    const F0: Origin = Origin::Field(0);
    const DET: Origin = Origin::Detected(Class::Pan);

    /// Parses `body`, finds with `ps` (and PAN detection when `pan`); returns the doc and what was found.
    fn found(body: &str, ps: &[&str], pan: bool) -> (JsonDoc, Vec<(Origin, String)>) {
        let ps: Vec<JsonPath> = ps.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        let mut doc = JsonDoc::parse(body.as_bytes()).unwrap();
        let f = doc.find(&ps.iter().collect::<Vec<_>>(), if pan { &[Class::Pan] } else { &[] }).unwrap();
        (doc, f.into_iter().map(|f| (f.origin, f.value)).collect())
    }

    fn values(body: &str, ps: &[&str]) -> Vec<String> {
        found(body, ps, false).1.into_iter().map(|(_, v)| v).collect()
    }

    fn rewrite(body: &str, ps: &[&str], pan: bool, edits: &[Edit]) -> String {
        String::from_utf8(found(body, ps, pan).0.apply(edits).unwrap()).unwrap()
    }

    fn rep(s: &str) -> Edit {
        Edit::Replace(s.to_owned())
    }

    #[test]
    fn matches_each_path_syntax() {
        let body = r#"{"card":{"number":"4111","cvc":"123"},"a":[{"b":1},{"b":2}],"weird.key":"w","n":null}"#;
        assert_eq!(values(body, &["$.card.number"]), ["4111"]);
        assert_eq!(values(body, &["$.a[1].b"]), ["2"]);
        assert_eq!(values(body, &["$['weird.key']"]), ["w"]);
        assert_eq!(values(body, &["$.card.*"]), ["4111", "123"]);
        assert_eq!(values(body, &["$.card[*]"]), ["4111", "123"]);
        assert_eq!(values(body, &["$.n", "$.a"]), ["", ""], "null and containers report an empty value");
        assert!(values(body, &["$.missing", "$.card.number.deeper", "$.a[5]", "$.a.b"]).is_empty());
        let items = r#"{"items":[{"pan":"1","x":{"pan":"no"}},{"q":0},{"pan":"2"}]}"#;
        assert_eq!(values(items, &["$.items[*].pan"]), ["1", "2"]);
    }

    #[test]
    fn descendants_and_order() {
        let body = r#"{"b":"1","x":{"b":"2","y":[{"b":"3"},{"z":{"b":"4"}}]},"c":"no"}"#;
        assert_eq!(values(body, &["$..b"]), ["1", "2", "3", "4"]);
        assert_eq!(values(body, &["$.x..b"]), ["2", "3", "4"]);
        assert_eq!(found(r#"{"b":{"b":"in"}}"#, &["$..b"], false).1, [(F0, "".into()), (F0, "in".into())]);
        // Grouped by selector, document order inside; a value two selectors match is reported for the first.
        let (_, f) = found(r#"{"a":"1","b":"2","c":{"a":"3"}}"#, &["$.b", "$..a", "$.a"], false);
        let f1 = Origin::Field(1);
        assert_eq!(f, [(F0, "2".into()), (f1, "1".into()), (f1, "3".into())]);
    }

    #[test]
    fn numbers_kept_and_replaced() {
        let body = r#"{"pan":4111111111111111111,"f":1.50,"e":-2E+10,"big":123456789012345678901234567890}"#;
        assert_eq!(values(body, &["$.*"]), ["4111111111111111111", "1.50", "-2E+10", "123456789012345678901234567890"]);
        assert_eq!(rewrite(body, &["$.*"], false, &[Keep, Keep, Keep, Keep]), body, "digits are kept as written");
        let body = r#"{"s":"4111","n":4111,"m":4111,"o":1,"t":true,"z":null}"#;
        let edits = [rep("42"), rep("-9.05"), rep("4111-x"), rep(" 1"), rep("T"), rep("N")];
        let out = rewrite(body, &["$.s", "$.n", "$.m", "$.o", "$.t", "$.z"], false, &edits);
        assert_eq!(out, r#"{"s":"42","n":-9.05,"m":"4111-x","o":" 1","t":"T","z":"N"}"#);
        for not in ["", "01", "1.", ".5", "+1", "1e", "0x1", "NaN", "--1", "1-", "\"1\""] {
            let want = format!(r#"{{"n":{}}}"#, serde_json::to_string(not).unwrap());
            assert_eq!(rewrite(r#"{"n":1}"#, &["$.n"], false, &[rep(not)]), want, "{not:?}");
        }
    }

    #[test]
    fn untouched_bytes_stay_as_written() {
        let body = "{ \"a\" : \"\\u0041\",\n  \"card\": \"4111\" ,\t\"z\":[ 1 , 2 ] }";
        assert_eq!(rewrite(body, &["$.card"], false, &[rep("tok")]), body.replace("\"4111\"", "\"tok\""));
        assert_eq!(rewrite(body, &["$.card"], false, &[Remove]), "{ \"a\" : \"\\u0041\" ,\t\"z\":[ 1 , 2 ] }");
        assert_eq!(rewrite(body, &["$.a"], false, &[Remove]), "{ \"card\": \"4111\" ,\t\"z\":[ 1 , 2 ] }");
        assert_eq!(rewrite(body, &["$.z[*]"], false, &[Remove, Remove]), body.replace("[ 1 , 2 ]", "[  ]"));
        assert_eq!(rewrite(body, &["$.*"], false, &[Remove, Remove, Remove]), "{  }");
        let out = rewrite(body, &["$.a"], false, &[rep("q\"\\\n\u{1}é")]);
        assert!(out.starts_with(r#"{ "a" : "q\"\\\n\u0001é","#), "replacements are escaped: {out}");
        // Keys written with escapes are matched by their text.
        assert_eq!(values(r#"{"c\u0061rd":"1","card":"2"}"#, &["$.card"]), ["1", "2"]);
    }

    #[test]
    fn remove_members_and_elements_keeping_order() {
        let body = r#"{"a":1,"card":{"n":"x"},"z":[1,2,3,4],"b":2}"#;
        assert_eq!(rewrite(body, &["$.card"], false, &[Remove]), r#"{"a":1,"z":[1,2,3,4],"b":2}"#);
        let out = rewrite(body, &["$.z[1]", "$.z[3]", "$.a"], false, &[Remove, Remove, Remove]);
        assert_eq!(out, r#"{"card":{"n":"x"},"z":[1,3],"b":2}"#);
        let out = rewrite(body, &["$.card.n", "$.card"], false, &[rep("t"), Remove]);
        assert_eq!(out, r#"{"a":1,"z":[1,2,3,4],"b":2}"#, "a child edit inside a removed member is fine");
        let items = r#"{"items":[{"pan":"1"},{"pan":"2"},{"pan":"3"}]}"#;
        assert_eq!(rewrite(items, &["$.items[*]"], false, &[Remove, Keep, Remove]), r#"{"items":[{"pan":"2"}]}"#);
        let (doc, _) = found(body, &["$.card"], false);
        assert!(matches!(doc.apply(&[rep("x")]), Err(RewriteError::Unsupported(_))), "objects are not replaced");
    }

    #[test]
    fn detected_substrings_are_edited_in_place() {
        let body = format!(r#"{{"note":"pay {PAN} or {PAN}!","card":"{PAN}","k{PAN}":7}}"#);
        let (_, f) = found(&body, &["$.card"], true);
        assert_eq!(f, [(F0, PAN.into()), (DET, PAN.into()), (DET, PAN.into())], "no scan of the selected value");
        let out = rewrite(&body, &["$.card"], true, &[rep("T0"), rep("T1"), rep("T2-longer")]);
        assert_eq!(out, format!(r#"{{"note":"pay T1 or T2-longer!","card":"T0","k{PAN}":7}}"#));
        let out = rewrite(&body, &[], true, &[Remove, rep("T"), Keep]);
        assert!(out.starts_with(&format!(r#"{{"note":"pay  or T!","card":"{PAN}""#)), "{out}");
        let out = rewrite(&body, &[], true, &[Keep, Keep, rep("T")]);
        assert!(out.starts_with(&format!(r#"{{"note":"pay {PAN} or {PAN}!","card":"T""#)), "{out}");
        let body = format!(r#""pay {PAN}""#);
        assert_eq!(found(&body, &["$.a"], true).1, [(DET, PAN.into())], "a body that is one string");
        assert_eq!(rewrite(&body, &[], true, &[rep("T")]), r#""pay T""#);
        // Below values no selector can reach, and below those it still can, every string is scanned in order.
        let body = format!(r#"{{"x":{{"y":["{PAN}",{{"z":"a\t{PAN}"}}]}},"c":{{"n":"{PAN}","m":"{PAN}"}}}}"#);
        let (_, f) = found(&body, &["$.c.n"], true);
        assert_eq!(f, [(F0, PAN.into()), (DET, PAN.into()), (DET, PAN.into()), (DET, PAN.into())]);
        let out = rewrite(&body, &["$.c.n"], true, &[rep("A"), rep("B"), rep("C"), rep("D")]);
        assert_eq!(out, r#"{"x":{"y":["B",{"z":"a\tC"}]},"c":{"n":"A","m":"D"}}"#);
    }

    #[test]
    fn escapes_are_decoded_in_values() {
        let body = r#"{"p":"\u0034111111111111111","q":"a\"b\\c\u00e9\/","r":"x \u0034111111111111111"}"#;
        assert_eq!(found(body, &["$.p", "$.q"], true).1[2], (DET, PAN.into()));
        assert_eq!(values(body, &["$.p", "$.q"]), [PAN, "a\"b\\cé/"]);
        // A detected value in a string with escapes: the string is written again, escaped where needed.
        let body = r#"{"r":"x\t\u0034111111111111111 \u00e9 4111111111111111"}"#;
        assert_eq!(rewrite(body, &[], true, &[rep("T\""), Keep]), format!(r#"{{"r":"x\tT\" é {PAN}"}}"#));
        assert_eq!(rewrite(body, &[], true, &[Keep, Keep]), body, "all kept: untouched");
    }

    /// Finds with detection of every class; returns the values found.
    fn detected(body: &str, classes: &[Class]) -> Vec<(Origin, String)> {
        let mut doc = JsonDoc::parse(body.as_bytes()).unwrap();
        doc.find(&[], classes).unwrap().into_iter().map(|f| (f.origin, f.value)).collect()
    }

    const CARD: &str = "5555555555554444";

    #[test]
    fn numbers_are_read_as_text_and_stay_numbers() {
        let body =
            format!(r#"{{"pan":{CARD},"a":[1,{CARD},-{CARD}],"f":{CARD}.25,"z":{CARD}.0,"e":5.555555555554444e15}}"#);
        let (_, f) = found(&body, &[], true);
        assert_eq!(f, vec![(DET, CARD.to_owned()); 6]);
        let out = rewrite(&body, &[], true, &[rep("1"), rep("2"), rep("3"), rep("4"), rep("5"), rep("6")]);
        // In place in the raw text, except where only the plain notation shows it (written back plain).
        assert_eq!(out, r#"{"pan":1,"a":[1,2,-3],"f":4.25,"z":5,"e":6}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["pan"].is_number() && v["a"][2].is_number() && v["e"].is_number());
        assert_eq!(rewrite(&body, &[], true, &vec![Keep; 6]), body, "kept: byte for byte");
        // The root, and a number that is a card only in plain notation (0.5555555555554444e16).
        assert_eq!(rewrite(CARD, &[], true, &[rep("4000000000000002")]), "4000000000000002");
        assert_eq!(rewrite("[0.5555555555554444e16]", &[], true, &[rep("7")]), "[7]");
        // A replacement that is not a number is refused; Remove removes the member or element.
        let (doc, _) = found(&body, &[], true);
        let edits = [rep("tok"), Keep, Keep, Keep, Keep, Keep];
        assert_eq!(doc.apply(&edits).unwrap_err(), NOT_A_NUMBER);
        let out = rewrite(&body, &[], true, &[Remove, Keep, Remove, Keep, Keep, Remove]);
        assert_eq!(out, format!(r#"{{"a":[1,{CARD}],"f":{CARD}.25,"z":{CARD}.0}}"#));
        let (doc, _) = found(CARD, &[], true);
        assert!(matches!(doc.apply(&[Remove]), Err(RewriteError::Unsupported(_))), "the root cannot go");
        // A selected number is the selector's, not detection's.
        assert_eq!(found(&format!(r#"{{"pan":{CARD}}}"#), &["$.pan"], true).1, [(F0, CARD.to_owned())]);
    }

    #[test]
    fn numbers_that_are_not_values_stay_untouched() {
        let body = r#"{"amount":49.90,"qty":2,"id":5555555555554443,"big":123456789012345678901234,"e":1e300,
            "f":-0.0,"tiny":5e-324,"ts":1718000000001,"z":0.00000000000000000000000000000000000000000000000001}"#;
        assert_eq!(detected(body, &[Class::Pan, Class::Iban, Class::Email, Class::Phone]), []);
        let (doc, f) = found(body, &[], true);
        assert_eq!(doc.apply(&vec![Keep; f.len()]).unwrap(), body.as_bytes());
    }

    #[test]
    fn keys_are_read_and_rewritten_in_place() {
        let body = format!(r#"{{"{CARD}":"x","jo@example.com":{{"\u0035555555555554444":1}},"card":{{"{CARD}":2}}}}"#);
        let f = detected(&body, &[Class::Pan, Class::Email]);
        let want = [(DET, CARD), (Origin::Detected(Class::Email), "jo@example.com"), (DET, CARD), (DET, CARD)];
        assert_eq!(f, want.map(|(o, v)| (o, v.to_owned())));
        let mut doc = JsonDoc::parse(body.as_bytes()).unwrap();
        let path = JsonPath::parse("$.card").unwrap();
        let f = doc.find(&[&path], &[Class::Pan, Class::Email]).unwrap();
        assert_eq!(f.len(), 5, "the selected object's keys are still read");
        let out = doc.apply(&[Keep, rep("K1"), rep("a@b.io"), rep("K\\"), rep("K4")]).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, r#"{"K1":"x","a@b.io":{"K\\":1},"card":{"K4":2}}"#);
        assert_eq!(rewrite(&format!(r#"{{"{CARD} x":1}}"#), &[], true, &[Remove]), r#"{" x":1}"#);
        // Every selected member's key is read too.
        let (_, f) = found(&format!(r#"{{"{CARD}":"v"}}"#), &["$.*"], true);
        assert_eq!(f, [(F0, "v".to_owned()), (DET, CARD.to_owned())]);
    }

    #[test]
    fn escapes_are_decoded_before_detection() {
        for text in [r"\u0035555555555554444", r"5555\u00205555\u00205555\u00204444", r"a\/5555555555554444"] {
            let body = format!(r#"{{"s":"{text}","{text}":0}}"#);
            let f = detected(&body, &[Class::Pan]);
            assert_eq!(f.len(), 2, "{text}");
            let out = rewrite(&body, &[], true, &[rep("T"), rep("U")]);
            let v: Value = serde_json::from_str(&out).unwrap();
            assert!(!v.to_string().contains("5555"), "{out}");
        }
    }

    /// A JSON document with the card at random places: string values (plain or escaped), keys, numbers
    /// (integer, negative, fraction, exponent).
    fn arb_with_card() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(format!(r#""{CARD}""#)),
            Just(format!(r#""card: {CARD}.""#)),
            Just(r#""\u0035555 5555 5555 4444""#.to_owned()),
            Just(CARD.to_owned()),
            Just(format!("-{CARD}")),
            Just(format!("{CARD}.000")),
            Just("5.555555555554444E+15".to_owned()),
            Just("555555555555444400e-2".to_owned()),
            "-?[1-4][0-4]{0,7}(\\.[0-4]{1,3})?",
            Just("true".to_owned()),
            Just(r#""plain""#.to_owned()),
        ];
        let key = prop_oneof![Just(CARD.to_owned()), Just(r"\u0035555555555554444".to_owned()), "[a-z]{0,3}"];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key.clone(), inner), 0..4).prop_map(|kv| {
                    let members: Vec<String> = kv.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Wherever the card is, after every found value is replaced by a number, no form of it is left: not in
        /// the bytes, not in the decoded strings and keys, not in any number's plain notation.
        #[test]
        fn no_card_survives(body in arb_with_card(), selected in any::<bool>()) {
            let ps: &[&str] = if selected { &["$..*"] } else { &[] };
            let (doc, f) = found(&body, ps, true);
            // Selected objects and arrays (reported empty) are kept: what is inside them is still read.
            let edits: Vec<Edit> = f.iter().map(|(_, v)| if v.is_empty() { Keep } else { rep("1234") }).collect();
            let out = doc.apply(&edits).unwrap();
            let out = String::from_utf8(out).unwrap();
            let v: Value = serde_json::from_str(&out).unwrap();
            prop_assert!(!out.contains("5555"), "{}", out);
            fn texts(v: &Value, out: &mut Vec<String>) {
                match v {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(n) => {
                        out.push(n.to_string());
                        if let Plain::Text(p) | Plain::Cut(p) = number::plain(&n.to_string()) {
                            out.push(p);
                        }
                    }
                    Value::Array(a) => a.iter().for_each(|v| texts(v, out)),
                    Value::Object(m) => m.iter().for_each(|(k, v)| {
                        out.push(k.clone());
                        texts(v, out);
                    }),
                    _ => {}
                }
            }
            let mut all = Vec::new();
            texts(&v, &mut all);
            prop_assert!(all.iter().all(|t| !t.contains("5555")), "{}", out);
        }
    }

    #[test]
    fn edit_count_must_match() {
        let (doc, _) = found(r#"{"a":"1","b":"2"}"#, &["$.*"], false);
        assert_eq!(doc.apply(&[Keep]).unwrap_err(), RewriteError::EditCount);
        let (doc, _) = found(r#"{"a":"1"}"#, &["$.a"], false);
        assert_eq!(doc.apply(&[Keep, Keep]).unwrap_err(), RewriteError::EditCount);
        assert_eq!(JsonDoc::parse(b"[1]").unwrap().apply(&[]).unwrap(), b"[1]", "no find: nothing to edit");
        let doc = JsonDoc::parse(format!(r#"{{"card":"{PAN}"}}"#).as_bytes()).unwrap();
        assert!(!format!("{doc:?}").contains(PAN), "Debug never shows the body");
    }

    #[test]
    fn malformed_and_non_utf8_bodies_are_rejected() {
        let err = |b: &[u8]| JsonDoc::parse(b).unwrap_err();
        for body in [&b""[..], b"{", b"{\"a\":1,}", b"[1] [2]", b"{'a':1}", b"\"\\ud800\"", b"nul", b"\xef\xbb\xbf{}"] {
            assert_eq!(err(body), RewriteError::Malformed("not valid JSON"), "{body:?}");
        }
        assert_eq!(err(b"{\"a\":\"\xff\"}"), RewriteError::Malformed("body is not valid UTF-8"));
        let nest = |n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
        assert_eq!(err(&nest(200)), RewriteError::Malformed("JSON nested too deeply"));
        assert!(JsonDoc::parse(&nest(100)).is_ok());
        // Duplicate keys are kept: each is found and rewritten.
        assert_eq!(values(r#"{"a":"1","b":0,"a":"2"}"#, &["$.a"]), ["1", "2"]);
        let out = rewrite(r#"{"a":"1","b":0,"a":"2"}"#, &["$.a"], false, &[rep("t"), Remove]);
        assert_eq!(out, r#"{"a":"t","b":0}"#);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?"
                .prop_map(|s| Value::Number(s.parse().unwrap())),
            "[ab\"\\\\é\u{1F600}\n]{0,6}".prop_map(Value::String),
            Just(Value::String(format!("x {PAN} y {PAN}"))),
            Just(Value::String(format!("é\n{PAN}\t\"{PAN}"))),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            let members = prop::collection::vec(("[ab.' \"é]{0,2}", inner.clone()), 0..4);
            prop_oneof![
                prop::collection::vec(inner, 0..4).prop_map(Value::Array),
                members.prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn parse_never_panics(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = JsonDoc::parse(&body);
        }

        /// Keeping everything gives the body back byte for byte; any other edits give the JSON a `Value` model
        /// predicts (strings spliced, scalars replaced, members and elements removed).
        #[test]
        fn edits_agree_with_a_model(v in arb_json(), pan: bool, pretty: bool, picks in prop::collection::vec(0u8..4, 1..8),
            ps in prop::collection::vec(prop::collection::vec(prop::sample::select(
                vec![".a", ".b", "..a", "[*]", ".*", "[0]", "[1]", "['a.b']", "..*", "['']"]), 1..4), 0..3)) {
            let body = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            let ps: Vec<String> = ps.iter().map(|p| format!("${}", p.concat())).collect();
            let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
            let (doc, f) = found(&body, &ps, pan);
            prop_assert_eq!(doc.apply(&vec![Keep; f.len()]).unwrap(), body.as_bytes());
            let (doc, f) = found(&body, &ps, pan);
            let pick = |i: usize| [Keep, Remove, rep("7"), rep("tok")][usize::from(picks[i % picks.len()])].clone();
            let edits: Vec<Edit> = (0..f.len()).map(pick).collect();
            let want = model(&doc, v, &edits);
            match (doc.apply(&edits), want) {
                (Ok(out), Some(want)) => prop_assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want),
                (Err(RewriteError::Unsupported(_)), None) => {}
                (got, want) => prop_assert!(false, "got {:?}, model {:?}", got.map(String::from_utf8), want),
            }
        }
    }

    /// What `edits` make of `v` (the document `doc` was parsed from), or `None` when one replaces a container.
    fn model(doc: &JsonDoc, mut v: Value, edits: &[Edit]) -> Option<Value> {
        let nodes = &doc.tape.nodes;
        let path = |mut n: usize| {
            let mut steps = Vec::new();
            while let Some(p) = nodes[n].parent() {
                steps.push(match nodes[n].key() {
                    Some((s, e, _)) => Err(tape::decode(doc.raw(s, e))),
                    None => Ok(doc.tape.children(p).position(|c| c == n).unwrap()),
                });
                n = p;
            }
            steps.reverse();
            steps
        };
        fn at<'v>(v: &'v mut Value, path: &[Result<usize, String>]) -> &'v mut Value {
            path.iter().fold(v, |v, step| match step {
                Ok(i) => &mut v[*i],
                Err(k) => &mut v[k.as_str()],
            })
        }
        let pairs: Vec<_> = doc.targets.iter().zip(edits).collect();
        // Detection matches: splice the string's text (ranges are in its decoded text), last match first.
        for (t, e) in pairs.iter().rev() {
            if let (Part::Str(s, end), Value::String(text)) = (t.part, at(&mut v, &path(t.node))) {
                match e {
                    Keep => {}
                    Remove => text.replace_range(s..end, ""),
                    Edit::Replace(r) => text.replace_range(s..end, r),
                }
            }
        }
        // Detection matches in numbers: the raw or plain text with the replacements, or the node removed.
        let mut removed: Vec<usize> = Vec::new();
        for run in pairs.chunk_by(|a, b| a.0.node == b.0.node && a.0.part.same_text(b.0.part)) {
            let live: Vec<(Target, &Edit)> = run.iter().filter(|(_, e)| **e != Keep).map(|(t, e)| (**t, *e)).collect();
            let Some(&(t, _)) = live.first().filter(|(t, _)| matches!(t.part, Part::Num(..) | Part::Plain(..))) else {
                continue;
            };
            if live.iter().any(|(_, e)| matches!(e, Remove)) {
                if t.node == 0 {
                    return None;
                }
                removed.push(t.node);
                continue;
            }
            let raw = doc.raw(nodes[t.node].start(), nodes[t.node].end());
            let text = match (t.part, number::plain(raw)) {
                (Part::Plain(..), Plain::Text(p)) => p,
                _ => raw.to_owned(),
            };
            let out = splice_text(&text, &live);
            if !tape::is_number(&out) {
                return None;
            }
            *at(&mut v, &path(t.node)) = Value::Number(out.parse().unwrap());
        }
        for (t, e) in &pairs {
            if let (Part::Whole, Edit::Replace(r)) = (t.part, e) {
                let slot = at(&mut v, &path(t.node));
                *slot = match slot {
                    Value::Object(_) | Value::Array(_) => return None,
                    Value::Number(_) if tape::is_number(r) => Value::Number(r.parse().unwrap()),
                    _ => Value::String(r.clone()),
                };
            }
        }
        // Removals, last node first: earlier siblings keep their indexes, children go before their parents.
        removed.extend(pairs.iter().filter(|(t, e)| t.part == Part::Whole && matches!(e, Remove)).map(|(t, _)| t.node));
        removed.sort_unstable_by(|a, b| b.cmp(a));
        removed.dedup();
        for n in removed {
            let mut p = path(n);
            let last = p.pop().unwrap();
            match (at(&mut v, &p), last) {
                (Value::Array(a), Ok(i)) => drop(a.remove(i)),
                (Value::Object(m), Err(k)) => drop(m.shift_remove(&k)),
                _ => unreachable!(),
            }
        }
        Some(v)
    }
}
