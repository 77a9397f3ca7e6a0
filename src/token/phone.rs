//! Phone numbers: parsing, masking and format-preserving phone tokens that keep the country calling code.
//!
//! A phone number is an optional leading `+` (or full-width `＋`) followed by 6 to 15 digits (E.164 allows at
//! most 15) written with separators and parentheses (`+44 (0) 20 7946 0958`, `(030) 1234-567`): between two
//! digits or parentheses, one to three separators in any mixture ([`is_phone_separator`]: the separators of
//! [`is_separator`] but commas and low lines, so spaces of every width, dashes and hyphens, dots and slashes).
//! Digits may be of any script (every Unicode `Nd` digit: `+٤٩ ١٧٠ ١٢٣٤٥٦٧`). The canonical form is `+` and
//! the digits as ASCII when the input starts with `+`, the digits alone otherwise; the layout treats the `+` as
//! a canonical character too, so `layout.render(canonical)` gives the written form back, with ASCII digits and
//! `+`.
//!
//! A token keeps the `+`, the digit count and all punctuation. With a `+` it keeps the country calling code
//! (its length from the ITU-T E.164 table, see [`country_code_len`]) and, when the national number starts with
//! `0` (a trunk prefix written as `(0)`, or an Italian area code), that `0` as well; without a `+` it keeps the
//! first digit (a trunk prefix such as `0`). All other digits are drawn, the first of them never `0`. A token
//! is never the input value itself. Phone numbers carry no checksum, so [`validate`] checks the shape only
//! (with at least 7 digits).

use std::str::FromStr;

use rand::Rng;

use super::{ascii_digit, digit_value, is_separator, Invalid, Layout, Parsed, MAX_GAP};

/// Fewest digits [`parse`] reads.
pub const MIN_DIGITS: usize = 6;
/// Fewest digits [`validate`] accepts.
pub const MIN_VALID_DIGITS: usize = 7;
/// Most digits (E.164).
pub const MAX_DIGITS: usize = 15;

/// A separator allowed between the digits of a phone number (besides parentheses): one of the separators of
/// card numbers and IBANs ([`is_separator`]) but a comma or a low line, which list or join numbers.
pub fn is_phone_separator(c: char) -> bool {
    is_separator(c)
        && !matches!(c, ',' | '_' | '\u{60C}' | '\u{66B}' | '\u{66C}' | '\u{3001}' | '\u{FF0C}' | '\u{FF3F}')
}

/// The leading plus sign, ASCII or full-width.
fn is_plus(c: char) -> bool {
    c == '+' || c == '\u{FF0B}'
}

/// How phone tokens are drawn (config names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhoneFormat {
    /// Keep `+`, country calling code (or the first digit), length and punctuation (`keep-country`). A token
    /// can be a real subscriber's number.
    #[default]
    KeepCountry,
    /// Numbers nobody is called at (`reserved-range`, with `reserved_prefix`): where the numbering plan reserves
    /// numbers for drama and fiction, from those (UK, Ofcom: `+44 7700 900000`–`900999`; North America, NANP:
    /// `+1 NPA 555-0100`–`0199`, area code kept); elsewhere, and once those are taken, the operator's own number
    /// block: the configured prefix (international digits, e.g. `4930555000`) and drawn digits, length kept.
    ReservedRange(&'static str),
}

/// Ofcom's numbers for drama purposes: UK mobile `07700 900000`–`07700 900999` (national digits, trunk `0` off).
const UK_FICTION: &str = "7700900";
/// NANP's numbers for fiction: `555-0100` to `555-0199` in every area code.
const NANP_FICTION: &str = "55501";
/// Attempts within the fiction ranges before the operator's block takes over (they hold 1,000 and 100 numbers).
const FICTION_ATTEMPTS: u32 = 24;

impl PhoneFormat {
    /// The configuration name of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneFormat::KeepCountry => "keep-country",
            PhoneFormat::ReservedRange(_) => "reserved-range",
        }
    }
}

impl FromStr for PhoneFormat {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-country" => Ok(PhoneFormat::KeepCountry),
            "reserved-range" => {
                Err(Invalid("the reserved-range format needs reserved_prefix = \"<your number block>\""))
            }
            _ => Err(Invalid("unknown phone token format (expected reserved-range or keep-country)")),
        }
    }
}

/// Reads anything shaped like a phone number (a value or a token); see the module documentation.
pub fn parse(input: &str) -> Result<Parsed, Invalid> {
    let trimmed = input.trim();
    let canonical = check(trimmed)?;
    Ok(Parsed { canonical, layout: Layout::template(trimmed, |c| digit_value(c).is_some() || is_plus(c), false) })
}

/// Checks a canonical phone number: the shape [`parse`] reads, with at least 7 digits.
pub fn validate(canonical: &str) -> Result<(), Invalid> {
    let canonical = check(canonical)?;
    if canonical.bytes().filter(u8::is_ascii_digit).count() < MIN_VALID_DIGITS {
        return Err(Invalid("phone number must have at least 7 digits"));
    }
    Ok(())
}

/// Length of the ITU-T E.164 country calling code at the start of `digits` (the digits after `+`): 1 for
/// North America (`1`) and Russia/Kazakhstan (`7`), 2 for the two-digit codes (`20`, `27`, `30`–`34`, `36`,
/// `39`, `40`, `41`, `43`–`49`, `51`–`58`, `60`–`66`, `81`, `82`, `84`, `86`, `90`–`95`, `98`), 3 otherwise.
pub fn country_code_len(digits: &str) -> usize {
    let bytes = digits.as_bytes();
    match bytes.first() {
        Some(b'1') | Some(b'7') => return 1,
        None => return 0,
        _ => {}
    }
    let two_digit = match bytes {
        [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => (a - b'0') * 10 + (b - b'0'),
        _ => return 3,
    };
    match two_digit {
        20 | 27 | 30..=34 | 36 | 39 | 40 | 41 | 43..=49 | 51..=58 | 60..=66 | 81 | 82 | 84 | 86 | 90..=95 | 98 => 2,
        _ => 3,
    }
}

/// The number with `+`, the country calling code and the last two digits kept and every other digit `*`
/// (`+49*********78`); without a `+`, only the last two digits are kept.
pub fn mask(canonical: &str) -> String {
    let (plus, digits) = match canonical.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", canonical),
    };
    let count = digits.chars().count();
    let head = if plus.is_empty() { 0 } else { country_code_len(digits) };
    // Never reveal everything: a number too short to keep both ends keeps the country code only.
    let tail = if head + 2 < count { 2 } else { 0 };
    let masked: String =
        digits.chars().enumerate().map(|(i, c)| if i < head || i + tail >= count { c } else { '*' }).collect();
    format!("{plus}{masked}")
}

/// Draws a canonical phone token for `canonical` (see the module documentation). Phone tokens keep their
/// length, so `attempt` does not change the shape. Never returns `canonical` itself, never loops and never
/// panics.
pub fn generate<R: Rng + ?Sized>(canonical: &str, format: PhoneFormat, attempt: u32, rng: &mut R) -> String {
    match format {
        PhoneFormat::KeepCountry => keep_country(canonical, rng),
        PhoneFormat::ReservedRange(prefix) => reserved(canonical, prefix, attempt, rng),
    }
}

/// A token from a range reserved for fiction, or from the operator's block `prefix` (international digits).
fn reserved<R: Rng + ?Sized>(canonical: &str, prefix: &str, attempt: u32, rng: &mut R) -> String {
    let digits =
        |n: usize, rng: &mut R| -> String { (0..n).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect() };
    let (plus, rest) = match canonical.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, canonical),
    };
    let len = rest.len();
    if plus && attempt < FICTION_ATTEMPTS {
        if rest.starts_with("44") && len == 12 {
            return format!("+44{UK_FICTION}{}", digits(3, rng));
        }
        if let Some(national) = rest.strip_prefix('1').filter(|n| n.len() == 10) {
            return format!("+1{}{NANP_FICTION}{}", &national[..3], digits(2, rng));
        }
    }
    // The operator's block: international with `+`; written nationally (trunk `0`, country code off) without.
    let block = match plus {
        true => prefix.to_owned(),
        false => format!("0{}", &prefix[country_code_len(prefix).min(prefix.len())..]),
    };
    let fill = len.saturating_sub(block.len()).max(1);
    let token = format!("{}{block}{}", if plus { "+" } else { "" }, digits(fill, rng));
    // Longer than the input only when the block leaves no room: still a number of the operator's block.
    if token == canonical {
        format!("{}{block}{}", if plus { "+" } else { "" }, digits(fill + 1, rng))
    } else {
        token
    }
}

/// Keeps `+`, the country code (or the first digit) and the length; draws the rest.
fn keep_country<R: Rng + ?Sized>(canonical: &str, rng: &mut R) -> String {
    let (plus, rest) = match canonical.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", canonical),
    };
    let input: Vec<u8> = rest.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    if input.len() < 2 {
        // Never expected (the vault validates first); still answer with a number of a plausible shape.
        let drawn: String =
            (0..MIN_VALID_DIGITS).map(|i| char::from(b'0' + rng.gen_range(u8::from(i == 0)..10))).collect();
        return format!("{plus}{drawn}");
    }

    let mut kept = if plus.is_empty() {
        1
    } else {
        let code = country_code_len(rest);
        if input.get(code) == Some(&0) {
            code + 1
        } else {
            code
        }
    };
    // At least one digit is always drawn.
    kept = kept.min(input.len() - 1);

    let mut digits = input.clone();
    for (i, digit) in digits.iter_mut().enumerate().skip(kept) {
        *digit = rng.gen_range(u8::from(i == kept)..10);
    }
    if digits == input {
        // Drew the input back: move one drawn digit to another allowed value.
        let i = rng.gen_range(kept..input.len());
        digits[i] = lowest_other(u8::from(i == kept), input[i], rng);
    }
    let drawn: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    format!("{plus}{drawn}")
}

/// A random digit from `lowest..10`, other than `avoid`.
fn lowest_other<R: Rng + ?Sized>(lowest: u8, avoid: u8, rng: &mut R) -> u8 {
    let choices: Vec<u8> = (lowest..10).filter(|&d| d != avoid).collect();
    if choices.is_empty() {
        return avoid;
    }
    choices[rng.gen_range(0..choices.len())]
}

/// Checks the written shape and returns the canonical form.
fn check(written: &str) -> Result<String, Invalid> {
    if written.is_empty() {
        return Err(Invalid("phone number is empty"));
    }
    let (plus, rest) = match written.strip_prefix(is_plus) {
        Some(rest) => (true, rest),
        None => (false, written),
    };
    match rest.chars().next() {
        Some(c) if digit_value(c).is_some() || c == '(' => {}
        _ => return Err(Invalid("phone number must start with a digit, '+' or '('")),
    }
    match rest.chars().last() {
        Some(c) if digit_value(c).is_some() || c == ')' => {}
        _ => return Err(Invalid("phone number must end with a digit or ')'")),
    }
    let mut canonical = String::with_capacity(written.len());
    if plus {
        canonical.push('+');
    }
    let mut in_parentheses = false;
    let mut digits_in_parentheses = 0usize;
    // Separators since the last digit or parenthesis.
    let mut gap = 0;
    for c in rest.chars() {
        if let Some(d) = ascii_digit(c) {
            canonical.push(d);
            digits_in_parentheses += 1;
            gap = 0;
        } else if is_phone_separator(c) {
            if in_parentheses {
                return Err(Invalid("phone number has a separator inside parentheses"));
            }
            if gap == MAX_GAP {
                return Err(Invalid("phone number has more than three separators in a row"));
            }
            gap += 1;
        } else if c == '(' {
            if in_parentheses {
                return Err(Invalid("phone number has nested parentheses"));
            }
            in_parentheses = true;
            digits_in_parentheses = 0;
            gap = 0;
        } else if c == ')' {
            if !in_parentheses {
                return Err(Invalid("phone number has unbalanced parentheses"));
            }
            if digits_in_parentheses == 0 {
                return Err(Invalid("phone number has empty parentheses"));
            }
            in_parentheses = false;
            gap = 0;
        } else if is_plus(c) {
            return Err(Invalid("phone number may only have '+' at the start"));
        } else {
            return Err(Invalid("phone number may only contain digits, '+', parentheses and single separators"));
        }
    }
    if in_parentheses {
        return Err(Invalid("phone number has unbalanced parentheses"));
    }
    let count = canonical.len() - usize::from(plus);
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&count) {
        return Err(Invalid("phone number must have 6 to 15 digits"));
    }
    Ok(canonical)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reserved_range_tokens_ring_nobody() {
        let block = PhoneFormat::ReservedRange("441632");
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            // UK numbers: Ofcom's drama range while it lasts, then the operator's block.
            let t = generate("+447911123456", block, 0, &mut rng);
            assert!(t.starts_with("+447700900") && t.len() == 13, "{t}");
            let t = generate("+447911123456", block, FICTION_ATTEMPTS, &mut rng);
            assert!(t.starts_with("+441632") && t.len() == 13, "{t}");
            // North America: 555-01xx in the same area code.
            let t = generate("+12125551234", block, 0, &mut rng);
            assert!(t.starts_with("+121255501") && t.len() == 12, "{t}");
            // Elsewhere: the block, length kept; written nationally, the block written nationally.
            let t = generate("+4930123456789", block, 0, &mut rng);
            assert!(t.starts_with("+441632") && t.len() == 14, "{t}");
            let t = generate("030123456789", block, 0, &mut rng);
            assert!(t.starts_with("01632") && t.len() == 12, "{t}");
            assert!(validate(&t).is_ok());
        }
        // A number shorter than the block still gets one of the block's (one digit longer).
        let t = generate("+4412345", PhoneFormat::ReservedRange("44163296012"), 0, &mut rng);
        assert!(t.starts_with("+44163296012") && t != "+4412345", "{t}");
    }
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A written phone number: optional `+`, digit groups joined by separators, sometimes a `(0)` or an
    /// area code in parentheses.
    fn written_phone() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            proptest::collection::vec("[0-9]{1,4}", 1..6),
            proptest::collection::vec(
                prop_oneof![3 => Just(""), 2 => Just(" "), 1 => Just("-"), 1 => Just("."), 1 => Just("/")],
                6,
            ),
            prop_oneof![3 => Just(0usize), 1 => Just(1), 1 => Just(2)],
            "[0-9]{1,3}",
        )
            .prop_map(|(plus, groups, separators, parentheses, inside)| {
                let mut written = String::new();
                if plus {
                    written.push('+');
                }
                let parentheses = if groups.len() > 1 { parentheses } else { 0 };
                for (i, group) in groups.iter().enumerate() {
                    if i > 1 || (i == 1 && parentheses == 0) {
                        written.push_str(separators[i]);
                    }
                    written.push_str(group);
                    if i == 0 && parentheses > 0 {
                        written.push_str(if parentheses == 1 { " (0) " } else { " (" });
                        if parentheses == 2 {
                            written.push_str(&inside);
                            written.push_str(") ");
                        }
                    }
                }
                written
            })
            .prop_filter("6 to 15 digits", |w| {
                (MIN_VALID_DIGITS..=MAX_DIGITS).contains(&w.chars().filter(char::is_ascii_digit).count())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn reserved_range_tokens_stay_in_their_ranges(written in written_phone(), attempt in 0u32..100, seed in any::<u64>()) {
            let canonical = parse(&written).unwrap().canonical;
            let token = generate(&canonical, PhoneFormat::ReservedRange("441632"), attempt, &mut StdRng::seed_from_u64(seed));
            prop_assert_ne!(&token, &canonical);
            prop_assert!(validate(&token).is_ok());
            prop_assert_eq!(token.starts_with('+'), canonical.starts_with('+'));
            let fiction = token.starts_with("+447700900") || (token.starts_with("+1") && token[5..].starts_with("55501"));
            let block = token.starts_with("+441632") || token.starts_with("01632");
            prop_assert!(fiction || block, "{} -> {}", canonical, token);
            if canonical.len() > 8 {
                prop_assert_eq!(token.len(), canonical.len());
            }
        }

        #[test]
        fn tokens_keep_their_promised_shape(written in written_phone(), attempt in 0u32..100, seed in any::<u64>()) {
            let parsed = parse(&format!(" {written} ")).unwrap();
            let canonical = parsed.canonical.clone();
            prop_assert!(validate(&canonical).is_ok());
            prop_assert_eq!(parsed.layout.render(&canonical), written.clone());

            let token = generate(&canonical, PhoneFormat::KeepCountry, attempt, &mut StdRng::seed_from_u64(seed));
            prop_assert_ne!(&token, &canonical);
            prop_assert!(validate(&token).is_ok());
            prop_assert_eq!(token.len(), canonical.len());
            prop_assert_eq!(token.starts_with('+'), canonical.starts_with('+'));
            let digits = canonical.trim_start_matches('+');
            let token_digits = token.trim_start_matches('+');
            let kept = if canonical.starts_with('+') {
                let code = country_code_len(digits);
                code + usize::from(digits.as_bytes().get(code) == Some(&b'0'))
            } else {
                1
            };
            prop_assert_eq!(&token_digits[..kept], &digits[..kept]);
            prop_assert_ne!(token_digits.as_bytes()[kept], b'0');

            let rendered = parsed.layout.render(&token);
            prop_assert_eq!(rendered.len(), written.len());
            for (a, b) in rendered.chars().zip(written.chars()) {
                prop_assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
                if !b.is_ascii_digit() {
                    prop_assert_eq!(a, b);
                }
            }
            prop_assert_eq!(parse(&rendered).unwrap().canonical, token);
        }

        #[test]
        fn parse_never_panics_and_round_trips(input in "[-+0-9 ./()a]{0,25}") {
            if let Ok(parsed) = parse(&input) {
                prop_assert_eq!(parsed.layout.render(&parsed.canonical), input.trim());
                let mut rng = StdRng::seed_from_u64(0);
                let token = generate(&parsed.canonical, PhoneFormat::KeepCountry, 0, &mut rng);
                prop_assert_ne!(&token, &parsed.canonical);
                prop_assert_eq!(parse(&parsed.layout.render(&token)).unwrap().canonical, token);
            }
        }
    }

    #[test]
    fn country_code_lengths() {
        for (digits, len) in [
            ("14155550100", 1),
            ("74951234567", 1),
            ("201234567", 2),
            ("27123456", 2),
            ("33123456789", 2),
            ("35312345678", 3),
            ("3612345678", 2),
            ("390612345678", 2),
            ("4420794609", 2),
            ("42012345678", 3),
            ("4915112345678", 2),
            ("5511987654321", 2),
            ("59012345", 3),
            ("6112345678", 2),
            ("67012345", 3),
            ("81312345678", 2),
            ("85212345678", 3),
            ("8613812345678", 2),
            ("88012345678", 3),
            ("9012345678", 2),
            ("971501234567", 3),
            ("9821123456", 2),
            ("0123456", 3),
            ("2", 3),
            ("", 0),
        ] {
            assert_eq!(country_code_len(digits), len, "{digits}");
        }
    }

    #[test]
    fn layout_round_trips_with_plus() {
        let parsed = parse("+44 (0) 20 7946-0958").unwrap();
        assert_eq!(parsed.canonical, "+4402079460958");
        assert_eq!(parsed.layout.render(&parsed.canonical), "+44 (0) 20 7946-0958");
        assert_eq!(parsed.layout.render("+440311112222"), "+44 (0) 31 1112-222");
        let parsed = parse("(030) 1234.567/8").unwrap();
        assert_eq!(parsed.canonical, "03012345678");
        assert_eq!(parsed.layout.render("05987654321"), "(059) 8765.432/1");
    }

    #[test]
    fn unicode_separators_and_digits_of_every_script() {
        for (written, rendered) in [
            ("+49\u{A0}170\u{A0}1234567", "+49\u{A0}170\u{A0}7654321"),
            ("+49\u{202F}170\u{2009}1234567", "+49\u{202F}170\u{2009}7654321"),
            ("+49\u{2011}170\u{2013}1234567", "+49\u{2011}170\u{2013}7654321"),
            ("+٤٩ ١٧٠ ١٢٣٤٥٦٧", "+49 170 7654321"),
            ("+۴۹ ۱۷۰ ۱۲۳۴۵۶۷", "+49 170 7654321"),
            ("+४९ १७० १२३४५६७", "+49 170 7654321"),
            ("＋４９ １７０ １２３４５６７", "+49 170 7654321"),
            ("+49 (0)\u{3000}170/1234567", "+49 (0)\u{3000}170/7654321"),
            ("+49  170 - 1234567", "+49  170 - 7654321"),
        ] {
            let parsed = parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            let zero = usize::from(written.contains("(0)"));
            let expected = if zero == 1 { "+4901701234567" } else { "+491701234567" };
            assert_eq!(parsed.canonical, expected, "{written}");
            assert!(validate(&parsed.canonical).is_ok());
            let token = if zero == 1 { "+4901707654321" } else { "+491707654321" };
            assert_eq!(parsed.layout.render(token), rendered, "{written}");
            assert_eq!(parse(rendered).unwrap().canonical, token);
        }
    }

    #[test]
    fn trunk_zero_and_country_code_are_kept() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..200 {
            let token = generate("+4402079460958", PhoneFormat::KeepCountry, 0, &mut rng);
            assert!(token.starts_with("+440") && !token.starts_with("+4400"), "{token}");
            let token = generate("+14155550100", PhoneFormat::KeepCountry, 0, &mut rng);
            assert!(token.starts_with("+1") && !token.starts_with("+10"));
            let token = generate("03012345678", PhoneFormat::KeepCountry, 0, &mut rng);
            assert!(token.starts_with('0') && !token.starts_with("00"));
            // A single drawn digit still differs from the input (and is not 0).
            let token = generate("+35301", PhoneFormat::KeepCountry, 0, &mut rng);
            assert!(token.starts_with("+3530") && token != "+35301" && !token.ends_with('0'), "{token}");
        }
    }

    #[test]
    fn invalid_inputs_are_refused_without_the_value() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("+", "start"),
            ("12345", "6 to 15"),
            ("+1234567890123456", "6 to 15"),
            ("123456", "at least 7"),
            ("03012a34567", "may only contain"),
            ("030 12345 67x", "end"),
            ("030    1234567", "separators in a row"),
            ("030 - -1234567", "separators in a row"),
            ("030+1234567", "only have '+'"),
            ("++491234567", "start"),
            ("+ 491234567", "start"),
            ("-0301234567", "start"),
            ("0301234567-", "end"),
            ("(030 1234567", "separator inside"),
            ("(0301234567", "unbalanced"),
            ("030)1234567", "unbalanced"),
            ("030()1234567", "empty parentheses"),
            ("03((0))1234567", "nested"),
            ("٠٣٠١٢٣", "at least 7"),
            ("+49,170,1234567", "may only contain"),
            ("+49\t1701234567", "may only contain"),
            ("+49 170\u{A0}\u{A0}\u{A0}\u{A0}1234567", "separators in a row"),
        ];
        for (input, expected) in cases {
            let err = parse(input).and_then(|p| validate(&p.canonical)).unwrap_err();
            assert!(err.0.contains(expected), "{input:?}: {}", err.0);
            assert!(!err.0.contains("123"), "{input:?}");
        }
    }

    #[test]
    fn generate_survives_malformed_input() {
        let mut rng = StdRng::seed_from_u64(3);
        for input in ["", "+", "1", "+1", "abc", "+4"] {
            let token = generate(input, PhoneFormat::KeepCountry, 0, &mut rng);
            assert_ne!(token, input);
            assert!(validate(&token).is_ok(), "{token}");
        }
    }

    #[test]
    fn formats_by_name_and_mask() {
        assert_eq!("keep-country".parse::<PhoneFormat>(), Ok(PhoneFormat::KeepCountry));
        assert_eq!(PhoneFormat::default().as_str(), "keep-country");
        assert!("keep".parse::<PhoneFormat>().is_err());
        assert_eq!(mask("+4915112345678"), "+49*********78");
        assert_eq!(mask("+14155550100"), "+1********00");
        assert_eq!(mask("03012345678"), "*********78");
        assert_eq!(mask("+353"), "+353");
    }
}
