//! Format-preserving token formats: one file per class, and the shared shapes they use.
//!
//! A class module turns a raw input into a [`Parsed`] value — the *canonical* form that is fingerprinted and
//! sealed (digits only for a card, upper-case without spaces for an IBAN) plus the [`Layout`] that the input was
//! written in (separators, grouping, case) — and draws canonical tokens of the same shape. The vault renders a
//! canonical token back in the caller's layout, so `4111 1111 1111 1111` and `4111-1111-1111-1111` are the same
//! value with one token, each written back in its own way.

mod class;
pub mod cvc;
pub mod email;
pub mod iban;
pub mod iban_de;
pub mod pan;
pub mod phone;
pub mod text;

use std::fmt;

pub use class::{card_range, generate, mask, parse, validate, ClassFormats};

/// The zero of every run of ten Unicode decimal digits (General_Category `Nd`, Unicode 17.0, as `char` of this
/// Rust release): each `Nd` digit is one of these plus its value, 0 to 9. Sorted, ASCII first. `char::to_digit`
/// reads ASCII only and `char::is_numeric` also holds for non-decimal numbers (`²`, `½`, `Ⅻ`, `①`).
pub const DIGIT_ZEROS: [char; 77] = [
    '\u{30}',
    '\u{660}',
    '\u{6F0}',
    '\u{7C0}',
    '\u{966}',
    '\u{9E6}',
    '\u{A66}',
    '\u{AE6}',
    '\u{B66}',
    '\u{BE6}',
    '\u{C66}',
    '\u{CE6}',
    '\u{D66}',
    '\u{DE6}',
    '\u{E50}',
    '\u{ED0}',
    '\u{F20}',
    '\u{1040}',
    '\u{1090}',
    '\u{17E0}',
    '\u{1810}',
    '\u{1946}',
    '\u{19D0}',
    '\u{1A80}',
    '\u{1A90}',
    '\u{1B50}',
    '\u{1BB0}',
    '\u{1C40}',
    '\u{1C50}',
    '\u{A620}',
    '\u{A8D0}',
    '\u{A900}',
    '\u{A9D0}',
    '\u{A9F0}',
    '\u{AA50}',
    '\u{ABF0}',
    '\u{FF10}',
    '\u{104A0}',
    '\u{10D30}',
    '\u{10D40}',
    '\u{11066}',
    '\u{110F0}',
    '\u{11136}',
    '\u{111D0}',
    '\u{112F0}',
    '\u{11450}',
    '\u{114D0}',
    '\u{11650}',
    '\u{116C0}',
    '\u{116D0}',
    '\u{116DA}',
    '\u{11730}',
    '\u{118E0}',
    '\u{11950}',
    '\u{11BF0}',
    '\u{11C50}',
    '\u{11D50}',
    '\u{11DA0}',
    '\u{11DE0}',
    '\u{11F50}',
    '\u{16130}',
    '\u{16A60}',
    '\u{16AC0}',
    '\u{16B50}',
    '\u{16D70}',
    '\u{1CCF0}',
    '\u{1D7CE}',
    '\u{1D7D8}',
    '\u{1D7E2}',
    '\u{1D7EC}',
    '\u{1D7F6}',
    '\u{1E140}',
    '\u{1E2F0}',
    '\u{1E4F0}',
    '\u{1E5F1}',
    '\u{1E950}',
    '\u{1FBF0}',
];

/// The value of a decimal digit of any script: ASCII, Arabic-Indic (`٤`), Extended Arabic-Indic (`۴`),
/// Devanagari (`४`), Bengali (`৪`), full-width (`４`), … — every Unicode `Nd` character. Values are always read
/// as ASCII digits: a canonical form never holds another script's digit.
pub fn digit_value(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return u8::try_from(c).ok().map(|b| b - b'0');
    }
    if c < '\u{660}' {
        return None;
    }
    let zero = DIGIT_ZEROS.get(DIGIT_ZEROS.partition_point(|&z| z <= c).checked_sub(1)?)?;
    u8::try_from(u32::from(c) - u32::from(*zero)).ok().filter(|&v| v < 10)
}

/// The ASCII digit of a decimal digit of any script (see [`digit_value`]).
pub fn ascii_digit(c: char) -> Option<char> {
    digit_value(c).map(|v| char::from(b'0' + v))
}

/// Most separator characters in a row between two groups of a number (`4111 - 1111`, a double space).
pub const MAX_GAP: usize = 3;

/// A character written between the groups of a card number, IBAN or phone number:
///
/// * every Unicode space separator (`Zs`: space, U+00A0 no-break, U+1680, U+2000–U+200A including the figure and
///   thin spaces, U+202F narrow no-break, U+205F, U+3000 ideographic);
/// * every dash (the Unicode `Dash` property: `-`, U+2010–U+2015 hyphens and dashes, U+2212 minus, U+058A,
///   U+05BE, U+1400, U+1806, U+2053, U+207B, U+208B, U+2E17, U+2E1A, U+2E3A, U+2E3B, U+2E40, U+2E5D, U+301C,
///   U+3030, U+30A0, U+FE31, U+FE32, U+FE58, U+FE63, U+FF0D, U+10EAD);
/// * dots, slashes, commas and low lines: `.` `/` `,` `_`, U+00B7 and U+2027 middle dots, U+2044 and U+2215
///   slashes, the Arabic comma and decimal and thousands separators (U+060C, U+066B, U+066C), the ideographic
///   comma and katakana middle dot (U+3001, U+30FB, U+FF65) and the full-width `，．／＿`;
/// * the invisible characters editors and web pages leave in: U+00AD soft hyphen, U+180E, U+200B zero-width
///   space, U+200C/U+200D zero-width (non-)joiner, U+2060–U+2064 word joiner and invisible operators, U+FEFF.
///
/// Never a tab or a line break: a value does not continue on the next line or in the next column.
pub fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '-'
            | '.'
            | '/'
            | '_'
            | ','
            | '\u{A0}'
            | '\u{AD}'
            | '\u{B7}'
            | '\u{58A}'
            | '\u{5BE}'
            | '\u{60C}'
            | '\u{66B}'
            | '\u{66C}'
            | '\u{1400}'
            | '\u{1680}'
            | '\u{1806}'
            | '\u{180E}'
            | '\u{2000}'..='\u{200D}'
            | '\u{2010}'..='\u{2015}'
            | '\u{2027}'
            | '\u{202F}'
            | '\u{2044}'
            | '\u{2053}'
            | '\u{205F}'..='\u{2064}'
            | '\u{207B}'
            | '\u{208B}'
            | '\u{2212}'
            | '\u{2215}'
            | '\u{2E17}'
            | '\u{2E1A}'
            | '\u{2E3A}'
            | '\u{2E3B}'
            | '\u{2E40}'
            | '\u{2E5D}'
            | '\u{3000}'
            | '\u{3001}'
            | '\u{301C}'
            | '\u{3030}'
            | '\u{30A0}'
            | '\u{30FB}'
            | '\u{FE31}'
            | '\u{FE32}'
            | '\u{FE58}'
            | '\u{FE63}'
            | '\u{FEFF}'
            | '\u{FF0C}'..='\u{FF0F}'
            | '\u{FF3F}'
            | '\u{FF65}'
            | '\u{10EAD}'
    )
}

/// A Latin letter, ASCII or full-width (U+FF21–U+FF3A, U+FF41–U+FF5A), as its upper-case ASCII letter.
pub fn latin_letter(c: char) -> Option<char> {
    match c {
        'A'..='Z' | 'a'..='z' => Some(c.to_ascii_uppercase()),
        '\u{FF21}'..='\u{FF3A}' => char::from_u32(u32::from(c) - 0xFF21 + u32::from('A')),
        '\u{FF41}'..='\u{FF5A}' => char::from_u32(u32::from(c) - 0xFF41 + u32::from('A')),
        _ => None,
    }
}

/// Why a value was refused for its class. Carries a fixed sentence only: never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// How an input was written, so that a canonical token can be written the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The canonical form is the written form.
    Identity,
    /// The written form is the canonical characters in order (`None` slots) with these other characters
    /// (`Some`) kept in place; `lowercase` writes the slots in lower case.
    Template { slots: Vec<Option<char>>, lowercase: bool },
}

impl Layout {
    /// The layout of `input` where the characters for which `is_slot` holds form the canonical value.
    pub fn template(input: &str, is_slot: impl Fn(char) -> bool, lowercase: bool) -> Layout {
        let slots = input.chars().map(|c| if is_slot(c) { None } else { Some(c) }).collect();
        Layout::Template { slots, lowercase }
    }

    /// Writes `canonical` in this layout. Extra canonical characters (never expected) are appended so that
    /// nothing is silently lost.
    pub fn render(&self, canonical: &str) -> String {
        match self {
            Layout::Identity => canonical.to_owned(),
            Layout::Template { slots, lowercase } => {
                let mut chars = canonical.chars();
                let mut out = String::with_capacity(slots.len());
                for slot in slots {
                    match slot {
                        Some(kept) => out.push(*kept),
                        None => match chars.next() {
                            Some(c) if *lowercase => out.extend(c.to_lowercase()),
                            Some(c) => out.push(c),
                            None => break,
                        },
                    }
                }
                out.extend(chars);
                out
            }
        }
    }
}

/// A validated input: its canonical form and how it was written.
#[derive(Clone, PartialEq, Eq)]
pub struct Parsed {
    pub canonical: String,
    pub layout: Layout,
}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Parsed(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips_separators_and_case() {
        let layout = Layout::template("de89 3704-0044", |c| c.is_ascii_alphanumeric(), true);
        assert_eq!(layout.render("DE8937040044"), "de89 3704-0044");
        assert_eq!(layout.render("FR12345"), "fr12 345");
        assert_eq!(Layout::Identity.render("x@y.z"), "x@y.z");
    }

    #[test]
    fn every_decimal_digit_of_every_script_reads_as_its_value() {
        for zero in DIGIT_ZEROS {
            for value in 0..10u8 {
                let c = char::from_u32(u32::from(zero) + u32::from(value)).unwrap();
                assert!(c.is_numeric(), "{:X}", u32::from(c));
                assert_eq!(digit_value(c), Some(value), "{:X}", u32::from(c));
            }
        }
        assert!(DIGIT_ZEROS.windows(2).all(|w| u32::from(w[0]) + 10 <= u32::from(w[1])), "sorted, disjoint");
        for (text, digits) in [
            ("٤١١١", "4111"),
            ("۴۱۱۱", "4111"),
            ("४१११", "4111"),
            ("৪১১১", "4111"),
            ("４１１１", "4111"),
            ("๔๑๑๑", "4111"),
            ("\u{1D7D2}\u{1D7CF}", "41"),
        ] {
            assert_eq!(text.chars().map(|c| ascii_digit(c).unwrap()).collect::<String>(), digits);
        }
        for c in ['a', '²', '½', 'Ⅻ', '①', '〇', '٫', '\u{65F}', '\u{66A}', '\u{1D7CD}', '\u{1D800}', char::MAX]
        {
            assert_eq!(digit_value(c), None, "{:X}", u32::from(c));
        }
    }

    #[test]
    fn separators_and_letters() {
        for c in [
            ' ', '-', '.', '/', '_', ',', '\u{A0}', '\u{202F}', '\u{2009}', '\u{2007}', '\u{3000}', '\u{2011}',
            '\u{2212}',
        ] {
            assert!(is_separator(c), "{:X}", u32::from(c));
        }
        for c in ['\t', '\n', '\r', 'a', '0', '+', '(', ':', ';', '@', '\u{2028}', '\u{2029}', '\u{85}', '#', '*'] {
            assert!(!is_separator(c), "{:X}", u32::from(c));
        }
        // Every space separator (Zs): the white space that is no control character and no line break.
        let all = (0..=u32::from(char::MAX)).filter_map(char::from_u32);
        for c in all.filter(|&c| c.is_whitespace() && !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')) {
            assert!(is_separator(c), "{:X}", u32::from(c));
        }
        assert!(!(0..=u32::from(char::MAX)).filter_map(char::from_u32).any(|c| is_separator(c) && c.is_alphanumeric()));
        assert_eq!(latin_letter('d'), Some('D'));
        assert_eq!(latin_letter('Ｄ'), Some('D'));
        assert_eq!(latin_letter('ｅ'), Some('E'));
        assert_eq!(latin_letter('é'), None);
        assert_eq!(latin_letter('４'), None);
    }

    #[test]
    fn parsed_debug_is_redacted() {
        let p = Parsed { canonical: "4111111111111111".into(), layout: Layout::Identity };
        assert!(!format!("{p:?}").contains("4111"));
    }
}
