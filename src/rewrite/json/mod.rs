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
#[cfg(test)]
mod tests;

use super::select::{JsonPath, Seg, State};
use super::{Edit, Found, Origin, RewriteError};
use crate::detect::Match;
use crate::domain::Class;
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
            // A state per field and level: room for a body sixteen levels deep before it grows.
            states: {
                let mut states = Vec::with_capacity(fields.len() * 16);
                states.extend(fields.iter().map(|p| p.start()));
                states
            },
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
        // A target without its node would leave a value unedited: an invariant broken, never a value forwarded.
        let lost = || RewriteError::EditCount;
        for (&t, e) in self.targets.iter().zip(edits) {
            let node = self.tape.nodes.get(t.node).ok_or_else(lost)?;
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
            let Some(&(t, _)) = run.first() else { continue }; // chunk_by yields no empty runs
            let node = self.tape.nodes.get(t.node).ok_or_else(lost)?;
            match t.part {
                Part::Str(..) => {
                    let escaped = node.ty == (Ty::Str { escaped: true });
                    self.text_patches((node.start() + 1, node.end() - 1, escaped), run, &mut patches);
                }
                Part::Key(..) => self.text_patches(node.key().ok_or_else(lost)?, run, &mut patches),
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
                let matches = crate::detect::find_tokens(&s, self.detect);
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
        let matches = crate::detect::find_tokens(&text, self.detect);
        self.push(node, &text, matches, Part::Key);
    }

    /// Detection over a number: its plain notation when that shows a value, else its raw text.
    fn scan_number(&mut self, node: usize, n: &Node) {
        let raw = self.doc.raw(n.start(), n.end());
        match number::plain(raw) {
            Plain::Text(p) => {
                let matches = crate::detect::find_tokens(&p, self.detect);
                if !matches.is_empty() {
                    return self.push(node, &p, matches, Part::Plain);
                }
            }
            Plain::Cut(p) => {
                if !crate::detect::find_tokens(&p, self.detect).is_empty() {
                    self.error.get_or_insert(TOO_LONG);
                    return;
                }
            }
            Plain::Same => {}
        }
        let matches = crate::detect::find_tokens(raw, self.detect);
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
