//! Property tests: any texts written into any slots read back exactly, every line stays CRLF and at most 998
//! octets, and what was not replaced stays byte for byte.

use proptest::prelude::*;

use super::words::{needs_quote, quote_into};
use super::*;

const TEMPLATES: &[&str] = &[
    // One 7bit part, no charset.
    "To: a@b.example\nSubject: s\nMIME-Version: 1.0\n\nbody tok\n",
    // Not MIME at all.
    "Subject: old\nCc: x@y.example\n\nplain\n",
    // Top-level quoted-printable, no final line break.
    "Reply-To: r@s.example\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\
     Content-Transfer-Encoding: quoted-printable\n\n<p>x=3D</p>",
    // Everything nested.
    "Subject: =?utf-8?q?f=C3=BCr?= tok\nTo: =?iso-8859-1?q?J=FCrgen?= <k@c.example>, b@c.example\n\
     Bcc: hidden@c.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"o\"\n\npreamble\n--o\n\
     Content-Type: text/plain\n\nfirst\n--o\nContent-Type: text/plain; charset=iso-8859-1\n\
     Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe\n--o\nContent-Type: multipart/alternative; boundary=i\n\n\
     --i\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\naGk=\n--i\n\
     Content-Type: text/html; charset=windows-1252\nContent-Transfer-Encoding: 8bit\n\n<b>x</b>\n--i--\n--o\n\
     Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAwQFBgcICQ==\n--o--\nepilogue\n",
];

const ATTACHMENT: &[u8] = b"AAECAwQFBgcICQ==\r\n--o--\r\nepilogue\r\n";

/// Texts built from pieces that stress the encoders.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 ]{1,12}",
        2 => any::<char>().prop_map(String::from),
        1 => Just("\r\n".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\r".to_string()),
        1 => Just(".".to_string()),
        1 => Just("\r\n.".to_string()),
        1 => Just("=".to_string()),
        1 => Just("=?utf-8?q?x?=".to_string()),
        1 => Just("\r\n--o\r\n--i--".to_string()),
        1 => Just(" \t".to_string()),
        1 => Just("äöü ß €".to_string()),
        1 => (1usize..1200).prop_map(|n| "x".repeat(n)),
        1 => (1usize..200).prop_map(|n| " ".repeat(n)),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Display names (written the way a reader gives them back) and addresses.
fn address_list() -> impl Strategy<Value = String> {
    let name = "[a-zA-Z äöüßÉ€,.\"\\\\()<>@:;=?-]{1,16}";
    let addr = "[a-z0-9]{1,8}@[a-z]{1,8}\\.example";
    let entry = (prop::option::of(name), addr).prop_map(|(name, addr)| match name {
        None => addr,
        Some(n) => {
            let mut out = String::new();
            if needs_quote(&n) {
                quote_into(&mut out, &n);
            } else {
                out.push_str(&n);
            }
            format!("{out} <{addr}>")
        }
    });
    prop::collection::vec(entry, 1..6).prop_map(|v| v.join(", "))
}

fn check_lines(out: &[u8]) -> Result<(), TestCaseError> {
    for (i, &b) in out.iter().enumerate() {
        prop_assert!(b != b'\n' || (i > 0 && out[i - 1] == b'\r'), "bare LF at {}", i);
        prop_assert!(b != b'\r' || out.get(i + 1) == Some(&b'\n'), "bare CR at {}", i);
    }
    prop_assert!(out.ends_with(b"\r\n"));
    prop_assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    Ok(())
}

#[test]
fn templates_have_the_slots_the_properties_fill() {
    let counts: Vec<usize> = TEMPLATES
        .iter()
        .map(|t| Message::parse(t.replace('\n', "\r\n").as_bytes(), &Limits::default()).unwrap().slots().len())
        .collect();
    assert_eq!(counts, vec![3, 3, 2, 7]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn texts_read_back_exactly(
        which in 0..TEMPLATES.len(),
        bodies in prop::collection::vec(prop::option::of(text()), 8),
        subjects in prop::collection::vec(prop::option::of(text()), 8),
        addresses in prop::collection::vec(prop::option::of(address_list()), 8),
    ) {
        let raw = TEMPLATES[which].replace("\n     ", "\n").replace('\n', "\r\n").into_bytes();
        let m = Message::parse(&raw, &Limits::default()).unwrap();
        let new: Vec<Option<String>> = m.slots().iter().enumerate().map(|(i, s)| match s.place {
            Place::Body { .. } => bodies[i].clone(),
            Place::Subject => subjects[i].clone(),
            Place::Address(_) => addresses[i].clone(),
        }).collect();
        let out = m.render(&new).unwrap();
        check_lines(&out)?;
        let again = Message::parse(&out, &Limits::default()).unwrap();
        prop_assert_eq!(again.slots().len(), m.slots().len());
        for (i, (before, after)) in m.slots().iter().zip(again.slots()).enumerate() {
            prop_assert_eq!(before.place, after.place);
            match &new[i] {
                Some(t) => prop_assert_eq!(&after.text, t, "slot {}", i),
                None => {
                    prop_assert_eq!(&after.text, &before.text);
                    prop_assert_eq!(again.source_bytes(i), m.source_bytes(i));
                }
            }
        }
        if which == 3 {
            prop_assert!(out.ends_with(ATTACHMENT));
        }
    }

    #[test]
    fn none_everywhere_is_the_input(which in 0..TEMPLATES.len()) {
        let raw = TEMPLATES[which].replace("\n     ", "\n").replace('\n', "\r\n").into_bytes();
        let m = Message::parse(&raw, &Limits::default()).unwrap();
        let mut want = raw.clone();
        if !want.ends_with(b"\r\n") {
            want.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(m.render(&vec![None; m.slots().len()]).unwrap(), want);
    }

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..400), which in 0..TEMPLATES.len()) {
        let _ = Message::parse(&bytes, &Limits::default());
        // Also inside a real message: cut and spliced with noise.
        let raw = TEMPLATES[which].replace('\n', "\r\n").into_bytes();
        let cut = bytes.first().map_or(0, |&b| usize::from(b) * raw.len() / 256);
        let mut mixed = raw[..cut].to_vec();
        mixed.extend_from_slice(&bytes);
        if let Ok(m) = Message::parse(&mixed, &Limits::default()) {
            let _ = m.render(&vec![None; m.slots().len()]);
            let _ = m.render(&vec![Some("é\r\n--o".to_string()); m.slots().len()]);
        }
    }

    #[test]
    fn damaged_messages_fail_cleanly_or_write_back(
        which in 0..TEMPLATES.len(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        texts in prop::collection::vec(text(), 8),
    ) {
        let mut raw = TEMPLATES[which].replace('\n', "\r\n").into_bytes();
        for (at, byte) in damage {
            let i = at.index(raw.len());
            raw[i] = byte;
        }
        let Ok(m) = Message::parse(&raw, &Limits::default()) else { return Ok(()) };
        let mut want = super::lines::crlf(raw.clone());
        if !want.ends_with(b"\r\n") {
            want.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(m.render(&vec![None; m.slots().len()]).unwrap(), want);
        let new: Vec<Option<String>> = m.slots().iter().enumerate().map(|(i, s)| match s.place {
            Place::Address(_) => None,
            _ => Some(texts[i].clone()),
        }).collect();
        let out = m.render(&new).unwrap();
        let again = Message::parse(&out, &Limits::default()).unwrap();
        prop_assert_eq!(again.slots().len(), m.slots().len());
        for (i, t) in new.iter().enumerate() {
            if let Some(t) = t {
                prop_assert_eq!(&again.slots()[i].text, t);
            }
        }
    }
}
