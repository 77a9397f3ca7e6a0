//! Finds card numbers, IBANs, email addresses and phone numbers in free text; every candidate is confirmed by its class's validator (Luhn, ISO 13616, address syntax, E.164 shape), never by shape alone.
//!
//! One hand-written pass per class, each bounded per starting point, so a scan is linear in the text (no
//! backtracking). Byte offsets always fall on character boundaries. The shapes looked for:
//!
//! * card: a run of digit groups joined by single spaces or dashes, not touching a letter or digit; ASCII and
//!   full-width digits (U+FF10–U+FF19). The whole run is the candidate; failing that, the run without one group
//!   at its end, at its start, or both (`4111 1111 1111 1111 12/26`); failing that, a span grouped like a
//!   printed card (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4). Never any other part of a run: a 20-digit order number
//!   hides no 16-digit card. The groups left over beside a match are searched the same way.
//! * IBAN: two letters of one case, two digits, then letters and digits, compact or in groups of four separated
//!   by single spaces (the longest grouping that validates wins).
//! * email: the address around each `@`; in free text the local part is limited to letters, digits and
//!   `._%+-` (the other RFC 5322 characters, such as `=` or `'`, would swallow the text before it).
//! * phone: international numbers only: `+`, then 7 to 15 digits with single ` -./` separators and
//!   parentheses; every prefix ending at a digit group that validates is a candidate (the longest that clashes
//!   with nothing wins).
//!
//! "Touching" means a letter or digit of a script that separates words with spaces; CJK, kana and hangul text
//! may run into a value (`カード４１１１…です`).
//!
//! Overlapping candidates of different classes: the longest wins, equal lengths go by IBAN, card, phone, email.

use std::cmp::Reverse;
use std::ops::Range;

use crate::domain::Class;
use crate::token::{email, iban, pan, phone};

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
    // body are): one counting pass, where a full-width digit counts by its lead byte 0xEF.
    let (ascii_digits, wide) =
        text.bytes().fold((0, 0), |(a, w), c| (a + usize::from(c.is_ascii_digit()), w + usize::from(c == 0xEF)));
    if classes.contains(&Class::Iban) && text.len() >= IBAN_MIN_CHARS && ascii_digits >= 2 {
        scan_iban(text, &mut candidates);
    }
    if classes.contains(&Class::Pan) && ascii_digits + wide >= pan::MIN_DIGITS {
        scan_pan(text, &mut candidates);
    }
    if classes.contains(&Class::Phone) {
        scan_phone(text, &mut candidates);
    }
    if classes.contains(&Class::Email) {
        scan_email(text, &mut candidates);
    }
    resolve(candidates)
}

/// The shortest IBAN (Norway's) has 15 characters.
const IBAN_MIN_CHARS: usize = 15;

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
    candidates.sort_by_key(|m| (Reverse(m.end - m.start), rank(m.class), m.start));
    let mut kept: Vec<Match> = Vec::with_capacity(candidates.len());
    for m in candidates {
        let i = kept.partition_point(|k| k.start < m.start);
        let before = i.checked_sub(1).and_then(|p| kept.get(p)).is_some_and(|k| k.end > m.start);
        let after = kept.get(i).is_some_and(|k| k.start < m.end);
        if !before && !after {
            kept.insert(i, m);
        }
    }
    kept
}

fn char_before(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// A letter or digit that a value may not touch. Scripts written without spaces between words (CJK, kana,
/// hangul: U+2E80 on, except the full-width Latin letters and digits) may touch values.
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() && (u32::from(c) < 0x2E80 || ('\u{FF10}'..='\u{FF5A}').contains(&c)))
}

/// The value and UTF-8 length of the ASCII or full-width digit starting at byte `i`. Neither form starts with a
/// continuation byte, so a hit is always on a character boundary.
fn digit_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
    match b.get(i..) {
        Some([d @ b'0'..=b'9', ..]) => Some((d - b'0', 1)),
        Some([0xEF, 0xBC, d @ 0x90..=0x99, ..]) => Some((d - 0x90, 3)),
        _ => None,
    }
}

/// A run of digits: its byte range and its digits' range in the shared digit buffer.
struct Group {
    bytes: Range<usize>,
    digits: Range<usize>,
}

fn scan_pan(text: &str, out: &mut Vec<Match>) {
    let b = text.as_bytes();
    let mut digits: Vec<u8> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if digit_at(b, i).is_none() {
            i += 1;
            continue;
        }
        let start_ok = !is_word(char_before(text, i));
        digits.clear();
        groups.clear();
        let mut j = i;
        loop {
            let (start, first_digit) = (j, digits.len());
            while let Some((d, len)) = digit_at(b, j) {
                digits.push(d);
                j += len;
            }
            groups.push(Group { bytes: start..j, digits: first_digit..digits.len() });
            let joined = matches!(b.get(j), Some(b' ' | b'-')) && digit_at(b, j + 1).is_some();
            if !joined {
                break;
            }
            j += 1;
        }
        let end_ok = !is_word(char_at(text, j));
        let lo = usize::from(!start_ok);
        let hi = groups.len() - usize::from(!end_ok);
        cards_in_groups(&groups, &digits, lo, hi, out);
        i = j;
    }
}

/// How cards are printed: a span of a longer run with exactly these group lengths is a candidate too.
const CARD_LAYOUTS: [&[usize]; 4] = [&[4, 4, 4, 4], &[4, 4, 4, 4, 3], &[4, 6, 5], &[4, 6, 4]];

/// The cards in `groups[lo..hi]`: all of them, else without the last, the first or both, else the first span
/// laid out like a printed card; then the same for the groups left over on either side.
fn cards_in_groups(groups: &[Group], digits: &[u8], lo: usize, hi: usize, out: &mut Vec<Match>) {
    let mut todo = vec![(lo, hi)];
    while let Some((lo, hi)) = todo.pop() {
        if lo >= hi {
            continue;
        }
        let trims = [(lo, hi), (lo, hi - 1), (lo + 1, hi), (lo + 1, hi - 1)];
        let laid_out = |a: usize| {
            CARD_LAYOUTS.iter().find_map(|layout| {
                let z = a + layout.len();
                let fits = z <= hi
                    && groups
                        .get(a..z)
                        .is_some_and(|gs| gs.iter().zip(layout.iter()).all(|(g, &n)| g.digits.len() == n));
                (fits && is_card(groups, digits, a, z)).then_some((a, z))
            })
        };
        let span = trims
            .into_iter()
            .find(|&(a, z)| a < z && is_card(groups, digits, a, z))
            .or_else(|| (lo..hi).find_map(laid_out));
        if let Some((a, z)) = span {
            push_span(groups, a, z, out);
            todo.push((z, hi));
            todo.push((lo, a));
        }
    }
}

fn is_card(groups: &[Group], digits: &[u8], a: usize, z: usize) -> bool {
    let (Some(first), Some(last)) = (groups.get(a), z.checked_sub(1).and_then(|l| groups.get(l))) else {
        return false;
    };
    let Some(ds) = digits.get(first.digits.start..last.digits.end) else { return false };
    if !(pan::MIN_DIGITS..=pan::MAX_DIGITS).contains(&ds.len()) {
        return false;
    }
    let canonical: String = ds.iter().map(|d| char::from(b'0' + d)).collect();
    pan::validate(&canonical).is_ok()
}

fn push_span(groups: &[Group], a: usize, z: usize, out: &mut Vec<Match>) {
    if let (Some(first), Some(last)) = (groups.get(a), z.checked_sub(1).and_then(|l| groups.get(l))) {
        out.push(Match { start: first.bytes.start, end: last.bytes.end, class: Class::Pan });
    }
}

/// Longest IBAN: 34 characters, so at most nine groups of four.
const IBAN_MAX_GROUPS: usize = 9;

fn scan_iban(text: &str, out: &mut Vec<Match>) {
    let b = text.as_bytes();
    let alnum_end = |mut j: usize| {
        while b.get(j).is_some_and(u8::is_ascii_alphanumeric) {
            j += 1;
        }
        j
    };
    let mut i = 0;
    while i < b.len() {
        let head = match b.get(i..i + 4) {
            Some(&[c1, c2, d1, d2]) => {
                let same_case = (c1.is_ascii_uppercase() && c2.is_ascii_uppercase())
                    || (c1.is_ascii_lowercase() && c2.is_ascii_lowercase());
                same_case && d1.is_ascii_digit() && d2.is_ascii_digit()
            }
            _ => false,
        };
        if !head || is_word(char_before(text, i)) {
            i += 1;
            continue;
        }
        let run_end = alnum_end(i);
        if is_word(char_at(text, run_end)) {
            i = run_end;
            continue;
        }
        // Candidate ends, shortest first: the compact run, or each further group of a grouped IBAN.
        let mut ends = vec![run_end];
        if run_end - i == 4 {
            let mut end = run_end;
            while ends.len() < IBAN_MAX_GROUPS && b.get(end) == Some(&b' ') {
                let next = alnum_end(end + 1);
                let len = next - (end + 1);
                if len == 0 || len > 4 || is_word(char_at(text, next)) {
                    break;
                }
                ends.push(next);
                end = next;
                if len < 4 {
                    break;
                }
            }
        }
        let found = ends.iter().rev().copied().find(|&end| {
            let canonical: String = b
                .get(i..end)
                .unwrap_or_default()
                .iter()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| char::from(c.to_ascii_uppercase()))
                .collect();
            canonical.len() >= IBAN_MIN_CHARS && iban::validate(&canonical).is_ok()
        });
        match found {
            Some(end) => {
                out.push(Match { start: i, end, class: Class::Iban });
                i = end;
            }
            None => i = run_end,
        }
    }
}

fn scan_phone(text: &str, out: &mut Vec<Match>) {
    let b = text.as_bytes();
    for (plus, _) in b.iter().enumerate().filter(|(_, &c)| c == b'+') {
        if is_word(char_before(text, plus)) {
            continue;
        }
        // Ends of digit groups (outside parentheses) with the digit count so far.
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        let (mut k, mut count, mut in_parens, mut in_parens_digits, mut after_sep) = (plus + 1, 0, false, 0, false);
        while let Some(&c) = b.get(k) {
            match c {
                b'0'..=b'9' => {
                    count += 1;
                    in_parens_digits += 1;
                    after_sep = false;
                    k += 1;
                    if !in_parens && !b.get(k).is_some_and(u8::is_ascii_digit) {
                        cuts.push((k, count));
                    }
                }
                b' ' | b'-' | b'.' | b'/' if !in_parens && !after_sep && k > plus + 1 => {
                    after_sep = true;
                    k += 1;
                }
                b'(' if !in_parens => {
                    in_parens = true;
                    in_parens_digits = 0;
                    after_sep = false;
                    k += 1;
                }
                b')' if in_parens && in_parens_digits > 0 => {
                    in_parens = false;
                    after_sep = false;
                    k += 1;
                    cuts.push((k, count));
                }
                _ => break,
            }
            if count > phone::MAX_DIGITS {
                break;
            }
        }
        if cuts.last().is_some_and(|&(end, _)| end == k) && is_word(char_at(text, k)) {
            cuts.pop();
        }
        // Every valid prefix is a candidate: the longest one that clashes with nothing else is kept.
        for &(end, count) in &cuts {
            let valid = (phone::MIN_VALID_DIGITS..=phone::MAX_DIGITS).contains(&count)
                && text
                    .get(plus..end)
                    .and_then(|s| phone::parse(s).ok())
                    .is_some_and(|p| phone::validate(&p.canonical).is_ok());
            if valid {
                out.push(Match { start: plus, end, class: Class::Phone });
            }
        }
    }
}

/// Local-part characters recognised in free text (a conservative subset of RFC 5322 `atext`).
fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

fn scan_email(text: &str, out: &mut Vec<Match>) {
    let b = text.as_bytes();
    for (at, _) in b.iter().enumerate().filter(|(_, &c)| c == b'@') {
        let mut start = at;
        while start > 0 && b.get(start - 1).copied().is_some_and(is_local) && at - start <= email::MAX_LOCAL {
            start -= 1;
        }
        let mut end = at + 1;
        while b.get(end).copied().is_some_and(is_domain) && end - at <= email::MAX_DOMAIN + 1 {
            end += 1;
        }
        let too_long = at - start > email::MAX_LOCAL || end - at > email::MAX_DOMAIN + 1;
        while b.get(start) == Some(&b'.') && start < at {
            start += 1;
        }
        while end > at + 1 && matches!(b.get(end - 1), Some(b'.' | b'-')) {
            end -= 1;
        }
        let touches = |c: Option<char>| c == Some('@') || is_word(c);
        if too_long || touches(char_before(text, start)) || touches(char_at(text, end)) {
            continue;
        }
        if text.get(start..end).is_some_and(|s| email::validate(s).is_ok()) {
            out.push(Match { start, end, class: Class::Email });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Class; 4] = [Class::Pan, Class::Iban, Class::Email, Class::Phone];

    fn found(text: &str) -> Vec<(&str, Class)> {
        find(text, &ALL).iter().map(|m| (&text[m.start..m.end], m.class)).collect()
    }

    /// Whether a matched substring is, on its own, a valid value of its class.
    fn revalidates(s: &str, class: Class) -> bool {
        match class {
            Class::Pan => {
                let digits: Option<String> = s
                    .chars()
                    .filter(|c| *c != ' ' && *c != '-')
                    .map(|c| match c {
                        '0'..='9' => Some(c),
                        '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + 0x30),
                        _ => None,
                    })
                    .collect();
                digits.is_some_and(|d| pan::validate(&d).is_ok())
            }
            Class::Iban => iban::parse(s).is_ok_and(|p| iban::validate(&p.canonical).is_ok()),
            Class::Email => email::validate(s).is_ok(),
            Class::Phone => s.starts_with('+') && phone::parse(s).is_ok_and(|p| phone::validate(&p.canonical).is_ok()),
            _ => false,
        }
    }

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
        assert_eq!(found("Karte４１１１１１１１１１１１１１１１"), []); // Latin letters may not
        let m = find(wide, &[Class::Pan]);
        assert_eq!(m.len(), 1);
        assert_eq!(&wide[m[0].start..m[0].end], "４１１１１１１１１１１１１１１１");
        assert_eq!(found("4111 1111 1111 1111 12/26"), [("4111 1111 1111 1111", Class::Pan)]);
        assert_eq!(found("ref 12 4111111111111111"), [("4111111111111111", Class::Pan)]);
    }

    #[test]
    fn negatives() {
        for text in [
            "card 4111111111111112 is not valid",      // Luhn fails
            "order 41111111111111110000 shipped",      // 20 digits holding a valid 16-digit prefix
            "order 1234567890123456789012 shipped",    // long run
            "x4111111111111111 and 4111111111111111y", // touching letters
            "on 2024-01-15 at 12:30, invoice 2024-0001",
            "IBAN DE88370400440532013000 (bad check digits)",
            "IBAN XX89370400440532013000",
            "write to a@b or @example.com or bob@ or a@b.c@d",
            "call 030 1234567 or 0049 30 1234567",
            "1+49301234567 and +12",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_matches_revalidate(
            text in prop_oneof![
                any::<String>(),
                "[0-9 \\-+@.a-zA-Z()/４１é]{0,80}",
                "(([0-9]{4}[ -]?){3,5}|DE89 3704 0044 0532 0130 00|a@b\\.io|\\+1 202 555 0143|[ .\\-]|x|é){0,12}",
            ]
        ) {
            let matches = find(&text, &ALL);
            let mut previous_end = 0;
            for m in &matches {
                prop_assert!(m.start >= previous_end && m.start < m.end);
                prop_assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
                prop_assert!(revalidates(&text[m.start..m.end], m.class));
                previous_end = m.end;
            }
        }
    }
}
