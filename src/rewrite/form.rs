//! `application/x-www-form-urlencoded` bodies and URL query strings: find pairs by name or by detection, then rewrite.
//!
//! The input is split on `&` into segments (empty ones included, so `a=1&` and `` round-trip); a segment's name and
//! value split on its first `=`, `+` is a space and `%XX` a byte. Decoding is strict (fail closed): a `%` not followed
//! by two hex digits, or a name or value that is not UTF-8 once decoded, is [`RewriteError::Malformed`].
//! Detection reads names as well as values, decoded as the application decodes them: a value in a field name
//! (`5555555555554444=x`, `note%20jo%40example.com=1`) is found and rewritten in the name.
//! [`FormDoc::apply`] writes every segment it did not change back byte for byte; changed names and values are
//! re-encoded the `form_urlencoded` way (space as `+`), so the output is also a valid query string.

use std::ops::Range;

use super::{Edit, Found, Origin, RewriteError};
use crate::detect;
use crate::domain::Class;

/// One `&`-separated segment of the input.
struct Pair {
    /// The segment's bytes in the source.
    raw: Range<usize>,
    /// Where its first `=` is in the source, if it has one.
    eq: Option<usize>,
    name: String,
    value: String,
}

/// Which half of a pair a found value is in.
#[derive(Clone, Copy)]
enum Side {
    Name = 0,
    Value = 1,
}

/// A parsed form body or query string.
pub struct FormDoc {
    src: Vec<u8>,
    pairs: Vec<Pair>,
    /// What the last [`FormDoc::find`] returned, in order: pair, side and byte range of the decoded text (the whole
    /// value for a selector, the match for detection).
    targets: Vec<(usize, Side, Range<usize>)>,
}

impl FormDoc {
    /// Parses a form body or a URI's query (without the `?`). An empty input is a document with no pairs.
    pub fn parse(body: &[u8]) -> Result<FormDoc, RewriteError> {
        let mut pairs = Vec::new();
        let mut start = 0;
        for seg in body.split(|&b| b == b'&') {
            let raw = start..start + seg.len();
            start = raw.end + 1;
            let eq = seg.iter().position(|&b| b == b'=');
            let (name, value) = match eq {
                Some(i) => (&seg[..i], &seg[i + 1..]),
                None => (seg, &seg[seg.len()..]),
            };
            let (name, value) = (decode(name)?, decode(value)?);
            pairs.push(Pair { eq: eq.map(|i| raw.start + i), raw, name, value });
        }
        Ok(FormDoc { src: body.to_vec(), pairs, targets: Vec::new() })
    }

    /// Lists the values to decide about: each selector's pairs (exact decoded name; a pair matched by several
    /// selectors is reported once, for the first), then with `detect` non-empty the matches in every pair's
    /// decoded name (selected pairs' too) and every other pair's decoded value, pair by pair. Empty segments
    /// (`a&&b`, a trailing `&`) are no pair and never found.
    pub fn find(&mut self, fields: &[&str], detect: &[Class]) -> Vec<Found> {
        self.targets.clear();
        let mut found = Vec::new();
        let mut taken = vec![false; self.pairs.len()];
        for (i, field) in fields.iter().enumerate() {
            for (p, pair) in self.pairs.iter().enumerate() {
                if !taken[p] && !pair.raw.is_empty() && pair.name == *field {
                    taken[p] = true;
                    self.targets.push((p, Side::Value, 0..pair.value.len()));
                    found.push(Found { origin: Origin::Field(i), value: pair.value.clone() });
                }
            }
        }
        if detect.is_empty() {
            return found;
        }
        for (p, pair) in self.pairs.iter().enumerate() {
            // A selected pair's value is the selector's; its name is still read.
            let sides = [(&pair.name, Side::Name), (&pair.value, Side::Value)];
            for (text, side) in sides.into_iter().take(if taken[p] { 1 } else { 2 }) {
                for m in detect::find_tokens(text, detect) {
                    // `detect` promises ranges inside `text`; one that is not is skipped rather than panicking.
                    let Some(value) = text.get(m.start..m.end) else { continue };
                    self.targets.push((p, side, m.start..m.end));
                    found.push(Found { origin: Origin::Detected(m.class), value: value.to_owned() });
                }
            }
        }
        found
    }

    /// Writes the document with one edit per value the last `find` returned ([`RewriteError::EditCount`] if the
    /// counts differ). `Remove` drops the whole pair and its `&`, also for a detected value.
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.targets.len() {
            return Err(RewriteError::EditCount);
        }
        let mut removed = vec![false; self.pairs.len()];
        let mut subs: Vec<[Subs; 2]> = vec![[Vec::new(), Vec::new()]; self.pairs.len()];
        for ((p, side, range), edit) in self.targets.iter().zip(edits) {
            match edit {
                Edit::Keep => {}
                Edit::Remove => removed[*p] = true,
                Edit::Replace(v) => subs[*p][*side as usize].push((range.clone(), v)),
            }
        }
        let (mut out, mut first) = (Vec::with_capacity(self.src.len()), true);
        for (p, pair) in self.pairs.iter().enumerate().filter(|(p, _)| !removed[*p]) {
            if !std::mem::take(&mut first) {
                out.push(b'&');
            }
            let [in_name, in_value] = &subs[p];
            let (raw_name, raw_value) = match pair.eq {
                Some(eq) => (&self.src[pair.raw.start..eq], Some(&self.src[eq + 1..pair.raw.end])),
                None => (&self.src[pair.raw.clone()], None),
            };
            if in_name.is_empty() {
                out.extend_from_slice(raw_name);
            } else {
                out.extend(encode(&splice(&pair.name, in_name)?).bytes());
            }
            if !in_value.is_empty() {
                out.push(b'=');
                out.extend(encode(&splice(&pair.value, in_value)?).bytes());
            } else if let Some(raw) = raw_value {
                out.push(b'=');
                out.extend_from_slice(raw);
            }
        }
        Ok(out)
    }
}

/// Replacements in a decoded text: byte range and new text, ordered and non-overlapping.
type Subs<'a> = Vec<(Range<usize>, &'a str)>;

/// `text` with each replacement put in.
fn splice(text: &str, subs: &Subs) -> Result<String, RewriteError> {
    let (mut out, mut last) = (String::with_capacity(text.len()), 0);
    for (range, replacement) in subs {
        out.push_str(text.get(last..range.start).ok_or(RewriteError::Malformed("detected values overlap"))?);
        out.push_str(replacement);
        last = range.end;
    }
    out.push_str(text.get(last..).ok_or(RewriteError::Malformed("detected values overlap"))?);
    Ok(out)
}

/// Strict form decoding: `+` is a space, `%XX` a byte, the result UTF-8.
fn decode(raw: &[u8]) -> Result<String, RewriteError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |k: usize| raw.get(i + k).and_then(|&b| (b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(1), hex(2)) else {
                    return Err(RewriteError::Malformed("invalid percent escape in form field"));
                };
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| RewriteError::Malformed("form field is not UTF-8 once decoded"))
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(found: &[Found]) -> Vec<&str> {
        found.iter().map(|f| f.value.as_str()).collect()
    }

    fn rewrite(body: &str, fields: &[&str], detect: &[Class], edits: &[Edit]) -> Result<String, RewriteError> {
        let mut doc = FormDoc::parse(body.as_bytes())?;
        doc.find(fields, detect);
        doc.apply(edits).map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn decodes_names_and_values() {
        let mut doc = FormDoc::parse(b"a=1&b=x+y&c=%41%2b%7e&flag&d=x=y&%6E%61me=%E2%82%AC").unwrap();
        let found = doc.find(&["a", "b", "c", "flag", "d", "name"], &[]);
        assert_eq!(values(&found), ["1", "x y", "A+~", "", "x=y", "€"]);
        let origins: Vec<Origin> = found.iter().map(|f| f.origin).collect();
        assert_eq!(origins, (0..6).map(Origin::Field).collect::<Vec<_>>());
    }

    #[test]
    fn selectors_in_order_repeats_and_overlaps() {
        let mut doc = FormDoc::parse(b"b=1&a=2&b=3&a=4").unwrap();
        let found = doc.find(&["a", "b", "a"], &[]);
        assert_eq!(values(&found), ["2", "4", "1", "3"]);
        assert_eq!(found[0].origin, Origin::Field(0));
        assert_eq!(found[2].origin, Origin::Field(1));
    }

    #[test]
    fn untouched_bytes_round_trip() {
        for body in ["", "&", "a=1&", "&&a", "a=%7e+%7E&b==&c", "q=caf%C3%A9&x=%20", "a=1&b=2", "k=café", "=v"] {
            let mut doc = FormDoc::parse(body.as_bytes()).unwrap();
            let found = doc.find(&["a", "k", "", "q"], &[Class::Pan]);
            assert_eq!(doc.apply(&vec![Edit::Keep; found.len()]).unwrap(), body.as_bytes(), "{body}");
        }
    }

    #[test]
    fn replace_and_remove() {
        let r = |v: &str| Edit::Replace(v.to_owned());
        let body = "a=1&card=%34111&b=%7e";
        assert_eq!(rewrite(body, &["card"], &[], &[r("x y&z=€")]).unwrap(), "a=1&card=x+y%26z%3D%E2%82%AC&b=%7e");
        assert_eq!(rewrite(body, &["card"], &[], &[Edit::Remove]).unwrap(), "a=1&b=%7e");
        assert_eq!(rewrite(body, &["a"], &[], &[Edit::Remove]).unwrap(), "card=%34111&b=%7e");
        assert_eq!(rewrite(body, &["b"], &[], &[Edit::Remove]).unwrap(), "a=1&card=%34111");
        assert_eq!(rewrite("flag&a=1", &["flag"], &[], &[r("on")]).unwrap(), "flag=on&a=1");
        assert_eq!(rewrite("a=1&", &["a"], &[], &[Edit::Remove]).unwrap(), "");
        let all = [Edit::Remove, Edit::Remove, Edit::Remove];
        assert_eq!(rewrite(body, &["a", "card", "b"], &[], &all).unwrap(), "");
    }

    #[test]
    fn detection_sees_decoded_values() {
        let body = "q=4111%201111%201111%201111&note=card+4111111111111111+ok&pan=4111111111111111";
        let mut doc = FormDoc::parse(body.as_bytes()).unwrap();
        let found = doc.find(&["pan"], &[Class::Pan]);
        assert_eq!(values(&found), ["4111111111111111", "4111 1111 1111 1111", "4111111111111111"]);
        assert_eq!(found[1].origin, Origin::Detected(Class::Pan));
        let edits = [Edit::Replace("T1".into()), Edit::Replace("T2".into()), Edit::Replace("T 3".into())];
        assert_eq!(doc.apply(&edits).unwrap(), b"q=T2&note=card+T+3+ok&pan=T1");
        // No detection asked: nothing scanned. Remove on a detected value drops its pair.
        assert!(FormDoc::parse(body.as_bytes()).unwrap().find(&[], &[]).is_empty());
        assert_eq!(
            rewrite(body, &["pan"], &[Class::Pan], &[Edit::Keep, Edit::Keep, Edit::Remove]).unwrap(),
            "q=4111%201111%201111%201111&pan=4111111111111111"
        );
    }

    #[test]
    fn detection_in_names_and_query_keys() {
        let edits = [Edit::Replace("tok en".into())];
        assert_eq!(rewrite("4111111111111111&a=1", &[], &[Class::Pan], &edits).unwrap(), "tok+en&a=1");
        let edits = [Edit::Replace("N".into()), Edit::Replace("V".into())];
        assert_eq!(
            rewrite("x+4111111111111111=%7e+4111111111111111", &[], &[Class::Pan], &edits).unwrap(),
            "x+N=%7E+V"
        );
    }

    #[test]
    fn names_of_every_pair_are_read() {
        // A selected pair's name is read too (its value is the selector's); encoded names are decoded first.
        let body = "card=4111111111111111&5555555555554444=x&note%20jo%40example.com=1&%35555555555554444";
        let mut doc = FormDoc::parse(body.as_bytes()).unwrap();
        let found = doc.find(&["card"], &[Class::Pan, Class::Email]);
        assert_eq!(values(&found), ["4111111111111111", "5555555555554444", "jo@example.com", "5555555555554444"]);
        let edits = ["T0", "T1", "a@b.io", "T3"].map(|t| Edit::Replace(t.into()));
        assert_eq!(doc.apply(&edits).unwrap(), b"card=T0&T1=x&note+a%40b.io=1&T3");
        let mut doc = FormDoc::parse(b"5555555555554444=5555555555554444").unwrap();
        let found = doc.find(&["5555555555554444"], &[Class::Pan]);
        assert_eq!((found[0].origin, found[1].origin), (Origin::Field(0), Origin::Detected(Class::Pan)));
        // Nothing found: byte for byte.
        let body = "a=1&b=%7e+x&c";
        let mut doc = FormDoc::parse(body.as_bytes()).unwrap();
        assert!(doc.find(&["z"], &[Class::Pan, Class::Email]).is_empty());
        assert_eq!(doc.apply(&[]).unwrap(), body.as_bytes());
    }

    #[test]
    fn malformed_and_edit_count() {
        for body in [&b"a=%FF"[..], b"a=%G1", b"a=1%", b"a=%4", b"%zz=1", b"a=\xff", b"a=%C3"] {
            assert!(matches!(FormDoc::parse(body), Err(RewriteError::Malformed(_))), "{body:?}");
        }
        assert_eq!(rewrite("a=1", &["a"], &[], &[]), Err(RewriteError::EditCount));
        assert_eq!(rewrite("a=1", &[], &[], &[Edit::Keep]), Err(RewriteError::EditCount));
    }

    /// One generated pair written with one of several encodings: (name, value, has `=`, style).
    fn write_pair(name: &str, value: &str, eq: bool, style: u8) -> String {
        let enc = |s: &str| match style % 3 {
            0 => encode(s),
            1 => s.bytes().map(|b| format!("%{b:02x}")).collect(),
            _ => s
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else if b == b' ' {
                        "%20".into()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
        };
        if eq || !value.is_empty() {
            format!("{}={}", enc(name), enc(value))
        } else {
            enc(name)
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(mut doc) = FormDoc::parse(&body) {
                let n = doc.find(&["a", ""], &[Class::Pan]).len();
                prop_assert_eq!(doc.apply(&vec![Edit::Keep; n]).unwrap(), body);
            }
        }

        #[test]
        fn generated_forms_round_trip(
            pairs in proptest::collection::vec(("[a-c]{0,2}|\\PC{0,6}", "\\PC{0,12}|4111111111111111", any::<bool>(), 0u8..3), 0..6),
            trailing in any::<bool>(),
            new in "\\PC{0,10}",
        ) {
            let mut body = pairs.iter().map(|(n, v, eq, s)| write_pair(n, v, *eq, *s)).collect::<Vec<_>>().join("&");
            if trailing { body.push('&'); }
            let names: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).filter(|n| !n.is_empty()).collect();
            let mut doc = FormDoc::parse(body.as_bytes()).unwrap();
            let found = doc.find(&names, &[Class::Pan]);
            prop_assert_eq!(doc.apply(&vec![Edit::Keep; found.len()]).unwrap(), body.as_bytes());
            // Every value replaced: the output parses back to the new values, same number of pairs.
            let mut doc = FormDoc::parse(body.as_bytes()).unwrap();
            let found = doc.find(&names, &[]);
            let out = doc.apply(&vec![Edit::Replace(new.clone()); found.len()]).unwrap();
            let mut again = FormDoc::parse(&out).unwrap();
            let refound = again.find(&names, &[]);
            prop_assert_eq!(refound.len(), found.len());
            prop_assert!(refound.iter().all(|f| f.value == new));
        }
    }
}
