//! Tests of XML finding and rewriting: selectors, every place detection reads, fail-closed refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    let found = doc.find(&paths.iter().collect::<Vec<_>>(), detect).unwrap();
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
        prop::sample::select(vec!["4111 1111 1111 1111", "a@b.io", "&amp;&lt;&#65;", "<![CDATA[x]]>y]]>", "<!---->"])
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
        let Ok(n) = parsed.find(&fields.map(path).iter().collect::<Vec<_>>(), &ALL).map(|f| f.len()) else {
            return Ok(());
        };
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

const CARD: &str = "5555555555554444";

/// Detection of cards only; the values found.
fn cards(body: &str) -> Result<(XmlDoc, Vec<String>), RewriteError> {
    let mut doc = XmlDoc::parse(body.as_bytes())?;
    let found = doc.find(&[], &[Class::Pan])?;
    Ok((doc, found.into_iter().map(|f| f.value).collect()))
}

/// Every card replaced by `with`.
fn replace_cards(body: &str, with: &str) -> Result<String, RewriteError> {
    let (doc, found) = cards(body)?;
    Ok(String::from_utf8(doc.apply(&vec![replace(with); found.len()])?).unwrap())
}

#[test]
fn attributes_are_read_normalised_and_written_in_their_quotes() {
    let body = format!("<card number=\"{CARD}\" n2='a \"q\" 5555 5555 5555 4444' n3=\"5555\n5555\r\n5555\t4444\"/>");
    let (_, found) = cards(&body).unwrap();
    assert_eq!(found, [CARD, "5555 5555 5555 4444", "5555 5555 5555 4444"], "literal line breaks read as spaces");
    let out = replace_cards(&body, "x\"'<&\n").unwrap();
    assert_eq!(
        out,
        "<card number=\"x&quot;'&lt;&amp;&#10;\" n2='a \"q\" x\"&apos;&lt;&amp;&#10;' n3=\"x&quot;'&lt;&amp;&#10;\"/>"
    );
    let (_, again) = run(&out, &[], &[]);
    assert!(again.is_empty());
    // References are resolved before detection; a selected empty element keeps its rewritten attributes.
    let (doc, found) = run("<n a=\"&#53;555555555554444\"/>", &["n"], &[Class::Pan]);
    assert_eq!(found, [(String::new(), Origin::Field(0)), (CARD.to_owned(), Origin::Detected(Class::Pan))]);
    assert_eq!(apply(doc, &[replace("v"), replace("T")]), "<n a=\"T\">v</n>");
}

#[test]
fn comments_and_processing_instructions_are_read() {
    let body = format!("<!-- {CARD} --><?pi {CARD}?><a><!--{CARD}--><?x card={CARD} ?></a><!--{CARD}-->");
    let (_, found) = cards(&body).unwrap();
    assert_eq!(found.len(), 5);
    let out = replace_cards(&body, "T").unwrap();
    assert_eq!(out, "<!-- T --><?pi T?><a><!--T--><?x card=T ?></a><!--T-->");
    assert!(matches!(replace_cards(&format!("<a><!--{CARD}--></a>"), "a--b"), Err(RewriteError::Unsupported(_))));
    assert!(matches!(replace_cards(&format!("<a><!--x {CARD}--></a>"), "a-"), Err(RewriteError::Unsupported(_))));
    assert!(matches!(replace_cards(&format!("<a><?p {CARD}?></a>"), "?>"), Err(RewriteError::Unsupported(_))));
}

#[test]
fn document_type_declarations_are_read() {
    let body = format!("<!DOCTYPE a [<!ATTLIST a n CDATA \"{CARD}\"><!-- {CARD} -->]><a/>");
    let (_, found) = cards(&body).unwrap();
    assert_eq!(found, [CARD, CARD]);
    let out = replace_cards(&body, "4000000000000002").unwrap();
    assert_eq!(out, "<!DOCTYPE a [<!ATTLIST a n CDATA \"4000000000000002\"><!-- 4000000000000002 -->]><a/>");
    assert!(XmlDoc::parse(out.as_bytes()).is_ok());
    assert_eq!(replace_cards(&body, "a\"b").unwrap_err(), IN_DTD, "no markup characters in the DTD");
    // A default only character references show cannot be rewritten: refused.
    let hidden = "<!DOCTYPE a [<!ATTLIST a n CDATA \"&#53;555555555554444\">]><a/>";
    assert_eq!(cards(hidden).err(), Some(IN_DTD));
    let clean = "<!DOCTYPE a [<!ELEMENT a ANY><!ATTLIST a n CDATA \"&#49;2\">]><a/>";
    assert_eq!(replace_cards(clean, "T").unwrap(), clean);
}

#[test]
fn text_split_by_comments_cdata_and_references_is_read_as_one() {
    for (body, want) in [
        ("<n>5555 5555<!-- -->5555 4444</n>", "<n>T<!-- --></n>"),
        ("<n>5555555555<![CDATA[554444]]></n>", "<n>T<![CDATA[]]></n>"),
        ("<n><![CDATA[5555]]>55555<?p?>5<![CDATA[554444]]> ok</n>", "<n><![CDATA[T]]><?p?><![CDATA[]]> ok</n>"),
        ("<n>x &#53;555555555554444</n>", "<n>x T</n>"),
        ("<n>a <![CDATA[5555555555554444]]></n>", "<n>a <![CDATA[T]]></n>"),
    ] {
        let (_, found) = cards(body).unwrap();
        assert_eq!(found.len(), 1, "{body}");
        assert_eq!(replace_cards(body, "T").unwrap(), want);
    }
    // A value is not read across a child element: the two texts are apart.
    assert!(cards("<n>5555555555<b/>554444</n>").unwrap().1.is_empty());
    // Nothing found: byte for byte.
    let body = "<n a='1 2'>5555 <!-- x --> 12 <![CDATA[ok]]></n>";
    assert_eq!(replace_cards(body, "T").unwrap(), body);
}

#[test]
fn selected_elements_with_mixed_content_are_refused_and_containers_read() {
    let body = format!("<r><number>{CARD}<x/></number></r>");
    let mut doc = XmlDoc::parse(body.as_bytes()).unwrap();
    assert_eq!(doc.find(&[&path("number")], &[]).err(), Some(MIXED));
    let body = format!("<r><card>\n  <number>{CARD}</number>\n  <exp>12/29</exp>\n</card></r>");
    let (doc, found) = run(&body, &["card"], &[Class::Pan]);
    assert_eq!(found, [(String::new(), Origin::Field(0)), (CARD.to_owned(), Origin::Detected(Class::Pan))]);
    assert!(apply(doc, &[Edit::Keep, replace("T")]).contains("<number>T</number>"));
    // A selected text-only element is the selector's: its text is not read again, its attributes are.
    let (_, found) = run(&format!("<r><n a=\"{CARD}\">{CARD}</n></r>"), &["n"], &[Class::Pan]);
    assert_eq!(found, [(CARD.to_owned(), Origin::Field(0)), (CARD.to_owned(), Origin::Detected(Class::Pan))]);
}

#[test]
fn values_in_names_and_the_declaration_are_refused() {
    for body in [
        format!("<a-{CARD}/>"),
        format!("<a x-{CARD}=\"1\"/>"),
        format!("<a><?x-{CARD} y?></a>"),
        format!("<p:a xmlns:p=\"u\"><p:b-{CARD}/></p:a>"),
    ] {
        assert_eq!(cards(&body).err(), Some(IN_NAME), "{body}");
    }
    let decl = format!("<?xml version=\"1.0\" standalone=\"{CARD}\"?><a/>");
    assert!(cards(&decl).is_err());
    // Names without values are fine, and numbers that are not cards stay.
    assert_eq!(
        replace_cards("<a-1 b2=\"5555555555554443\"><?t x?></a-1>", "T").unwrap(),
        "<a-1 b2=\"5555555555554443\"><?t x?></a-1>"
    );
}

/// A document with the card at random places: text (whole, split by a comment, CDATA or a reference), CDATA,
/// attributes in either quotes, comments, processing instructions, an ATTLIST default, nested elements.
fn document_with_cards() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        Just(CARD.to_owned()),
        Just("5555 5555<!-- -->5555 4444".to_owned()),
        Just("5555555555<![CDATA[554444]]>".to_owned()),
        Just("&#53;555555555554444".to_owned()),
        Just(format!("<![CDATA[{CARD}]]>")),
        Just(format!("<!--{CARD}-->")),
        Just(format!("<?p {CARD}?>")),
        "[a-z ]{0,6}",
    ];
    let attrs = prop_oneof![
        Just(format!(" a=\"{CARD}\"")),
        Just(format!(" b='x {CARD}'")),
        Just(" c=\"5555&#10;5555\"".to_owned()),
        Just(String::new()),
    ];
    let leaf = ("[abc]", attrs.clone(), text.clone()).prop_map(|(n, a, t)| format!("<{n}{a}> {t} </{n}>"));
    let tree = leaf.prop_recursive(3, 24, 4, move |inner| {
        ("[abc]", attrs.clone(), prop::collection::vec((inner, text.clone()), 1..4)).prop_map(|(n, a, kids)| {
            format!("<{n}{a}>{}</{n}>", kids.into_iter().map(|(k, t)| format!("{k} {t} ")).collect::<String>())
        })
    });
    let dtd = prop_oneof![Just(String::new()), Just(format!("<!DOCTYPE r [<!ATTLIST r d CDATA \"{CARD}\">]>"))];
    (dtd, tree).prop_map(|(d, t)| format!("{d}<r>{t}</r>"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Wherever the card is, after every value found is replaced its digits are nowhere in the output, which
    /// is well-formed, and detection finds nothing left in it.
    #[test]
    fn no_card_survives(body in document_with_cards()) {
        let out = replace_cards(&body, "4000000000000002").unwrap();
        prop_assert!(!out.contains(CARD) && !out.contains("5555 5555") && !out.contains("&#53;"), "{}", out);
        let (_, again) = cards(&out).unwrap();
        prop_assert!(again.iter().all(|v| v == "4000000000000002"), "{}", out);
    }
}
