//! Email addresses: parsing, validation, masking and format-preserving email tokens.
//!
//! An address is `local@domain` where the local part is RFC 5322 dot-atom text, with RFC 6531's non-ASCII
//! characters (`jöran@example.org`; no quoted local parts or comments), and the domain is a host name with at
//! least one dot whose labels are LDH (letters, digits, hyphens: `xn--mnchen-3ya.de`) or internationalised
//! (letters, digits and combining marks of any script, and hyphens: `münchen.de`). Lengths are counted in UTF-8
//! bytes (64 for the local part, 63 per label, 253 for the domain, 254 in all). An email token is itself a valid
//! address, so [`parse`] and [`validate`] apply the same checks.
//!
//! The canonical form keeps the local part as written and lower-cases the domain (Unicode lower case, so
//! `MÜNCHEN.de` and `münchen.de` are one value). The domain is compared as written, without IDNA conversion or
//! Unicode normalisation: `jane@münchen.de` and its punycode spelling `jane@xn--mnchen-3ya.de` are two values
//! with a token each, and each token keeps its own spelling of the domain, so an application that only knows
//! ASCII addresses never receives a Unicode one.
//!
//! A token's local part has the input's punctuation and number of characters: every ASCII letter is replaced by
//! a random letter of the same case, every ASCII digit by a random digit, and every non-ASCII character by a
//! random ASCII letter (lower case unless it was an upper-case letter) or digit (if it was a digit), so a token's
//! local part is ASCII and never shows a letter of the value. From attempt 16 on, one random lower-case letter
//! is appended per 16 attempts (while the local part stays within 64 characters) to widen the room.
//! [`EmailFormat::KeepDomain`] keeps the domain; [`EmailFormat::ReservedDomain`] uses `example.com`, which
//! RFC 2606 reserves for documentation, so a token can never reach a real mailbox. A token is never the input
//! value itself.

use std::str::FromStr;

use rand::Rng;

use super::{Invalid, Layout, Parsed};

/// Longest local part (RFC 5321).
pub const MAX_LOCAL: usize = 64;
/// Longest domain (RFC 1035).
pub const MAX_DOMAIN: usize = 253;
/// Longest address (RFC 5321 path limit minus the angle brackets).
pub const MAX_ADDRESS: usize = 254;
/// Longest domain label (RFC 1035).
pub const MAX_LABEL: usize = 63;
/// The domain of [`EmailFormat::ReservedDomain`] tokens, reserved by RFC 2606.
pub const RESERVED_DOMAIN: &str = "example.com";

/// Attempts per extra local-part letter.
const ATTEMPTS_PER_WIDENING: u32 = 16;

/// How email tokens are drawn (config names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmailFormat {
    /// Random local part of the same shape, domain kept (`keep-domain`).
    #[default]
    KeepDomain,
    /// Random local part of the same shape at `example.com` (RFC 2606) (`reserved-domain`).
    ReservedDomain,
    /// Random local part of the same shape at a domain the operator owns (`relay`, with `relay_domain`): mail
    /// to a token reaches the operator, never a stranger (a relay there can hand it on to the customer).
    Relay(&'static str),
}

impl EmailFormat {
    /// The configuration name of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailFormat::KeepDomain => "keep-domain",
            EmailFormat::ReservedDomain => "reserved-domain",
            EmailFormat::Relay(_) => "relay",
        }
    }
}

impl FromStr for EmailFormat {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-domain" => Ok(EmailFormat::KeepDomain),
            "reserved-domain" => Ok(EmailFormat::ReservedDomain),
            "relay" => Err(Invalid("the relay format needs relay_domain = \"<a domain you own>\"")),
            _ => Err(Invalid("unknown email token format (expected relay, reserved-domain or keep-domain)")),
        }
    }
}

/// Reads an email address (a value or a token): trimmed, checked as described in the module documentation.
/// The canonical form is the local part as written, `@`, and the domain in lower case; the layout is identity.
pub fn parse(input: &str) -> Result<Parsed, Invalid> {
    let (local, domain) = check(input.trim())?;
    let domain = if domain.is_ascii() { domain.to_ascii_lowercase() } else { domain.to_lowercase() };
    let canonical = format!("{local}@{domain}");
    // Lower-casing can lengthen a non-ASCII domain (`İ` is two characters in lower case): check again.
    check(&canonical)?;
    Ok(Parsed { canonical, layout: Layout::Identity })
}

/// Checks a canonical address: the same checks as [`parse`] (an email token is itself a valid address), without
/// trimming.
pub fn validate(canonical: &str) -> Result<(), Invalid> {
    check(canonical).map(|_| ())
}

/// The address with the local part reduced to its first character and `***` (`j***@example.com`).
pub fn mask(canonical: &str) -> String {
    match canonical.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Draws a canonical email token for `canonical` (see the module documentation). `attempt` is the number of
/// candidates already refused because another value holds them. Never returns `canonical` itself, never loops
/// and never panics.
pub fn generate<R: Rng + ?Sized>(canonical: &str, format: EmailFormat, attempt: u32, rng: &mut R) -> String {
    let (local, domain) = canonical.rsplit_once('@').unwrap_or((canonical, RESERVED_DOMAIN));
    let domain = match format {
        EmailFormat::KeepDomain => domain,
        EmailFormat::ReservedDomain => RESERVED_DOMAIN,
        EmailFormat::Relay(relay) => relay,
    };
    let input: Vec<char> = local.chars().collect();
    let mut drawn: Vec<char> = input.iter().map(|&c| redraw(c, rng)).collect();

    let alphanumeric: Vec<usize> =
        (0..input.len()).filter(|&i| input[i].is_ascii_alphanumeric() || !input[i].is_ascii()).collect();
    if alphanumeric.is_empty() {
        // Nothing to redraw (`+`, `!#$`, …): turn one character other than a dot into a letter. A letter is
        // valid anywhere in dot-atom text, and the local part then differs from the input.
        let changeable: Vec<usize> = (0..input.len()).filter(|&i| input[i] != '.').collect();
        if changeable.is_empty() {
            drawn.push(random_lower(rng));
        } else {
            drawn[changeable[rng.gen_range(0..changeable.len())]] = random_lower(rng);
        }
    } else if drawn == input {
        // Drew the input back: move one letter or digit to another one of its class.
        let i = alphanumeric[rng.gen_range(0..alphanumeric.len())];
        drawn[i] = different(input[i], rng);
    }

    // Widen the room once the first candidates were taken, within the length limits.
    let wanted = usize::try_from(attempt / ATTEMPTS_PER_WIDENING).unwrap_or(usize::MAX);
    let room_local = MAX_LOCAL.saturating_sub(drawn.len());
    let room_total = MAX_ADDRESS.saturating_sub(drawn.len() + 1 + domain.len());
    for _ in 0..wanted.min(room_local).min(room_total) {
        drawn.push(random_lower(rng));
    }

    let mut token: String = drawn.into_iter().collect();
    token.push('@');
    token.push_str(domain);
    token
}

/// Splits and checks an address, returning the local part and the domain as written.
fn check(address: &str) -> Result<(&str, &str), Invalid> {
    if address.is_empty() {
        return Err(Invalid("email address is empty"));
    }
    if address.matches('@').count() != 1 {
        return Err(Invalid("email address must contain exactly one '@'"));
    }
    let (local, domain) = address.split_once('@').ok_or(Invalid("email address must contain exactly one '@'"))?;
    check_local(local)?;
    check_domain(domain)?;
    if address.len() > MAX_ADDRESS {
        return Err(Invalid("email address is longer than 254 characters"));
    }
    Ok((local, domain))
}

/// RFC 5322 `atext`, with RFC 6531's non-ASCII characters: the characters of dot-atom text besides the dot.
/// Spaces, controls and invisible format characters are never part of an address.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+/=?^_`{|}~-".contains(c)
        || (!c.is_ascii() && !c.is_whitespace() && !c.is_control() && !is_invisible(c))
}

/// Zero-width and other invisible format characters that must not hide inside an address (the joiners
/// U+200C/U+200D, which some scripts need, are allowed in a domain label).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}' | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
    )
}

/// A combining mark of the common blocks (diacritics written after their letter in decomposed text: `u` +
/// U+0308 for `ü`). Marks of the Indic and other scripts that are part of their letters are alphabetic already.
pub fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{300}'..='\u{36F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
            | '\u{3099}'
            | '\u{309A}'
    )
}

/// A character of an internationalised domain label besides the hyphen: a letter or digit of any script, a
/// combining mark, or a zero-width joiner or non-joiner.
pub fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || (!c.is_ascii() && (c.is_alphanumeric() || is_combining_mark(c) || matches!(c, '\u{200C}' | '\u{200D}')))
}

fn check_local(local: &str) -> Result<(), Invalid> {
    if local.is_empty() {
        return Err(Invalid("email address has an empty local part"));
    }
    if local.len() > MAX_LOCAL {
        return Err(Invalid("email local part is longer than 64 characters"));
    }
    if !local.chars().all(|c| c == '.' || is_atext(c)) {
        return Err(Invalid("email local part contains a character that is not allowed"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(Invalid("email local part has a misplaced dot"));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), Invalid> {
    if domain.is_empty() {
        return Err(Invalid("email address has an empty domain"));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(Invalid("email domain is longer than 253 characters"));
    }
    if !domain.contains('.') {
        return Err(Invalid("email domain must contain a dot"));
    }
    let mut labels = domain.split('.').peekable();
    while let Some(label) = labels.next() {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(Invalid("email domain labels must have 1 to 63 characters"));
        }
        if !label.chars().all(|c| is_domain_char(c) || c == '-') {
            return Err(Invalid("email domain may only contain letters, digits, hyphens and dots"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Invalid("email domain labels may not start or end with a hyphen"));
        }
        if labels.peek().is_none() && label.chars().all(char::is_numeric) {
            return Err(Invalid("email top-level domain may not be all digits"));
        }
    }
    Ok(())
}

/// A random replacement of the same class: letter of the same case, digit, or the ASCII punctuation itself. A
/// non-ASCII character becomes an ASCII letter (upper case for an upper-case letter) or, for a digit, an ASCII
/// digit.
fn redraw<R: Rng + ?Sized>(c: char, rng: &mut R) -> char {
    if c.is_ascii_lowercase() {
        random_lower(rng)
    } else if c.is_uppercase() {
        char::from(b'A' + rng.gen_range(0..26u8))
    } else if c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric()) {
        char::from(b'0' + rng.gen_range(0..10u8))
    } else if !c.is_ascii() {
        random_lower(rng)
    } else {
        c
    }
}

/// Another character of the class of `c` (letter of the same case, or digit), never `c` itself.
fn different<R: Rng + ?Sized>(c: char, rng: &mut R) -> char {
    let (base, count) = if c.is_ascii_lowercase() {
        (b'a', 26u8)
    } else if c.is_ascii_uppercase() {
        (b'A', 26u8)
    } else if c.is_ascii_digit() {
        (b'0', 10u8)
    } else {
        return random_lower(rng);
    };
    let offset = u8::try_from(c).map(|b| b - base).unwrap_or(0);
    char::from(base + (offset + rng.gen_range(1..count)) % count)
}

fn random_lower<R: Rng + ?Sized>(rng: &mut R) -> char {
    char::from(b'a' + rng.gen_range(0..26u8))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const ATEXT: &str = "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]";

    /// Valid addresses: dot-atom local parts (some without any letter or digit) and host names in any case.
    fn address() -> impl Strategy<Value = String> {
        let regex = |pattern: &str| proptest::string::string_regex(pattern).unwrap();
        let local = prop_oneof![
            4 => regex(&format!("{ATEXT}{{1,20}}(\\.{ATEXT}{{1,10}}){{0,3}}")),
            1 => regex("[a-z]{1,2}"),
            1 => regex("[!#$%&'*+/=?^_`{|}~-]{1,4}(\\.[+_-]{1,3}){0,2}"),
            1 => regex("[a-z0-9]{64}"),
        ];
        let domain = "([a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?\\.){1,3}[a-zA-Z][a-zA-Z0-9]{1,5}";
        (local, domain).prop_map(|(local, domain)| format!("{local}@{domain}"))
    }

    fn format_strategy() -> impl Strategy<Value = EmailFormat> {
        prop_oneof![
            Just(EmailFormat::KeepDomain),
            Just(EmailFormat::ReservedDomain),
            Just(EmailFormat::Relay("customers.shop.example"))
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn tokens_keep_their_promised_shape(
            written in address(),
            format in format_strategy(),
            attempt in prop_oneof![4 => 0u32..16, 1 => 0u32..2000],
            seed in any::<u64>(),
        ) {
            let parsed = parse(&format!(" {written}\t")).unwrap();
            let canonical = parsed.canonical.clone();
            prop_assert!(validate(&canonical).is_ok());
            let (local, domain) = canonical.split_once('@').unwrap();
            prop_assert_eq!(domain, domain.to_ascii_lowercase());
            prop_assert_eq!(local, written.split_once('@').unwrap().0);

            let token = generate(&canonical, format, attempt, &mut StdRng::seed_from_u64(seed));
            prop_assert_ne!(&token, &canonical);
            prop_assert!(validate(&token).is_ok(), "token refused");
            let reparsed = parse(&parsed.layout.render(&token)).unwrap();
            prop_assert_eq!(&reparsed.canonical, &token);

            let (token_local, token_domain) = token.split_once('@').unwrap();
            match format {
                EmailFormat::KeepDomain => prop_assert_eq!(token_domain, domain),
                EmailFormat::ReservedDomain => prop_assert_eq!(token_domain, RESERVED_DOMAIN),
                EmailFormat::Relay(relay) => prop_assert_eq!(token_domain, relay),
            }
            let widened = (attempt / 16) as usize;
            prop_assert!(token_local.len() >= local.len());
            prop_assert!(token_local.len() <= (local.len() + widened).min(MAX_LOCAL));
            if local.chars().any(|c| c.is_ascii_alphanumeric()) {
                for (a, b) in local.chars().zip(token_local.chars()) {
                    prop_assert_eq!(a.is_ascii_lowercase(), b.is_ascii_lowercase());
                    prop_assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
                    prop_assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
                    if !a.is_ascii_alphanumeric() {
                        prop_assert_eq!(a, b);
                    }
                }
            }
            prop_assert!(token_local[local.len()..].chars().all(|c| c.is_ascii_lowercase()));
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,40}", local in "[a-z.@]{0,5}") {
            for candidate in [input.clone(), format!("{local}@{input}"), format!("{input}@x.org")] {
                if let Ok(parsed) = parse(&candidate) {
                    prop_assert!(validate(&parsed.canonical).is_ok());
                }
            }
        }
    }

    #[test]
    fn parse_lowercases_the_domain_only() {
        let parsed = parse("  John.Doe+tag@Mail.Example.COM ").unwrap();
        assert_eq!(parsed.canonical, "John.Doe+tag@mail.example.com");
        assert_eq!(parsed.layout, Layout::Identity);
    }

    #[test]
    fn invalid_inputs_are_refused_without_the_value() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("jo@{}.com", "a".repeat(64));
        let long_total = format!(
            "{}@{}.{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60),
            "e".repeat(10)
        );
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("john@doe@example.com", "exactly one"),
            ("john.example.com", "exactly one"),
            ("@example.com", "empty local"),
            ("john@", "empty domain"),
            (".john@example.com", "dot"),
            ("john.@example.com", "dot"),
            ("jo..hn@example.com", "dot"),
            ("jo hn@example.com", "not allowed"),
            ("jo\u{A0}hn@example.com", "not allowed"),
            ("jo\u{200B}hn@example.com", "not allowed"),
            ("john@exa mple.com", "only contain"),
            ("john@exa\u{200B}mple.com", "only contain"),
            ("john@example.١٢", "all digits"),
            ("\"john\"@example.com", "not allowed"),
            ("john@localhost", "must contain a dot"),
            ("john@example..com", "1 to 63"),
            ("john@example.com.", "1 to 63"),
            ("john@-example.com", "hyphen"),
            ("john@example-.com", "hyphen"),
            ("john@exa_mple.com", "only contain"),
            ("john@10.0.0.1", "all digits"),
            (long_local.as_str(), "64"),
            (long_label.as_str(), "1 to 63"),
            (long_total.as_str(), "254"),
        ];
        for (input, expected) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.0.contains(expected), "{input:?}: {}", err.0);
            assert!(!err.0.contains("john") && !err.0.contains("jo"), "{input:?}");
            assert!(validate(input).is_err());
        }
        assert!(validate(" john@example.com").is_err());
    }

    #[test]
    fn internationalised_addresses() {
        for (written, canonical) in [
            ("jöran@example.org", "jöran@example.org"),
            ("Jöran@Example.ORG", "Jöran@example.org"),
            ("jane@münchen.de", "jane@münchen.de"),
            ("jane@MÜNCHEN.De", "jane@münchen.de"),
            ("jane@xn--mnchen-3ya.de", "jane@xn--mnchen-3ya.de"),
            ("jane@XN--MNCHEN-3YA.DE", "jane@xn--mnchen-3ya.de"),
            ("用户@例子.广告", "用户@例子.广告"),
            ("иван@пример.рф", "иван@пример.рф"),
            ("अजय@डाटामेल.भारत", "अजय@डाटामेल.भारत"),
            ("ju\u{308}rgen@mu\u{308}nchen.de", "ju\u{308}rgen@mu\u{308}nchen.de"),
        ] {
            let parsed = parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(parsed.canonical, canonical);
            assert!(validate(&parsed.canonical).is_ok());
            assert_eq!(parse(&parsed.canonical).unwrap().canonical, canonical, "canonical is a fixed point");
        }
        // The punycode and the Unicode spelling of a domain are two values (see the module documentation).
        assert_ne!(parse("jane@münchen.de").unwrap().canonical, parse("jane@xn--mnchen-3ya.de").unwrap().canonical);

        let mut rng = StdRng::seed_from_u64(4);
        for canonical in ["jöran@example.org", "用户@例子.广告", "ÖZ.ß@münchen.de", "५@x.org"] {
            for format in [EmailFormat::KeepDomain, EmailFormat::ReservedDomain] {
                for attempt in [0, 20] {
                    let token = generate(canonical, format, attempt, &mut rng);
                    assert_ne!(token, canonical);
                    assert!(validate(&token).is_ok(), "{token}");
                    let (local, domain) = token.split_once('@').unwrap();
                    assert!(local.is_ascii(), "{token}: a token's local part is ASCII");
                    let (value_local, value_domain) = canonical.split_once('@').unwrap();
                    assert!(local.chars().count() >= value_local.chars().count());
                    if format == EmailFormat::KeepDomain {
                        assert_eq!(domain, value_domain);
                    }
                }
            }
        }
        let token = generate("ÖZ.ß@münchen.de", EmailFormat::KeepDomain, 0, &mut rng);
        let local: Vec<char> = token.split_once('@').unwrap().0.chars().collect();
        assert!(local[0].is_ascii_uppercase() && local[1].is_ascii_uppercase() && local[2] == '.');
        assert!(local[3].is_ascii_lowercase());
        assert!(generate("५@x.org", EmailFormat::KeepDomain, 0, &mut rng).starts_with(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn punctuation_only_local_parts_still_change() {
        let mut rng = StdRng::seed_from_u64(1);
        for canonical in ["+@example.com", "!#$@x.org", "-.-@x.org", "a@example.com", "7@x.org"] {
            for format in [EmailFormat::KeepDomain, EmailFormat::ReservedDomain] {
                for attempt in 0..40 {
                    let token = generate(canonical, format, attempt, &mut rng);
                    assert_ne!(token, canonical);
                    assert!(validate(&token).is_ok(), "{token}");
                }
            }
        }
    }

    #[test]
    fn widening_stays_within_limits() {
        let mut rng = StdRng::seed_from_u64(2);
        let full = format!("{}@example.com", "a".repeat(64));
        let token = generate(&full, EmailFormat::KeepDomain, 10_000, &mut rng);
        assert_eq!(token.len(), full.len());
        assert!(validate(&token).is_ok());
        let longest_domain = format!("{}.{}.{}.{}", "b".repeat(63), "c".repeat(63), "d".repeat(63), "e".repeat(59));
        let tight = format!("ab@{longest_domain}");
        assert!(validate(&tight).is_ok());
        let token = generate(&tight, EmailFormat::KeepDomain, u32::MAX, &mut rng);
        assert!(validate(&token).is_ok());
        assert_eq!(token.len(), MAX_ADDRESS);
        let token = generate("ab@x.org", EmailFormat::KeepDomain, 48, &mut rng);
        assert_eq!(token.len(), "ab@x.org".len() + 3);
    }

    #[test]
    fn generate_survives_malformed_input() {
        let mut rng = StdRng::seed_from_u64(3);
        for input in ["", "@", "nodomain", "a@b@c", "..@x"] {
            let token = generate(input, EmailFormat::KeepDomain, 0, &mut rng);
            assert_ne!(token, input);
        }
    }

    #[test]
    fn formats_by_name_and_mask() {
        for format in [EmailFormat::KeepDomain, EmailFormat::ReservedDomain] {
            assert_eq!(format.as_str().parse::<EmailFormat>(), Ok(format));
        }
        assert_eq!(EmailFormat::default(), EmailFormat::KeepDomain);
        assert!("example".parse::<EmailFormat>().is_err());
        assert_eq!(mask("john.doe@example.com"), "j***@example.com");
        assert_eq!(mask("nodomain"), "***");
    }
}
