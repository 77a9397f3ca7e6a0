//! Whole messages through `Message::parse` and `Message::render`: each render rule, each error.

use super::*;

/// The message with LF line breaks written as CRLF.
fn msg(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn parse(raw: &[u8]) -> Message {
    Message::parse(raw, &Limits::default()).unwrap()
}

fn texts(m: &Message) -> Vec<(Place, &str)> {
    m.slots().iter().map(|s| (s.place, s.text.as_str())).collect()
}

/// Renders with `Some(text)` for slot `i` only.
fn render_one(m: &Message, i: usize, text: &str) -> Vec<u8> {
    let mut new = vec![None; m.slots().len()];
    new[i] = Some(text.to_string());
    m.render(&new).unwrap()
}

fn lines_ok(out: &[u8]) {
    assert!(out.ends_with(b"\r\n"), "ends without CRLF");
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    for line in out.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }
}

fn s(out: &[u8]) -> &str {
    std::str::from_utf8(out).unwrap()
}

const PLAIN: &str = "From: shop@shop.example\nTo: Tok Name <k3f9x2@customers.shop.example>\nSubject: Your order\n\
MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii; format=flowed\n\nHello k3f9x2@customers.shop.example,\n\
.dot line\nBye\n";

#[test]
fn plain_message_slots_and_exact_round_trip() {
    let raw = msg(PLAIN);
    let m = parse(&raw);
    assert_eq!(
        texts(&m),
        vec![
            (Place::Address("To"), "Tok Name <k3f9x2@customers.shop.example>"),
            (Place::Subject, "Your order"),
            (Place::Body { html: false }, "Hello k3f9x2@customers.shop.example,\r\n.dot line\r\nBye"),
        ]
    );
    assert_eq!(m.render(&[None, None, None]).unwrap(), raw);
    assert_eq!(m.render(&[None]), Err(MimeError::SlotCount));
}

#[test]
fn ascii_body_stays_7bit_and_others_stay_byte_for_byte() {
    let raw = msg(PLAIN);
    let m = parse(&raw);
    let out = render_one(&m, 2, "Hello jane@example.com,\r\nBye");
    let want = PLAIN.replace("k3f9x2@customers.shop.example,\n.dot line\n", "jane@example.com,\n");
    assert_eq!(s(&out), s(&msg(&want)));
}

#[test]
fn non_ascii_body_becomes_quoted_printable_utf8() {
    let m = parse(&msg(PLAIN));
    let out = render_one(&m, 2, "Hallo Jürgen = König\r\nBye ");
    lines_ok(&out);
    let text = s(&out);
    assert!(text.contains("Content-Type: text/plain; charset=utf-8; format=flowed\r\n"), "{text}");
    assert!(text
        .contains("Content-Transfer-Encoding: quoted-printable\r\n\r\nHallo J=C3=BCrgen =3D K=C3=B6nig\r\nBye=20\r\n"));
    assert_eq!(parse(&out).slots()[2].text, "Hallo Jürgen = König\r\nBye ");
}

#[test]
fn long_ascii_line_becomes_quoted_printable_without_charset_change() {
    let m = parse(&msg(PLAIN));
    let long = "y".repeat(1500);
    let out = render_one(&m, 2, &long);
    lines_ok(&out);
    assert!(s(&out).contains("charset=us-ascii") && s(&out).contains("Content-Transfer-Encoding: quoted-printable"));
    assert_eq!(parse(&out).slots()[2].text, long);
}

#[test]
fn charset_and_transfer_encoding_are_added_when_missing() {
    let raw = msg("To: a@b\nMIME-Version: 1.0\nContent-Type: text/plain\n\nhi\n");
    let out = render_one(&parse(&raw), 1, "hé");
    assert_eq!(
        s(&out),
        "To: a@b\r\nMIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9\r\n"
    );
    let raw = msg("MIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n\nhi\n");
    let out = render_one(&parse(&raw), 0, "hé");
    assert_eq!(
        s(&out),
        "MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nh=C3=A9\r\n"
    );
}

#[test]
fn html_part() {
    let raw = msg("MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n\
<p>Dear Jürgen, <b>tok</b></p>\n");
    let m = parse(&raw);
    assert_eq!(texts(&m), vec![(Place::Body { html: true }, "<p>Dear Jürgen, <b>tok</b></p>")]);
    let out = render_one(&m, 0, "<p>Dear Jürgen, <b>Müller</b></p>");
    assert!(s(&out).contains("Content-Transfer-Encoding: quoted-printable\r\n"));
    assert_eq!(parse(&out).slots()[0].text, "<p>Dear Jürgen, <b>Müller</b></p>");
}

const ALTERNATIVE: &str = "To: a@b\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"=_alt\"\n\n\
This is a preamble.\n--=_alt\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
Hi tok=3D=C3=A9 soft=\nbreak\n--=_alt\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
PGI+SGkgdG9rPC9iPg==\n--=_alt--\nEpilogue.\n";

#[test]
fn multipart_alternative_both_encodings() {
    let raw = msg(ALTERNATIVE);
    let m = parse(&raw);
    assert_eq!(
        texts(&m),
        vec![
            (Place::Address("To"), "a@b"),
            (Place::Body { html: false }, "Hi tok=é softbreak"),
            (Place::Body { html: true }, "<b>Hi tok</b>"),
        ]
    );
    assert_eq!(m.render(&[None, None, None]).unwrap(), raw);
    let long = format!("Hi Jürgen = {} end ", "z".repeat(200));
    let html = format!("<b>Hi Jürgen</b>{}", "<i>x</i>".repeat(40));
    let out = m.render(&[None, Some(long.clone()), Some(html.clone())]).unwrap();
    lines_ok(&out);
    let text = s(&out);
    assert!(text.split("\r\n").all(|l| l.len() <= 76 || l.starts_with("Content-")), "{text}");
    assert!(
        text.contains("\r\n\r\nThis is a preamble.\r\n--=_alt\r\n") && text.ends_with("--=_alt--\r\nEpilogue.\r\n")
    );
    assert_eq!(text.matches("Content-Transfer-Encoding: base64").count(), 1);
    let again = parse(&out);
    assert_eq!(again.slots()[1].text, long);
    assert_eq!(again.slots()[2].text, html);
}

const NESTED: &str = "Subject: =?utf-8?q?Ihre_Bestellung_f=C3=BCr?= tok\nTo: =?iso-8859-1?q?J=FCrgen?= <k@c.example>\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\n\
Content-Type: multipart/alternative; boundary=inner\n\n--inner\nContent-Type: text/plain; charset=iso-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe tok\n--inner\nContent-Type: text/html; charset=windows-1252\n\n\
<p>\u{93}tok\u{94}</p>\n--inner--\n\n--outer\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\
Content-Disposition: attachment; filename=a.pdf\n\nJVBERi0xLjQK\n--outer\nContent-Type: text/plain\n\
Content-Disposition: attachment; filename=notes.txt\n\ntok in an attachment\n--outer\nContent-Type: message/rfc822\n\n\
Subject: inner tok\n\ninner body tok\n--outer\nContent-Type: text/plain; charset=koi8-r\n\n\u{e9}\n--outer--\n";

/// NESTED with its windows-1252 quote bytes (the literal above holds U+0093/U+0094 to stay a `str`).
fn nested_raw() -> Vec<u8> {
    let mut raw = msg(NESTED);
    for b in raw.iter_mut() {
        if *b == 0xc2 {
            *b = b'\0';
        }
    }
    raw.retain(|&b| b != 0);
    raw
}

#[test]
fn nested_mixed_alternative_and_untouched_parts() {
    let raw = nested_raw();
    let m = parse(&raw);
    assert_eq!(
        texts(&m),
        vec![
            (Place::Subject, "Ihre Bestellung für tok"),
            (Place::Address("To"), "Jürgen <k@c.example>"),
            (Place::Body { html: false }, "Grüße tok"),
            (Place::Body { html: true }, "<p>“tok”</p>"),
        ]
    );
    assert_eq!(m.render(&[None, None, None, None]).unwrap(), raw);
    let new = [
        Some("Ihre Bestellung für Jürgen Müller".to_string()),
        Some("Jürgen <jurgen@example.com>".to_string()),
        Some("Grüße Jürgen".to_string()),
        Some("<p>“Jürgen”</p>".to_string()),
    ];
    let out = m.render(&new).unwrap();
    lines_ok(&out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"));
    assert!(text.contains("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"));
    for untouched in [
        &b"--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"[..],
        b"tok in an attachment\r\n",
        b"Subject: inner tok\r\n\r\ninner body tok\r\n",
        "charset=koi8-r\r\n\r\n\u{e9}\r\n--outer--\r\n".as_bytes(),
    ] {
        assert!(out.windows(untouched.len()).any(|w| w == untouched));
    }
    let again = parse(&out);
    let got: Vec<Option<String>> = again.slots().iter().map(|s| Some(s.text.clone())).collect();
    assert_eq!(got, new);
}

#[test]
fn latin1_body_replaced_gets_utf8_charset() {
    let raw = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"ISO-8859-1\"; format=flowed\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nM\xfcller tok\r\n";
    let m = parse(raw);
    assert_eq!(m.slots()[0].text, "Müller tok");
    let out = render_one(&m, 0, "Müller Straße");
    assert!(s(&out).contains(
        "Content-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    ));
    assert_eq!(parse(&out).slots()[0].text, "Müller Straße");
    // ASCII text keeps the charset it had.
    let out = render_one(&m, 0, "Mueller");
    assert!(out.windows(10).any(|w| w == b"ISO-8859-1") && out.ends_with(b"8bit\r\n\r\nMueller\r\n"));
}

#[test]
fn encoded_word_subject_and_display_name_are_rewritten() {
    let raw = nested_raw();
    let m = parse(&raw);
    let out = render_one(&m, 0, "Bestellung für Ümit");
    assert!(s(&out[..80]).starts_with("Subject: Bestellung =?utf-8?b?"));
    assert_eq!(parse(&out).slots()[0].text, "Bestellung für Ümit");
    let out = render_one(&m, 1, "\"Ümit, Ö\" <u@example.com>, b@example.com");
    let field = String::from_utf8_lossy(&out).lines().find(|l| l.starts_with("To:")).unwrap().to_string();
    assert!(field.starts_with("To: =?utf-8?b?") && field.ends_with("<u@example.com>, b@example.com"), "{field}");
    assert_eq!(parse(&out).slots()[1].text, "\"Ümit, Ö\" <u@example.com>, b@example.com");
    let mut new = vec![None; 4];
    new[1] = Some("Ümit <ü@example.com>".to_string());
    assert_eq!(m.render(&new), Err(MimeError::AddressNotAscii));
}

#[test]
fn headers_are_refolded_and_keep_their_name() {
    let raw = msg("cc: a@b\nSUBJECT: x\n\nbody\n");
    let m = parse(&raw);
    assert_eq!(m.slots()[0].place, Place::Address("Cc"));
    let subject = "A subject long enough that it has to be folded somewhere before the end of it, twice over, yes";
    let out = render_one(&m, 1, subject);
    let text = s(&out);
    assert!(text.starts_with("cc: a@b\r\nSUBJECT: A subject"));
    let field = &text[9..text.find("\r\n\r\n").unwrap()];
    assert!(field.contains("\r\n ") && field.split("\r\n").all(|l| l.len() <= 78), "{field}");
    assert_eq!(parse(&out).slots()[1].text, subject);
}

#[test]
fn lf_only_input_is_read_and_written_crlf() {
    let raw = PLAIN.as_bytes();
    let m = parse(raw);
    assert_eq!(m.slots()[2].text, "Hello k3f9x2@customers.shop.example,\r\n.dot line\r\nBye");
    assert_eq!(m.render(&[None, None, None]).unwrap(), msg(PLAIN));
    let out = m.render(&[None, Some("Tok".into()), Some("a\r\nb".into())]).unwrap();
    lines_ok(&out);
    let lf = ALTERNATIVE.as_bytes();
    let m = parse(lf);
    assert_eq!(m.slots()[1].text, "Hi tok=é softbreak");
    assert_eq!(m.render(&[None, None, None]).unwrap(), msg(ALTERNATIVE));
}

#[test]
fn message_without_mime_version_is_plain_text() {
    let raw = msg("Subject: hi\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nnot base64!\n");
    let m = parse(&raw);
    assert_eq!(m.slots()[1], Slot { place: Place::Body { html: false }, text: "not base64!".into() });
    assert_eq!(s(&render_one(&m, 1, "still ascii")), s(&raw).replace("not base64!", "still ascii"));
    let out = render_one(&m, 1, "Jürgen");
    assert_eq!(
        s(&out),
        "Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=C3=BCrgen\r\n"
    );
    assert_eq!(parse(&out).slots()[1].text, "Jürgen");
}

#[test]
fn header_only_message_and_message_without_final_break() {
    let raw = msg("To: a@b\nSubject: s\n");
    let m = parse(&raw);
    assert_eq!(m.slots().len(), 2);
    assert_eq!(m.render(&[None, None]).unwrap(), raw);
    let raw = b"Subject: s\r\n\r\nlast line";
    let m = parse(raw);
    assert_eq!(m.slots()[1].text, "last line");
    assert_eq!(m.render(&[None, None]).unwrap(), b"Subject: s\r\n\r\nlast line\r\n");
    assert_eq!(render_one(&m, 1, "x\r\n"), b"Subject: s\r\n\r\nx\r\n\r\n");
    assert_eq!(parse(b"To: a@b").render(&[None]).unwrap(), b"To: a@b\r\n");
    let out = render_one(&m, 1, "new");
    assert_eq!(out, b"Subject: s\r\n\r\nnew\r\n");
    let raw = b"Subject: s\r\n\r\n";
    assert_eq!(render_one(&parse(raw), 1, "x"), b"Subject: s\r\n\r\nx\r\n");
}

#[test]
fn eight_bit_utf8_body_and_headers() {
    let raw = msg("Subject: Grüße tok\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: 8bit\n\nGrüße tok\n");
    let m = parse(&raw);
    assert_eq!(texts(&m), vec![(Place::Subject, "Grüße tok"), (Place::Body { html: false }, "Grüße tok")]);
    assert_eq!(m.render(&[None, None]).unwrap(), raw);
}

#[test]
fn unknown_charset_or_transfer_encoding_leaves_the_part_untouched() {
    let raw = msg("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: text/plain; charset=x-unknown\n\n\u{e9}\n--b\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n\
--b\nContent-Type: text/enriched\n\nx\n--b\n\nbare part\n--b--\n");
    let m = parse(&raw);
    assert_eq!(texts(&m), vec![(Place::Body { html: false }, "bare part")]);
    let out = render_one(&m, 0, "bäre");
    assert!(s(&out).contains("--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nb=C3=A4re\r\n--b--"));
}

#[test]
fn malformed_messages_are_errors() {
    let err = |raw: &[u8]| Message::parse(raw, &Limits::default()).unwrap_err();
    assert_eq!(err(b""), MimeError::Empty);
    assert_eq!(err(&msg("Subject: x\nthis is body text\n")), MimeError::HeaderNoEnd);
    assert_eq!(err(&msg(" folded\n\nbody\n")), MimeError::FoldFirst);
    assert_eq!(err(b"Subject: \xff\r\n\r\nx\r\n"), MimeError::HeaderNotUtf8);
    let mp = |ct: &str, body: &str| msg(&format!("MIME-Version: 1.0\nContent-Type: {ct}\n\n{body}"));
    assert_eq!(err(&mp("multipart/mixed", "--b\n\nx\n--b--\n")), MimeError::NoBoundary);
    assert_eq!(err(&mp("multipart/mixed; boundary=b", "--b\n\nx\n")), MimeError::BoundaryNeverCloses);
    assert_eq!(
        err(&mp("multipart/mixed; boundary=b", "--b\nContent-Transfer-Encoding: base64\n\n!!!!\n--b--\n")),
        MimeError::BadBase64
    );
    assert_eq!(
        err(&mp("text/plain\nContent-Transfer-Encoding: quoted-printable", "a=G1\n")),
        MimeError::BadQuotedPrintable
    );
    assert_eq!(
        err(b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xe9\r\n"),
        MimeError::BadCharset
    );
    assert_eq!(
        err(&mp("multipart/mixed; boundary=b", "--b\nContent-Type: text/plain\n\n\n--b\nbroken\n--b--\n")),
        MimeError::HeaderNoEnd
    );
}

/// A message of `depth` nested multiparts around one text part.
fn nested(depth: usize) -> Vec<u8> {
    let mut entity = "Content-Type: text/plain\n\nleaf".to_string();
    for d in 1..=depth {
        entity = format!("Content-Type: multipart/mixed; boundary=b{d}\n\n--b{d}\n{entity}\n--b{d}--");
    }
    msg(&format!("MIME-Version: 1.0\n{entity}\n"))
}

#[test]
fn limits_on_depth_and_parts() {
    let m = parse(&nested(16));
    assert_eq!(texts(&m), vec![(Place::Body { html: false }, "leaf")]);
    let out = render_one(&m, 0, "léaf");
    assert_eq!(parse(&out).slots()[0].text, "léaf");
    assert_eq!(Message::parse(&nested(17), &Limits::default()).unwrap_err(), MimeError::TooDeep);
    assert!(Message::parse(&nested(17), &Limits { max_depth: 17, max_parts: 256 }).is_ok());
    let parts: String = (0..300).map(|_| "--b\n\nx\n").collect();
    let raw = msg(&format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n{parts}--b--\n"));
    assert_eq!(Message::parse(&raw, &Limits::default()).unwrap_err(), MimeError::TooManyParts);
    assert_eq!(Message::parse(&raw, &Limits { max_depth: 16, max_parts: 301 }).unwrap().slots().len(), 300);
}

#[test]
fn debug_output_never_shows_text() {
    let m = parse(&msg(PLAIN));
    let shown = format!("{m:?} {:?}", m.slots());
    assert!(shown.contains("Subject") && shown.contains("Body"));
    assert!(!shown.contains("k3f9x2") && !shown.contains("Your order"), "{shown}");
}

#[test]
fn every_error_message_is_a_fixed_sentence() {
    let m = parse(&msg("To: a@b\n\nx\n"));
    let err = m.render(&[Some("J\u{fc}rgen <j\u{fc}rgen.secret@example.com>".into()), None]).unwrap_err();
    assert_eq!(err.to_string(), "non-ASCII text in an address header outside a display name");
    let raw = msg("MIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\nc2VjcmV0!\n");
    assert_eq!(Message::parse(&raw, &Limits::default()).unwrap_err().to_string(), "a part's base64 does not decode");
}

#[test]
fn repeated_and_group_address_headers() {
    let raw = msg("To: a@b\nTO: Friends: =?utf-8?q?=C3=89lise?= <e@x>, f@x;\nSubject: s\n\nx\n");
    let m = parse(&raw);
    assert_eq!(
        texts(&m)[..2],
        [(Place::Address("To"), "a@b"), (Place::Address("To"), "Friends: \u{c9}lise <e@x>, f@x;")]
    );
    let out = render_one(&m, 1, "Friends: \u{c9}lise <elise@example.com>, f@x;");
    assert!(s(&out).starts_with("To: a@b\r\nTO: Friends: =?utf-8?b?"));
    assert_eq!(parse(&out).slots()[1].text, "Friends: \u{c9}lise <elise@example.com>, f@x;");
}
