//! Tests of multipart parsing, finding and rewriting: selectors, the parts and headers detection reads, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::rewrite::xml::XmlDoc;
use proptest::prelude::*;

const B: &str = "XyZ";

/// A body written with `\n` for CRLF (and `¶` for a bare LF).
fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").replace('¶', "\n").into_bytes()
}
/// (name, body) of every part: what a second parse of an output sees.
fn parts_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let doc = MultipartDoc::parse(bytes, B).unwrap();
    doc.parts.iter().map(|p| (p.head_info.name.clone().unwrap_or_default(), doc.src[p.body.clone()].to_vec())).collect()
}
fn run(body: &[u8], fields: &[&str], edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
    let mut doc = MultipartDoc::parse(body, B)?;
    doc.find(fields, &[Class::Pan])?;
    doc.apply(edits)
}

#[test]
fn boundary_from_content_type() {
    assert_eq!(boundary("multipart/form-data; boundary=abc").as_deref(), Some("abc"));
    assert_eq!(boundary("Multipart/Form-Data;BOUNDARY=\"a b:c\"; charset=utf-8").as_deref(), Some("a b:c"));
    assert_eq!(boundary("multipart/form-data; charset=utf-8; boundary=x;").as_deref(), Some("x"));
    assert!(boundary(&format!("multipart/form-data; boundary={}", "a".repeat(70))).is_some());
    let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
    let bad = ["multipart/mixed; boundary=a", "multipart/form-data", "multipart/form-data; boundary=", &long];
    let worse = ["; boundary=a; boundary=b", "; boundary=a b", "; boundary=\"a\\\"b\"", "; boundary=\"ab", "; x"];
    for ct in bad.map(str::to_owned).into_iter().chain(worse.map(|w| format!("multipart/form-data{w}"))) {
        assert_eq!(boundary(&ct), None, "{ct}");
    }
}

#[test]
fn parses_finds_and_round_trips() {
    let mut src = crlf(
        "preamble\n--XyZ\ncontent-disposition: form-data; name=card\n\n4111 1111\n--XyZ \t\n\
        Content-Disposition: form-data; name=\"note\"\n\nmy 4111111111111111 ok\n--XyZ\n\
        Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\nContent-Type: text/plain\n\n4111111111111111\n\
        --XyZ\nContent-Disposition: form-data; name=\"pic\"; filename=\"a.png\"\nCONTENT-TYPE: image/png\n\n",
    );
    src.extend_from_slice(b"\x89PNG 4111111111111111\xff");
    src.extend(crlf("\n--XyZ--  \nepilogue"));
    let mut doc = MultipartDoc::parse(&src, B).unwrap();
    let found = doc.find(&["note", "card", "note"], &[Class::Pan]).unwrap();
    let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
    assert_eq!(values, ["my 4111111111111111 ok", "4111 1111", "4111111111111111", "4111111111111111"]);
    let origins: Vec<Origin> = found.iter().map(|f| f.origin).collect();
    let det = Origin::Detected(Class::Pan);
    assert_eq!(origins, [Origin::Field(0), Origin::Field(1), det, det], "the binary part's text is read too");
    assert_eq!(doc.apply(&[Edit::Keep, Edit::Keep, Edit::Keep, Edit::Keep]).unwrap(), src);
    // The binary file part is not text: selecting it is an error (detection reads its text runs, as above).
    let mut doc = MultipartDoc::parse(&src, B).unwrap();
    assert_eq!(doc.find(&["pic"], &[]).unwrap_err(), RewriteError::Malformed("selected part is not text"));
}

#[test]
fn replace_remove_and_detect() {
    let part = |name: &str, body: &str| format!("--XyZ\nContent-Disposition: form-data; name={name}\n\n{body}\n");
    let src = crlf(&format!("{}{}{}--XyZ--", part("a", "1"), part("card", "4111"), part("n", "x 4111111111111111 y")));
    let r = |v: &str| Edit::Replace(v.to_owned());
    let out = run(&src, &["card"], &[r("tok\r\nen"), r("T")]).unwrap();
    let expect = [("a", "1"), ("card", "tok\r\nen"), ("n", "x T y")].map(|(n, b)| (n.to_owned(), b.into()));
    assert_eq!(parts_of(&out), expect);
    assert_eq!(out, crlf(&format!("{}{}{}--XyZ--", part("a", "1"), part("card", "tok\nen"), part("n", "x T y"))));
    let out = run(&src, &["a"], &[Edit::Remove, Edit::Remove]).unwrap();
    assert_eq!(out, crlf(&format!("{}--XyZ--", part("card", "4111"))));
    let out = run(&src, &["a", "card"], &[Edit::Remove, Edit::Remove, Edit::Remove]).unwrap();
    assert_eq!((out, parts_of(b"--XyZ--")), (b"--XyZ--".to_vec(), vec![]));
    let err = run(&src, &["card"], &[r("x\r\n--XyZ--"), Edit::Keep]);
    assert!(matches!(err, Err(RewriteError::Unsupported(_))));
    assert_eq!(run(&src, &["card"], &[Edit::Keep]), Err(RewriteError::EditCount));
}

#[test]
fn malformed_shapes() {
    let ok = "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n";
    assert_eq!(parts_of(&crlf(&format!("{}--XyZ--", ok.repeat(1000)))).len(), 1000);
    let long = "b".repeat(71);
    let too_long = format!("--{long}\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--{long}--");
    assert!(matches!(MultipartDoc::parse(too_long.as_bytes(), &long), Err(RewriteError::Malformed(_))));
    let cases = [
        &format!("{}--XyZ--", ok.repeat(1001)),
        ok,                                                                    // no closing boundary
        "--XyZ\nContent-Type: text/plain\n\n1\n--XyZ--",                       // no Content-Disposition
        "--XyZ\nContent-Disposition: form-data; filename=\"x\"\n\n1\n--XyZ--", // no name
        "--XyZ\nContent-Disposition: attachment; name=a\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a\n1\n--XyZ--", // header block without blank line
        "--XyZ\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a\n x: y\n\n1\n--XyZ--", // folded header
        "--XyZ\nContent-Disposition: form-data; name=a\nX-A\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a¶X: y\n\n1\n--XyZ--", // bare LF
        "--XyZ\nContent-Disposition: form-data; name=a\nContent-Disposition: form-data; name=b\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a\ncontent-type: text/plain\nContent-Type: x/y\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a; NAME=b\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a; name*=UTF-8''b\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=\"a\\\"; filename=\"b\"\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=\"a\\\\b\"\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=a b\n\n1\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name =a\n\n1\n--XyZ--",
        "x--XyZ\n--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--", // boundary inside a line
        "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZx\n--XyZ--", // boundary prefix
        "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ-",
        "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--x",
        "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--\n--XyZ\n", // boundary in the epilogue
        "",
    ];
    for case in cases {
        assert!(matches!(MultipartDoc::parse(&crlf(case), B), Err(RewriteError::Malformed(_))), "{case:?}");
    }
    let b64 = crlf("--XyZ\nContent-Disposition: form-data; name=a\nContent-Transfer-Encoding: base64\n\nMQ==\n--XyZ--");
    assert!(matches!(MultipartDoc::parse(&b64, B), Err(RewriteError::Unsupported(_))));
    assert!(MultipartDoc::parse(b"--a\xff\r\n", "a\u{ff}").is_err());
}

/// A generated part: (name, filename, content type, body, transport padding after the boundary).
type GenPart = (String, Option<String>, Option<String>, Vec<u8>, bool);

fn gen_part() -> impl Strategy<Value = GenPart> {
    let body = prop_oneof!["\\PC{0,20}".prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..40)];
    let (name, filename) = ("[a-z_]{0,3}|[^\"\\\\\r\n]{0,8}", prop::option::of("[^\"\\\\\r\n]{0,8}"));
    (name, filename, prop::option::of("text/plain|image/png|Text/X"), body, any::<bool>())
}

fn build(preamble: &str, parts: &[GenPart], epilogue: &str) -> Vec<u8> {
    let mut src = preamble.as_bytes().to_vec();
    for (name, filename, ctype, data, pad) in parts {
        let pad = if *pad { " \t" } else { "" };
        src.extend(format!("--XyZ{pad}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes());
        src.extend(filename.iter().flat_map(|f| format!("; filename=\"{f}\"").into_bytes()));
        src.extend(ctype.iter().flat_map(|t| format!("\r\ncontent-type: {t}").into_bytes()));
        src.extend([b"\r\n\r\n", &data[..], b"\r\n"].concat());
    }
    src.extend(format!("--XyZ--{epilogue}").bytes());
    src
}

proptest! {
    /// Raw bytes, and valid bodies with a few splices of structural fragments: parse never panics, and
    /// whatever parses comes back byte for byte.
    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300),
                                   parts in prop::collection::vec(gen_part(), 0..4),
                                   cuts in prop::collection::vec((any::<prop::sample::Index>(), 0..4usize,
                                       "\r\n--XyZ|\r\n|--|\r\n\r\n|Content-Disposition: form-data; name=a|\\PC{0,4}"), 0..4)) {
        let mut mutated = build("", &parts, "");
        for (at, drop, piece) in cuts {
            let at = at.index(mutated.len() + 1);
            mutated.splice(at..at + drop.min(mutated.len() - at), piece.bytes());
        }
        for src in [raw, mutated] {
            let Ok(mut doc) = MultipartDoc::parse(&src, B) else { continue };
            let Ok(found) = doc.find(&["a"], &[Class::Pan]) else { continue };
            prop_assert_eq!(doc.apply(&vec![Edit::Keep; found.len()]).unwrap(), src);
        }
    }

    #[test]
    fn generated_multiparts_round_trip(parts in prop::collection::vec(gen_part(), 0..5), new in "\\PC{0,10}",
                                       preamble in "([^-]{0,10}\r\n)?", epilogue in "(\r\n\\PC{0,10})?") {
        let src = build(&preamble, &parts, &epilogue);
        prop_assume!(src.windows(B.len()).filter(|w| *w == B.as_bytes()).count() == parts.len() + 1);
        let expect: Vec<(String, Vec<u8>)> = parts.iter().map(|p| (p.0.clone(), p.3.clone())).collect();
        prop_assert_eq!(parts_of(&src), expect.clone());
        // A part that is not UTF-8 is refused unless its type is binary.
        let undecodable =
            parts.iter().any(|p| std::str::from_utf8(&p.3).is_err() && p.2.as_deref() != Some("image/png"));
        let mut doc = MultipartDoc::parse(&src, B).unwrap();
        match doc.find(&[], &[Class::Pan]) {
            Ok(found) => {
                prop_assert!(!undecodable);
                prop_assert_eq!(doc.apply(&vec![Edit::Keep; found.len()]).unwrap(), src.clone());
            }
            Err(e) => {
                prop_assert!(undecodable);
                prop_assert_eq!(e, malformed("a multipart part that is not UTF-8 and not of a binary type"));
            }
        }
        // Every text part replaced by name: the output parses to the same parts with the new bodies.
        let binary = |n: &str| parts.iter().any(|p| p.0 == n && std::str::from_utf8(&p.3).is_err());
        let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).filter(|n| !binary(n)).collect();
        let mut doc = MultipartDoc::parse(&src, B).unwrap();
        let found = doc.find(&names, &[]).unwrap();
        let out = doc.apply(&vec![Edit::Replace(new.clone()); found.len()]).unwrap();
        let replaced =
            expect.into_iter().map(|(n, b)| if names.contains(&n.as_str()) { (n, new.clone().into()) } else { (n, b) });
        prop_assert_eq!(parts_of(&out), replaced.collect::<Vec<_>>());
    }
}

const CARD: &str = "5555555555554444";

/// One part with these header lines (after its disposition) and body.
fn part(disposition: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let head = format!("--XyZ\r\nContent-Disposition: {disposition}{headers}\r\n\r\n");
    [head.as_bytes(), body, b"\r\n"].concat()
}

fn body_of(parts: &[Vec<u8>]) -> Vec<u8> {
    [parts.concat(), b"--XyZ--\r\n".to_vec()].concat()
}

/// Finds with PAN and email detection; replaces every value with a number-shaped token.
fn detect_and_replace(src: &[u8], fields: &[&str]) -> Result<(Vec<String>, Vec<u8>), RewriteError> {
    let mut doc = MultipartDoc::parse(src, B)?;
    let found = doc.find(fields, &[Class::Pan, Class::Email])?;
    let values = found.iter().map(|f| f.value.clone()).collect();
    let edits: Vec<Edit> = found
        .iter()
        .map(|f| Edit::Replace(if f.value.contains('@') { "a@b.io" } else { "4000000000000002" }.into()))
        .collect();
    Ok((values, doc.apply(&edits)?))
}

fn has(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn every_part_is_read_as_its_content_type() {
    let json = format!(r#"{{"n":{CARD},"{CARD}":"k","s":"\u0035555555555554444"}}"#);
    let src = body_of(&[
        part(
            "form-data; name=a",
            "\r\nContent-Type: application/octet-stream",
            &[b"\x00\xff", CARD.as_bytes(), b"\xfe"].concat(),
        ),
        part("form-data; name=b", "\r\nContent-Type: image/png", format!("\u{1}{CARD}\u{1}").as_bytes()),
        part("form-data; name=c", "", format!("card {CARD}").as_bytes()),
        part("form-data; name=d", "\r\nContent-Type: application/json; charset=utf-8", json.as_bytes()),
        part(
            "form-data; name=e",
            "\r\nContent-Type: application/x-www-form-urlencoded",
            format!("{CARD}=%35555555555554444").as_bytes(),
        ),
        part(
            "form-data; name=f",
            "\r\nContent-Type: application/xml",
            format!("<a n=\"{CARD}\"><!--{CARD}--></a>").as_bytes(),
        ),
        part("form-data; name=g", "\r\nContent-Type: text/csv", format!("x,{CARD}\n").as_bytes()),
        part("form-data; name=h", "\r\nContent-Type: application/x-unknown", CARD.as_bytes()),
    ]);
    let (values, out) = detect_and_replace(&src, &[]).unwrap();
    assert_eq!(values, vec![CARD.to_owned(); 12]);
    assert!(!has(&out, CARD) && !has(&out, "\\u0035"), "{}", String::from_utf8_lossy(&out));
    // Still the same parts, the JSON part still JSON with a number where the number was.
    let parts = parts_of(&out);
    assert_eq!(parts.iter().map(|p| p.0.as_str()).collect::<String>(), "abcdefgh");
    let v: serde_json::Value = serde_json::from_slice(&parts[3].1).unwrap();
    assert!(v["n"].is_number() && v["4000000000000002"] == "k" && v["s"] == "4000000000000002");
    assert_eq!(parts[0].1, [b"\x00\xff", &b"4000000000000002"[..], b"\xfe"].concat(), "other bytes kept");
    assert!(XmlDoc::parse(&parts[5].1).is_ok());
    // Nothing to find: byte for byte.
    let clean = body_of(&[
        part("form-data; name=a", "\r\nContent-Type: image/png", b"\x89PNG\xff\x00 12"),
        part("form-data; name=b", "", b"hi"),
    ]);
    let (values, out) = detect_and_replace(&clean, &[]).unwrap();
    assert!(values.is_empty());
    assert_eq!(out, clean);
}

#[test]
fn undecodable_and_foreign_charset_parts_are_refused() {
    let refused = |src: Vec<u8>| detect_and_replace(&src, &[]).unwrap_err();
    let not_utf8 = malformed("a multipart part that is not UTF-8 and not of a binary type");
    for headers in ["", "\r\nContent-Type: text/plain", "\r\nContent-Type: application/x-unknown"] {
        assert_eq!(refused(body_of(&[part("form-data; name=a", headers, b"caf\xe9 4111")])), not_utf8, "{headers:?}");
    }
    let latin1 = part("form-data; name=a", "\r\nContent-Type: text/plain; charset=iso-8859-1", b"4111");
    assert!(matches!(refused(body_of(&[latin1])), RewriteError::Unsupported(_)));
    let utf16 = part("form-data; name=a", "\r\nContent-Type: application/json; charset=utf-16", b"{}");
    assert!(matches!(refused(body_of(&[utf16])), RewriteError::Unsupported(_)));
    let charset = [part("form-data; name=_charset_", "", b"iso-8859-1"), part("form-data; name=a", "", b"x")];
    assert!(matches!(refused(body_of(&charset)), RewriteError::Unsupported(_)));
    let bad_json = part("form-data; name=a", "\r\nContent-Type: application/json", b"{\"a\":");
    assert_eq!(refused(body_of(&[bad_json])), malformed("not valid JSON"));
    let bad_xml = part("form-data; name=a", "\r\nContent-Type: text/xml", b"<a>");
    assert!(matches!(refused(body_of(&[bad_xml])), RewriteError::Malformed(_)));
    // Without detection, nothing reads the parts: no refusal.
    let mut doc = MultipartDoc::parse(&body_of(&[part("form-data; name=a", "", b"caf\xe9")]), B).unwrap();
    assert!(doc.find(&[], &[]).unwrap().is_empty());
}

#[test]
fn part_headers_are_read() {
    let src = body_of(&[
        part(&format!("form-data; name=\"{CARD}\"; filename=\"card {CARD}.txt\""), "\r\nX-Mail: jo@example.com", b"x"),
        part("form-data; name=card; filename=\"scan.pdf\"", "\r\nContent-Type: application/pdf", b"%PDF"),
    ]);
    let mut doc = MultipartDoc::parse(&src, B).unwrap();
    let found = doc.find(&["card"], &[Class::Pan, Class::Email]).unwrap();
    let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
    assert_eq!(values, ["%PDF", CARD, CARD, "jo@example.com"], "the selected part's body, then every header");
    let edits = [Edit::Keep, Edit::Replace("N".into()), Edit::Replace("F".into()), Edit::Replace("a@b.io".into())];
    let out = doc.apply(&edits).unwrap();
    let want = body_of(&[
        part("form-data; name=\"N\"; filename=\"card F.txt\"", "\r\nX-Mail: a@b.io", b"x"),
        part("form-data; name=card; filename=\"scan.pdf\"", "\r\nContent-Type: application/pdf", b"%PDF"),
    ]);
    assert_eq!(out, want);
    // A replacement that would change the header's structure is refused.
    for bad in ["x\"; name=\"y", "a;b", "a\r\nX: y", "a\\"] {
        let mut doc = MultipartDoc::parse(&src, B).unwrap();
        let n = doc.find(&[], &[Class::Pan]).unwrap().len();
        let edits: Vec<Edit> = (0..n).map(|_| Edit::Replace(bad.into())).collect();
        assert!(matches!(doc.apply(&edits), Err(RewriteError::Unsupported(_))), "{bad:?}");
    }
    // A value only an encoding shows is refused: it cannot be rewritten in place.
    for disposition in [
        "form-data; name=a; filename*=UTF-8''5555%205555%205555%204444",
        "form-data; name=a; filename=\"=?UTF-8?B?NTU1NTU1NTU1NTU1NDQ0NA==?=\"",
        "form-data; name=a; filename=\"55\\55555555554444\"",
    ] {
        let src = body_of(&[part(disposition, "", b"x")]);
        let err = detect_and_replace(&src, &[]).unwrap_err();
        assert_eq!(err, RewriteError::Unsupported("a value in an encoded part header"), "{disposition}");
    }
}

#[test]
fn nested_multipart_parts_are_read() {
    let inner = format!(
        "--in\r\nContent-Disposition: attachment; filename=\"{CARD}.txt\"\r\nContent-Type: text/plain\r\n\r\n\
         card {CARD}\r\n--in\r\nContent-Type: application/json\r\n\r\n[{CARD}]\r\n--in--"
    );
    let src =
        body_of(&[part("form-data; name=files", "\r\nContent-Type: multipart/mixed; boundary=in", inner.as_bytes())]);
    let (values, out) = detect_and_replace(&src, &[]).unwrap();
    assert_eq!(values, vec![CARD.to_owned(); 3]);
    assert!(!has(&out, CARD));
    let outer = parts_of(&out);
    let nested = MultipartDoc::parse_in(&outer[0].1, "in", Flavor::Nested, 1).unwrap();
    assert_eq!(nested.parts.len(), 2);
    assert_eq!(&nested.src[nested.parts[1].body.clone()], b"[4000000000000002]");
    // Too deep, or without a boundary: refused.
    let mut body = b"x".to_vec();
    for level in (0..=content::MAX_NESTING).rev() {
        let b = format!("b{level}");
        body = format!("--{b}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n", level + 1)
            .into_bytes()
            .into_iter()
            .chain(body)
            .chain(format!("\r\n--{b}--").into_bytes())
            .collect();
    }
    let deep = body_of(&[part("form-data; name=f", "\r\nContent-Type: multipart/mixed; boundary=b0", &body)]);
    assert_eq!(
        detect_and_replace(&deep, &[]).unwrap_err(),
        RewriteError::Unsupported("multipart parts nested too deeply")
    );
    let no_boundary = body_of(&[part("form-data; name=f", "\r\nContent-Type: multipart/mixed", b"x")]);
    assert_eq!(
        detect_and_replace(&no_boundary, &[]).unwrap_err(),
        malformed("multipart part without a valid boundary")
    );
}

/// Where the card goes in a generated multipart body.
fn placed_part(place: u8, filler: &str) -> Vec<u8> {
    let (d, t) = ("form-data; name=p", "\r\nContent-Type: ");
    match place % 9 {
        0 => part(d, "", format!("{filler} {CARD} {filler}").as_bytes()),
        1 => part(d, &format!("{t}application/octet-stream"), &[b"\xff\x00", CARD.as_bytes(), b"\x00\xc3"].concat()),
        2 => part(d, &format!("{t}image/jpeg"), &[b"\xff\xd8", CARD.as_bytes(), b"\xff"].concat()),
        3 => part(d, &format!("{t}application/json"), format!(r#"{{"{filler}":[{CARD},"{CARD}"]}}"#).as_bytes()),
        4 => {
            part(d, &format!("{t}application/json"), format!(r#"{{"{CARD}":{{"x":5.555555555554444e15}}}}"#).as_bytes())
        }
        5 => part(&format!("form-data; name=p; filename=\"{CARD}.csv\""), "", filler.as_bytes()),
        6 => part(d, &format!("{t}text/xml"), format!("<a b='{CARD}'>{filler} <![CDATA[{CARD}]]></a>").as_bytes()),
        7 => {
            let inner = format!("--q\r\nContent-Type: text/plain\r\n\r\n{CARD}\r\n--q--");
            part(d, &format!("{t}multipart/mixed; boundary=q"), inner.as_bytes())
        }
        _ => part(d, &format!("{t}application/x-www-form-urlencoded"), format!("{filler}={CARD}&{CARD}").as_bytes()),
    }
}

proptest! {
    /// Wherever the card is (a text part, a binary part, a JSON number or key, a file name, an XML attribute or
    /// CDATA section, a nested part, a form name), after every value found is replaced its digits are nowhere
    /// in the output, and the output still parses with the same parts.
    #[test]
    fn no_card_survives(places in prop::collection::vec((0u8..9, "[a-z]{1,6}"), 1..6)) {
        let parts: Vec<Vec<u8>> = places.iter().map(|(p, filler)| placed_part(*p, filler)).collect();
        let src = body_of(&parts);
        let (values, out) = detect_and_replace(&src, &[]).unwrap();
        prop_assert!(values.len() >= places.len());
        prop_assert!(!has(&out, CARD), "{}", String::from_utf8_lossy(&out));
        prop_assert_eq!(parts_of(&out).len(), places.len());
    }
}
