//! Card numbers (PAN): parsing, Luhn validation, masking and format-preserving card tokens.
//!
//! The canonical form is the digits only, as ASCII (digits of other scripts are read too, see [`parse`]); the
//! layout keeps the caller's separators (spaces of any width, dashes, dots, …). Tokens always have the input's
//! number of digits and are written with ASCII digits. Which digits a token keeps depends on [`PanFormat`]:
//!
//! * [`PanFormat::KeepBinLast4`] keeps the first six (the BIN) and the last four digits and fixes one middle
//!   digit so that the token passes Luhn. Where those kept digits leave too little room for a fresh unique token
//!   the token keeps fewer digits instead of failing or colliding: attempts `0..=15` keep 6 + 4, `16..=31`
//!   keep 4 + 4, `32..=47` keep the last four only and from `48` on only the first digit is kept.
//! * [`PanFormat::Last4Reserved`] starts with `99` (a range no issuer uses; see [`is_reserved`]), keeps the last
//!   four digits and passes Luhn. From attempt `48` on the last four are drawn too (only `99` is kept).
//! * [`PanFormat::RandomLuhn`] draws every digit (first digit non-zero) and passes Luhn.
//! * [`PanFormat::NonLuhn`] keeps the last four digits, draws the others (first digit non-zero) and always
//!   FAILS Luhn, so a token can never be mistaken for a real card. From attempt `48` on the last four are drawn
//!   too.
//!
//! A token is never the input value itself.

use std::str::FromStr;

use rand::Rng;

use super::{ascii_digit, digit_value, is_separator, Invalid, Layout, Parsed, MAX_GAP};

/// Fewest digits in a card number.
pub const MIN_DIGITS: usize = 12;
/// Most digits in a card number.
pub const MAX_DIGITS: usize = 19;

/// Attempts per fallback level of [`PanFormat::KeepBinLast4`] (and the point where the other formats widen).
const ATTEMPTS_PER_LEVEL: u32 = 16;

/// How card tokens are drawn (config names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanFormat {
    /// Keep the first six and the last four digits, Luhn-valid (`keep-bin-last4`).
    #[default]
    KeepBinLast4,
    /// `99` prefix, last four kept, Luhn-valid (`last4-reserved`).
    Last4Reserved,
    /// All digits random, Luhn-valid (`random-luhn`).
    RandomLuhn,
    /// Last four kept, all other digits random, never Luhn-valid (`non-luhn`).
    NonLuhn,
}

impl PanFormat {
    /// The configuration name of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            PanFormat::KeepBinLast4 => "keep-bin-last4",
            PanFormat::Last4Reserved => "last4-reserved",
            PanFormat::RandomLuhn => "random-luhn",
            PanFormat::NonLuhn => "non-luhn",
        }
    }
}

impl FromStr for PanFormat {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-bin-last4" => Ok(PanFormat::KeepBinLast4),
            "last4-reserved" => Ok(PanFormat::Last4Reserved),
            "random-luhn" => Ok(PanFormat::RandomLuhn),
            "non-luhn" => Ok(PanFormat::NonLuhn),
            _ => Err(Invalid(
                "unknown card token format (expected keep-bin-last4, last4-reserved, random-luhn or non-luhn)",
            )),
        }
    }
}

/// Reads anything shaped like a card number (a value or a token): 12 to 19 decimal digits of any script (ASCII,
/// full-width, Arabic-Indic, Devanagari, …: every Unicode `Nd` digit, see [`digit_value`]), optionally grouped:
/// between two digits, one to three separator characters ([`is_separator`]: spaces of every width, dashes and
/// hyphens, `.` `/` `_` `,`, in any mixture). Leading and trailing whitespace is ignored. The canonical form is
/// the digits as ASCII; the layout keeps every separator in place, and a token is written back with ASCII digits.
/// No checksum is checked here; see [`validate`].
pub fn parse(input: &str) -> Result<Parsed, Invalid> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(Invalid("card number is empty"));
    }
    let mut canonical = String::with_capacity(MAX_DIGITS);
    // Separators since the last digit; starts full so that a value cannot start with one.
    let mut gap = MAX_GAP;
    for c in trimmed.chars() {
        if let Some(d) = ascii_digit(c) {
            canonical.push(d);
            gap = 0;
        } else if is_separator(c) {
            if gap == MAX_GAP {
                return Err(Invalid("card number has a misplaced separator"));
            }
            gap += 1;
        } else {
            return Err(Invalid("card number may only contain digits and separators between them"));
        }
    }
    if gap > 0 {
        return Err(Invalid("card number has a misplaced separator"));
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&canonical.len()) {
        return Err(Invalid("card number must have 12 to 19 digits"));
    }
    Ok(Parsed { canonical, layout: Layout::template(trimmed, |c| digit_value(c).is_some(), false) })
}

/// Issuer ranges (ISO/IEC 7812 IIN prefixes as numbers of `digits` digits, `low..=high`) with the lengths the
/// scheme issues and the one most of its cards have. Not exhaustive and never used to refuse a value: see
/// [`range_fit`].
const KNOWN_RANGES: [(usize, u32, u32, usize, usize, usize); 22] = [
    (1, 4, 4, 13, 13, 16),       // Visa
    (1, 4, 4, 16, 16, 16),       // Visa
    (1, 4, 4, 19, 19, 16),       // Visa
    (2, 34, 34, 15, 15, 15),     // American Express
    (2, 37, 37, 15, 15, 15),     // American Express
    (3, 300, 305, 14, 19, 14),   // Diners Club International
    (2, 36, 36, 14, 19, 14),     // Diners Club International
    (4, 3095, 3095, 14, 19, 16), // Diners Club
    (2, 38, 39, 14, 19, 16),     // Diners Club
    (4, 3528, 3589, 16, 19, 16), // JCB
    (4, 2200, 2204, 16, 19, 16), // Mir
    (4, 2221, 2720, 16, 16, 16), // Mastercard
    (2, 51, 55, 16, 16, 16),     // Mastercard
    (2, 50, 50, 12, 19, 16),     // Maestro
    (2, 56, 59, 12, 19, 16),     // Maestro
    (1, 6, 6, 12, 19, 16),       // Discover, UnionPay, Maestro, RuPay, …
    (1, 1, 1, 15, 15, 15),       // UATP
    (2, 81, 82, 16, 16, 16),     // RuPay
    (4, 8600, 8600, 16, 16, 16), // UzCard
    (4, 9792, 9792, 16, 16, 16), // Troy
    (4, 9860, 9860, 16, 16, 16), // Humo
    (4, 6011, 6011, 16, 19, 16), // Discover
];

/// Card brands by published IIN range, `(digits, low, high, brand)` like [`KNOWN_RANGES`], for the card details
/// the tokenize API returns: the most specific range wins (Discover's `622126`–`622925` inside UnionPay's `62`,
/// Maestro's `6759` inside `67`). Sources: the networks' published IIN tables as summarised by ISO/IEC 7812
/// registries.
const BRAND_RANGES: [(usize, u32, u32, &str); 25] = [
    (1, 4, 4, "visa"),
    (2, 51, 55, "mastercard"),
    (4, 2221, 2720, "mastercard"),
    (2, 34, 34, "amex"),
    (2, 37, 37, "amex"),
    (4, 6011, 6011, "discover"),
    (3, 644, 649, "discover"),
    (2, 65, 65, "discover"),
    (6, 622126, 622925, "discover"),
    (3, 300, 305, "diners"),
    (4, 3095, 3095, "diners"),
    (2, 36, 36, "diners"),
    (2, 38, 39, "diners"),
    (4, 3528, 3589, "jcb"),
    (2, 62, 62, "unionpay"),
    (2, 81, 81, "unionpay"),
    (4, 5018, 5018, "maestro"),
    (4, 5020, 5020, "maestro"),
    (4, 5038, 5038, "maestro"),
    (4, 5893, 5893, "maestro"),
    (4, 6304, 6304, "maestro"),
    (4, 6759, 6759, "maestro"),
    (4, 6761, 6763, "maestro"),
    (4, 2200, 2204, "mir"),
    (4, 9792, 9792, "troy"),
];

/// The leading `digits` digits of a canonical card number as a number (`None` if it is shorter or not digits).
fn iin_prefix(canonical: &str, digits: usize) -> Option<u32> {
    let p = canonical.as_bytes().get(..digits)?;
    p.iter().all(u8::is_ascii_digit).then(|| p.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

/// The brand of a canonical card number (`visa`, `mastercard`, `amex`, …), or `"unknown"`.
pub fn brand(canonical: &str) -> &'static str {
    BRAND_RANGES
        .iter()
        .filter(|&&(digits, low, high, _)| iin_prefix(canonical, digits).is_some_and(|p| (low..=high).contains(&p)))
        .max_by_key(|&&(digits, ..)| digits)
        .map_or("unknown", |&(.., name)| name)
}

/// How a card number fits the issuer ranges of the known card schemes ([`range_fit`]); ordered, best last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RangeFit {
    /// In no known range, or not of a length its scheme issues.
    None,
    /// In a known range, with a length the scheme issues but few of its cards have (Visa 13 or 19, …).
    Known,
    /// In a known range, with the length most of the scheme's cards have (Visa 16, American Express 15, …).
    Usual,
}

/// How a canonical card number fits the known card schemes: their prefixes and the lengths they issue (Visa
/// 13/16/19, Mastercard 16, American Express 15, …). A hint for detection in free text, where it tells a card
/// from a longer or shorter number around it; [`validate`] does not use it.
pub fn range_fit(canonical: &str) -> RangeFit {
    let bytes = canonical.as_bytes();
    if !bytes.iter().all(u8::is_ascii_digit) {
        return RangeFit::None;
    }
    let len = bytes.len();
    KNOWN_RANGES
        .iter()
        .filter(|&&(digits, low, high, shortest, longest, _)| {
            (shortest..=longest).contains(&len)
                && iin_prefix(canonical, digits).is_some_and(|p| (low..=high).contains(&p))
        })
        .map(|&(.., usual)| if len == usual { RangeFit::Usual } else { RangeFit::Known })
        .max()
        .unwrap_or(RangeFit::None)
}

/// Whether a canonical card number is in a known issuer range with a length its scheme issues ([`range_fit`]).
pub fn known_range(canonical: &str) -> bool {
    range_fit(canonical) != RangeFit::None
}

/// Checks that a canonical card number is a real one: 12 to 19 ASCII digits passing the Luhn check.
pub fn validate(canonical: &str) -> Result<(), Invalid> {
    if !canonical.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid("card number may only contain digits"));
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&canonical.len()) {
        return Err(Invalid("card number must have 12 to 19 digits"));
    }
    if !luhn_valid(canonical) {
        return Err(Invalid("card number fails the Luhn check"));
    }
    Ok(())
}

/// Whether `digits` (ASCII digits only, at least one) passes the Luhn check. Anything else is `false`.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    luhn_sum(digits.bytes().rev().map(|b| b - b'0'), false) % 10 == 0
}

/// The digit that, appended to `payload`, makes it pass the Luhn check. Characters other than ASCII digits in
/// `payload` are skipped.
pub fn luhn_check_digit(payload: &str) -> char {
    let sum = luhn_sum(payload.bytes().rev().filter(u8::is_ascii_digit).map(|b| b - b'0'), true);
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// Whether a canonical card number (or token) lies in the reserved `99` range used by
/// [`PanFormat::Last4Reserved`].
pub fn is_reserved(canonical: &str) -> bool {
    canonical.starts_with("99")
}

/// The card number with all but the last four characters replaced by `*` (`************1111`). Values of four
/// characters or fewer are masked entirely.
pub fn mask(canonical: &str) -> String {
    let count = canonical.chars().count();
    if count <= 4 {
        return "*".repeat(count);
    }
    canonical.chars().enumerate().map(|(i, c)| if i + 4 < count { '*' } else { c }).collect()
}

/// Draws a canonical card token for `canonical` (see the module documentation for what each format keeps).
/// `attempt` is the number of candidates already refused because another value holds them; it widens the
/// room as described above. Never returns `canonical` itself, never loops and never panics.
pub fn generate<R: Rng + ?Sized>(canonical: &str, format: PanFormat, attempt: u32, rng: &mut R) -> String {
    let well_formed =
        (MIN_DIGITS..=MAX_DIGITS).contains(&canonical.len()) && canonical.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        // Never expected (the vault validates first); still answer with a token of a plausible shape.
        let len = canonical.chars().count().clamp(MIN_DIGITS, MAX_DIGITS);
        let input = vec![0u8; len];
        let plan = Plan { kept: vec![None; len], first_non_zero: true, luhn: true };
        return draw(&input, &plan, rng, false);
    }
    let input: Vec<u8> = canonical.bytes().map(|b| b - b'0').collect();
    let plan = Plan::new(format, &input, attempt);
    draw(&input, &plan, rng, true)
}

/// Which positions a token keeps and what it must satisfy.
struct Plan {
    /// Per position: the digit kept from the input (or the fixed prefix), `None` for a drawn one.
    kept: Vec<Option<u8>>,
    /// Whether a drawn first digit must be non-zero.
    first_non_zero: bool,
    /// Whether the token must pass Luhn (`true`) or fail it (`false`).
    luhn: bool,
}

impl Plan {
    fn new(format: PanFormat, input: &[u8], attempt: u32) -> Plan {
        let len = input.len();
        let level = attempt / ATTEMPTS_PER_LEVEL;
        let keep = |first: usize, last: usize| -> Vec<Option<u8>> {
            input.iter().enumerate().map(|(i, &d)| if i < first || i + last >= len { Some(d) } else { None }).collect()
        };
        match format {
            PanFormat::KeepBinLast4 => {
                // (first, last) digits kept per fallback level; skip levels that leave fewer than two free digits.
                const LEVELS: [(usize, usize); 4] = [(6, 4), (4, 4), (0, 4), (1, 0)];
                let mut index = (level as usize).min(LEVELS.len() - 1);
                while index < LEVELS.len() - 1 && len < LEVELS[index].0 + LEVELS[index].1 + 2 {
                    index += 1;
                }
                let (first, last) = LEVELS[index];
                Plan { kept: keep(first, last), first_non_zero: first == 0, luhn: true }
            }
            PanFormat::Last4Reserved => {
                let last = if level >= 3 { 0 } else { 4 };
                let mut kept = keep(0, last);
                kept[0] = Some(9);
                kept[1] = Some(9);
                Plan { kept, first_non_zero: false, luhn: true }
            }
            PanFormat::RandomLuhn => Plan { kept: keep(0, 0), first_non_zero: true, luhn: true },
            PanFormat::NonLuhn => {
                let last = if level >= 3 { 0 } else { 4 };
                Plan { kept: keep(0, last), first_non_zero: true, luhn: false }
            }
        }
    }

    /// The digits a drawn position may take.
    fn lowest(&self, position: usize) -> u8 {
        u8::from(position == 0 && self.first_non_zero)
    }
}

/// Draws a token following `plan`; with `must_differ`, one that is not `input`. Needs at least two drawn
/// positions (every plan has at least two).
fn draw<R: Rng + ?Sized>(input: &[u8], plan: &Plan, rng: &mut R, must_differ: bool) -> String {
    let len = plan.kept.len();
    let mut digits: Vec<u8> = plan.kept.iter().map(|k| k.unwrap_or(0)).collect();
    let free: Vec<usize> = (0..len).filter(|&i| plan.kept[i].is_none()).collect();
    // The check position: a drawn position free of the non-zero constraint, so every digit is allowed there.
    let adjustable: Vec<usize> = free.iter().copied().filter(|&i| plan.lowest(i) == 0).collect();
    if adjustable.is_empty() {
        return digits.iter().map(|d| char::from(b'0' + d)).collect();
    }
    let check = adjustable[rng.gen_range(0..adjustable.len())];
    for &i in &free {
        if i != check {
            digits[i] = rng.gen_range(plan.lowest(i)..10);
        }
    }
    settle(&mut digits, check, plan.luhn, rng);
    if must_differ && digits == input {
        // Change one other drawn position to a different allowed digit, then settle the check digit again:
        // the token then differs from the input at that position.
        let others: Vec<usize> = free.iter().copied().filter(|&i| i != check).collect();
        if !others.is_empty() {
            let i = others[rng.gen_range(0..others.len())];
            let lowest = plan.lowest(i);
            let choices: Vec<u8> = (lowest..10).filter(|&d| d != input[i]).collect();
            if !choices.is_empty() {
                digits[i] = choices[rng.gen_range(0..choices.len())];
            }
            settle(&mut digits, check, plan.luhn, rng);
        }
    }
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// Sets the digit at `check` so that the number passes Luhn (`luhn`) or fails it (a random failing digit).
fn settle<R: Rng + ?Sized>(digits: &mut [u8], check: usize, luhn: bool, rng: &mut R) {
    let len = digits.len();
    let doubled = (len - 1 - check) % 2 == 1;
    digits[check] = 0;
    let rest = luhn_sum(digits.iter().rev().copied(), false) % 10;
    // Contribution needed from the check position: (rest + c) % 10 == 0.
    let needed = (10 - rest) % 10;
    let candidates: Vec<u8> = (0..10u8).filter(|&d| (u32::from(contribution(d, doubled)) == needed) == luhn).collect();
    if !candidates.is_empty() {
        digits[check] = candidates[rng.gen_range(0..candidates.len())];
    }
}

/// Luhn contribution of one digit.
fn contribution(d: u8, doubled: bool) -> u8 {
    if doubled {
        let x = d * 2;
        if x > 9 {
            x - 9
        } else {
            x
        }
    } else {
        d
    }
}

/// Luhn sum of digits given from the right; `first_doubled` says whether the rightmost one is doubled.
fn luhn_sum(digits_from_right: impl Iterator<Item = u8>, first_doubled: bool) -> u32 {
    digits_from_right.enumerate().map(|(i, d)| u32::from(contribution(d, (i % 2 == 1) != first_doubled))).sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn published_test_cards_have_their_brands() {
        for (card, want) in [
            ("4111111111111111", "visa"),
            ("4000056655665556", "visa"),
            ("5555555555554444", "mastercard"),
            ("2223003122003222", "mastercard"),
            ("2720999999999996", "mastercard"),
            ("378282246310005", "amex"),
            ("371449635398431", "amex"),
            ("6011111111111117", "discover"),
            ("6445644564456445", "discover"),
            ("6221260000000000", "discover"),
            ("30569309025904", "diners"),
            ("36227206271667", "diners"),
            ("3530111333300000", "jcb"),
            ("3566002020360505", "jcb"),
            ("6200000000000005", "unionpay"),
            ("6229250000000000", "discover"),
            ("6229260000000000", "unionpay"),
            ("6759649826438453", "maestro"),
            ("5018000000000009", "maestro"),
            ("2200000000000004", "mir"),
            ("9792000000000001", "troy"),
            ("9900000000001111", "unknown"),
            ("1234567890123", "unknown"),
            ("", "unknown"),
        ] {
            assert_eq!(brand(card), want, "{card}");
        }
    }

    #[test]
    fn full_width_digits_are_card_digits_and_tokens_come_back_in_ascii() {
        let p = parse("４１１１ １１１１ １１１１ １１１１").unwrap();
        assert_eq!(p.canonical, "4111111111111111");
        assert_eq!(p.layout.render("4000000000000002"), "4000 0000 0000 0002");
        assert!(parse("４１１１x１１１１１１１１１１１１").is_err());
    }

    #[test]
    fn digits_of_every_script_and_unicode_separators() {
        for (written, rendered) in [
            ("٤١١١١١١١١١١١١١١١", "4000000000000002"),
            ("۴۱۱۱ ۱۱۱۱ ۱۱۱۱ ۱۱۱۱", "4000 0000 0000 0002"),
            ("४१११-११११-११११-११११", "4000-0000-0000-0002"),
            ("৪১১১\u{A0}১১১১\u{A0}১১১১\u{A0}১১১১", "4000\u{A0}0000\u{A0}0000\u{A0}0002"),
            ("4111\u{202F}1111\u{2009}1111\u{3000}1111", "4000\u{202F}0000\u{2009}0000\u{3000}0002"),
            ("4111.1111/1111_1111", "4000.0000/0000_0002"),
            ("4111,1111\u{2011}1111\u{2212}1111", "4000,0000\u{2011}0000\u{2212}0002"),
            ("4111  1111 - 1111\u{2014}1111", "4000  0000 - 0000\u{2014}0002"),
            ("4111\u{200B}1111\u{AD}1111\u{2007}1111", "4000\u{200B}0000\u{AD}0000\u{2007}0002"),
            ("4\u{0661}1\u{0967}111111111111", "4000000000000002"),
        ] {
            let p = parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(p.canonical, "4111111111111111", "{written}");
            assert!(validate(&p.canonical).is_ok());
            assert_eq!(p.layout.render("4000000000000002"), rendered, "{written}");
            assert_eq!(parse(rendered).unwrap().canonical, "4000000000000002");
        }
    }

    #[test]
    fn known_ranges() {
        for known in ["4111111111111111", "4222222222222", "5555555555554444", "2221000000000009", "378282246310005"] {
            assert!(known_range(known), "{known}");
        }
        for unknown in ["5555555555554444123", "41111111111111111", "7111111111111111", "0111111111111111", "", "4x"] {
            assert!(!known_range(unknown), "{unknown}");
        }
        assert_eq!(range_fit("4111111111111111"), RangeFit::Usual);
        assert_eq!(range_fit("4222222222222"), RangeFit::Known);
        assert_eq!(range_fit("4111111111111111123"), RangeFit::Known);
        assert_eq!(range_fit("378282246310005"), RangeFit::Usual);
        assert_eq!(range_fit("601111111111111712"), RangeFit::Known);
        assert_eq!(range_fit("7111111111111111"), RangeFit::None);
    }
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const FORMATS: [PanFormat; 4] =
        [PanFormat::KeepBinLast4, PanFormat::Last4Reserved, PanFormat::RandomLuhn, PanFormat::NonLuhn];

    /// A Luhn-valid number of 12..=19 digits written with random separators, and its canonical digits.
    fn written_pan() -> impl Strategy<Value = (String, String)> {
        (MIN_DIGITS..=MAX_DIGITS)
            .prop_flat_map(|len| {
                (
                    proptest::collection::vec(0u8..10, len - 1),
                    proptest::collection::vec(prop_oneof![6 => Just(""), 1 => Just(" "), 1 => Just("-")], len - 1),
                    "[ \t]{0,2}",
                )
            })
            .prop_map(|(payload, separators, pad)| {
                let payload: String = payload.iter().map(|d| char::from(b'0' + d)).collect();
                let canonical = format!("{payload}{}", luhn_check_digit(&payload));
                let mut written = pad.clone();
                for (i, c) in canonical.chars().enumerate() {
                    if i > 0 {
                        written.push_str(separators[i - 1]);
                    }
                    written.push(c);
                }
                written.push_str(&pad);
                (written, canonical)
            })
    }

    fn format_strategy() -> impl Strategy<Value = PanFormat> {
        prop_oneof![
            Just(PanFormat::KeepBinLast4),
            Just(PanFormat::Last4Reserved),
            Just(PanFormat::RandomLuhn),
            Just(PanFormat::NonLuhn)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn tokens_keep_their_promised_shape(
            (written, canonical) in written_pan(),
            format in format_strategy(),
            attempt in prop_oneof![4 => 0u32..16, 1 => 0u32..100],
            seed in any::<u64>(),
        ) {
            let parsed = parse(&written).unwrap();
            prop_assert_eq!(&parsed.canonical, &canonical);
            prop_assert!(validate(&canonical).is_ok());
            prop_assert_eq!(parsed.layout.render(&canonical), written.trim());

            let token = generate(&canonical, format, attempt, &mut StdRng::seed_from_u64(seed));
            prop_assert_ne!(&token, &canonical);
            prop_assert_eq!(token.len(), canonical.len());
            prop_assert!(token.bytes().all(|b| b.is_ascii_digit()));
            let len = canonical.len();
            match format {
                PanFormat::KeepBinLast4 => {
                    prop_assert!(luhn_valid(&token));
                    if attempt < 16 {
                        prop_assert_eq!(&token[..6], &canonical[..6]);
                        prop_assert_eq!(&token[len - 4..], &canonical[len - 4..]);
                    }
                    if !(32..48).contains(&attempt) {
                        prop_assert_eq!(&token[..1], &canonical[..1]);
                    }
                }
                PanFormat::Last4Reserved => {
                    prop_assert!(luhn_valid(&token));
                    prop_assert!(is_reserved(&token));
                    if attempt < 48 {
                        prop_assert_eq!(&token[len - 4..], &canonical[len - 4..]);
                    }
                }
                PanFormat::RandomLuhn => {
                    prop_assert!(luhn_valid(&token));
                    prop_assert!(!token.starts_with('0'));
                }
                PanFormat::NonLuhn => {
                    prop_assert!(!luhn_valid(&token));
                    prop_assert!(validate(&token).is_err());
                    prop_assert!(!token.starts_with('0'));
                    if attempt < 48 {
                        prop_assert_eq!(&token[len - 4..], &canonical[len - 4..]);
                    }
                }
            }

            // Written back in the caller's layout: separators in place, and it reads back as the token.
            let rendered = parsed.layout.render(&token);
            prop_assert_eq!(rendered.len(), written.trim().len());
            for (a, b) in rendered.chars().zip(written.trim().chars()) {
                prop_assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
                if !b.is_ascii_digit() {
                    prop_assert_eq!(a, b);
                }
            }
            let reparsed = parse(&rendered).unwrap();
            prop_assert_eq!(reparsed.canonical, token);
        }

        #[test]
        fn check_digit_completes_any_payload(payload in "[0-9]{1,30}") {
            let full = format!("{}{}", payload, luhn_check_digit(&payload));
            prop_assert!(luhn_valid(&full));
            for wrong in (b'0'..=b'9').map(char::from).filter(|&c| c != luhn_check_digit(&payload)) {
                let candidate = format!("{}{}", payload, wrong);
                prop_assert!(!luhn_valid(&candidate));
            }
        }

        #[test]
        fn parse_never_panics_and_shape_holds(input in "\\PC{0,30}") {
            if let Ok(parsed) = parse(&input) {
                prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&parsed.canonical.len()));
                prop_assert_eq!(parsed.layout.render(&parsed.canonical), input.trim());
            }
        }
    }

    #[test]
    fn known_numbers() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("4111 1111"));
        assert_eq!(luhn_check_digit("7992739871"), '3');
        assert_eq!(luhn_check_digit("411111111111111"), '1');
        assert!(validate("4111111111111111").is_ok());
        assert!(validate("378282246310005").is_ok());
        assert!(validate("6011111111111117").is_ok());
    }

    #[test]
    fn parse_keeps_the_layout() {
        let parsed = parse(" 4111 1111-1111 1111 ").unwrap();
        assert_eq!(parsed.canonical, "4111111111111111");
        assert_eq!(parsed.layout.render("4111112222221111"), "4111 1122-2222 1111");
    }

    #[test]
    fn invalid_inputs_are_refused_without_the_value() {
        let cases = [
            ("4111111111111112", "Luhn"),
            ("4111 1111 1111 111a", "digits"),
            ("4111x1111x1111x1111", "digits"),
            ("41111111111", "12 to 19"),
            ("41111111111111111111", "12 to 19"),
            ("4111    1111 1111 1111", "separator"),
            ("-4111111111111111", "separator"),
            ("4111111111111111-", "separator"),
            ("4111--.-1111-1111-1111", "separator"),
            ("", "empty"),
            ("   ", "empty"),
            ("٤١١١١١١١١١١١١١١٢", "Luhn"),
            ("4111\t1111 1111 1111", "digits"),
        ];
        for (input, expected) in cases {
            let err = parse(input).and_then(|p| validate(&p.canonical)).unwrap_err();
            assert!(err.0.contains(expected), "{input:?}: {}", err.0);
            let digits: String = input.chars().filter(char::is_ascii_digit).collect();
            if digits.len() >= 4 {
                assert!(!err.to_string().contains(&digits[..4]), "{input:?}");
            }
        }
        assert!(validate("4111-1111-1111-1111").is_err());
    }

    #[test]
    fn formats_by_name() {
        for format in FORMATS {
            assert_eq!(format.as_str().parse::<PanFormat>(), Ok(format));
        }
        assert_eq!(PanFormat::default(), PanFormat::KeepBinLast4);
        assert!("keep-bin".parse::<PanFormat>().is_err());
    }

    #[test]
    fn mask_keeps_last_four() {
        assert_eq!(mask("4111111111111111"), "************1111");
        assert_eq!(mask("123456789012"), "********9012");
        assert_eq!(mask("1234"), "****");
    }

    #[test]
    fn fallback_levels_on_a_twelve_digit_number() {
        let canonical = "411111111117";
        assert!(validate(canonical).is_ok());
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen_levels = [false; 4];
        for attempt in 0..60 {
            for _ in 0..50 {
                let token = generate(canonical, PanFormat::KeepBinLast4, attempt, &mut rng);
                assert_ne!(token, canonical);
                assert!(validate(&token).is_ok(), "attempt {attempt}");
                assert_eq!(parse(&token).unwrap().canonical, token);
                let level = (attempt / 16).min(3) as usize;
                match level {
                    0 => assert!(token.starts_with("411111") && token.ends_with("1117")),
                    1 => assert!(token.starts_with("4111") && token.ends_with("1117")),
                    2 => assert!(token.ends_with("1117")),
                    _ => assert!(token.starts_with('4')),
                }
                seen_levels[level] = true;
            }
        }
        assert_eq!(seen_levels, [true; 4]);

        // Level 0 of a 12-digit number has exactly nine free tokens; all of them show up, never the input.
        let mut level0 = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            level0.insert(generate(canonical, PanFormat::KeepBinLast4, 0, &mut rng));
        }
        assert_eq!(level0.len(), 9);
        assert!(!level0.contains(canonical));

        // Later levels actually widen the room.
        let mut later = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            later.insert(generate(canonical, PanFormat::KeepBinLast4, 50, &mut rng));
        }
        assert!(later.len() > 1000);
        assert!(later.iter().any(|t| !t.ends_with("1117")));
    }

    #[test]
    fn other_formats_widen_late() {
        let canonical = "4111111111111111";
        let mut rng = StdRng::seed_from_u64(9);
        let mut drew_last4 = [false; 2];
        for _ in 0..200 {
            let reserved = generate(canonical, PanFormat::Last4Reserved, 48, &mut rng);
            assert!(is_reserved(&reserved) && luhn_valid(&reserved));
            drew_last4[0] |= !reserved.ends_with("1111");
            let non_luhn = generate(canonical, PanFormat::NonLuhn, 48, &mut rng);
            assert!(!luhn_valid(&non_luhn));
            drew_last4[1] |= !non_luhn.ends_with("1111");
        }
        assert_eq!(drew_last4, [true; 2]);
    }

    #[test]
    fn generate_survives_malformed_input() {
        let mut rng = StdRng::seed_from_u64(3);
        for input in ["", "12", "abc", "4111-1111-1111-1111", "99999999999999999999999"] {
            for format in FORMATS {
                let token = generate(input, format, 0, &mut rng);
                assert_ne!(token, input);
                assert!((MIN_DIGITS..=MAX_DIGITS).contains(&token.len()));
                assert!(luhn_valid(&token));
            }
        }
    }

    #[test]
    fn reserved_input_still_gets_another_token() {
        let canonical = format!("99111111111{}", luhn_check_digit("99111111111"));
        let mut rng = StdRng::seed_from_u64(11);
        for attempt in 0..100 {
            let token = generate(&canonical, PanFormat::Last4Reserved, attempt, &mut rng);
            assert_ne!(token, canonical);
            assert!(luhn_valid(&token));
        }
    }
}
