//! Free-text detection end to end, without a vault: every kind of variant that got past the detector in the
//! security review of issue 19 (cards beside expiry dates and CVCs, unknown separators, digits of other scripts,
//! cards touching letters, mixed-case and dash-separated IBANs, internationalised addresses, phone numbers with
//! no-break spaces or Arabic-Indic digits) is found, read by its class's parser, given a token of its class and
//! written back in the value's layout; the rewritten text then holds the token, found again as its class, in place
//! of the value, with every separator kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::SeedableRng;
use veil::detect;
use veil::domain::Class;
use veil::token::{self, ClassFormats};

const ALL: [Class; 4] = [Class::Pan, Class::Iban, Class::Email, Class::Phone];

/// (text, the value it holds, its class)
const VARIANTS: &[(&str, &str, Class)] = &[
    ("5555555555554444 1226 123", "5555555555554444", Class::Pan),
    ("5555555555554444 12/26 123", "5555555555554444", Class::Pan),
    ("5555 5555 5555 4444 12-26 123", "5555 5555 5555 4444", Class::Pan),
    ("cvc 123 card 5555-5555-5555-4444 exp 12/26", "5555-5555-5555-4444", Class::Pan),
    ("123 5555 5555 5555 4444 12-26", "5555 5555 5555 4444", Class::Pan),
    ("5555 5555 5555 4444 1234567 (order)", "5555 5555 5555 4444", Class::Pan),
    ("card 5555.5555.5555.4444", "5555.5555.5555.4444", Class::Pan),
    ("card 5555/5555/5555/4444", "5555/5555/5555/4444", Class::Pan),
    ("card 5555_5555_5555_4444", "5555_5555_5555_4444", Class::Pan),
    ("card 5555,5555,5555,4444;", "5555,5555,5555,4444", Class::Pan),
    ("card 5555  5555  5555  4444", "5555  5555  5555  4444", Class::Pan),
    ("card 5555\u{A0}5555\u{A0}5555\u{A0}4444", "5555\u{A0}5555\u{A0}5555\u{A0}4444", Class::Pan),
    ("card 5555\u{202F}5555\u{202F}5555\u{202F}4444", "5555\u{202F}5555\u{202F}5555\u{202F}4444", Class::Pan),
    ("card 5555\u{2009}5555\u{2009}5555\u{2009}4444", "5555\u{2009}5555\u{2009}5555\u{2009}4444", Class::Pan),
    ("card 5555\u{2007}5555\u{3000}5555\u{2003}4444", "5555\u{2007}5555\u{3000}5555\u{2003}4444", Class::Pan),
    ("card 5555\u{2010}5555\u{2013}5555\u{2212}4444", "5555\u{2010}5555\u{2013}5555\u{2212}4444", Class::Pan),
    ("card 5555 - 5555.5555/4444", "5555 - 5555.5555/4444", Class::Pan),
    ("بطاقة ٥٥٥٥٥٥٥٥٥٥٥٥٤٤٤٤ شكرا", "٥٥٥٥٥٥٥٥٥٥٥٥٤٤٤٤", Class::Pan),
    ("کارت ۵۵۵۵ ۵۵۵۵ ۵۵۵۵ ۴۴۴۴", "۵۵۵۵ ۵۵۵۵ ۵۵۵۵ ۴۴۴۴", Class::Pan),
    ("कार्ड ५५५५-५५५५-५५५५-४४४४", "५५५५-५५५५-५५५५-४४४४", Class::Pan),
    ("কার্ড ৫৫৫৫ ৫৫৫৫ ৫৫৫৫ ৪৪৪৪", "৫৫৫৫ ৫৫৫৫ ৫৫৫৫ ৪৪৪৪", Class::Pan),
    ("カード５５５５ ５５５５ ５５５５ ４４４４です", "５５５５ ５５５５ ５５５５ ４４４４", Class::Pan),
    ("card5555555555554444", "5555555555554444", Class::Pan),
    ("5555555555554444x", "5555555555554444", Class::Pan),
    ("pan:5555555555554444", "5555555555554444", Class::Pan),
    ("IBAN De89 3704 0044 0532 0130 00", "De89 3704 0044 0532 0130 00", Class::Iban),
    ("iban de89370400440532013000.", "de89370400440532013000", Class::Iban),
    ("IBAN DE89-3704-0044-0532-0130-00", "DE89-3704-0044-0532-0130-00", Class::Iban),
    (
        "IBAN DE89\u{A0}3704\u{A0}0044\u{A0}0532\u{A0}0130\u{A0}00",
        "DE89\u{A0}3704\u{A0}0044\u{A0}0532\u{A0}0130\u{A0}00",
        Class::Iban,
    ),
    ("IBAN:gb82-West-1234-5698-7654-32", "gb82-West-1234-5698-7654-32", Class::Iban),
    ("Mail jane@münchen.de.", "jane@münchen.de", Class::Email),
    ("Mail jane@xn--mnchen-3ya.de.", "jane@xn--mnchen-3ya.de", Class::Email),
    ("Mail jöran@example.org.", "jöran@example.org", Class::Email),
    ("Tel. +49\u{A0}170\u{A0}1234567", "+49\u{A0}170\u{A0}1234567", Class::Phone),
    ("Tel. +49\u{202F}170\u{2009}1234567", "+49\u{202F}170\u{2009}1234567", Class::Phone),
    ("Tel. +٤٩ ١٧٠ ١٢٣٤٥٦٧", "+٤٩ ١٧٠ ١٢٣٤٥٦٧", Class::Phone),
    ("Tel. +۴۹ ۱۷۰ ۱۲۳۴۵۶۷", "+۴۹ ۱۷۰ ۱۲۳۴۵۶۷", Class::Phone),
];

/// The characters of `s` that are not letters or digits: the separators a layout keeps.
fn separators(s: &str) -> String {
    s.chars().filter(|c| !c.is_alphanumeric() && *c != '+' && *c != '@' && *c != '.').collect()
}

#[test]
fn every_variant_is_found_tokenised_and_written_back_in_its_layout() {
    let formats = ClassFormats::default();
    let mut rng = StdRng::seed_from_u64(19);
    for &(text, value, class) in VARIANTS {
        let matches = detect::find(text, &ALL);
        let found: Vec<(&str, Class)> = matches.iter().map(|m| (&text[m.start..m.end], m.class)).collect();
        assert_eq!(found, [(value, class)], "{text}");
        let m = matches[0];

        let parsed = token::parse(class, value).unwrap_or_else(|e| panic!("{text}: {e}"));
        token::validate(class, &parsed.canonical).unwrap_or_else(|e| panic!("{text}: {e}"));
        let token = token::generate(class, &formats, &parsed.canonical, 0, &mut rng);
        assert_ne!(token, parsed.canonical);
        let written = parsed.layout.render(&token);
        if class != Class::Email {
            assert_eq!(separators(&written), separators(value), "{text}: the layout keeps the separators");
        }
        let rewritten = format!("{}{written}{}", &text[..m.start], &text[m.end..]);

        // The token is found again, as its class, exactly where the value was, and reads back as the token.
        let again = detect::find(&rewritten, &ALL);
        assert_eq!(again.len(), 1, "{rewritten}");
        assert_eq!((again[0].start, again[0].end, again[0].class), (m.start, m.start + written.len(), class));
        assert_eq!(token::parse(class, &written).unwrap().canonical, token, "{rewritten}");
    }
}

#[test]
fn the_same_value_in_any_spelling_is_one_canonical_value() {
    for (class, spellings) in [
        (
            Class::Pan,
            &[
                "5555555555554444",
                "5555 5555 5555 4444",
                "5555\u{A0}5555\u{2009}5555-4444",
                "٥٥٥٥٥٥٥٥٥٥٥٥٤٤٤٤",
                "५५५५-५५५५-५५५५-४४४४",
                "５５５５ ５５５５ ５５５５ ４４４４",
            ][..],
        ),
        (
            Class::Iban,
            &[
                "DE89370400440532013000",
                "de89 3704 0044 0532 0130 00",
                "De89-3704-0044-0532-0130-00",
                "DE89\u{A0}3704\u{A0}0044\u{A0}0532\u{A0}0130\u{A0}00",
                "ＤＥ８９３７０４００４４０５３２０１３０００",
            ][..],
        ),
        (
            Class::Phone,
            &["+491701234567", "+49\u{A0}170\u{A0}1234567", "+٤٩ ١٧٠ ١٢٣٤٥٦٧", "＋４９ １７０ １２３４５６７"][..],
        ),
        (Class::Email, &["jane@münchen.de", "jane@MÜNCHEN.DE", "jane@München.De"][..]),
    ] {
        let canonical: Vec<String> = spellings.iter().map(|s| token::parse(class, s).unwrap().canonical).collect();
        assert!(canonical.windows(2).all(|w| w[0] == w[1]), "{class}: {canonical:?}");
        assert!(canonical[0].is_ascii() || class == Class::Email);
    }
    // A punycode spelling is a value of its own (no IDNA conversion).
    assert_ne!(
        token::parse(Class::Email, "jane@xn--mnchen-3ya.de").unwrap().canonical,
        token::parse(Class::Email, "jane@münchen.de").unwrap().canonical
    );
}
