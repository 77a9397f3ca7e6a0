//! Tests of JSON finding and rewriting: selectors, edits against a model, every place detection reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    // The selected value is not scanned again; the key (a card glued to a letter) is.
    let all = [(F0, PAN.into()), (DET, PAN.into()), (DET, PAN.into()), (DET, PAN.into())];
    assert_eq!(f, all, "no scan of the selected value");
    let out = rewrite(&body, &["$.card"], true, &[rep("T0"), rep("T1"), rep("T2-longer"), rep("K")]);
    assert_eq!(out, r#"{"note":"pay T1 or T2-longer!","card":"T0","kK":7}"#);
    let out = rewrite(&body, &[], true, &[Remove, rep("T"), Keep, Keep]);
    assert!(out.starts_with(&format!(r#"{{"note":"pay  or T!","card":"{PAN}""#)), "{out}");
    let out = rewrite(&body, &[], true, &[Keep, Keep, rep("T"), Keep]);
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
        "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?".prop_map(|s| Value::Number(s.parse().unwrap())),
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
