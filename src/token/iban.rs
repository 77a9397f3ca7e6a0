//! IBAN tokens: International Bank Account Numbers checked against the SWIFT IBAN Registry, and tokens that are
//! themselves valid IBANs of the same country.
//!
//! * [`parse`] checks the *shape* only (anything a token could look like) and returns the canonical form
//!   (ASCII upper case, no separators: `de89 3704…`, `De89-3704-…` and full-width or Arabic-Indic spellings are
//!   one value) with the layout it was written in.
//! * [`validate`] checks a *real* IBAN: registry country, exact length, the country's BBAN structure and the
//!   ISO 13616 check digits (mod 97 == 1). National check digits are deliberately **not** required of inputs:
//!   some banks number accounts with their own schemes.
//! * [`generate`] draws a token for a validated value: same country and length, same BBAN structure, valid
//!   ISO 13616 check digits, valid national check digits where the country defines a scheme, never the input.
//!
//! The registry and the list of national schemes are in `iban_registry.rs`; the schemes are implemented here in
//! `national_digits`. Countries whose account check digits are bank-specific or unpublished (GB, NL, …)
//! have no national scheme: their tokens are valid in structure and ISO check digits.
//!
//! Germany is the exception among those: every bank's method is published with the bank-code file
//! ([`super::iban_de`]). A `keep-bank` DE token gets an account number that its bank's method accepts, and
//! [`national_check_valid`] applies the method. Inputs are still held to ISO 13616 only, not to the method (a real
//! customer's IBAN is never refused over an account-number rule); but [`validate`] refuses a DE IBAN whose bank
//! code is not in the bank-code file (or whose method veil does not implement), because its token could not pass
//! the checks of a German application. The reserved bank code of `reserved-bank` tokens is accepted.

use std::str::FromStr;

use rand::Rng;

use super::iban_de;
use super::{ascii_digit, digit_value, is_separator, latin_letter, Invalid, Layout, Parsed, MAX_GAP};

#[path = "iban_registry.rs"]
mod registry;

use registry::{Country, National, COUNTRIES};

/// How a token treats the bank of the input (config names in brackets: `keep-bank`, `reserved-bank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IbanFormat {
    /// Keep the bank identifier and, where the registry defines one, the branch identifier; draw the account.
    /// After 32 colliding attempts for a value the branch is drawn too (the bank is always kept). A national check
    /// digit embedded in a kept code (AL branch, HR and PL bank) is recomputed, which changes nothing for a real IBAN.
    /// DE: the account number is drawn until the bank's check-digit method (Bundesbank) accepts it.
    #[default]
    KeepBank,
    /// Replace the bank identifier with an obviously fake, unroutable one and draw everything else: `9` for
    /// every numeric position of the bank code and `X` for every alphabetic or alphanumeric one (DE `99999999`,
    /// GB `XXXX`, MU `XXXX99`). Where a national check digit is part of the bank code (HR, PL) it is recomputed,
    /// so the HR code is `999999` + its check digit.
    ReservedBank,
}

impl IbanFormat {
    /// The configuration name of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            IbanFormat::KeepBank => "keep-bank",
            IbanFormat::ReservedBank => "reserved-bank",
        }
    }
}

impl FromStr for IbanFormat {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-bank" => Ok(IbanFormat::KeepBank),
            "reserved-bank" => Ok(IbanFormat::ReservedBank),
            _ => Err(Invalid("unknown IBAN token format (expected keep-bank or reserved-bank)")),
        }
    }
}

/// Shortest and longest IBAN of ISO 13616.
const MIN_LEN: usize = 15;
const MAX_LEN: usize = 34;

/// After this many colliding attempts, [`IbanFormat::KeepBank`] also draws the branch identifier.
const BRANCH_ATTEMPTS: u32 = 32;

/// Random candidates tried before the deterministic fallback of [`generate`].
const MAX_DRAWS: usize = 64;

/// Checks the shape of an IBAN: 15 to 34 letters and digits, two letters then two digits, compact or grouped
/// (leading and trailing whitespace is ignored). Between two characters, one to three separator characters
/// ([`is_separator`]: spaces of every width, dashes and hyphens, `.` `/` `_` `,`, in any mixture). Letters are
/// Latin, ASCII or full-width, in any case; digits of any script (every Unicode `Nd` digit). Returns the canonical
/// form (ASCII, upper case, no separators) and the layout the value was written in: separators in place, and lower
/// case when all of its letters were (a value in mixed case, `De89…`, is written back in upper case).
pub fn parse(input: &str) -> Result<Parsed, Invalid> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(Invalid("an IBAN cannot be empty"));
    }
    let mut canonical = String::with_capacity(MAX_LEN);
    // Separators since the last letter or digit; starts full so that a value cannot start with one.
    let mut gap = MAX_GAP;
    for c in trimmed.chars() {
        if let Some(c) = latin_letter(c).or_else(|| ascii_digit(c)) {
            canonical.push(c);
            gap = 0;
        } else if is_separator(c) && gap < MAX_GAP {
            gap += 1;
        } else {
            return Err(Invalid("an IBAN may contain only letters and digits, with at most three separators in a row"));
        }
    }
    if gap > 0 {
        return Err(Invalid("an IBAN may not end with a separator"));
    }
    if !(MIN_LEN..=MAX_LEN).contains(&canonical.len()) {
        return Err(Invalid("an IBAN has between 15 and 34 letters and digits"));
    }
    let bytes = canonical.as_bytes();
    if !bytes.iter().take(2).all(u8::is_ascii_uppercase) {
        return Err(Invalid("an IBAN starts with a two-letter country code"));
    }
    if !bytes.iter().skip(2).take(2).all(u8::is_ascii_digit) {
        return Err(Invalid("an IBAN has two check digits after its country code"));
    }
    let is_lower = |c: char| c.is_ascii_lowercase() || ('\u{FF41}'..='\u{FF5A}').contains(&c);
    let mut letters = trimmed.chars().filter(|&c| latin_letter(c).is_some()).peekable();
    let lowercase = letters.peek().is_some() && letters.all(is_lower);
    let layout = Layout::template(trimmed, |c| latin_letter(c).is_some() || digit_value(c).is_some(), lowercase);
    Ok(Parsed { canonical, layout })
}

/// The length of an IBAN of the country whose ISO 3166 code (upper case) starts `code`, if the IBAN registry has
/// that country.
pub fn country_length(code: &str) -> Option<usize> {
    country_of(code.as_bytes()).map(|c| c.length)
}

/// Checks that a canonical value is a real IBAN: its country is in the IBAN registry, it has that country's length
/// and BBAN structure, and its ISO 13616 check digits are right. National check digits are not required. A DE
/// IBAN's bank code must be in the Bundesbank's bank-code file (or be the reserved code).
pub fn validate(canonical: &str) -> Result<(), Invalid> {
    validate_structure(canonical)?;
    if canonical.starts_with("DE") {
        iban_de::bank_usable(canonical.as_bytes().get(4..).unwrap_or_default())?;
    }
    Ok(())
}

/// An IBAN by ISO 13616 alone: registry country, length, structure, check digits — not whether veil can draw a
/// token for its bank. Detection uses this, so an IBAN veil would refuse is still found (and refused), never
/// passed on as text.
pub fn validate_structure(canonical: &str) -> Result<(), Invalid> {
    let bytes = canonical.as_bytes();
    if bytes.is_empty() {
        return Err(Invalid("an IBAN cannot be empty"));
    }
    if !bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err(Invalid("a canonical IBAN has only upper-case letters and digits"));
    }
    let country = country_of(bytes).ok_or(Invalid("the IBAN country code is not in the IBAN registry"))?;
    if bytes.len() != country.length {
        return Err(Invalid("the IBAN does not have the length of its country"));
    }
    if !bytes.iter().skip(2).take(2).all(u8::is_ascii_digit) {
        return Err(Invalid("an IBAN has two check digits after its country code"));
    }
    if !structure_matches(country, bytes) {
        return Err(Invalid("the IBAN account part does not match its country's structure"));
    }
    if !mod97_valid(canonical) {
        return Err(Invalid("the IBAN check digits are wrong"));
    }
    Ok(())
}

/// Whether the national check digits of a canonical IBAN are right. True for registry countries without a national
/// scheme; false for values that are not of a registry country and length, or whose characters the scheme cannot
/// read. DE: the account number passes its bank's check-digit method (false for a bank code not in the bank-code
/// file; true for the reserved bank code, which has no method).
pub fn national_check_valid(canonical: &str) -> bool {
    let bytes = canonical.as_bytes();
    let Some(country) = country_of(bytes) else { return false };
    if bytes.len() != country.length {
        return false;
    }
    let Some(bban) = bytes.get(4..) else { return false };
    if country.code == "DE" {
        return iban_de::bban_valid(bban);
    }
    national_valid(country.national, bban)
}

/// Whether the ISO 13616 check digits of a canonical IBAN are right (the value, rotated by four and with letters as
/// 10 to 35, is 1 mod 97).
pub fn mod97_valid(canonical: &str) -> bool {
    let bytes = canonical.as_bytes();
    if bytes.len() < 5 {
        return false;
    }
    let (head, bban) = bytes.split_at(4);
    mod97(bban.iter().chain(head).copied()) == Some(1)
}

/// Draws a canonical token for a canonical (validated) IBAN: same country and length, the country's BBAN
/// structure, valid ISO 13616 check digits, valid national check digits where the country has a scheme, and never
/// equal to the input. `attempt` counts the candidates for this value that already collided with other tokens.
///
/// Bounded: after a few dozen random candidates (only ever reached with a degenerate `rng`) a deterministic
/// search over single-character changes is used. A value that is not of a registry country, length and structure
/// (never expected: callers validate first) gets a token of its shape with valid ISO check digits.
pub fn generate<R: Rng + ?Sized>(canonical: &str, format: IbanFormat, attempt: u32, rng: &mut R) -> String {
    let input = canonical.as_bytes();
    if let Some(token) = german_keep_bank(input, format, attempt, rng) {
        return token;
    }
    let plan = match country_of(input) {
        Some(country) if structure_matches(country, input) => registered_plan(country, input, format, attempt),
        _ => None,
    }
    .unwrap_or_else(|| shape_plan(input));
    plan.draw(input, rng)
}

/// DE with the bank kept: an account number that the bank's method accepts (see [`iban_de::draw_bban`]). `None`
/// for other countries and formats, and for a bank code without a method (refused by [`validate`] before; such a
/// value gets the generic token, valid in structure and ISO check digits).
fn german_keep_bank<R: Rng + ?Sized>(input: &[u8], format: IbanFormat, attempt: u32, rng: &mut R) -> Option<String> {
    if format != IbanFormat::KeepBank || input.get(..2) != Some(b"DE".as_slice()) || input.len() != 22 {
        return None;
    }
    let bban = iban_de::draw_bban(input.get(4..)?, attempt, rng)?;
    let check = iban_check_digits(b"DE", &bban)?;
    Some(b"DE".iter().chain(&check).chain(&bban).map(|&b| char::from(b)).collect())
}

/// The registry entry for the country code that starts `iban`.
fn country_of(iban: &[u8]) -> Option<&'static Country> {
    let code = iban.get(0..2)?;
    // Sorted by code (a test checks): detection asks this for every capital letter pair it meets.
    COUNTRIES.binary_search_by(|c| c.code.as_bytes().cmp(code)).ok().and_then(|i| COUNTRIES.get(i))
}

/// What each position of a BBAN may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `n`
    Digit,
    /// `a`
    Letter,
    /// `c`
    Alphanumeric,
}

const DIGITS: &[u8] = b"0123456789";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALPHANUMERICS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Kind {
    fn accepts(self, b: u8) -> bool {
        match self {
            Kind::Digit => b.is_ascii_digit(),
            Kind::Letter => b.is_ascii_uppercase(),
            Kind::Alphanumeric => b.is_ascii_digit() || b.is_ascii_uppercase(),
        }
    }

    fn alphabet(self) -> &'static [u8] {
        match self {
            Kind::Digit => DIGITS,
            Kind::Letter => LETTERS,
            Kind::Alphanumeric => ALPHANUMERICS,
        }
    }

    /// The character of a reserved (unroutable) bank code at a position of this kind.
    fn reserved(self) -> u8 {
        match self {
            Kind::Digit => b'9',
            Kind::Letter | Kind::Alphanumeric => b'X',
        }
    }
}

/// The kind of every BBAN position, from registry notation (`4!a6!n8!n`); `None` if the notation is malformed.
fn structure(spec: &str) -> Option<Vec<Kind>> {
    let mut kinds = Vec::with_capacity(MAX_LEN);
    let mut count = 0usize;
    let mut fixed_length = false;
    for b in spec.bytes() {
        match b {
            b'0'..=b'9' if !fixed_length => count = count.checked_mul(10)?.checked_add(usize::from(b - b'0'))?,
            b'!' if count > 0 && !fixed_length => fixed_length = true,
            _ => {
                let kind = match b {
                    b'n' => Kind::Digit,
                    b'a' => Kind::Letter,
                    b'c' => Kind::Alphanumeric,
                    _ => return None,
                };
                if !fixed_length || count > MAX_LEN {
                    return None;
                }
                kinds.extend(std::iter::repeat_n(kind, count));
                count = 0;
                fixed_length = false;
            }
        }
    }
    (count == 0 && !fixed_length).then_some(kinds)
}

/// Whether the BBAN of `iban` (length already checked or not) matches the country's structure.
fn structure_matches(country: &Country, iban: &[u8]) -> bool {
    let (Some(kinds), Some(bban)) = (structure(country.bban), iban.get(4..)) else { return false };
    iban.len() == country.length && kinds.len() == bban.len() && kinds.iter().zip(bban).all(|(k, &b)| k.accepts(b))
}

/// The remainder mod 97 of characters read as ISO 13616 does (digits as themselves, letters as 10 to 35);
/// `None` for any other character.
fn mod97(chars: impl IntoIterator<Item = u8>) -> Option<u32> {
    chars.into_iter().try_fold(0u32, |r, c| match c {
        b'0'..=b'9' => Some((r * 10 + u32::from(c - b'0')) % 97),
        b'A'..=b'Z' => Some((r * 100 + u32::from(c - b'A') + 10) % 97),
        _ => None,
    })
}

/// ISO 13616 check digits for a country code and BBAN.
fn iban_check_digits(code: &[u8], bban: &[u8]) -> Option<[u8; 2]> {
    let r = mod97(bban.iter().chain(code).chain(b"00").copied())?;
    let check = 98 - r;
    Some([digit_char(check / 10), digit_char(check % 10)])
}

/// The character of a single digit (`value` < 10).
fn digit_char(value: u32) -> u8 {
    b"0123456789".get(value as usize).copied().unwrap_or(b'0')
}

/// The values of a run of digits; `None` if the run is out of range or holds anything else.
fn digit_values(bban: &[u8], start: usize, end: usize) -> Option<Vec<u32>> {
    bban.get(start..end)?.iter().map(|&b| b.is_ascii_digit().then(|| u32::from(b - b'0'))).collect()
}

/// Σ digit × weight, the weights repeating from the left.
fn weighted(bban: &[u8], start: usize, end: usize, weights: &[u32]) -> Option<u32> {
    let digits = digit_values(bban, start, end)?;
    Some(digits.iter().zip(weights.iter().cycle()).map(|(d, w)| d * w).sum())
}

/// `(10 − s mod 10) mod 10`: the digit that brings a weighted sum to a multiple of ten.
fn complement10(sum: u32) -> u32 {
    (10 - sum % 10) % 10
}

/// ISO 7064 MOD 11,10 check digit.
fn iso7064_mod11_10(digits: &[u32]) -> u32 {
    let mut product = 10;
    for d in digits {
        let mut sum = (product + d) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    (11 - product) % 10
}

/// Spanish control digit: weights 1-2-4-8-5-10-9-7-3-6 mod 11, 11 → 0 and 10 → 1.
fn spanish_digit(digits: &[u32]) -> u32 {
    const WEIGHTS: [u32; 10] = [1, 2, 4, 8, 5, 10, 9, 7, 3, 6];
    let sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => 0,
        10 => 1,
        d => d,
    }
}

/// A weighted mod-11 check digit `11 − s mod 11` (11 → 0); `None` when it would be 10 (such numbers are not
/// issued).
fn mod11_digit(sum: u32) -> Option<u32> {
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        d => Some(d),
    }
}

/// The French RIB table: letters as single digits (A–I, J–R → 1–9; S–Z → 2–9).
fn rib_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c),
        b'A'..=b'I' => Some(b'1' + (c - b'A')),
        b'J'..=b'R' => Some(b'1' + (c - b'J')),
        b'S'..=b'Z' => Some(b'2' + (c - b'S')),
        _ => None,
    }
}

/// The Italian CIN table for characters in odd positions (1st, 3rd, …), indexed by digit value or letter index.
const CIN_ODD: [u32; 26] =
    [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];

/// Two check digits at `at` and `at + 1`.
fn two_digits(at: usize, value: u32) -> Vec<(usize, u8)> {
    vec![(at, digit_char(value / 10)), (at + 1, digit_char(value % 10))]
}

/// The national check characters a BBAN must hold, as (position, character) pairs, computed from the rest of the
/// BBAN (the current check characters are ignored). Empty for [`National::None`]; `None` when the BBAN cannot
/// carry a valid check (a character the scheme cannot read, or a number the scheme never issues).
fn national_digits(scheme: National, bban: &[u8]) -> Option<Vec<(usize, u8)>> {
    let len = bban.len();
    let digit = |at: usize, value: u32| Some(vec![(at, digit_char(value))]);
    match scheme {
        National::None => Some(Vec::new()),
        National::Albania => digit(7, complement10(weighted(bban, 0, 7, &[9, 7, 3, 1])?)),
        National::Belgium => {
            let number = digit_values(bban, 0, 10)?.iter().fold(0u64, |n, &d| n * 10 + u64::from(d));
            let check = match number % 97 {
                0 => 97,
                r => r as u32,
            };
            Some(two_digits(10, check))
        }
        National::CzechSlovak => {
            let prefix = 11 - weighted(bban, 4, 9, &[10, 5, 8, 4, 2])? % 11;
            let account = 11 - weighted(bban, 10, 19, &[6, 3, 7, 9, 10, 5, 8, 4, 2])? % 11;
            let (prefix, account) = (prefix % 11, account % 11);
            (prefix < 10 && account < 10).then(|| vec![(9, digit_char(prefix)), (19, digit_char(account))])
        }
        National::Estonia => {
            let digits = digit_values(bban, 2, 15)?;
            let sum: u32 = digits.iter().rev().zip([7, 3, 1].iter().cycle()).map(|(d, w)| d * w).sum();
            digit(15, complement10(sum))
        }
        National::Spain => {
            let mut bank_branch = vec![0, 0];
            bank_branch.extend(digit_values(bban, 0, 8)?);
            let account = digit_values(bban, 10, 20)?;
            Some(vec![(8, digit_char(spanish_digit(&bank_branch))), (9, digit_char(spanish_digit(&account)))])
        }
        National::Finland => {
            let digits = digit_values(bban, 0, 13)?;
            let sum: u32 = digits
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &d)| if i % 2 == 0 { (d * 2) / 10 + (d * 2) % 10 } else { d })
                .sum();
            digit(13, complement10(sum))
        }
        National::RibKey => {
            let body = bban.get(..len.checked_sub(2)?)?;
            let r = mod97(body.iter().map(|&c| rib_digit(c)).collect::<Option<Vec<u8>>>()?)?;
            Some(two_digits(len - 2, 97 - (r * 100) % 97))
        }
        National::Croatia => {
            let bank = iso7064_mod11_10(&digit_values(bban, 0, 6)?);
            let account = iso7064_mod11_10(&digit_values(bban, 7, 16)?);
            Some(vec![(6, digit_char(bank)), (16, digit_char(account))])
        }
        National::Hungary => {
            let bank_branch = complement10(weighted(bban, 0, 7, &[9, 7, 3, 1])?);
            let account = complement10(weighted(bban, 8, 23, &[9, 7, 3, 1])?);
            Some(vec![(7, digit_char(bank_branch)), (23, digit_char(account))])
        }
        National::Iceland => digit(20, mod11_digit(weighted(bban, 12, 20, &[3, 2, 7, 6, 5, 4, 3, 2])?)?),
        National::ItalyCin => {
            let mut sum = 0;
            for (i, &c) in bban.get(1..23)?.iter().enumerate() {
                let value = match c {
                    b'0'..=b'9' => u32::from(c - b'0'),
                    b'A'..=b'Z' => u32::from(c - b'A'),
                    _ => return None,
                };
                sum += if i % 2 == 0 { *CIN_ODD.get(value as usize)? } else { value };
            }
            Some(vec![(0, LETTERS.get((sum % 26) as usize).copied()?)])
        }
        National::Mod97_10 => {
            let r = mod97(bban.get(..len.checked_sub(2)?)?.iter().copied())?;
            Some(two_digits(len - 2, 98 - (r * 100) % 97))
        }
        National::Norway => digit(10, mod11_digit(weighted(bban, 0, 10, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2])?)?),
        National::Poland => digit(7, complement10(weighted(bban, 0, 7, &[3, 9, 7, 1])?)),
        National::Russia => {
            // The last three digits of the BIK, then the 20-digit account with its key (BBAN position 17) as 0.
            let mut digits = digit_values(bban, 6, 17)?;
            digits.push(0);
            digits.extend(digit_values(bban, 18, 29)?);
            let sum: u32 = digits.iter().zip([7, 1, 3].iter().cycle()).map(|(d, w)| d * w).sum();
            digit(17, (sum % 10 * 3) % 10)
        }
    }
}

/// The positions that hold national check characters (computed, never drawn).
fn national_positions(scheme: National, bban_len: usize) -> Vec<usize> {
    match scheme {
        National::None => Vec::new(),
        National::Albania | National::Poland => vec![7],
        National::Belgium => vec![10, 11],
        National::CzechSlovak => vec![9, 19],
        National::Estonia => vec![15],
        National::Spain => vec![8, 9],
        National::Finland => vec![13],
        National::RibKey | National::Mod97_10 => vec![bban_len.saturating_sub(2), bban_len.saturating_sub(1)],
        National::Croatia => vec![6, 16],
        National::Hungary => vec![7, 23],
        National::Iceland => vec![20],
        National::ItalyCin => vec![0],
        National::Norway => vec![10],
        National::Russia => vec![17],
    }
}

fn national_valid(scheme: National, bban: &[u8]) -> bool {
    national_digits(scheme, bban).is_some_and(|digits| digits.iter().all(|&(at, c)| bban.get(at) == Some(&c)))
}

/// Writes the national check characters into a BBAN; false if it cannot carry valid ones.
fn national_fix(scheme: National, bban: &mut [u8]) -> bool {
    let Some(digits) = national_digits(scheme, bban) else { return false };
    for (at, c) in digits {
        match bban.get_mut(at) {
            Some(slot) => *slot = c,
            None => return false,
        }
    }
    true
}

/// What a token is made of: the country code, then per BBAN position either a character that is set (kept from
/// the input, reserved, or a check position placeholder) or an alphabet to draw from.
struct Plan {
    code: [u8; 2],
    national: National,
    /// Fill the kennitala (IS) with a plausible date of birth rather than any digits.
    kennitala: bool,
    slots: Vec<Slot>,
}

#[derive(Clone, Copy)]
enum Slot {
    Set(u8),
    Draw(&'static [u8]),
}

/// The plan for a value of a registry country whose BBAN matches the country's structure.
fn registered_plan(country: &Country, input: &[u8], format: IbanFormat, attempt: u32) -> Option<Plan> {
    let kinds = structure(country.bban)?;
    let bban = input.get(4..)?;
    let code = [*input.first()?, *input.get(1)?];
    // Schemes defined over digits only: draw digits where the structure would also allow letters (MK, RU).
    let digits_only = matches!(country.national, National::Mod97_10 | National::Russia);
    let mut slots: Vec<Slot> = kinds
        .iter()
        .map(|&k| Slot::Draw(if digits_only && k == Kind::Alphanumeric { DIGITS } else { k.alphabet() }))
        .collect();
    let mut keep = |(start, end): (usize, usize)| {
        for i in start..end {
            if let (Some(slot), Some(&b)) = (slots.get_mut(i), bban.get(i)) {
                *slot = Slot::Set(b);
            }
        }
    };
    for &range in country.fixed {
        keep(range);
    }
    match format {
        IbanFormat::KeepBank => {
            keep(country.bank);
            if let Some(branch) = country.branch.filter(|_| attempt < BRANCH_ATTEMPTS) {
                keep(branch);
            }
        }
        IbanFormat::ReservedBank => {
            for i in country.bank.0..country.bank.1 {
                if let (Some(slot), Some(kind)) = (slots.get_mut(i), kinds.get(i)) {
                    *slot = Slot::Set(kind.reserved());
                }
            }
        }
    }
    for at in national_positions(country.national, kinds.len()) {
        if let Some(slot) = slots.get_mut(at) {
            // Overwritten by `national_fix`; a kept value stays as the placeholder (HR, PL, AL: part of the bank
            // or branch code, recomputed so that a token always carries valid check digits).
            if let Slot::Draw(_) = slot {
                *slot = Slot::Set(b'0');
            }
        }
    }
    Some(Plan { code, national: country.national, kennitala: country.national == National::Iceland, slots })
}

/// The plan for a value that is not of a registry country, length and structure (never expected): keep the
/// country letters, draw every other character from its class (digit, letter), compute ISO check digits.
fn shape_plan(input: &[u8]) -> Plan {
    let letter = |i: usize| input.get(i).copied().filter(u8::is_ascii_uppercase).unwrap_or(b'X');
    let slots = match input.get(4..) {
        Some(rest) if !rest.is_empty() => {
            rest.iter().map(|b| Slot::Draw(if b.is_ascii_alphabetic() { LETTERS } else { DIGITS })).collect()
        }
        _ => vec![Slot::Draw(DIGITS)],
    };
    Plan { code: [letter(0), letter(1)], national: National::None, kennitala: false, slots }
}

impl Plan {
    /// A token following the plan that is not the input: random candidates first, then a deterministic search.
    fn draw<R: Rng + ?Sized>(&self, input: &[u8], rng: &mut R) -> String {
        for _ in 0..MAX_DRAWS {
            let mut bban: Vec<u8> = self
                .slots
                .iter()
                .map(|slot| match *slot {
                    Slot::Set(b) => b,
                    Slot::Draw(alphabet) => alphabet.get(rng.gen_range(0..alphabet.len())).copied().unwrap_or(b'0'),
                })
                .collect();
            if self.kennitala {
                Self::draw_kennitala(&mut bban, rng);
            }
            if let Some(token) = self.finish(bban, input) {
                return token;
            }
        }
        self.search(input)
    }

    /// Deterministic fallback: the first character of every alphabet, then every single-character change of it,
    /// until a candidate carries valid check digits and differs from the input. Every registry country has at
    /// least six drawn positions, so this always succeeds.
    fn search(&self, input: &[u8]) -> String {
        let base: Vec<u8> = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Set(b) => b,
                Slot::Draw(alphabet) => alphabet.first().copied().unwrap_or(b'0'),
            })
            .collect();
        if let Some(token) = self.finish(base.clone(), input) {
            return token;
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Slot::Draw(alphabet) = *slot else { continue };
            for &c in alphabet {
                let mut candidate = base.clone();
                if let Some(b) = candidate.get_mut(i) {
                    *b = c;
                }
                if let Some(token) = self.finish(candidate, input) {
                    return token;
                }
            }
        }
        // Unreachable for registry countries (see above); the shape path always has a drawn position too.
        self.assemble(&base)
    }

    /// Computes national and ISO check digits; `None` if the BBAN cannot carry them or the token is the input.
    fn finish(&self, mut bban: Vec<u8>, input: &[u8]) -> Option<String> {
        if !national_fix(self.national, &mut bban) {
            return None;
        }
        let token = self.assemble(&bban);
        (token.as_bytes() != input).then_some(token)
    }

    fn assemble(&self, bban: &[u8]) -> String {
        let check = iban_check_digits(&self.code, bban).unwrap_or([b'0', b'0']);
        self.code.iter().chain(&check).chain(bban).map(|&b| char::from(b)).collect()
    }

    /// IS: the last ten BBAN digits are the holder's kennitala `DDMMYY` + two digits + check digit + century
    /// digit. Draws a plausible one (day 01–28, or +40 for a company; the check digit is computed later).
    fn draw_kennitala<R: Rng + ?Sized>(bban: &mut [u8], rng: &mut R) {
        let day = rng.gen_range(1..=28) + if rng.gen_bool(0.5) { 40 } else { 0 };
        let month = rng.gen_range(1..=12);
        let year = rng.gen_range(0..100);
        let serial = rng.gen_range(20..100);
        let century = if year < 30 { 0 } else { 9 };
        for (i, value) in [day / 10, day % 10, month / 10, month % 10, year / 10, year % 10, serial / 10, serial % 10]
            .into_iter()
            .enumerate()
        {
            if let Some(b) = bban.get_mut(12 + i) {
                *b = digit_char(value);
            }
        }
        if let Some(b) = bban.get_mut(21) {
            *b = digit_char(century);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::mock::StepRng;
    use rand::rngs::StdRng;
    use rand::Rng;
    use rand::SeedableRng;

    fn country(code: &str) -> &'static Country {
        COUNTRIES.iter().find(|c| c.code == code).expect("country in registry")
    }

    fn bank<'a>(c: &Country, iban: &'a str) -> &'a str {
        &iban[4 + c.bank.0..4 + c.bank.1]
    }

    /// The bank code every ReservedBank token of a country carries.
    fn reserved_bank(c: &Country) -> String {
        let kinds = structure(c.bban).expect("registry structure");
        let mut bban: Vec<u8> = kinds.iter().map(|k| k.alphabet()[0]).collect();
        for i in c.bank.0..c.bank.1 {
            bban[i] = kinds[i].reserved();
        }
        let _ = national_fix(c.national, &mut bban);
        String::from_utf8(bban[c.bank.0..c.bank.1].to_vec()).expect("ascii")
    }

    /// A random valid IBAN of a country (structure filled at random, national and ISO check digits computed),
    /// never with the reserved bank code. Test helper, independent of `generate`.
    fn random_iban(c: &Country, rng: &mut StdRng) -> String {
        if c.code == "DE" {
            return random_german_iban(rng);
        }
        let kinds = structure(c.bban).expect("registry structure");
        let reserved = reserved_bank(c);
        // Real MK and RU account numbers are digits (their schemes read digits only).
        let digits_only = matches!(c.national, National::Mod97_10 | National::Russia);
        for _ in 0..10_000 {
            let mut bban: Vec<u8> = kinds
                .iter()
                .map(|&k| if digits_only && k == Kind::Alphanumeric { DIGITS } else { k.alphabet() })
                .map(|alphabet| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            for &(start, end) in c.fixed {
                bban[start..end].copy_from_slice(&c.example.as_bytes()[4 + start..4 + end]);
            }
            if !national_fix(c.national, &mut bban) || bban[c.bank.0..c.bank.1] == *reserved.as_bytes() {
                continue;
            }
            let check = iban_check_digits(c.code.as_bytes(), &bban).expect("alphanumeric");
            let iban: String = c.code.bytes().chain(check).chain(bban).map(char::from).collect();
            assert!(validate(&iban).is_ok() && national_check_valid(&iban), "helper made {iban}");
            return iban;
        }
        panic!("{}: no valid IBAN drawn", c.code);
    }

    /// A random valid DE IBAN: a bank code of the bank-code file and an account number of 5 to 10 digits that its
    /// method accepts (drawn here by rejection, independent of `generate`).
    fn random_german_iban(rng: &mut StdRng) -> String {
        let banks = iban_de::banks();
        loop {
            let (blz, method) = banks[rng.gen_range(0..banks.len())];
            let zeros = rng.gen_range(0..=5u32);
            let account = format!("{:010}", rng.gen_range(10u64.pow(9 - zeros)..10u64.pow(10 - zeros)));
            if !iban_de::check(method, blz, account.as_bytes()) {
                continue;
            }
            let bban = format!("{blz:08}{account}");
            let check = iban_check_digits(b"DE", bban.as_bytes()).expect("digits");
            let iban = format!("DE{}{bban}", String::from_utf8(check.to_vec()).expect("ascii"));
            assert!(validate(&iban).is_ok() && national_check_valid(&iban), "helper made {iban}");
            return iban;
        }
    }

    /// Every property a token must have.
    fn check_token(c: &Country, input: &str, token: &str, format: IbanFormat, attempt: u32) {
        assert_eq!(validate(token), Ok(()), "{input} -> {token}");
        assert!(mod97_valid(token), "{input} -> {token}");
        assert!(national_check_valid(token), "{input} -> {token}: national check digits");
        assert_eq!(&token[..2], &input[..2]);
        assert_eq!(token.len(), input.len());
        assert_ne!(token, input);
        for &(start, end) in c.fixed {
            assert_eq!(token[4 + start..4 + end], input[4 + start..4 + end], "{input} -> {token}: fixed field");
        }
        match format {
            IbanFormat::KeepBank => {
                assert_eq!(bank(c, token), bank(c, input), "{input} -> {token}: bank kept");
                if let Some((start, end)) = c.branch.filter(|_| attempt < BRANCH_ATTEMPTS) {
                    assert_eq!(token[4 + start..4 + end], input[4 + start..4 + end], "{input} -> {token}: branch");
                }
            }
            IbanFormat::ReservedBank => {
                assert_ne!(bank(c, token), bank(c, input), "{input} -> {token}: bank replaced");
                assert_eq!(bank(c, token), reserved_bank(c), "{input} -> {token}: reserved bank");
            }
        }
    }

    #[test]
    fn registry_is_complete_and_consistent() {
        assert_eq!(COUNTRIES.len(), 89);
        for pair in COUNTRIES.windows(2) {
            assert!(pair[0].code < pair[1].code, "sorted and unique: {}", pair[1].code);
        }
        for c in COUNTRIES {
            let kinds = structure(c.bban).unwrap_or_else(|| panic!("{}: structure", c.code));
            assert_eq!(kinds.len() + 4, c.length, "{}", c.code);
            assert!((MIN_LEN..=MAX_LEN).contains(&c.length), "{}", c.code);
            assert!(c.bank.0 < c.bank.1 && c.bank.1 <= kinds.len(), "{}", c.code);
            for (start, end) in c.branch.into_iter().chain(c.fixed.iter().copied()) {
                assert!(start < end && end <= kinds.len(), "{}", c.code);
            }
            assert_eq!(c.example.len(), c.length, "{}", c.code);
            assert!(c.example.starts_with(c.code), "{}", c.code);
            for at in national_positions(c.national, kinds.len()) {
                assert!(at < kinds.len(), "{}", c.code);
            }
        }
        for code in ["DJ", "FK", "LY", "MN", "NI", "OM", "RU", "SD", "SO", "YE", "BI", "HN", "EG", "IQ", "VA"] {
            country(code);
        }
    }

    #[test]
    fn structure_notation() {
        assert_eq!(structure("2!n1!a1!c"), Some(vec![Kind::Digit, Kind::Digit, Kind::Letter, Kind::Alphanumeric]));
        for bad in ["4n", "!n", "4!x", "4!", "4!n3", "99!n"] {
            assert_eq!(structure(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_registry_example_is_accepted() {
        for c in COUNTRIES {
            let parsed = parse(c.example).unwrap_or_else(|e| panic!("{}: {e}", c.example));
            assert_eq!(parsed.canonical, c.example);
            assert_eq!(validate(&parsed.canonical), Ok(()), "{}", c.example);
            assert!(mod97_valid(c.example), "{}", c.example);
            assert!(national_check_valid(c.example), "{}: national check", c.example);
        }
    }

    /// Real IBANs published by banks and companies (collected by the php-iban project), for the countries with a
    /// national scheme: cross-checks each algorithm beyond the registry example.
    #[test]
    fn real_ibans_pass_their_national_checks() {
        let ibans = [
            "AL35202110130000000002157945",
            "AL84901111230031371010000013",
            "AL94 2151 1031 ALL1 0000 0373 9100",
            "AL22 2101 1050 0005 0002 0000 2150",
            "BA391611200000517058",
            "BA393380604811081508",
            "BE37 3101 1557 9428",
            "BE57800228915735",
            "BE72 0682 2835 6316",
            "CZ06 3500 0000 0010 0047 2301",
            "CZ6101000000430185770297",
            "CZ27 0710 0010 1100 0792 2681",
            "DJ2110002010010409943020008",
            "DJ21 1000 2010 0110 7609 3000 007",
            "EE752200221001121961",
            "EE654204207004188303",
            "EE25 1010 0020 0642 8001",
            "ES1201820061770080107287",
            "ES17 2100 2050 61 0200003745",
            "ES58 0075 0204 9406 0081 1004",
            "FI2316603000077720",
            "FI1410973000115945",
            "FI7380001571155010",
            "FR7630027175330002005370159",
            "FR23 2004 1000 0127 4847 3B02 035",
            "FR12 3000 2085 7100 0006 0353 S04",
            "FR17 3000 1004 9700 00Q0 5050 089",
            "HR9423400091110140839",
            "HR39 2503 0071 1000 2063 6",
            "HR3525000091101256823",
            "HU69 1070 0024 6667 6548 5110 0005",
            "HU07 1310 0007 0210 3880 0003 3484",
            "IT18T0538703601000000198036",
            "IT94I0306940101100100003599",
            "IT63 M033 5901 6001 0000 0131 525",
            "MC78 1273 9000 7001 2417 2000 L37",
            "MC23 1450 8000 0151 0479 3001 D18",
            "ME25530005010000786772",
            "MK07300701000819229",
            "MK07 210 3000003122 05",
            "NO1797500633224",
            "NO23 7001 0204 168",
            "PL21 1240 1545 1111 0000 1166 6233",
            "PL25 1910 1048 2120 9918 1929 0002",
            "PT50 0010 0000 3801 1080 0016 7",
            "PT50003506510052468183052",
            "RS35908504619019323080",
            "RS35105580120000358150",
            "SI56 0510 0801 1098 926",
            "SI56 2900 0010 1901 946",
            "SK34 8180 0000 0070 0013 3673",
            "SK6902000000001933504555",
            "SM36H0606709801000000796301",
            "SM49J0854009803000551148910",
            "SM04 B032 8709 8010 0001 0305 071",
            "ST23000200000289355710148",
            // BIK + account pairs from a Russian account-key validator's test suite, as IBANs.
            "RU5404003368540647859100000003330",
            "RU9582339728650286516400000008106",
            "TL38 0030 0000 0003 3579 760",
            "TN59 0100 1020 1112 0050 3889",
            "TN59 0870 2000 4310 0045 9190",
        ];
        for written in ibans {
            let parsed = parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(validate(&parsed.canonical), Ok(()), "{written}");
            assert!(national_check_valid(&parsed.canonical), "{written}: national check");
        }
    }

    #[test]
    fn national_checks_catch_a_changed_check_digit() {
        for c in COUNTRIES.iter().filter(|c| c.national != National::None) {
            let bban = &c.example.as_bytes()[4..];
            for at in national_positions(c.national, bban.len()) {
                let mut wrong = bban.to_vec();
                wrong[at] = if wrong[at] == b'1' { b'2' } else { b'1' };
                assert!(!national_valid(c.national, &wrong), "{}: position {at}", c.code);
            }
        }
        assert!(national_check_valid("DE89370400440532013000"), "its bank's method (13)");
        assert!(!national_check_valid("DE67370400440532013105"), "an account its bank's method refuses");
        assert!(!national_check_valid("DE65123456780532013000"), "a bank code not in the bank-code file");
        assert!(!national_check_valid("ZZ89370400440532013000"), "not a registry country");
        assert!(!national_check_valid("DE8937040044053201300"), "wrong length");
    }

    #[test]
    fn german_inputs_need_a_bank_in_the_bank_code_file() {
        // ISO 13616 only for the account: one that its bank's method (13) refuses is still a valid input.
        assert_eq!(validate("DE67370400440532013105"), Ok(()));
        assert!(mod97_valid("DE65123456780532013000"));
        let err = validate("DE65123456780532013000").expect_err("bank code 12345678 is not in the file");
        assert_eq!(err, Invalid("the German bank code is not in the Bundesbank's bank-code file"));
        assert!(!err.to_string().contains("12345678"), "message leaks the input");
        // The reserved code of reserved-bank tokens is veil's own.
        assert_eq!(reserved_bank(country("DE")), format!("{}", iban_de::RESERVED_BLZ));
        let mut rng = StdRng::seed_from_u64(4);
        let token = generate("DE67370400440532013105", IbanFormat::KeepBank, 0, &mut rng);
        assert!(national_check_valid(&token) && validate(&token).is_ok(), "{token}");
    }

    #[test]
    fn iban_check_digits_match_iso_13616() {
        assert!(mod97_valid("GB82WEST12345698765432"));
        assert!(!mod97_valid("GB82TEST12345698765432"));
        assert!(!mod97_valid("GB81WEST12345698765432"));
        assert!(!mod97_valid("GB82"));
        assert!(!mod97_valid("gb82west12345698765432"));
        assert_eq!(iban_check_digits(b"DE", b"370400440532013000"), Some(*b"89"));
    }

    #[test]
    fn every_country_tokenises_in_both_formats() {
        let mut rng = StdRng::seed_from_u64(7);
        for c in COUNTRIES {
            for _ in 0..40 {
                let input = random_iban(c, &mut rng);
                for format in [IbanFormat::KeepBank, IbanFormat::ReservedBank] {
                    for attempt in [0, 1, 31, 32, 100] {
                        let token = generate(&input, format, attempt, &mut rng);
                        check_token(c, &input, &token, format, attempt);
                    }
                }
            }
            for format in [IbanFormat::KeepBank, IbanFormat::ReservedBank] {
                let token = generate(c.example, format, 0, &mut rng);
                check_token(c, c.example, &token, format, 0);
            }
        }
    }

    #[test]
    fn keep_bank_draws_the_account_and_eventually_the_branch() {
        let mut rng = StdRng::seed_from_u64(11);
        let input = "GB29NWBK60161331926819";
        let tokens: Vec<String> = (0..20).map(|_| generate(input, IbanFormat::KeepBank, 0, &mut rng)).collect();
        assert!(tokens.iter().all(|t| &t[4..14] == "NWBK601613"));
        assert!(tokens.iter().any(|t| t[14..] != tokens[0][14..]), "accounts drawn at random");
        let late: Vec<String> = (0..20).map(|_| generate(input, IbanFormat::KeepBank, 40, &mut rng)).collect();
        assert!(late.iter().all(|t| &t[4..8] == "NWBK"));
        assert!(late.iter().any(|t| &t[8..14] != "601613"), "branch drawn after many collisions");
    }

    #[test]
    fn reserved_bank_codes_are_obviously_fake() {
        assert_eq!(reserved_bank(country("DE")), "99999999");
        assert_eq!(reserved_bank(country("GB")), "XXXX");
        assert_eq!(reserved_bank(country("MU")), "XXXX99");
        assert_eq!(reserved_bank(country("PL")), "99999999");
        assert!(reserved_bank(country("HR")).starts_with("999999"));
        let mut rng = StdRng::seed_from_u64(3);
        let token = generate("DE89370400440532013000", IbanFormat::ReservedBank, 0, &mut rng);
        assert_eq!(&token[4..12], "99999999");
    }

    #[test]
    fn degenerate_rng_still_yields_a_different_valid_token() {
        for c in COUNTRIES {
            for format in [IbanFormat::KeepBank, IbanFormat::ReservedBank] {
                // A constant generator draws the same candidate every time: feed that candidate back as the input.
                let first = generate(c.example, format, 0, &mut StepRng::new(0, 0));
                let second = generate(&first, format, 0, &mut StepRng::new(0, 0));
                assert_ne!(first, second, "{}", c.code);
                assert_eq!(validate(&second), Ok(()), "{second}");
                assert!(national_check_valid(&second), "{second}");
            }
        }
    }

    #[test]
    fn unexpected_inputs_do_not_panic() {
        let mut rng = StdRng::seed_from_u64(5);
        for input in [
            "",
            "X",
            "DE",
            "ZZ12345678901234",
            "DE89 3704",
            "de89370400440532013000",
            "ÄÖ12ü",
            "DE8937040044053201300X",
        ] {
            for format in [IbanFormat::KeepBank, IbanFormat::ReservedBank] {
                let token = generate(input, format, 0, &mut rng);
                assert_ne!(token, input);
            }
            let _ = validate(input);
            let _ = national_check_valid(input);
            let _ = mod97_valid(input);
        }
        let token = generate("ZZ12345678901234", IbanFormat::KeepBank, 0, &mut rng);
        assert!(token.starts_with("ZZ") && token.len() == 16 && mod97_valid(&token));
    }

    #[test]
    fn layout_round_trips_spaces_and_case() {
        let mut rng = StdRng::seed_from_u64(9);
        let written = "  fr14 2004 1010 0505 0001 3m02 606 ";
        let parsed = parse(written).expect("valid shape");
        assert_eq!(parsed.canonical, "FR1420041010050500013M02606");
        let token = generate(&parsed.canonical, IbanFormat::KeepBank, 0, &mut rng);
        let rendered = parsed.layout.render(&token);
        assert_eq!(
            rendered,
            token
                .to_lowercase()
                .chars()
                .collect::<Vec<_>>()
                .chunks(4)
                .map(|g| g.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(parse(&rendered).expect("token shape").canonical, token);

        let upper = parse("DE89 3704 0044 0532 0130 00").expect("valid shape");
        assert_eq!(upper.layout.render("DE12345678901234567890"), "DE12 3456 7890 1234 5678 90");
        let mixed = parse("De89370400440532013000").expect("valid shape");
        assert_eq!(mixed.layout.render("DE12345678901234567890"), "DE12345678901234567890");
    }

    #[test]
    fn any_case_separators_scripts_and_full_width_letters() {
        let token = "GB33BUKB20201555555555";
        for (written, rendered) in [
            ("De89 3704 0044 0532 0130 00", "GB33 BUKB 2020 1555 5555 55"),
            ("de89370400440532013000", "gb33bukb20201555555555"),
            ("dE89-3704-0044-0532-0130-00", "GB33-BUKB-2020-1555-5555-55"),
            (
                "DE89\u{A0}3704\u{A0}0044\u{A0}0532\u{A0}0130\u{A0}00",
                "GB33\u{A0}BUKB\u{A0}2020\u{A0}1555\u{A0}5555\u{A0}55",
            ),
            ("DE89.3704/0044_0532\u{2009}0130\u{2011}00", "GB33.BUKB/2020_1555\u{2009}5555\u{2011}55"),
            ("DE89  3704 - 0044 0532 0130 00", "GB33  BUKB - 2020 1555 5555 55"),
            ("ＤＥ８９ ３７０４ ００４４ ０５３２ ０１３０ ００", "GB33 BUKB 2020 1555 5555 55"),
            ("ｄｅ８９３７０４００４４０５３２０１３０００", "gb33bukb20201555555555"),
            ("DE٨٩ ٣٧٠٤ ٠٠٤٤ ٠٥٣٢ ٠١٣٠ ٠٠", "GB33 BUKB 2020 1555 5555 55"),
        ] {
            let parsed = parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(parsed.canonical, "DE89370400440532013000", "{written}");
            assert_eq!(validate(&parsed.canonical), Ok(()));
            assert_eq!(parsed.layout.render(token), rendered, "{written}");
            assert_eq!(parse(rendered).unwrap().canonical, token);
        }
        assert_eq!(country_length("DE"), Some(22));
        assert_eq!(country_length("NO93"), Some(15));
        assert_eq!(country_length("ZZ"), None);
        assert_eq!(country_length("de"), None);
    }

    #[test]
    fn parse_refuses_what_cannot_be_an_iban() {
        let cases: [(&str, &str); 9] = [
            ("", "empty"),
            ("   ", "empty"),
            ("DE89 -- 3704-0044-0532-0130-00", "letters and digits"),
            ("DE89    3704 0044 0532 0130 00", "at most three"),
            ("DE89370400", "between 15 and 34"),
            ("DE89370400440532013000123456789012345", "between 15 and 34"),
            ("1289370400440532013000", "country code"),
            ("DEA9370400440532013000", "check digits"),
            ("DE89 3704\t0044 0532 0130 00", "letters and digits"),
        ];
        for (input, expected) in cases {
            let err = parse(input).expect_err(input);
            let message = err.to_string();
            assert!(message.contains(expected), "{input}: {message}");
            if !input.trim().is_empty() {
                assert!(!message.contains(input.trim()), "message leaks the input");
                assert!(!message.contains("3704"), "message leaks the input");
            }
        }
    }

    #[test]
    fn validate_refuses_what_is_not_a_real_iban() {
        let cases: [(&str, &str); 8] = [
            ("", "empty"),
            ("ZZ89370400440532013000", "not in the IBAN registry"),
            ("DE8937040044053201300099", "length"),
            ("DE88370400440532013000", "check digits are wrong"),
            ("GB29NWBK60161331926819", ""),
            ("GB2912BK60161331926819", "structure"),
            ("DE89370400440532013000", ""),
            ("de89370400440532013000", "upper-case"),
        ];
        for (input, expected) in cases {
            match validate(input) {
                Ok(()) => assert!(expected.is_empty(), "{input} accepted"),
                Err(err) => {
                    let message = err.to_string();
                    assert!(!expected.is_empty() && message.contains(expected), "{input}: {message}");
                    assert!(input.is_empty() || !message.contains(&input[4..]), "message leaks the input");
                }
            }
        }
        // Letters where the structure wants digits (DE is 8!n10!n), with correct ISO check digits.
        let mut bban = b"37040044053201300A".to_vec();
        let check = iban_check_digits(b"DE", &bban).expect("alphanumeric");
        let mut iban = b"DE".to_vec();
        iban.extend(check);
        iban.append(&mut bban);
        let iban = String::from_utf8(iban).expect("ascii");
        assert!(mod97_valid(&iban));
        assert_eq!(validate(&iban), Err(Invalid("the IBAN account part does not match its country's structure")));
    }

    #[test]
    fn format_names() {
        assert_eq!("keep-bank".parse(), Ok(IbanFormat::KeepBank));
        assert_eq!("reserved-bank".parse(), Ok(IbanFormat::ReservedBank));
        assert_eq!(IbanFormat::default(), IbanFormat::KeepBank);
        assert!("keep".parse::<IbanFormat>().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn tokens_are_valid_ibans_of_the_same_country(
            index in 0..COUNTRIES.len(),
            seed in any::<u64>(),
            reserved in any::<bool>(),
            attempt in 0u32..64,
        ) {
            let c = &COUNTRIES[index];
            let mut rng = StdRng::seed_from_u64(seed);
            let input = random_iban(c, &mut rng);
            let format = if reserved { IbanFormat::ReservedBank } else { IbanFormat::KeepBank };
            let token = generate(&input, format, attempt, &mut rng);
            check_token(c, &input, &token, format, attempt);
        }

        #[test]
        fn spaced_lower_case_layout_is_kept(index in 0..COUNTRIES.len(), seed in any::<u64>(), group in 1usize..8) {
            let c = &COUNTRIES[index];
            let mut rng = StdRng::seed_from_u64(seed);
            let input = random_iban(c, &mut rng).to_lowercase();
            let chars: Vec<char> = input.chars().collect();
            let written = chars.chunks(group).map(|g| g.iter().collect::<String>()).collect::<Vec<_>>().join(" ");
            let parsed = parse(&written).expect("valid shape");
            prop_assert_eq!(parsed.canonical.to_lowercase(), input);
            let token = generate(&parsed.canonical, IbanFormat::KeepBank, 0, &mut rng);
            let rendered = parsed.layout.render(&token);
            prop_assert_eq!(rendered.len(), written.len());
            for (r, w) in rendered.chars().zip(written.chars()) {
                prop_assert_eq!(r == ' ', w == ' ');
                prop_assert!(!r.is_ascii_uppercase());
            }
            prop_assert_eq!(rendered.replace(' ', "").to_uppercase(), token);
        }

        #[test]
        fn parse_never_panics_and_never_leaks(input in "\\PC{0,40}") {
            if let Err(err) = parse(&input) {
                let message = err.to_string();
                prop_assert!(input.trim().len() < 4 || !message.contains(input.trim()));
            }
            let _ = validate(&input);
        }
    }
}
