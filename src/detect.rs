//! Finds card numbers, IBANs, email addresses and phone numbers in free text; every candidate is confirmed by its
//! class's parser and validator (Luhn, ISO 13616, address syntax, E.164 shape), never by shape alone, so the
//! matched text is always accepted as a value of its class.
//!
//! One hand-written pass per class, each bounded per starting point, so a scan is linear in the text (no
//! backtracking). Byte offsets always fall on character boundaries. Shared vocabulary:
//!
//! * a *digit* is a decimal digit of any script (every Unicode `Nd` character: ASCII, full-width, Arabic-Indic,
//!   Extended Arabic-Indic, Devanagari, Bengali, Thai, …; [`crate::token::digit_value`]);
//! * a *gap* is one to three separator characters in any mixture ([`crate::token::is_separator`]: every Unicode
//!   space separator, such as the no-break, narrow no-break, figure, thin and ideographic spaces; every dash and
//!   hyphen, such as U+2010–U+2015 and U+2212 minus; `.` `/` `_` `,` and their full-width, Arabic and CJK forms;
//!   the invisible soft hyphen, zero-width space and joiners, word joiner and BOM). Never a tab or line break;
//! * a *word character* is a letter or digit of a script written with spaces between words. CJK, kana and hangul
//!   (U+2E80 on, except full-width Latin letters and digits) are not: such text may run into a value
//!   (`カード４１１１…です`).
//!
//! The shapes looked for:
//!
//! * card: a *run* is digit groups joined by gaps. A candidate is a span of whole groups of a run (a group is
//!   never split: a 20-digit order number hides no 16-digit card) with 12 to 19 digits, the first not `0`, that
//!   passes Luhn and is one of
//!   - a single group, anywhere in the run (`5555555555554444 12/26 123`);
//!   - groups laid out like a printed card, anywhere in the run (`123 5555 5555 5555 4444 12-26`): fours with a
//!     last group of one to four digits (4-4-4-4, 4-4-4-1, 4-4-4-4-3, …), 4-3-3-3, 4-6-5 or 4-6-4; twelve
//!     digits in three fours only as the whole run;
//!   - the whole run grouped any other way, starting with a group of four or more digits or in a known issuer
//!     range ([`pan::known_range`]);
//!   - the run without up to three groups of at most four digits at either end or both (`12/26 123`), grouped
//!     any other way, in a known issuer range.
//!
//!   Not candidates: 13 digits starting `978`/`979` (ISBN-13); digits that read as a timestamp
//!   (`yyyymmddhhmm…`, years 1900–2099) or as Unix time in milliseconds, microseconds or nanoseconds (13, 16 or
//!   19 digits starting `15` to `19`); spans that start with the year of a date (`15.01.2024 1234 5678 9012`)
//!   and odd groupings that start with a date (`2024-01-15 …`); spans inside a hexadecimal identifier (the hex
//!   digits and dashes around the span hold a letter `a`–`f` and, with the span's digits, 24 or more hex
//!   digits: UUIDs, hashes). A span whose first or last group touches a letter (`card5555…`, `…4444x`) is a
//!   candidate only as a single group or printed layout of 13 to 19 digits starting with 2 to 6 or in a known
//!   issuer range.
//!
//!   Of overlapping candidates of a run the one kept is, in this order: one in a known issuer range
//!   ([`pan::range_fit`]); a single group or printed layout; one with the length most of its scheme's cards
//!   have (Visa 16, American Express 15, …) rather than another length the scheme issues; the longer; the
//!   first. So `4111 1111 1111 1111 123` and `6011 1111 1111 1117 12/30` are the 16-digit cards, not 19 or 18
//!   Luhn-valid digits with the CVC or month, while a card of 17 to 19 digits written in fours whose first 16
//!   digits happen to pass Luhn too (one in ten) reads as those 16 and more.
//! * IBAN: two Latin letters (ASCII or full-width, any case: `DE`, `De`, `de`) of an IBAN registry country, two
//!   digits, then letters and digits, with or without a gap between any two of them (`DE 89 3704…`,
//!   `DE89-3704-…`), up to that country's IBAN length; it must validate (ISO 13616 check digits, length and BBAN
//!   structure). Not preceded or followed by a digit; letters may touch it (`IBAN:DE89…`, `ibanDE89…`).
//! * email: the address around each `@`. In free text the local part is limited to letters and digits of any
//!   script, combining marks and `._%+-` (the other RFC 5322 characters, such as `=` or `'`, would swallow the
//!   text before it); the domain to letters and digits of any script, combining marks, `.` and `-`, so an
//!   internationalised domain (`münchen.de`) is found as well as its punycode (`xn--mnchen-3ya.de`). Where
//!   CJK, kana or hangul text directly precedes a Latin local part or follows a Latin domain label, it is not part
//!   of the address (`連絡jane@example.comまで`). Where the characters before the `@` run on for more than 64
//!   bytes, or those after it for more than 253, there is no address (no part of the run is taken).
//! * phone: international numbers only: `+` (or `＋`), then 7 to 15 digits with gaps of separators other than
//!   commas and low lines ([`phone::is_phone_separator`]: `+49 170 1234567` with no-break spaces,
//!   `+49  170 - 1234567`, `+٤٩ ١٧٠ ١٢٣٤٥٦٧`) and parentheses; every prefix ending at a digit group that
//!   validates is a candidate (the longest that clashes with nothing wins). Not a candidate: digits that start
//!   with a date (`+2024-01-15`) or read as a timestamp.
//!
//! What may touch a value (be right before or after it): a card, see above; an IBAN, letters but no digit; a
//! phone number, no word character before its `+` or after its last digit; an address, no word character and no
//! other `@`. A value never takes part of a digit group: a run of digits touching a value is part of it.
//!
//! Overlapping candidates of different classes: the longest wins, equal lengths go by IBAN, card, phone, email.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Range;

use crate::domain::Class;
use crate::token::text::TextKind;
use crate::token::{digit_value, email, iban, is_separator, latin_letter, pan, phone, MAX_GAP};

/// A validated value of `class` at `text[start..end]` (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

/// Non-overlapping matches ordered by `start`, only for the given classes (other classes are never detected).
pub fn find(text: &str, classes: &[Class]) -> Vec<Match> {
    let mut candidates = Vec::new();
    // Strings too short or with too few digits to hold the class are skipped outright (most strings of a JSON
    // body are): one counting pass, where every non-ASCII character (its lead byte) counts as a possible digit.
    let digits = text.bytes().filter(|&c| c.is_ascii_digit() || c >= 0xC0).count();
    if classes.contains(&Class::Iban) && text.len() >= IBAN_MIN_CHARS && digits >= 2 {
        scan_iban(text, &mut candidates);
    }
    if classes.contains(&Class::Pan) && digits >= pan::MIN_DIGITS {
        scan_pan(text, &mut candidates);
    }
    if classes.contains(&Class::Phone) && digits >= phone::MIN_VALID_DIGITS {
        scan_phone(text, &mut candidates);
    }
    if classes.contains(&Class::Email) {
        scan_email(text, &mut candidates);
    }
    resolve(candidates)
}

/// Candidate tokens of `classes` in text an app rendered (a mail, a page, a CSV export): card, IBAN, e-mail and
/// phone tokens are found as values are (their formats keep the values' shapes), name, address and text tokens
/// by the markers of the `tagged` format. Candidates only: the vault says which are tokens, and one it does not
/// know stays as it is. Where a tagged token holds something detection would take (an address's digits), the
/// tagged token wins. Non-overlapping, ordered by `start`.
pub fn find_tokens(text: &str, classes: &[Class]) -> Vec<Match> {
    let kinds: Vec<TextKind> = classes.iter().filter_map(|c| TextKind::of(*c)).collect();
    // The ingress's detection asks for no text class: exactly `find`, at its cost (every JSON string goes here).
    if kinds.is_empty() {
        return find(text, classes);
    }
    let tagged: Vec<Match> = crate::token::text::find_tagged(text, &kinds)
        .into_iter()
        .map(|t| Match { start: t.range.start, end: t.range.end, class: t.kind.class() })
        .collect();
    let mut found: Vec<Match> = find(text, classes)
        .into_iter()
        .filter(|m| !tagged.iter().any(|t| t.start < m.end && m.start < t.end))
        .collect();
    found.extend(tagged);
    found.sort_by_key(|m| m.start);
    found
}

/// The shortest IBAN (Norway's) has 15 characters.
const IBAN_MIN_CHARS: usize = 15;

#[cfg(test)]
thread_local! {
    /// Characters visited and digits checked by the scans of this thread (tests bound it per input byte).
    static WORK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `n` units of scanning work (only in tests, where the linear bound is checked).
#[inline]
fn work(n: usize) {
    #[cfg(test)]
    WORK.with(|w| w.set(w.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

fn rank(class: Class) -> u8 {
    match class {
        Class::Iban => 0,
        Class::Pan => 1,
        Class::Phone => 2,
        _ => 3,
    }
}

/// Keeps the longest candidates (ties by class rank, then position) that overlap nothing kept before.
fn resolve(mut candidates: Vec<Match>) -> Vec<Match> {
    // Most strings hold no candidate, some one: nothing to choose between (and no map built per string).
    if candidates.len() <= 1 {
        candidates.retain(|m| m.start < m.end);
        return candidates;
    }
    candidates.sort_by_key(|m| (Reverse(m.end - m.start), rank(m.class), m.start));
    let mut kept: BTreeMap<usize, Match> = BTreeMap::new();
    for m in candidates {
        let before = kept.range(..m.start).next_back().is_some_and(|(_, k)| k.end > m.start);
        let after = kept.range(m.start..).next().is_some_and(|(_, k)| k.start < m.end);
        if !before && !after && m.start < m.end {
            kept.insert(m.start, m);
        }
    }
    kept.into_values().collect()
}

fn char_before(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// The value and UTF-8 length of the digit (of any script) starting at byte `i`.
fn digit_at(text: &str, i: usize) -> Option<(u8, usize)> {
    let c = char_at(text, i)?;
    digit_value(c).map(|d| (d, c.len_utf8()))
}

fn is_digit(c: Option<char>) -> bool {
    c.and_then(digit_value).is_some()
}

/// A letter or digit of a script written with spaces between words (see the module documentation).
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() && !is_spaceless(c))
}

/// A letter or digit of a script written without spaces between words: CJK, kana, hangul (U+2E80 on), except
/// the full-width Latin letters and digits.
fn is_spaceless(c: char) -> bool {
    c.is_alphanumeric() && u32::from(c) >= 0x2E80 && !('\u{FF10}'..='\u{FF5A}').contains(&c)
}

/// The end of the gap starting at byte `i` when it is one to [`MAX_GAP`] characters that `separates` and the
/// character after it is one that `continues`.
fn gap_end(text: &str, i: usize, separates: impl Fn(char) -> bool, continues: impl Fn(char) -> bool) -> Option<usize> {
    let mut k = i;
    for _ in 0..MAX_GAP {
        match char_at(text, k) {
            Some(c) if separates(c) => k += c.len_utf8(),
            _ => break,
        }
    }
    (k > i && char_at(text, k).is_some_and(continues)).then_some(k)
}

/// The number written by `digits` (at most nine of them).
fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, &d| n * 10 + u32::from(d))
}

/// A calendar date: year 1900–2099, month 1–12, day 1–31.
fn is_date(year: &[u8], month: &[u8], day: &[u8]) -> bool {
    (1900..=2099).contains(&number(year)) && (1..=12).contains(&number(month)) && (1..=31).contains(&number(day))
}

/// Digits that read as a timestamp `yyyymmddhhmm`, optionally followed by seconds and anything else.
fn is_timestamp(digits: &[u8]) -> bool {
    let field = |r: Range<usize>| digits.get(r).map(number);
    let (Some(hour), Some(minute)) = (field(8..10), field(10..12)) else { return false };
    let date = match (digits.get(0..4), digits.get(4..6), digits.get(6..8)) {
        (Some(y), Some(m), Some(d)) => is_date(y, m, d),
        _ => false,
    };
    date && hour <= 23 && minute <= 59 && field(12..14).is_none_or(|s| s <= 59)
}

/// Digit groups that start with a date: `yyyy mm dd`, `dd mm yyyy` or `mm dd yyyy`.
fn starts_with_date(groups: &[&[u8]]) -> bool {
    match groups {
        [y, m, d, ..] if y.len() == 4 && m.len() == 2 && d.len() == 2 => is_date(y, m, d),
        [a, b, y, ..] if a.len() == 2 && b.len() == 2 && y.len() == 4 => is_date(y, b, a) || is_date(y, a, b),
        _ => false,
    }
}

/// A run of digits: its byte range and its digits' range in the shared digit buffer.
struct Group {
    bytes: Range<usize>,
    digits: Range<usize>,
}

/// A run of digit groups joined by gaps, and whether a letter touches its first and its last group.
struct Run<'a> {
    text: &'a str,
    groups: &'a [Group],
    digits: &'a [u8],
    glued_start: bool,
    glued_end: bool,
}

/// A card candidate: groups `a..z` of a run, how it fits the known issuer ranges, whether it has a printed
/// layout, and its digit count.
struct Card {
    a: usize,
    z: usize,
    fit: pan::RangeFit,
    printed: bool,
    count: usize,
}

fn scan_pan(text: &str, out: &mut Vec<Match>) {
    let mut digits: Vec<u8> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut i = 0;
    while let Some(c) = char_at(text, i) {
        work(1);
        if digit_value(c).is_none() {
            i += c.len_utf8();
            continue;
        }
        digits.clear();
        groups.clear();
        let mut j = i;
        loop {
            let (start, first_digit) = (j, digits.len());
            while let Some((d, len)) = digit_at(text, j) {
                work(1);
                digits.push(d);
                j += len;
            }
            groups.push(Group { bytes: start..j, digits: first_digit..digits.len() });
            match gap_end(text, j, is_separator, |c| digit_value(c).is_some()) {
                Some(next) => {
                    work(next - j);
                    j = next;
                }
                None => break,
            }
        }
        let run = Run {
            text,
            groups: &groups,
            digits: &digits,
            glued_start: is_word(char_before(text, i)),
            glued_end: is_word(char_at(text, j)),
        };
        cards_in_run(&run, out);
        i = j;
    }
}

/// Most short groups taken off either end of a run for a differently grouped card (`12/26 123`).
const TRIM: usize = 3;

/// Printed layouts other than fours with a shorter last group (checked separately).
const CARD_LAYOUTS: [&[usize]; 3] = [&[4, 3, 3, 3], &[4, 6, 5], &[4, 6, 4]];

/// The cards of a run (see the module documentation): every candidate, then the best ones that do not overlap.
fn cards_in_run(run: &Run, out: &mut Vec<Match>) {
    // Most runs are prices, dates and house numbers: too few digits for any card span of them.
    if run.digits.len() < pan::MIN_DIGITS {
        return;
    }
    let n = run.groups.len();
    let len = |g: usize| run.groups.get(g).map_or(0, |g| g.digits.len());
    let mut found: Vec<Card> = Vec::new();
    for a in 0..n {
        work(1);
        consider(run, a, a + 1, Shape::Printed, &mut found);
        if len(a) != 4 {
            continue;
        }
        // Fours, then a last group of one to four digits: 4-4-4, 4-4-4-1 … 4-4-4-4, 4-4-4-4-1 … 4-4-4-4-3.
        for k in 1..5 {
            let l = len(a + k);
            if !(1..=4).contains(&l) {
                break;
            }
            if k >= 2 {
                consider(run, a, a + k + 1, Shape::Printed, &mut found);
            }
            if l != 4 {
                break;
            }
        }
        for layout in CARD_LAYOUTS {
            if a + layout.len() <= n && layout.iter().enumerate().all(|(k, &l)| len(a + k) == l) {
                consider(run, a, a + layout.len(), Shape::Printed, &mut found);
            }
        }
    }
    // The whole run, or without up to three short groups (expiry, CVC) at either end, however it is grouped.
    let short = |g: usize| len(g) <= 4;
    let lows = (0..=TRIM.min(n)).take_while(|&a| a == 0 || short(a - 1));
    for a in lows {
        let highs = (n.saturating_sub(TRIM).max(a + 2)..=n).rev().take_while(|&z| z == n || short(z));
        for z in highs {
            if !found.iter().any(|c| c.a == a && c.z == z) {
                let shape = if (a, z) == (0, n) { Shape::Whole } else { Shape::Trimmed };
                consider(run, a, z, shape, &mut found);
            }
        }
    }

    found.sort_by_key(|c| {
        let known = c.fit != pan::RangeFit::None;
        (Reverse(known), Reverse(c.printed), Reverse(c.fit), Reverse(c.count), c.a)
    });
    if found.is_empty() {
        return;
    }
    let mut used = vec![false; n];
    for card in found {
        let Some(span) = used.get_mut(card.a..card.z) else { continue };
        if span.iter().any(|&u| u) {
            continue;
        }
        span.iter_mut().for_each(|u| *u = true);
        if let (Some(first), Some(last)) = (run.groups.get(card.a), run.groups.get(card.z - 1)) {
            out.push(Match { start: first.bytes.start, end: last.bytes.end, class: Class::Pan });
        }
    }
}

/// How a span of groups was found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A single group or a printed layout.
    Printed,
    /// The whole run, grouped some other way.
    Whole,
    /// The run without up to [`TRIM`] short groups at one end or both, grouped some other way.
    Trimmed,
}

/// Digits that are something other than a card: an ISBN-13, a timestamp `yyyymmddhhmm…`, or Unix time in
/// milliseconds, microseconds or nanoseconds (13, 16 or 19 digits from `15…` to `19…`, 2017 to 2033).
fn not_a_card(digits: &[u8]) -> bool {
    let isbn = digits.len() == 13 && (digits.starts_with(&[9, 7, 8]) || digits.starts_with(&[9, 7, 9]));
    let unix = matches!(digits.len(), 13 | 16 | 19) && matches!(digits, [1, 5..=9, ..]);
    isbn || unix || is_timestamp(digits)
}

/// Checks the span of groups `a..z` and records it as a candidate if it is one.
fn consider(run: &Run, a: usize, z: usize, shape: Shape, found: &mut Vec<Card>) {
    let (Some(first), Some(last)) = (run.groups.get(a), z.checked_sub(1).and_then(|l| run.groups.get(l))) else {
        return;
    };
    let Some(digits) = run.digits.get(first.digits.start..last.digits.end) else { return };
    let count = digits.len();
    if !(pan::MIN_DIGITS..=pan::MAX_DIGITS).contains(&count) || digits.first() == Some(&0) {
        return;
    }
    work(count);
    if !luhn(digits) || not_a_card(digits) {
        return;
    }
    let group = |g: usize| run.groups.get(g).and_then(|g| run.digits.get(g.digits.clone())).unwrap_or_default();
    // A date right before (`15.01.2024 1234 5678`), or at the start of an odd grouping (`2024-01-15 …`).
    if a >= 2 && starts_with_date(&[group(a - 2), group(a - 1), group(a)]) {
        return;
    }
    if shape != Shape::Printed && starts_with_date(&[group(a), group(a + 1), group(a + 2)]) {
        return;
    }
    let canonical: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let fit = pan::range_fit(&canonical);
    let known = fit != pan::RangeFit::None;
    // An odd grouping is a card in a known issuer range, or as the whole run from a group of four or more.
    let first_group = first.digits.len();
    if shape != Shape::Printed && !known && (shape == Shape::Trimmed || first_group < 4) {
        return;
    }
    // Twelve digits in three fours is a card only on its own: inside a longer run it is a fragment of a list.
    if count == pan::MIN_DIGITS && z - a > 1 && (a, z) != (0, run.groups.len()) {
        return;
    }
    let glued = (a == 0 && run.glued_start) || (z == run.groups.len() && run.glued_end);
    if glued {
        let issuer = matches!(digits.first(), Some(2..=6)) || known;
        if shape != Shape::Printed || count < 13 || !issuer {
            return;
        }
    }
    let span = first.bytes.start..last.bytes.end;
    if in_hex_identifier(run.text, span.clone(), count) {
        return;
    }
    let parses = run.text.get(span).and_then(|s| pan::parse(s).ok()).is_some_and(|p| p.canonical == canonical);
    if parses && pan::validate(&canonical).is_ok() {
        found.push(Card { a, z, fit, printed: shape == Shape::Printed, count });
    }
}

/// The Luhn check over digit values.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Hex digits and dashes looked at on either side of a candidate.
const HEX_CONTEXT: usize = 64;
/// Hex digits (with the candidate's digits) from which a run of hex digits is an identifier.
const HEX_IDENTIFIER: usize = 24;

/// Whether the span (with `count` digits) sits inside a hexadecimal identifier: the ASCII hex digits and dashes
/// right around it hold a letter `a`–`f` and, with the span, at least [`HEX_IDENTIFIER`] hex digits.
fn in_hex_identifier(text: &str, span: Range<usize>, count: usize) -> bool {
    let hex_or_dash = |c: &char| c.is_ascii_hexdigit() || *c == '-';
    let before = text.get(..span.start).unwrap_or_default().chars().rev().take(HEX_CONTEXT).take_while(hex_or_dash);
    let after = text.get(span.end..).unwrap_or_default().chars().take(HEX_CONTEXT).take_while(hex_or_dash);
    let (mut hex, mut letter) = (count, false);
    for c in before.chain(after) {
        work(1);
        hex += usize::from(c != '-');
        letter |= c.is_ascii_alphabetic();
    }
    letter && hex >= HEX_IDENTIFIER
}

/// The Latin letter (any case, ASCII or full-width) at byte `i`, upper-cased, and its UTF-8 length.
fn letter_at(text: &str, i: usize) -> Option<(char, usize)> {
    let c = char_at(text, i)?;
    latin_letter(c).map(|l| (l, c.len_utf8()))
}

/// A letter or digit of an IBAN at byte `i`, as its canonical ASCII character, and its UTF-8 length.
fn iban_char_at(text: &str, i: usize) -> Option<(char, usize)> {
    letter_at(text, i).or_else(|| digit_at(text, i).map(|(d, len)| (char::from(b'0' + d), len)))
}

fn scan_iban(text: &str, out: &mut Vec<Match>) {
    let mut canonical = IbanChars::default();
    let mut i = 0;
    while let Some(c) = char_at(text, i) {
        work(1);
        let step = c.len_utf8();
        let Some(found) = iban_at(text, i, &mut canonical) else {
            i += step;
            continue;
        };
        out.push(Match { start: i, end: found, class: Class::Iban });
        i = found;
    }
}

/// Longest IBAN (ISO 13616).
const IBAN_MAX_CHARS: usize = 34;

/// An IBAN's characters as [`iban_at`] reads them (ASCII), on the stack: detection tries every string it reads.
struct IbanChars {
    bytes: [u8; IBAN_MAX_CHARS],
    len: usize,
}

impl Default for IbanChars {
    fn default() -> Self {
        IbanChars { bytes: [0; IBAN_MAX_CHARS], len: 0 }
    }
}

impl IbanChars {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Appends an ASCII character; `None` when full (no IBAN is longer) or not ASCII.
    fn push(&mut self, c: char) -> Option<()> {
        let b = u8::try_from(c).ok().filter(u8::is_ascii)?;
        *self.bytes.get_mut(self.len)? = b;
        self.len += 1;
        Some(())
    }

    fn as_str(&self) -> &str {
        self.bytes.get(..self.len).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
    }
}

/// The end of the IBAN starting at byte `i`, if one does (`canonical` is scratch space).
fn iban_at(text: &str, i: usize, canonical: &mut IbanChars) -> Option<usize> {
    letter_at(text, i)?;
    if is_digit(char_before(text, i)) {
        return None;
    }
    canonical.clear();
    let mut j = i;
    // The four characters of the head first, then up to the country's length.
    let mut length = 4;
    while canonical.len() < length {
        let k = if j == i {
            i
        } else {
            gap_end(text, j, is_separator, |c| latin_letter(c).is_some() || digit_value(c).is_some()).unwrap_or(j)
        };
        let (c, len) = iban_char_at(text, k)?;
        work(k - j + 1);
        // Two letters, two digits, then the country's length.
        let head_ok = match canonical.len() {
            0 | 1 => c.is_ascii_uppercase(),
            2 | 3 => c.is_ascii_digit(),
            _ => true,
        };
        if !head_ok {
            return None;
        }
        canonical.push(c)?;
        j = k + len;
        if canonical.len() == 4 {
            length = iban::country_length(canonical.as_str())?;
        }
    }
    let valid = !is_digit(char_at(text, j))
        && iban::validate_structure(canonical.as_str()).is_ok()
        && text.get(i..j).and_then(|s| iban::parse(s).ok()).is_some_and(|p| p.canonical == canonical.as_str());
    valid.then_some(j)
}

fn scan_phone(text: &str, out: &mut Vec<Match>) {
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut groups: Vec<Vec<u8>> = Vec::new();
    for (plus, sign) in text.char_indices().filter(|&(_, c)| c == '+' || c == '\u{FF0B}') {
        work(1);
        if is_word(char_before(text, plus)) {
            continue;
        }
        // Ends of digit groups (outside parentheses) with the digit count so far.
        cuts.clear();
        groups.clear();
        let first = plus + sign.len_utf8();
        let (mut k, mut count, mut in_parens, mut in_parens_digits, mut gap) = (first, 0, false, 0, 0);
        let mut group: Vec<u8> = Vec::new();
        while let Some(c) = char_at(text, k) {
            work(1);
            let len = c.len_utf8();
            if let Some(d) = digit_value(c) {
                count += 1;
                in_parens_digits += 1;
                gap = 0;
                group.push(d);
                k += len;
                if !is_digit(char_at(text, k)) {
                    groups.push(std::mem::take(&mut group));
                    if !in_parens {
                        cuts.push((k, count));
                    }
                }
            } else if phone::is_phone_separator(c) && !in_parens && gap < MAX_GAP && k > first {
                gap += 1;
                k += len;
            } else if c == '(' && !in_parens {
                in_parens = true;
                in_parens_digits = 0;
                gap = 0;
                k += len;
            } else if c == ')' && in_parens && in_parens_digits > 0 {
                in_parens = false;
                gap = 0;
                k += len;
                cuts.push((k, count));
            } else {
                break;
            }
            if count > phone::MAX_DIGITS {
                break;
            }
        }
        if cuts.last().is_some_and(|&(end, _)| end == k) && is_word(char_at(text, k)) {
            cuts.pop();
        }
        let all: Vec<u8> = groups.concat();
        let group_refs: Vec<&[u8]> = groups.iter().map(Vec::as_slice).collect();
        if starts_with_date(&group_refs) || is_timestamp(&all) {
            continue;
        }
        // Every valid prefix is a candidate: the longest one that clashes with nothing else is kept.
        for &(end, count) in &cuts {
            let valid = (phone::MIN_VALID_DIGITS..=phone::MAX_DIGITS).contains(&count)
                && text
                    .get(plus..end)
                    .and_then(|s| phone::parse(s).ok())
                    .is_some_and(|p| phone::validate(&p.canonical).is_ok());
            work(end - plus);
            if valid {
                out.push(Match { start: plus, end, class: Class::Phone });
            }
        }
    }
}

/// Local-part characters recognised in free text: letters and digits of any script, combining marks, and
/// `._%+-` (a conservative subset of RFC 5322 `atext` with RFC 6531's non-ASCII characters).
fn is_local(c: char) -> bool {
    c.is_alphanumeric() || email::is_combining_mark(c) || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain(c: char) -> bool {
    email::is_domain_char(c) || matches!(c, '.' | '-')
}

fn scan_email(text: &str, out: &mut Vec<Match>) {
    for (at, _) in text.match_indices('@') {
        work(1);
        // The local part, backwards; CJK text before a Latin local part is not part of it.
        let (mut start, mut latin) = (at, false);
        while let Some(c) = char_before(text, start) {
            work(1);
            if !is_local(c) || at - start > email::MAX_LOCAL || (latin && is_spaceless(c)) {
                break;
            }
            latin |= c.is_alphanumeric() && !is_spaceless(c);
            start -= c.len_utf8();
        }
        // The domain, forwards; CJK text after a Latin label is not part of it.
        let (mut end, mut latin) = (at + 1, false);
        while let Some(c) = char_at(text, end) {
            work(1);
            if !is_domain(c) || end - at > email::MAX_DOMAIN + 1 || (latin && is_spaceless(c)) {
                break;
            }
            latin = (latin || (c.is_alphanumeric() && !is_spaceless(c))) && c != '.';
            end += c.len_utf8();
        }
        let too_long = at - start > email::MAX_LOCAL || end - at > email::MAX_DOMAIN + 1;
        while start < at && text.get(start..).is_some_and(|s| s.starts_with('.')) {
            start += 1;
        }
        while end > at + 1 && text.get(..end).is_some_and(|s| s.ends_with(['.', '-'])) {
            end -= 1;
        }
        let touches = |c: Option<char>| c == Some('@') || is_word(c);
        if too_long || touches(char_before(text, start)) || touches(char_at(text, end)) {
            continue;
        }
        let valid = text
            .get(start..end)
            .and_then(|s| email::parse(s).ok())
            .is_some_and(|p| email::validate(&p.canonical).is_ok());
        if valid {
            out.push(Match { start, end, class: Class::Email });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::token;
    use crate::token::DIGIT_ZEROS;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const ALL: [Class; 4] = [Class::Pan, Class::Iban, Class::Email, Class::Phone];

    #[test]
    fn find_tokens_takes_tagged_text_tokens_first_and_only_the_classes_asked() {
        let text = "Dear ZqXkfd PqeqZ, we ship to Zx47 Kwzb Road, tel. +44 7700 900123, LondonxZ; mail k3f9@customers.shop.example \
                    or call +44 7700 900456.";
        let all = [Class::Name, Class::Address, Class::Email, Class::Phone];
        let found: Vec<(Class, &str)> =
            find_tokens(text, &all).iter().map(|m| (m.class, &text[m.start..m.end])).collect();
        assert_eq!(
            found,
            [
                (Class::Name, "ZqXkfd PqeqZ"),
                (Class::Address, "Zx47 Kwzb Road, tel. +44 7700 900123, LondonxZ"),
                (Class::Email, "k3f9@customers.shop.example"),
                (Class::Phone, "+44 7700 900456"),
            ]
        );
        let names: Vec<Class> = find_tokens(text, &[Class::Name]).iter().map(|m| m.class).collect();
        assert_eq!(names, [Class::Name]);
        // Without text classes, the phone inside the address is found as detection finds it.
        let phones = find_tokens(text, &[Class::Phone]);
        assert_eq!(phones.len(), 2);
    }

    /// A German IBAN for this bank code and account, with its ISO 13616 check digits.
    fn de_iban(blz: &str, account: &str) -> String {
        let digits = format!("{blz}{account}131400"); // DE = 13 14, check digits 00 moved to the end
        let rem = digits.bytes().fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
        format!("DE{:02}{blz}{account}", 98 - rem)
    }

    #[test]
    fn a_german_iban_veil_cannot_tokenise_is_still_found() {
        // A bank code outside the Bundesbank's file: the vault refuses it (422), so detection must still find it
        // rather than let it through as text.
        let unknown = de_iban("00000001", "0123456789");
        assert!(crate::token::iban::validate(&unknown).is_err());
        assert!(crate::token::iban::validate_structure(&unknown).is_ok());
        let text = format!("please debit {unknown} today");
        assert_eq!(found(&text), vec![(unknown.as_str(), Class::Iban)]);
    }

    fn found(text: &str) -> Vec<(&str, Class)> {
        find(text, &ALL).iter().map(|m| (&text[m.start..m.end], m.class)).collect()
    }

    /// Whether a matched substring is, on its own, a valid value of its class: its class's parser accepts it and
    /// the canonical form validates (an IBAN by ISO 13616: detection finds IBANs the vault may then refuse). (A phone
    /// number found in free text always has its `+`.)
    fn revalidates(s: &str, class: Class) -> bool {
        let valid = |c: &str| match class {
            Class::Iban => token::iban::validate_structure(c).is_ok(),
            _ => token::validate(class, c).is_ok(),
        };
        let parsed = token::parse(class, s).is_ok_and(|p| valid(&p.canonical));
        parsed && (class != Class::Phone || s.starts_with(['+', '＋']))
    }

    /// `text` with its ASCII digits written in the script whose zero is `zero`.
    fn in_script(text: &str, zero: char) -> String {
        text.chars()
            .map(|c| match c.to_digit(10) {
                Some(d) if c.is_ascii_digit() => char::from_u32(u32::from(zero) + d).unwrap(),
                _ => c,
            })
            .collect()
    }

    fn with_check_digit(payload: &str) -> String {
        format!("{payload}{}", pan::luhn_check_digit(payload))
    }

    /// Every separator character, and gaps of two and three in mixtures.
    const SEPARATORS: &[&str] = &[
        " ",
        "-",
        ".",
        "/",
        "_",
        ",",
        "\u{A0}",
        "\u{AD}",
        "\u{2000}",
        "\u{2001}",
        "\u{2002}",
        "\u{2003}",
        "\u{2004}",
        "\u{2005}",
        "\u{2006}",
        "\u{2007}",
        "\u{2008}",
        "\u{2009}",
        "\u{200A}",
        "\u{200B}",
        "\u{202F}",
        "\u{205F}",
        "\u{2060}",
        "\u{3000}",
        "\u{FEFF}",
        "\u{2010}",
        "\u{2011}",
        "\u{2012}",
        "\u{2013}",
        "\u{2014}",
        "\u{2015}",
        "\u{2212}",
        "\u{FE58}",
        "\u{FE63}",
        "－",
        "．",
        "／",
        "＿",
        "，",
        "  ",
        " - ",
        "\u{A0}\u{A0}",
        " /\u{2009}",
        ". ",
        "\u{1680}",
        "\u{B7}",
        "\u{2027}",
        "\u{2044}",
        "\u{2215}",
        "\u{60C}",
        "\u{66C}",
        "\u{3001}",
        "\u{30FB}",
        "\u{301C}",
        "\u{FE31}",
        "\u{2E3A}",
        "\u{200D}",
        "\u{180E}",
        "\u{58A}",
        "\u{10EAD}",
        "\u{FF65}",
    ];

    #[test]
    fn finds_each_class_in_sentences() {
        assert_eq!(found("Pay with 4111111111111111 today."), [("4111111111111111", Class::Pan)]);
        assert_eq!(found("IBAN: DE89370400440532013000, thanks"), [("DE89370400440532013000", Class::Iban)]);
        assert_eq!(found("IBAN DE89 3704 0044 0532 0130 00 ok"), [("DE89 3704 0044 0532 0130 00", Class::Iban)]);
        assert_eq!(found("iban gb82 west 1234 5698 7654 32."), [("gb82 west 1234 5698 7654 32", Class::Iban)]);
        assert_eq!(found("Mail <jane.doe+x@Example.co.uk>."), [("jane.doe+x@Example.co.uk", Class::Email)]);
        assert_eq!(found("call +44 (0) 20 7946 0958 now"), [("+44 (0) 20 7946 0958", Class::Phone)]);
        assert_eq!(found("(tel. +49-30-1234567)"), [("+49-30-1234567", Class::Phone)]);
    }

    #[test]
    fn card_separators_and_full_width_digits() {
        assert_eq!(found("card 4111 1111 1111 1111 ok"), [("4111 1111 1111 1111", Class::Pan)]);
        assert_eq!(found("card 4111-1111-1111-1111."), [("4111-1111-1111-1111", Class::Pan)]);
        assert_eq!(found("amex 3782 822463 10005"), [("3782 822463 10005", Class::Pan)]);
        let wide = "カード４１１１１１１１１１１１１１１１です"; // kana may touch a value
        let m = find(wide, &[Class::Pan]);
        assert_eq!(m.len(), 1);
        assert_eq!(&wide[m[0].start..m[0].end], "４１１１１１１１１１１１１１１１");
        assert_eq!(found("4111 1111 1111 1111 12/26"), [("4111 1111 1111 1111", Class::Pan)]);
        assert_eq!(found("ref 12 4111111111111111"), [("4111111111111111", Class::Pan)]);
    }

    #[test]
    fn card_separators_of_every_kind() {
        for sep in SEPARATORS {
            for value in [
                ["5555", "5555", "5555", "4444"].join(sep),
                ["4111", "1111", "1111", "1111"].join(sep),
                ["3782", "822463", "10005"].join(sep),
                ["6011", "1111", "1111", "1117"].join(sep),
            ] {
                let text = format!("Card: {value}; thanks");
                assert_eq!(found(&text), [(value.as_str(), Class::Pan)], "{sep:?}");
            }
        }
        for mixed in ["5555 5555-5555\u{A0}4444", "5555.5555 / 5555_4444", "5555\u{2009}5555\u{2013}5555\u{3000}4444"] {
            assert_eq!(found(&format!("({mixed})")), [(mixed, Class::Pan)]);
        }
    }

    #[test]
    fn card_digits_of_every_script() {
        for zero in DIGIT_ZEROS {
            for value in
                ["5555555555554444", "4111 1111 1111 1111", "3782-822463-10005", "6011\u{A0}1111\u{A0}1111\u{A0}1117"]
            {
                let value = in_script(value, zero);
                let text = format!("Karte: {value}, danke");
                assert_eq!(found(&text), [(value.as_str(), Class::Pan)], "{:X}", u32::from(zero));
            }
        }
        // Mixed scripts in one number are read digit by digit.
        let mixed = "٤١١١ ۱۱۱۱ १११११ 111";
        assert_eq!(found(mixed), [(mixed, Class::Pan)]);
    }

    #[test]
    fn cards_next_to_expiry_cvc_and_order_numbers() {
        for (text, card) in [
            ("5555555555554444 1226 123", "5555555555554444"),
            ("5555555555554444 12/26 123", "5555555555554444"),
            ("5555555555554444 12-26 123", "5555555555554444"),
            ("5555555555554444 12.26 123", "5555555555554444"),
            ("5555 5555 5555 4444 12/26 123", "5555 5555 5555 4444"),
            ("5555-5555-5555-4444 12-26 123", "5555-5555-5555-4444"),
            ("5555 5555 5555 4444 123", "5555 5555 5555 4444"),
            ("123 5555555555554444 12/26", "5555555555554444"),
            ("123 5555 5555 5555 4444 12-26", "5555 5555 5555 4444"),
            ("12/26 123 5555 5555 5555 4444", "5555 5555 5555 4444"),
            ("12/26 5555555555554444", "5555555555554444"),
            ("5555555555554444 1234567", "5555555555554444"),
            ("5555 5555 5555 4444 1234567890", "5555 5555 5555 4444"),
            ("1234567 5555 5555 5555 4444", "5555 5555 5555 4444"),
            ("4111 1111 1111 1111 12/26 123", "4111 1111 1111 1111"),
            ("4111111111111111, 12/26, 123", "4111111111111111"),
            ("3782 822463 10005 12/26 1234", "3782 822463 10005"),
            ("378282246310005 1226 1234", "378282246310005"),
            ("1234 378282246310005 12 26", "378282246310005"),
            ("card 4111111111111111 exp 1226 cvc 123", "4111111111111111"),
            ("5555\u{A0}5555\u{A0}5555\u{A0}4444\u{A0}12/26\u{A0}123", "5555\u{A0}5555\u{A0}5555\u{A0}4444"),
            // The card with the month or CVC passes Luhn too (18 or 19 digits): the usual length wins.
            ("6011 1111 1111 1117 12/30", "6011 1111 1111 1117"),
            ("6011 1111 1111 1117 737", "6011 1111 1111 1117"),
            ("6011111111111117 12 30 737", "6011111111111117"),
            ("5555 5555 5555 4444 737", "5555 5555 5555 4444"),
            ("4000 0566 5566 5556 999", "4000 0566 5566 5556"),
            ("4111 1111 1111 1111 12 30", "4111 1111 1111 1111"),
            // A printed 13-digit card before an oddly grouped 16 digits in a known range (one found by proptest).
            ("൪൭൯൦\u{AD}൪൩൮൨／൮൦൩൪﹣൧‑07 25‑516", "൪൭൯൦\u{AD}൪൩൮൨／൮൦൩൪﹣൧"),
        ] {
            assert_eq!(found(text), [(card, Class::Pan)], "{text}");
        }
    }

    #[test]
    fn twelve_digits_in_fours_only_on_their_own() {
        let twelve = with_check_digit("56789012345");
        let (a, b, c) = (&twelve[..4], &twelve[4..8], &twelve[8..]);
        assert_eq!(found(&format!("values {a} {b} {c}.")), [(format!("{a} {b} {c}").as_str(), Class::Pan)]);
        let next = (1000..10_000).map(|d| d.to_string()).find(|d| !pan::luhn_valid(&format!("{twelve}{d}"))).unwrap();
        assert_eq!(found(&format!("values {a},{b},{c},{next}")), []);
    }

    #[test]
    fn oddly_grouped_cards() {
        for (text, card) in [
            ("4 1111 1111 1111 111", "4 1111 1111 1111 111"),
            ("41 111-1 111111111 1", "41 111-1 111111111 1"),
            ("5555 55555555 4444 12/26 123", "5555 55555555 4444"),
            ("12/26 123 5555 55555555 4444", "5555 55555555 4444"),
            ("555 555555 555 4444, 12-26", "555 555555 555 4444"),
        ] {
            assert_eq!(found(text), [(card, Class::Pan)], "{text}");
        }
    }

    #[test]
    fn cards_touching_letters() {
        for (text, card) in [
            ("card5555555555554444", "5555555555554444"),
            ("5555555555554444x", "5555555555554444"),
            ("pan:5555555555554444", "5555555555554444"),
            ("Karte4111111111111111.", "4111111111111111"),
            ("ref4111-1111-1111-1111end", "4111-1111-1111-1111"),
            ("CC378282246310005", "378282246310005"),
            ("Karte４１１１１１１１１１１１１１１１", "４１１１１１１１１１１１１１１１"),
            ("numéro٤١١١١١١١١١١١١١١١", "٤١١١١١١١١١١١١١١١"),
            ("tarjeta5555 5555 5555 4444", "5555 5555 5555 4444"),
            ("Order: ORD4111111111111111X", "4111111111111111"),
        ] {
            assert_eq!(found(text), [(card, Class::Pan)], "{text}");
        }
        assert_eq!(
            found("x4111111111111111 and 4111111111111111y"),
            [("4111111111111111", Class::Pan), ("4111111111111111", Class::Pan)]
        );
        // The other side: digits touching letters that are no plausible card, and hexadecimal identifiers.
        let unknown = with_check_digit("711111111111111"); // 16 digits, issuer digit 7
        let twelve = with_check_digit("41111111111"); // 12 digits
        let uuid = format!("123e4567-e89b-12d3-a456-{}", with_check_digit("42661417400"));
        let hash = format!("9f86d081884c7d65{}9a2feaa0c55ad015a3bf4f1b2b0b822c", "4111111111111111");
        for text in [
            format!("x{unknown}"),
            format!("{unknown}y"),
            format!("ab{twelve}"),
            format!("{twelve}cd"),
            format!("deadbeef{}cafebabe", "4111111111111111"),
            format!("id {uuid}"),
            uuid.to_uppercase(),
            hash.clone(),
            format!("sha256:{hash}"),
            format!("commit {}-{}", "4111111111111111", "0a1b2c3d"),
        ] {
            assert_eq!(found(&text), [], "{text}");
        }
        // Away from letters any Luhn-valid number of a card's length is a card, in a known range or not.
        assert_eq!(found(&format!("id {unknown} ok")), [(unknown.as_str(), Class::Pan)]);
        assert_eq!(found(&format!("id {twelve} ok")), [(twelve.as_str(), Class::Pan)]);
    }

    #[test]
    fn negatives() {
        let luhn_timestamp = with_check_digit("2024011512304"); // 2024-01-15 12:30:4x
        let luhn_micro = with_check_digit("170531224512345"); // Unix time in microseconds
        let luhn_millis = with_check_digit("170531224512"); // Unix time in milliseconds
        let dated = with_check_digit("20240115123"); // 2024.01.15 plus digits, grouped as a date
        let amazon = with_check_digit("1141234567123456"); // 114-1234567-1234567
        for digits in [&luhn_timestamp, &luhn_micro, &luhn_millis, &dated, &amazon] {
            assert!(pan::luhn_valid(digits), "the negative is a real test: {digits}");
        }
        for text in [
            "card 4111111111111112 is not valid".to_owned(),   // Luhn fails
            "order 41111111111111110000 shipped".to_owned(),   // 20 digits holding a valid 16-digit prefix
            "order 1234567890123456789012 shipped".to_owned(), // long run
            "Order no 12345678901234567890, ref 0000 0000 0000 0000".to_owned(),
            format!("order {}-{}-{}", &amazon[..3], &amazon[3..10], &amazon[10..]),
            "on 2024-01-15 at 12:30, invoice 2024-0001".to_owned(),
            format!("at {luhn_timestamp} UTC"),
            format!("ts={luhn_micro}, ms {luhn_millis}"),
            format!("{}.{}.{} {}", &dated[..4], &dated[4..6], &dated[6..8], &dated[8..]),
            "2024-01-15 12.30.45.123456 and 2024-01-15T12:30:45.123456Z and 20240115T123045Z".to_owned(),
            "Total: 1.234.567,89 EUR, 12.345.678.901,23 EUR, $1,234,567,890,123.45".to_owned(),
            "1\u{A0}234\u{A0}567\u{A0}890\u{A0}123,45 € and 1\u{202F}234\u{202F}567\u{202F}890\u{202F}123".to_owned(),
            "ISBN 978-3-16-148410-0, ISBN-13: 978-0-306-40615-7, 9780306406157, 0-306-40615-2".to_owned(),
            "from 192.168.100.200 to 10.0.0.1, version 1.22.333.4444".to_owned(),
            "IBAN DE88370400440532013000 (bad check digits)".to_owned(),
            "IBAN XX89370400440532013000".to_owned(),
            "IBAN DE89370400440532013000123 (longer number)".to_owned(),
            "write to a@b or @example.com or bob@ or a@b.c@d".to_owned(),
            "call 030 1234567 or 0049 30 1234567".to_owned(),
            "1+49301234567 and +12".to_owned(),
            "dates +2024-01-15, +15.01.2024, +2024/01/15 12:30 and +20240115123045".to_owned(),
            "uuid 123e4567-e89b-12d3-a456-426614174000, sha1 a94a8fe5ccb19ba61c4c0873d391e987982fbbd3".to_owned(),
        ] {
            assert_eq!(found(&text), [], "{text}");
        }
    }

    #[test]
    fn ibans_in_any_case_and_with_any_separator() {
        let de = ["DE89", "3704", "0044", "0532", "0130", "00"];
        let mut written: Vec<String> = SEPARATORS.iter().map(|sep| de.join(sep)).collect();
        written.extend(
            [
                "De89 3704 0044 0532 0130 00",
                "de89 3704 0044 0532 0130 00",
                "dE89370400440532013000",
                "de89370400440532013000",
                "DE89-3704 0044\u{A0}0532.0130/00",
                "ＤＥ８９ ３７０４ ００４４ ０５３２ ０１３０ ００",
                "ｄｅ８９３７０４００４４０５３２０１３０００",
                "DE٨٩ ٣٧٠٤ ٠٠٤٤ ٠٥٣٢ ٠١٣٠ ٠٠",
                "de८९ ३७०४ ००४४ ०५३२ ०१३० ००",
                "GB82 WEST 1234 5698 7654 32",
                "gb82-West-1234-5698-7654-32",
                "FR14 2004 1010 0505 0001 3M02 606",
                "fr1420041010050500013m02606",
                "NL91\u{202F}ABNA\u{202F}0417\u{202F}1643\u{202F}00",
                "nO93 8601 1117 947",
                "MT84MALT011000012345MTLCAST001S",
                "DE 89 3704 0044 0532 0130 00",
                "DE\u{A0}89\u{A0}37040044\u{A0}0532013000",
            ]
            .map(String::from),
        );
        for iban in &written {
            for (before, after) in
                [("IBAN ", "."), ("IBAN:", ""), ("iban", " ok"), ("(", ")"), ("Konto\u{A0}", ", danke")]
            {
                let text = format!("{before}{iban}{after}");
                assert_eq!(found(&text), [(iban.as_str(), Class::Iban)], "{text}");
            }
        }
        assert_eq!(found("IBAN DE89 3704 0044 0532 0130 00 12/26"), [("DE89 3704 0044 0532 0130 00", Class::Iban)]);
        assert_eq!(found("1DE89370400440532013000"), []);
    }

    #[test]
    fn internationalised_addresses() {
        for (text, address) in [
            ("Mail jane@münchen.de.", "jane@münchen.de"),
            ("Mail jane@xn--mnchen-3ya.de, bitte", "jane@xn--mnchen-3ya.de"),
            ("Grüße an jöran@example.org!", "jöran@example.org"),
            ("<Jöran.Öberg@Exämple.ORG>", "Jöran.Öberg@Exämple.ORG"),
            ("JANE@MÜNCHEN.DE", "JANE@MÜNCHEN.DE"),
            ("邮箱：用户@例子.广告。", "用户@例子.广告"),
            ("連絡jane@example.comまで", "jane@example.com"),
            ("почта: иван@пример.рф", "иван@пример.рф"),
            ("(ju\u{308}rgen@mu\u{308}nchen.de)", "ju\u{308}rgen@mu\u{308}nchen.de"),
            ("Email: अजय@डाटामेल.भारत", "अजय@डाटामेल.भारत"),
            ("jane@例子.com", "jane@例子.com"),
        ] {
            assert_eq!(found(text), [(address, Class::Email)], "{text}");
        }
    }

    #[test]
    fn phones_with_unicode_separators_and_digits() {
        for phone in [
            "+49\u{A0}170\u{A0}1234567",
            "+49\u{202F}170\u{202F}1234567",
            "+49\u{2009}170\u{2009}1234567",
            "+49\u{3000}170\u{3000}1234567",
            "+49\u{2011}170\u{2011}1234567",
            "+1\u{2013}202\u{2013}555\u{2013}0143",
            "+٤٩ ١٧٠ ١٢٣٤٥٦٧",
            "+۴۹ ۱۷۰ ۱۲۳۴۵۶۷",
            "+४९ १७० १२३४५६७",
            "+৪৯ ১৭০ ১২৩৪৫৬৭",
            "＋４９ １７０ １２３４５６７",
            "+44 (0) 20\u{A0}7946\u{A0}0958",
            "+49 170\u{A0}12-34-567",
            "+49  170  1234567",
            "+49 - 170 - 1234567",
            "+49\u{A0}\u{A0}170\u{2009}/\u{2009}1234567",
            "+49\u{2012}170\u{2010}1234567",
        ] {
            for (before, after) in [("Tel. ", ", mobil"), ("(", ")"), ("\n", "\n"), ("Telefon：", "まで")] {
                let text = format!("{before}{phone}{after}");
                assert_eq!(found(&text), [(phone, Class::Phone)], "{text}");
            }
        }
        assert_eq!(
            found("call +49 170 1234567, +49 30 1234567"),
            [("+49 170 1234567", Class::Phone), ("+49 30 1234567", Class::Phone)]
        );
    }

    #[test]
    fn multiple_matches_in_order() {
        let text = "a@b.io, 4111111111111111; +1 202 555 0143\nDE89370400440532013000 x@y.org";
        let classes: Vec<Class> = find(text, &ALL).iter().map(|m| m.class).collect();
        assert_eq!(classes, [Class::Email, Class::Pan, Class::Phone, Class::Iban, Class::Email]);
        assert_eq!(find(text, &[Class::Email]).len(), 2);
        assert_eq!(find(text, &[]), []);
        assert_eq!(find(text, &[Class::Name, Class::Text]), []);
        let cards = "4111111111111111 5500000000000004 378282246310005";
        assert_eq!(find(cards, &[Class::Pan]).len(), 3);
        let grouped = "4111 1111 1111 1111 5500 0000 0000 0004";
        let m = find(grouped, &[Class::Pan]);
        assert_eq!(
            m.iter().map(|m| &grouped[m.start..m.end]).collect::<Vec<_>>(),
            ["4111 1111 1111 1111", "5500 0000 0000 0004"]
        );
    }

    #[test]
    fn overlaps_resolve_to_one_match() {
        // 3704 0044 0532 0131 passes Luhn on its own; the IBAN around it wins.
        assert!(pan::luhn_valid("3704004405320131"));
        assert_eq!(find("x 3704 0044 0532 0131 05", &[Class::Pan]).len(), 1);
        assert_eq!(found("DE67 3704 0044 0532 0131 05"), [("DE67 3704 0044 0532 0131 05", Class::Iban)]);
        // A card-valid run written as a phone number is a phone number (longer match).
        assert!(pan::luhn_valid("41111111111114"));
        assert_eq!(found("+41111111111114"), [("+41111111111114", Class::Phone)]);
        // Digits inside an address belong to the address.
        assert_eq!(found("4111111111111111@example.com"), [("4111111111111111@example.com", Class::Email)]);
        // Equal lengths: the card wins over the phone number.
        let text = "+49 30 1234567 4111 1111 1111 1111";
        assert_eq!(found(text), [("+49 30 1234567", Class::Phone), ("4111 1111 1111 1111", Class::Pan)]);
    }

    #[test]
    fn adversarial_inputs_stay_fast() {
        let inputs = [
            "@".repeat(100_000),
            "a".repeat(50_000) + "@" + &"b.".repeat(50_000),
            "1 ".repeat(50_000),
            "+1-".repeat(30_000),
            "DE89 ".repeat(20_000),
            "４".repeat(30_000),
            "a.@.".repeat(25_000),
        ];
        let started = std::time::Instant::now();
        for text in &inputs {
            let _ = find(text, &ALL);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// Scanning work for one `find` over every class.
    fn work_for(text: &str) -> usize {
        WORK.with(|w| w.set(0));
        let _ = find(text, &ALL);
        WORK.with(|w| w.get())
    }

    /// Work units per input byte that a linear scan stays under. The scans are bounded per starting point (a
    /// card span by 19 digits, an IBAN by 34 characters, an address by 64 + 253 bytes, a phone number by 15
    /// digits), so the work per byte is a constant; a quadratic scan would be a million times over on 1 MiB.
    const WORK_PER_BYTE: usize = 64;

    const MIB: usize = 1 << 20;

    #[test]
    fn one_mebibyte_of_adversarial_shapes_is_scanned_in_linear_work() {
        for shape in [
            "1 ",
            "4111 ",
            "5555555555554444 ",
            "1-2.3/4_5,6\u{A0}",
            "٤\u{2009}",
            "+1 ",
            "+1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 ",
            "DE89 ",
            "de89 3704 ",
            "a@",
            "@a.",
            "a.@.",
            "+49 170 1234567 ",
            "12/26 ",
        ] {
            let text = shape.repeat(MIB / shape.len());
            let work = work_for(&text);
            assert!(work <= WORK_PER_BYTE * text.len(), "{shape:?}: {} per byte", work / text.len());
        }
    }

    // ---- Generators for the properties ----

    /// Issuer prefixes with a length the issuer uses (every one is in a known range: [`pan::range_fit`]).
    const CARD_KINDS: [(&str, usize); 16] = [
        ("4", 16),
        ("4", 13),
        ("4", 19),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("2720", 16),
        ("34", 15),
        ("37", 15),
        ("36", 14),
        ("300", 14),
        ("6011", 16),
        ("65", 19),
        ("62", 17),
        ("3530", 16),
        ("2200", 18),
    ];

    fn random_card(rng: &mut StdRng) -> String {
        let (prefix, len) = CARD_KINDS[rng.gen_range(0..CARD_KINDS.len())];
        let mut payload = prefix.to_owned();
        while payload.len() < len - 1 {
            payload.push(char::from(b'0' + rng.gen_range(0..10u8)));
        }
        with_check_digit(&payload)
    }

    fn random_gap(rng: &mut StdRng, separators: &[&'static str]) -> String {
        let mut gap = separators.choose(rng).copied().unwrap_or(" ").to_owned();
        while gap.chars().count() > MAX_GAP {
            gap.pop();
        }
        gap
    }

    fn random_zero(rng: &mut StdRng) -> char {
        if rng.gen_bool(0.4) {
            '0'
        } else {
            DIGIT_ZEROS[rng.gen_range(0..DIGIT_ZEROS.len())]
        }
    }

    /// Splits `value` into groups of these sizes (the rest in one last group).
    fn grouped(value: &str, sizes: &[usize], rng: &mut StdRng) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut at = 0;
        for &size in sizes.iter().chain(std::iter::repeat(&4)) {
            if at >= chars.len() {
                break;
            }
            if at > 0 {
                out.push_str(&random_gap(rng, SEPARATORS));
            }
            let end = (at + size).min(chars.len());
            out.extend(&chars[at..end]);
            at = end;
        }
        out
    }

    /// A card as printed or typed: compact, in fours, or 4-6-5 / 4-6-4; random gaps and digit script. A card of
    /// 17 to 19 digits in fours reads as 16 digits and more where its first 16 pass Luhn too (see the module
    /// documentation): those are written compact.
    fn written_card(canonical: &str, rng: &mut StdRng) -> String {
        let zero = random_zero(rng);
        let written = match (rng.gen_range(0..3), canonical.len()) {
            (0, _) | (_, 17..) => canonical.to_owned(),
            (1, len @ (14 | 15)) => grouped(canonical, &[4, 6, len - 10], rng),
            _ => grouped(canonical, &[4], rng),
        };
        in_script(&written, zero)
    }

    /// Text around a value, kept apart from it by `boundary`: words, digit groups of 2 to 4 digits in any
    /// script, punctuation.
    fn filler(rng: &mut StdRng) -> String {
        let mut out = String::new();
        for _ in 0..rng.gen_range(0..6) {
            match rng.gen_range(0..4) {
                0 => out.push_str(["Karte", "card", "numéro", "Konto", "ok", "für", "の", "x"][rng.gen_range(0..8)]),
                1 => {
                    let digits: String =
                        (0..rng.gen_range(2..=4)).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect();
                    out.push_str(&in_script(&digits, random_zero(rng)));
                }
                2 => out.push_str([",", ".", "!", "?", "-", "'", "…", "—"][rng.gen_range(0..8)]),
                _ => {}
            }
            out.push(' ');
        }
        out
    }

    /// Characters that end a value of any class: no letter, digit, separator, `@`, `+` or local-part character.
    const BOUNDARIES: [&str; 10] = [": ", "; ", "\n", "\t", " | ", "=", "\"", "「", "」", "<"];

    /// `value` between random text, kept apart by boundaries; the value's byte range in the text.
    fn in_context(value: &str, rng: &mut StdRng) -> (String, Range<usize>) {
        let mut text = filler(rng);
        text.push_str(BOUNDARIES[rng.gen_range(0..BOUNDARIES.len())]);
        let start = text.len();
        text.push_str(value);
        let end = text.len();
        text.push_str(BOUNDARIES[rng.gen_range(0..BOUNDARIES.len())]);
        text.push_str(&filler(rng));
        (text, start..end)
    }

    /// Registry examples of a few countries; random valid IBANs are drawn around them.
    const IBAN_SEEDS: [&str; 14] = [
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "GB29NWBK60161331926819",
        "NL91ABNA0417164300",
        "NO9386011117947",
        "IT60X0542811101000000123456",
        "ES9121000418450200051332",
        "PL61109010140000071219812874",
        "CH9300762011623852957",
        "MT84MALT011000012345MTLCAST001S",
        "BE68539007547034",
        "AT611904300234573201",
        "SA0380000000608010167519",
        "BR1800360305000010009795493C1",
    ];

    fn written_iban(rng: &mut StdRng) -> (String, String) {
        let seed = IBAN_SEEDS[rng.gen_range(0..IBAN_SEEDS.len())];
        let canonical = iban::generate(seed, iban::IbanFormat::KeepBank, 0, rng);
        let zero = random_zero(rng);
        let full_width = rng.gen_bool(0.1);
        let case = rng.gen_range(0..3);
        let chars: String = canonical
            .chars()
            .map(|c| {
                let c = match case {
                    0 => c,
                    1 => c.to_ascii_lowercase(),
                    _ if rng.gen_bool(0.5) => c.to_ascii_lowercase(),
                    _ => c,
                };
                match c {
                    '0'..='9' => in_script(&c.to_string(), zero).chars().next().unwrap_or(c),
                    _ if full_width => char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap_or(c),
                    _ => c,
                }
            })
            .collect();
        let written = match rng.gen_range(0..3) {
            0 => chars,
            1 => grouped(&chars, &[4], rng),
            _ => {
                let sizes: Vec<usize> = std::iter::once(4).chain((0..10).map(|_| rng.gen_range(1..=6))).collect();
                grouped(&chars, &sizes, rng)
            }
        };
        (written, canonical)
    }

    const COUNTRY_CODES: [&str; 12] = ["1", "7", "33", "44", "49", "39", "41", "55", "61", "81", "353", "971"];

    fn written_phone(rng: &mut StdRng) -> String {
        let code = COUNTRY_CODES[rng.gen_range(0..COUNTRY_CODES.len())];
        let total = rng.gen_range(9..phone::MAX_DIGITS); // room for a `(0)`
        let mut digits = String::new();
        let mut groups = vec![code.to_owned()];
        let mut count = code.len();
        while count < total {
            let size = rng.gen_range(3..=4).min(total - count);
            let group: String = (0..size).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect();
            count += size;
            groups.push(group);
        }
        let phone_separators: Vec<&'static str> =
            SEPARATORS.iter().copied().filter(|s| s.chars().all(phone::is_phone_separator)).collect();
        let zero = random_zero(rng);
        let plus = if rng.gen_bool(0.1) { "＋" } else { "+" };
        digits.push_str(plus);
        for (i, group) in groups.iter().enumerate() {
            if i > 0 {
                digits.push_str(phone_separators.choose(rng).copied().unwrap_or(" "));
            }
            if i == 1 && rng.gen_bool(0.2) {
                digits.push_str("(0) ");
            }
            digits.push_str(&in_script(group, zero));
        }
        digits
    }

    /// Local parts and domains that free-text detection reads whole.
    fn written_email(rng: &mut StdRng) -> String {
        let local = match rng.gen_range(0..5) {
            0 => "jane.doe",
            1 => "j_o-e%42+tag",
            2 => "jöran.öberg",
            3 => "иван",
            _ => "用户",
        };
        let domain = match rng.gen_range(0..6) {
            0 => "example.org",
            1 => "Mail.Example.CO.uk",
            2 => "münchen.de",
            3 => "xn--mnchen-3ya.de",
            4 => "пример.рф",
            _ => "例子.广告",
        };
        format!("{local}@{domain}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A card in any layout, separators and digit script, among other text, is found exactly.
        #[test]
        fn cards_in_context_are_found_exactly(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let canonical = random_card(&mut rng);
            prop_assert!(pan::known_range(&canonical));
            let written = written_card(&canonical, &mut rng);
            let (text, span) = in_context(&written, &mut rng);
            let matches = find(&text, &ALL);
            prop_assert!(
                matches.contains(&Match { start: span.start, end: span.end, class: Class::Pan }),
                "{text:?}: {matches:?}"
            );
            prop_assert_eq!(pan::parse(&written).map(|p| p.canonical), Ok(canonical));
        }

        /// A card glued to a word is found exactly.
        #[test]
        fn cards_touching_words_are_found_exactly(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let canonical = random_card(&mut rng);
            let written = written_card(&canonical, &mut rng);
            let before = ["card", "Karte", "ref", "pan", "x", "num", "tarjeta", "CC", ""][rng.gen_range(0..9)];
            let after = ["x", "end", "ok", "EUR", "zz", ""][rng.gen_range(0..6)];
            let (text, span) = in_context(&format!("{before}{written}{after}"), &mut rng);
            let span = span.start + before.len()..span.end - after.len();
            let matches = find(&text, &ALL);
            prop_assert!(
                matches.contains(&Match { start: span.start, end: span.end, class: Class::Pan }),
                "{text:?}: {matches:?}"
            );
        }

        /// A card followed or preceded by an expiry date and a CVC joined by separators is covered by a match
        /// that ends in that run (it may take the CVC along where it is itself a valid card).
        #[test]
        fn cards_next_to_expiry_and_cvc_are_covered(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let canonical = random_card(&mut rng);
            let written = written_card(&canonical, &mut rng);
            let (month, year) = (rng.gen_range(1..=12), rng.gen_range(24..40));
            let expiry = format!("{month:02}{}{year:02}", ["/", "-", " ", "."][rng.gen_range(0..4)]);
            let cvc = format!("{:03}", rng.gen_range(0..1000));
            let gap = random_gap(&mut rng, SEPARATORS);
            let (value_start, joined) = match rng.gen_range(0..3) {
                0 => (0, format!("{written}{gap}{expiry}{gap}{cvc}")),
                1 => {
                    let head = format!("{cvc}{gap}");
                    (head.len(), format!("{head}{written}{gap}{expiry}"))
                }
                _ => {
                    let head = format!("{expiry}{gap}{cvc}{gap}");
                    (head.len(), format!("{head}{written}"))
                }
            };
            let (text, span) = in_context(&joined, &mut rng);
            let value = span.start + value_start..span.start + value_start + written.len();
            let matches = find(&text, &ALL);
            let covered = matches.iter().any(|m| {
                let covers = m.start <= value.start && m.end >= value.end;
                m.class == Class::Pan && covers && m.start >= span.start && m.end <= span.end
            });
            prop_assert!(covered, "{text:?}: {matches:?}");
        }

        /// An IBAN in any case, grouping, separators, digit script (and full-width letters) is found exactly.
        #[test]
        fn ibans_in_context_are_found_exactly(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let (written, canonical) = written_iban(&mut rng);
            prop_assert_eq!(iban::parse(&written).map(|p| p.canonical), Ok(canonical));
            let (text, span) = in_context(&written, &mut rng);
            let matches = find(&text, &ALL);
            prop_assert!(
                matches.contains(&Match { start: span.start, end: span.end, class: Class::Iban }),
                "{text:?}: {matches:?}"
            );
        }

        /// An international phone number with any single separators and digit script is found exactly.
        #[test]
        fn phones_in_context_are_found_exactly(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let written = written_phone(&mut rng);
            let digits: Vec<u8> = written.chars().filter_map(digit_value).collect();
            prop_assume!(!is_timestamp(&digits));
            prop_assert!(phone::parse(&written).is_ok_and(|p| phone::validate(&p.canonical).is_ok()));
            let (text, span) = in_context(&written, &mut rng);
            let matches = find(&text, &ALL);
            prop_assert!(
                matches.contains(&Match { start: span.start, end: span.end, class: Class::Phone }),
                "{text:?}: {matches:?}"
            );
        }

        /// An address, internationalised or not, is found exactly.
        #[test]
        fn emails_in_context_are_found_exactly(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let written = written_email(&mut rng);
            let (text, span) = in_context(&written, &mut rng);
            let matches = find(&text, &ALL);
            prop_assert!(
                matches.contains(&Match { start: span.start, end: span.end, class: Class::Email }),
                "{text:?}: {matches:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_matches_revalidate(
            text in prop_oneof![
                any::<String>(),
                "[0-9 \\-+@.a-zA-Z()/４１é٤١\u{A0}\u{2009}_,]{0,80}",
                concat!(
                    "(([0-9]{4}[ -]?){3,5}|DE89 3704 0044 0532 0130 00|a@b\\.io|jöran@münchen\\.de|",
                    "\\+1 202 555 0143|[ .\\-]|x|é|[٠-٩]{4}|12/26){0,12}",
                ),
            ]
        ) {
            let matches = find(&text, &ALL);
            let mut previous_end = 0;
            for m in &matches {
                prop_assert!(m.start >= previous_end && m.start < m.end);
                prop_assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
                prop_assert!(revalidates(&text[m.start..m.end], m.class), "{:?}", &text[m.start..m.end]);
                previous_end = m.end;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4))]

        /// 1 MiB of random digits (of random scripts) and separators is scanned in linear work.
        #[test]
        fn one_mebibyte_of_digits_and_separators_is_scanned_in_linear_work(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let zeros: Vec<char> = (0..3).map(|_| random_zero(&mut rng)).collect();
            let mut text = String::with_capacity(MIB + 8);
            while text.len() < MIB {
                if rng.gen_bool(0.75) {
                    let zero = zeros[rng.gen_range(0..zeros.len())];
                    text.push(char::from_u32(u32::from(zero) + rng.gen_range(0..10)).unwrap_or('0'));
                } else {
                    let gap = SEPARATORS[rng.gen_range(0..SEPARATORS.len())];
                    text.push_str(if rng.gen_bool(0.05) { "+" } else { gap });
                }
            }
            let work = work_for(&text);
            prop_assert!(work <= WORK_PER_BYTE * text.len(), "{} per byte", work / text.len());
            let matches = find(&text, &ALL);
            prop_assert!(matches.windows(2).all(|w| w[0].end <= w[1].start));
            prop_assert!(matches.iter().all(|m| revalidates(&text[m.start..m.end], m.class)));
        }
    }
}
