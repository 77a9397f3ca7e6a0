//! JSON bodies: find values by [`JsonPath`] and by detection inside strings, then rewrite them in place.
//!
//! - Parsing is strict ([`tape`]: RFC 8259, UTF-8 only, nesting limit 128) and builds no values: the output is
//!   the original body with only the edited values spliced in, so whitespace, key order, number digits and
//!   escapes of everything else stay byte for byte (with every edit `Keep` the output *is* the body).
//! - A selector reports what it matches, in document order: a string's unescaped content, a number's exact text,
//!   `true`/`false`; `null`, objects and arrays report `""`. Objects and arrays can only be kept or removed
//!   (`Replace` on one is `Unsupported`); a value matched by several selectors is reported once, for the first.
//!   A replaced number stays a number when the new value is a JSON number; anything else becomes a string.
//! - Detection scans every string value no selector matched (not keys, not numbers); each match is one
//!   [`Found`], and its edit applies to that byte range only (`Remove` cuts the substring).
//! - Duplicate object keys are kept as written: a selector matches each of them.

mod tape;

use super::select::{JsonPath, Seg, State};
use super::{Edit, Found, Origin, RewriteError};
use crate::domain::Class;
use std::borrow::Cow;
use tape::{Node, Tape, Ty};

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

/// A found value: a node of the tape, whole or a detected part of a string.
#[derive(Debug, Clone, Copy)]
struct Target {
    node: usize,
    /// A detection match at this byte range of the string's content (raw when it has no escapes, else decoded).
    part: Option<(usize, usize)>,
}

impl JsonDoc {
    /// Parses a body strictly: valid UTF-8, one JSON value, at most 128 levels deep.
    pub fn parse(body: &[u8]) -> Result<JsonDoc, RewriteError> {
        let text = std::str::from_utf8(body).map_err(|_| RewriteError::Malformed("body is not valid UTF-8"))?;
        let tape = Tape::parse(text)?;
        Ok(JsonDoc { body: text.to_owned(), tape, targets: Vec::new() })
    }

    /// Lists the values to decide about: `fields[0]`'s matches, then `fields[1]`'s…, each in document order,
    /// then detection matches (for `detect` classes) in the strings no selector matched, in document order.
    pub fn find(&mut self, fields: &[&JsonPath], detect: &[Class]) -> Vec<Found> {
        let mut walk = Walk {
            doc: self,
            fields,
            detect,
            states: fields.iter().map(|p| p.start()).collect(),
            by_field: (0..fields.len()).map(|_| Vec::new()).collect(),
            detected: Vec::new(),
        };
        // No selector matches the root itself; a body that is just a string is still scanned.
        match self.tape.nodes.first() {
            Some(root @ Node { ty: Ty::Str { .. }, .. }) => walk.scan(0, root),
            Some(_) if !fields.is_empty() || !detect.is_empty() => walk.children(0, 0),
            _ => {}
        }
        let (found, targets): (Vec<Found>, Vec<Target>) =
            walk.by_field.into_iter().flatten().chain(walk.detected).unzip();
        self.targets = targets;
        found
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
                (_, Some(_)) => detected.push((t, e)),
                (Edit::Remove, None) => removed.push(t.node),
                (Edit::Replace(_), None) if container => {
                    return Err(RewriteError::Unsupported("a JSON object or array can be removed but not replaced"))
                }
                (Edit::Replace(v), None) if node.ty == Ty::Number && tape::is_number(v) => {
                    patches.push(Patch { start: node.start(), end: node.end(), put: Put::Raw(v) })
                }
                (Edit::Replace(v), None) => {
                    patches.push(Patch { start: node.start(), end: node.end(), put: Put::Quoted(v.as_str().into()) })
                }
            }
        }
        // A string's detection edits are consecutive and in order.
        for run in detected.chunk_by(|a, b| a.0.node == b.0.node) {
            self.detected_patches(run, &mut patches);
        }
        removed.sort_unstable();
        self.cuts(&removed, &mut patches);
        Ok(splice(self.body.as_bytes(), patches))
    }

    /// Patches for the detection edits of one string: in place when it has no escapes, else the whole string.
    fn detected_patches<'e>(&self, run: &[(Target, &'e Edit)], patches: &mut Vec<Patch<'e>>) {
        let Some(node) = run.first().and_then(|(t, _)| self.tape.nodes.get(t.node)) else { return };
        let put = |e: &'e Edit| match e {
            Edit::Replace(v) => Put::Escaped(v),
            Edit::Keep | Edit::Remove => Put::Nothing,
        };
        if node.ty == (Ty::Str { escaped: false }) {
            let content = node.start() + 1;
            for (t, e) in run {
                if let Some((s, end)) = t.part {
                    patches.push(Patch { start: content + s, end: content + end, put: put(e) });
                }
            }
            return;
        }
        let text = self.text(node);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (t, e) in run {
            let Some((s, end)) = t.part else { continue };
            out.push_str(text.get(at..s).unwrap_or_default());
            if let Edit::Replace(v) = e {
                out.push_str(v);
            }
            at = end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        patches.push(Patch { start: node.start(), end: node.end(), put: Put::Quoted(out.into()) });
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

/// What goes in place of a patched byte range.
enum Put<'e> {
    Nothing,
    /// Written as is (a JSON number).
    Raw(&'e str),
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
                list.push((Found { origin: Origin::Field(i), value }, Target { node, part: None }));
            }
        } else if let Ty::Str { .. } = n.ty {
            self.scan(node, &n);
        }
        if container {
            if self.states[base..].iter().any(|s| !s.is_dead()) {
                self.children(node, base);
            } else if !self.detect.is_empty() {
                // No selector can match below: only detection is left, over the subtree's strings in order.
                let doc = self.doc;
                for (c, d) in doc.tape.nodes.iter().enumerate().take(n.next()).skip(node + 1) {
                    if let Ty::Str { .. } = d.ty {
                        self.scan(c, d);
                    }
                }
            }
        }
        self.states.truncate(base);
    }

    /// Detection over the text of the string `n` (tape index `node`).
    fn scan(&mut self, node: usize, n: &Node) {
        if self.detect.is_empty() {
            return;
        }
        let s = self.doc.text(n);
        let mut last_end = 0;
        for m in crate::detect::find(&s, self.detect) {
            // Defensive: keep only non-empty, ordered, non-overlapping ranges on char boundaries.
            let Some(value) = s.get(m.start..m.end).filter(|_| m.start >= last_end && m.start < m.end) else {
                continue;
            };
            last_end = m.end;
            let found = Found { origin: Origin::Detected(m.class), value: value.to_owned() };
            self.detected.push((found, Target { node, part: Some((m.start, m.end)) }));
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
        let f = doc.find(&ps.iter().collect::<Vec<_>>(), if pan { &[Class::Pan] } else { &[] });
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
        let body = format!(r#"{{"note":"pay {PAN} or {PAN}!","card":"{PAN}","k{PAN}":7,"n":{PAN}}}"#);
        let (_, f) = found(&body, &["$.card"], true);
        assert_eq!(f, [(F0, PAN.into()), (DET, PAN.into()), (DET, PAN.into())], "no scan of selected, keys, numbers");
        let out = rewrite(&body, &["$.card"], true, &[rep("T0"), rep("T1"), rep("T2-longer")]);
        assert_eq!(out, format!(r#"{{"note":"pay T1 or T2-longer!","card":"T0","k{PAN}":7,"n":{PAN}}}"#));
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
            if let (Some((s, end)), Value::String(text)) = (t.part, at(&mut v, &path(t.node))) {
                match e {
                    Keep => {}
                    Remove => text.replace_range(s..end, ""),
                    Edit::Replace(r) => text.replace_range(s..end, r),
                }
            }
        }
        for (t, e) in &pairs {
            if let (None, Edit::Replace(r)) = (t.part, e) {
                let slot = at(&mut v, &path(t.node));
                *slot = match slot {
                    Value::Object(_) | Value::Array(_) => return None,
                    Value::Number(_) if tape::is_number(r) => Value::Number(r.parse().unwrap()),
                    _ => Value::String(r.clone()),
                };
            }
        }
        // Removals, last node first: earlier siblings keep their indexes, children go before their parents.
        let mut removed: Vec<usize> =
            pairs.iter().filter(|(t, e)| t.part.is_none() && matches!(e, Remove)).map(|(t, _)| t.node).collect();
        removed.sort_unstable_by(|a, b| b.cmp(a));
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
