//! JSON bodies: find values by [`JsonPath`] and by detection inside strings, then rewrite them.
//!
//! - Parsing is strict (`serde_json`, UTF-8 only, nesting limit 128). Output is compact JSON, key order and number
//!   digits kept (serde_json writes an exponent as `e+N`/`e-N`): with every edit `Keep` it re-parses equal.
//! - A selector reports what it matches, in document order: a string's unescaped content, a number's exact text,
//!   `true`/`false`; `null`, objects and arrays report `""`. Objects and arrays can only be kept or removed
//!   (`Replace` on one is `Unsupported`); a value matched by several selectors is reported once, for the first.
//! - Detection scans every string value no selector matched (not keys, not numbers); each match is one
//!   [`Found`], and its edit applies to that byte range only (`Remove` cuts the substring).
//! - Duplicate object keys collapse to the last value (serde_json), so the output never carries the others.

use serde_json::{Number, Value};

use super::select::{JsonPath, Seg, State};
use super::{Edit, Found, Origin, RewriteError};
use crate::vault::class::Class;

/// A parsed JSON body, and where the values of the last [`JsonDoc::find`] are.
#[derive(Debug)]
pub struct JsonDoc {
    root: Value,
    targets: Vec<Target>,
}

/// One level down, owned, to find a value again in `apply`.
#[derive(Debug, Clone)]
enum Loc {
    Key(String),
    Index(usize),
}

#[derive(Debug)]
struct Target {
    /// Pre-order position of the value in the document.
    node: usize,
    path: Vec<Loc>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Matched by a selector: a number, another scalar (string, bool, null), or an object/array.
    Number,
    Scalar,
    Container,
    /// A detection match at this byte range of the string.
    Detected {
        start: usize,
        end: usize,
    },
}

impl JsonDoc {
    /// Parses a body strictly: valid UTF-8, one JSON value, at most 128 levels deep.
    pub fn parse(body: &[u8]) -> Result<JsonDoc, RewriteError> {
        let text = std::str::from_utf8(body).map_err(|_| RewriteError::Malformed("body is not valid UTF-8"))?;
        let root = serde_json::from_str::<Value>(text).map_err(|e| {
            if e.to_string().starts_with("recursion limit exceeded") {
                RewriteError::Malformed("JSON nested too deeply")
            } else {
                RewriteError::Malformed("not valid JSON")
            }
        })?;
        Ok(JsonDoc { root, targets: Vec::new() })
    }

    /// Lists the values to decide about: `fields[0]`'s matches, then `fields[1]`'s…, each in document order,
    /// then detection matches (for `detect` classes) in the strings no selector matched, in document order.
    pub fn find(&mut self, fields: &[&JsonPath], detect: &[Class]) -> Vec<Found> {
        let mut walk = Walk {
            fields,
            detect,
            path: Vec::new(),
            states: fields.iter().map(|p| p.start()).collect(),
            next_node: 0,
            by_field: (0..fields.len()).map(|_| Vec::new()).collect(),
            detected: Vec::new(),
        };
        if !fields.is_empty() || !detect.is_empty() {
            walk.children(&self.root, 0);
        }
        let (found, targets): (Vec<Found>, Vec<Target>) =
            walk.by_field.into_iter().flatten().chain(walk.detected).unzip();
        self.targets = targets;
        found
    }

    /// Writes the body with one edit per value of the last `find`, in the same order.
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        let JsonDoc { mut root, targets } = self;
        if edits.len() != targets.len() {
            return Err(RewriteError::EditCount);
        }
        let pairs: Vec<(&Target, &Edit)> = targets.iter().zip(edits).collect();
        if pairs.iter().any(|(t, e)| t.kind == Kind::Container && matches!(e, Edit::Replace(_))) {
            return Err(RewriteError::Unsupported("a JSON object or array can be removed but not replaced"));
        }
        // 1. Detection matches, string by string (a string's matches are consecutive and ordered).
        let detected: Vec<_> = pairs.iter().filter(|(t, _)| matches!(t.kind, Kind::Detected { .. })).collect();
        for run in detected.chunk_by(|a, b| a.0.node == b.0.node) {
            if run.iter().all(|(_, e)| matches!(e, Edit::Keep)) {
                continue;
            }
            if let Some((first, _)) = run.first() {
                if let Some(Value::String(s)) = locate(&mut root, &first.path) {
                    *s = splice(s, run);
                }
            }
        }
        // 2. Field replacements: no path changes.
        for (t, e) in &pairs {
            if let (Kind::Number | Kind::Scalar, Edit::Replace(v)) = (t.kind, e) {
                if let Some(slot) = locate(&mut root, &t.path) {
                    *slot = replacement(t.kind, v);
                }
            }
        }
        // 3. Removals, last value first, so array indexes of the values still to remove stay valid.
        let mut removals: Vec<&Target> = pairs
            .iter()
            .filter(|(t, e)| matches!(e, Edit::Remove) && !matches!(t.kind, Kind::Detected { .. }))
            .map(|(t, _)| *t)
            .collect();
        removals.sort_by_key(|t| std::cmp::Reverse(t.node));
        for t in removals {
            remove(&mut root, &t.path);
        }
        serde_json::to_vec(&root).map_err(|_| RewriteError::Malformed("JSON could not be written back"))
    }
}

/// The depth-first walk of `find`, carrying each path's matcher state.
///
/// It runs over every node of every inspected body, so it allocates only for what it reports: the path down is
/// borrowed from the document, and the matcher states of all levels share one stack.
struct Walk<'a, 'v> {
    fields: &'a [&'a JsonPath],
    detect: &'a [Class],
    path: Vec<Seg<'v>>,
    /// One state per field for each level of `path` (and the root's), level after level.
    states: Vec<State>,
    next_node: usize,
    by_field: Vec<Vec<(Found, Target)>>,
    detected: Vec<(Found, Target)>,
}

impl<'v> Walk<'_, 'v> {
    /// Walks the children of `v`, whose fields' states start at `states[base]`.
    fn children(&mut self, v: &'v Value, base: usize) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| self.child(Seg::Key(k), c, base)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| self.child(Seg::Index(i), c, base)),
            _ => {}
        }
    }

    /// The current path, owned, to find the value again in `apply`.
    fn owned_path(&self) -> Vec<Loc> {
        self.path
            .iter()
            .map(|seg| match seg {
                Seg::Key(k) => Loc::Key((*k).to_owned()),
                Seg::Index(i) => Loc::Index(*i),
            })
            .collect()
    }

    fn child(&mut self, seg: Seg<'v>, v: &'v Value, parent: usize) {
        let n = self.fields.len();
        let base = self.states.len();
        for i in 0..n {
            let next = self.fields[i].step(self.states[parent + i], seg);
            self.states.push(next);
        }
        let node = self.next_node;
        self.next_node += 1;
        self.path.push(seg);
        let hit = (0..n).find(|&i| self.fields[i].accepts(self.states[base + i]));
        if let Some(i) = hit {
            let (value, kind) = match v {
                Value::String(s) => (s.clone(), Kind::Scalar),
                Value::Number(n) => (n.to_string(), Kind::Number),
                Value::Bool(b) => (b.to_string(), Kind::Scalar),
                Value::Null => (String::new(), Kind::Scalar),
                Value::Object(_) | Value::Array(_) => (String::new(), Kind::Container),
            };
            let target = Target { node, path: self.owned_path(), kind };
            if let Some(list) = self.by_field.get_mut(i) {
                list.push((Found { origin: Origin::Field(i), value }, target));
            }
        } else if let Value::String(s) = v {
            self.scan(node, s);
        }
        let container = matches!(v, Value::Object(_) | Value::Array(_));
        if container && (!self.detect.is_empty() || self.states[base..].iter().any(|s| !s.is_dead())) {
            self.children(v, base);
        }
        self.path.pop();
        self.states.truncate(base);
    }

    fn scan(&mut self, node: usize, s: &str) {
        if self.detect.is_empty() {
            return;
        }
        let mut last_end = 0;
        for m in crate::detect::find(s, self.detect) {
            // Defensive: keep only non-empty, ordered, non-overlapping ranges on char boundaries.
            let Some(value) = s.get(m.start..m.end).filter(|_| m.start >= last_end && m.start < m.end) else {
                continue;
            };
            last_end = m.end;
            let found = Found { origin: Origin::Detected(m.class), value: value.to_owned() };
            let kind = Kind::Detected { start: m.start, end: m.end };
            self.detected.push((found, Target { node, path: self.owned_path(), kind }));
        }
    }
}

/// Rebuilds `s` with the edits of its detection matches.
fn splice(s: &str, run: &[&(&Target, &Edit)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (t, e) in run {
        let Kind::Detected { start, end } = t.kind else { continue };
        out.push_str(s.get(at..start).unwrap_or_default());
        match e {
            Edit::Keep => out.push_str(s.get(start..end).unwrap_or_default()),
            Edit::Replace(v) => out.push_str(v),
            Edit::Remove => {}
        }
        at = end;
    }
    out.push_str(s.get(at..).unwrap_or_default());
    out
}

/// A number stays a number when the new value is a JSON number literal; anything else becomes a string.
fn replacement(kind: Kind, v: &str) -> Value {
    let numeric = |v: &str| v.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    match v.parse::<Number>() {
        Ok(n) if kind == Kind::Number && numeric(v) => Value::Number(n),
        _ => Value::String(v.to_owned()),
    }
}

fn locate<'v>(root: &'v mut Value, path: &[Loc]) -> Option<&'v mut Value> {
    path.iter().try_fold(root, |v, loc| match (v, loc) {
        (Value::Object(m), Loc::Key(k)) => m.get_mut(k),
        (Value::Array(a), Loc::Index(i)) => a.get_mut(*i),
        _ => None,
    })
}

/// Removes the member or element at `path`, keeping the order of the others (gone already: nothing to do).
fn remove(root: &mut Value, path: &[Loc]) {
    let Some((last, parent)) = path.split_last() else { return };
    match (locate(root, parent), last) {
        (Some(Value::Object(m)), Loc::Key(k)) => m.retain(|key, _| key != k),
        (Some(Value::Array(a)), Loc::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        // Digits are kept as written; serde_json writes an exponent as `e` with a sign.
        assert_eq!(values(body, &["$.*"]), ["4111111111111111111", "1.50", "-2e+10", "123456789012345678901234567890"]);
        assert_eq!(rewrite(body, &["$.*"], false, &[Keep, Keep, Keep, Keep]), body.replace("E+", "e+"));
        let body = r#"{"s":"4111","n":4111,"m":4111,"o":1,"t":true,"z":null}"#;
        let edits = [rep("42"), rep("-9.05"), rep("4111-x"), rep(" 1"), rep("T"), rep("N")];
        let out = rewrite(body, &["$.s", "$.n", "$.m", "$.o", "$.t", "$.z"], false, &edits);
        assert_eq!(out, r#"{"s":"42","n":-9.05,"m":"4111-x","o":" 1","t":"T","z":"N"}"#);
        for not in ["", "01", "1.", ".5", "+1", "1e", "0x1", "NaN", "--1", "1-"] {
            assert_eq!(replacement(Kind::Number, not), Value::String(not.into()), "{not:?}");
        }
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
    }

    #[test]
    fn escapes_are_decoded_in_values() {
        let body = r#"{"p":"\u0034111111111111111","q":"a\"b\\c\u00e9\/","r":"x \u0034111111111111111"}"#;
        assert_eq!(found(body, &["$.p", "$.q"], true).1[2], (DET, PAN.into()));
        assert_eq!(values(body, &["$.p", "$.q"]), [PAN, "a\"b\\cé/"]);
    }

    #[test]
    fn edit_count_must_match() {
        let (doc, _) = found(r#"{"a":"1","b":"2"}"#, &["$.*"], false);
        assert_eq!(doc.apply(&[Keep]).unwrap_err(), RewriteError::EditCount);
        let (doc, _) = found(r#"{"a":"1"}"#, &["$.a"], false);
        assert_eq!(doc.apply(&[Keep, Keep]).unwrap_err(), RewriteError::EditCount);
        assert_eq!(JsonDoc::parse(b"[1]").unwrap().apply(&[]).unwrap(), b"[1]", "no find: nothing to edit");
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
        // Duplicate keys collapse to the last value.
        assert_eq!(values(r#"{"a":"1","b":0,"a":"2"}"#, &["$.a"]), ["2"]);
        assert_eq!(rewrite(r#"{"a":"1","b":0,"a":"2"}"#, &["$.a"], false, &[rep("t")]), r#"{"a":"t","b":0}"#);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?"
                .prop_map(|s| Value::Number(s.parse().unwrap())),
            "[ab\"\\\\é\u{1F600}\n]{0,6}".prop_map(Value::String),
            Just(Value::String(format!("x {PAN} y {PAN}"))),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            let members = prop::collection::vec(("[ab.' ]{0,2}", inner.clone()), 0..4);
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

        #[test]
        fn find_and_apply_never_panic(v in arb_json(), pan: bool, picks in prop::collection::vec(0u8..4, 1..8),
            ps in prop::collection::vec(prop::collection::vec(prop::sample::select(
                vec![".a", ".b", "..a", "[*]", ".*", "[0]", "[1]", "['a.b']", "..*", "['']"]), 1..4), 0..3)) {
            let body = serde_json::to_string(&v).unwrap();
            let ps: Vec<String> = ps.iter().map(|p| format!("${}", p.concat())).collect();
            let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
            let (doc, f) = found(&body, &ps, pan);
            let kept = doc.apply(&vec![Keep; f.len()]).unwrap();
            prop_assert_eq!(serde_json::from_slice::<Value>(&kept).unwrap(), v);
            let (doc, f) = found(&body, &ps, pan);
            let pick = |i: usize| [Keep, Remove, rep("7"), rep("tok")][usize::from(picks[i % picks.len()])].clone();
            let edits: Vec<Edit> = (0..f.len()).map(pick).collect();
            match doc.apply(&edits) {
                Ok(out) => prop_assert!(serde_json::from_slice::<Value>(&out).is_ok()),
                Err(e) => prop_assert!(matches!(e, RewriteError::Unsupported(_))),
            }
        }
    }
}
