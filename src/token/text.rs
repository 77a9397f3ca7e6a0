//! Names, addresses and free text: parsing, masking and shape-keeping text tokens.
//!
//! The canonical form is the input without outer whitespace (inner text untouched); the layout is identity.
//! A token keeps the shape position by position: every letter (ASCII or any Unicode letter) becomes a random
//! ASCII letter of the same case (lower case for letters without case), every digit (any Unicode numeric
//! character) a random ASCII digit, and everything else (spaces, punctuation, symbols) is kept. A token therefore
//! has the input's character count, and is never the input value itself. Only texts with at least one letter or
//! digit can be tokenised ([`validate`] refuses the others).

use std::str::FromStr;

use rand::Rng;

use crate::domain::Class;

use super::{Invalid, Layout, Parsed};

/// Which kind of text a value is; each has its own length limit (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A person's name (at most 256 characters, at least one letter).
    Name,
    /// A postal address (at most 512 characters).
    Address,
    /// Free text (at most 4096 characters).
    Text,
}

impl TextKind {
    /// Most characters a value of this kind may have.
    pub fn max_len(self) -> usize {
        match self {
            TextKind::Name => 256,
            TextKind::Address => 512,
            TextKind::Text => 4096,
        }
    }

    /// The class name of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            TextKind::Name => "name",
            TextKind::Address => "address",
            TextKind::Text => "text",
        }
    }
}

impl FromStr for TextKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "name" => Ok(TextKind::Name),
            "address" => Ok(TextKind::Address),
            "text" => Ok(TextKind::Text),
            _ => Err(Invalid("unknown text kind (expected name, address or text)")),
        }
    }
}

impl TextKind {
    /// The kind of a text class; `None` for the others.
    pub fn of(class: Class) -> Option<TextKind> {
        match class {
            Class::Name => Some(TextKind::Name),
            Class::Address => Some(TextKind::Address),
            Class::Text => Some(TextKind::Text),
            Class::Pan | Class::Iban | Class::Email | Class::Phone | Class::Cvc => None,
        }
    }

    /// The class of this kind.
    pub fn class(self) -> Class {
        match self {
            TextKind::Name => Class::Name,
            TextKind::Address => Class::Address,
            TextKind::Text => Class::Text,
        }
    }

    /// The opening and closing markers of this kind's `tagged` tokens.
    pub fn tags(self) -> (&'static str, &'static str) {
        match self {
            TextKind::Name => ("Zq", "qZ"),
            TextKind::Address => ("Zx", "xZ"),
            TextKind::Text => ("Zj", "jZ"),
        }
    }

    const ALL: [TextKind; 3] = [TextKind::Name, TextKind::Address, TextKind::Text];
}

/// Characters both markers of a tagged token add to its body.
pub const TAGS_LEN: usize = 4;

/// How text tokens are drawn (config names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextFormat {
    /// Same character classes, case, spaces and punctuation (`keep-shape`).
    #[default]
    KeepShape,
    /// A keep-shape body between two markers of the kind, so tokens can be found in rendered text (`tagged`).
    Tagged,
}

impl TextFormat {
    /// The configuration name of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            TextFormat::KeepShape => "keep-shape",
            TextFormat::Tagged => "tagged",
        }
    }
}

impl FromStr for TextFormat {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-shape" => Ok(TextFormat::KeepShape),
            "tagged" => Ok(TextFormat::Tagged),
            _ => Err(Invalid("unknown text token format (expected keep-shape or tagged)")),
        }
    }
}

/// Reads a text of `kind` (a value or a token): outer whitespace trimmed, not empty, no control characters,
/// within the kind's length; a name needs at least one letter.
pub fn parse(kind: TextKind, input: &str) -> Result<Parsed, Invalid> {
    let trimmed = input.trim();
    check(kind, trimmed)?;
    Ok(Parsed { canonical: trimmed.to_owned(), layout: Layout::Identity })
}

/// Checks a canonical text of `kind`: the checks of [`parse`] without trimming (outer whitespace is refused),
/// and at least one letter or digit, so that a token can differ from it.
pub fn validate(kind: TextKind, canonical: &str) -> Result<(), Invalid> {
    if canonical.trim().len() != canonical.len() {
        return Err(Invalid("text has leading or trailing whitespace"));
    }
    check(kind, canonical)?;
    if !canonical.chars().any(|c| c.is_alphabetic() || c.is_numeric()) {
        return Err(Invalid("text has no letter or digit to tokenise"));
    }
    Ok(())
}

/// The text with its first character kept, every other letter or digit `*`, spaces and punctuation kept
/// (`J*** S****`).
pub fn mask(canonical: &str) -> String {
    canonical
        .chars()
        .enumerate()
        .map(|(i, c)| if i > 0 && (c.is_alphabetic() || c.is_numeric()) { '*' } else { c })
        .collect()
}

/// Draws a canonical text token for `canonical` (see the module documentation). Text tokens keep their shape,
/// so `attempt` does not change it. Never returns `canonical` itself, never loops and never panics.
pub fn generate<R: Rng + ?Sized>(
    kind: TextKind,
    canonical: &str,
    format: TextFormat,
    attempt: u32,
    rng: &mut R,
) -> String {
    let _ = attempt;
    match format {
        TextFormat::KeepShape => keep_shape(canonical, rng),
        TextFormat::Tagged => {
            let (open, close) = kind.tags();
            // A body holding a marker of its kind would cut the token short when found in text: draw again (a
            // marker pair turns up once in ~700 upper/lower pairs); past that, the markers' lower-case letter is
            // swapped for its neighbour, which leaves no marker.
            let mut body = keep_shape(canonical, rng);
            for _ in 0..16 {
                if !body.contains(open) && !body.contains(close) {
                    break;
                }
                body = keep_shape(canonical, rng);
            }
            if body.contains(open) || body.contains(close) {
                let letter = open.chars().nth(1).unwrap_or('q');
                body = body.replace(letter, if letter == 'a' { "b" } else { "a" });
            }
            format!("{open}{body}{close}")
        }
    }
}

/// The shape-kept body of a token (the whole token in `keep-shape`).
fn keep_shape<R: Rng + ?Sized>(canonical: &str, rng: &mut R) -> String {
    let input: Vec<char> = canonical.chars().collect();
    let mut drawn: Vec<char> = input.iter().map(|&c| redraw(c, rng)).collect();
    if drawn == input {
        let alphanumeric: Vec<usize> =
            (0..input.len()).filter(|&i| input[i].is_alphabetic() || input[i].is_numeric()).collect();
        if alphanumeric.is_empty() {
            // Never expected (validate refuses it): add a letter rather than hand the value back.
            drawn.push(random_letter(b'a', rng));
        } else {
            let i = alphanumeric[rng.gen_range(0..alphanumeric.len())];
            drawn[i] = different(input[i], rng);
        }
    }
    drawn.into_iter().collect()
}

/// A tagged token found in text: its kind and byte range (markers included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub kind: TextKind,
    pub range: std::ops::Range<usize>,
}

/// Tagged tokens of `kinds` in `text`, in order, not overlapping: an opening marker at the start of a word,
/// the nearest closing marker of its kind after it that ends a word, a body without outer whitespace or an
/// opening marker, of at least one letter or digit, within the kind's length and without control characters
/// other than the kind allows. Where one would
/// overlap an earlier one, the earlier wins.
pub fn find_tagged(text: &str, kinds: &[TextKind]) -> Vec<Tagged> {
    let mut found: Vec<Tagged> = Vec::new();
    let bytes = text.as_bytes();
    let word_char = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b >= 0x80);
    for kind in TextKind::ALL.into_iter().filter(|k| kinds.contains(k)) {
        let (open, close) = kind.tags();
        let mut from = 0;
        while let Some(at) = text.get(from..).and_then(|t| t.find(open)).map(|i| i + from) {
            from = at + open.len();
            if at > 0 && word_char(at - 1) {
                continue;
            }
            let body_start = at + open.len();
            // The body's longest form, in bytes: every character may take four.
            let limit = text.len().min(body_start + kind.max_len() * 4 + close.len());
            let Some(end) = text.get(body_start..limit).and_then(|t| t.find(close)).map(|i| body_start + i) else {
                continue;
            };
            let stop = end + close.len();
            if word_char(stop) {
                continue;
            }
            let body = &text[body_start..end];
            // A drawn body holds no marker: one that does began at a stray opening marker.
            if body.trim().len() != body.len()
                || body.contains(open)
                || check(kind, body).is_err()
                || !body.chars().any(char::is_alphanumeric)
            {
                continue;
            }
            found.push(Tagged { kind, range: at..stop });
            from = stop;
        }
    }
    found.sort_by_key(|t| t.range.start);
    let mut kept: Vec<Tagged> = Vec::with_capacity(found.len());
    for t in found {
        if kept.last().is_none_or(|k| k.range.end <= t.range.start) {
            kept.push(t);
        }
    }
    kept
}

/// Character count, control characters, emptiness, and a letter for names.
fn check(kind: TextKind, text: &str) -> Result<(), Invalid> {
    if text.trim().is_empty() {
        return Err(Invalid("text is empty"));
    }
    // Addresses and free text may span lines; names may not. Other control characters never pass.
    let allowed = |c: char| kind != TextKind::Name && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(Invalid("text contains control characters"));
    }
    let (open, close) = kind.tags();
    let tagged = text.starts_with(open) && text.ends_with(close);
    if text.chars().count() > kind.max_len() + if tagged { TAGS_LEN } else { 0 } {
        return Err(match kind {
            TextKind::Name => Invalid("name is longer than 256 characters"),
            TextKind::Address => Invalid("address is longer than 512 characters"),
            TextKind::Text => Invalid("text is longer than 4096 characters"),
        });
    }
    if kind == TextKind::Name && !text.chars().any(char::is_alphabetic) {
        return Err(Invalid("name contains no letter"));
    }
    Ok(())
}

/// A random replacement of the class of `c`: ASCII letter of the same case, ASCII digit, or `c` itself.
fn redraw<R: Rng + ?Sized>(c: char, rng: &mut R) -> char {
    if c.is_alphabetic() {
        random_letter(case_base(c), rng)
    } else if c.is_numeric() {
        char::from(b'0' + rng.gen_range(0..10u8))
    } else {
        c
    }
}

/// Another ASCII character of the class of the ASCII letter or digit `c`, never `c` itself.
fn different<R: Rng + ?Sized>(c: char, rng: &mut R) -> char {
    let (base, count) = if c.is_alphabetic() { (case_base(c), 26u8) } else { (b'0', 10u8) };
    match u8::try_from(c) {
        Ok(b) if b >= base && b < base + count => char::from(base + (b - base + rng.gen_range(1..count)) % count),
        _ => char::from(base + rng.gen_range(0..count)),
    }
}

/// `b'A'` for upper-case letters, `b'a'` for all others (lower-case and caseless).
fn case_base(c: char) -> u8 {
    if c.is_uppercase() {
        b'A'
    } else {
        b'a'
    }
}

fn random_letter<R: Rng + ?Sized>(base: u8, rng: &mut R) -> char {
    char::from(base + rng.gen_range(0..26u8))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const KINDS: [TextKind; 3] = [TextKind::Name, TextKind::Address, TextKind::Text];

    fn kind_strategy() -> impl Strategy<Value = TextKind> {
        prop_oneof![Just(TextKind::Name), Just(TextKind::Address), Just(TextKind::Text)]
    }

    /// Texts mixing ASCII, Unicode letters (with and without case), Unicode digits, spaces and punctuation.
    fn text_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[A-Za-z][a-z]{0,10}( [A-Z][a-z'-]{0,10}){0,3}",
            3 => "[\\p{L}\\p{N} .,'/#-]{1,60}",
            2 => "[0-9]{1,5} [A-Za-zäöüßÄÖÜéÉ ]{1,30}, [0-9]{5} [\\p{Lu}\\p{Ll}]{2,12}",
            1 => "[日本語中文한국어ǅǈΣσςЖж٣١٢Ⅻ½²]{1,8}",
            1 => "[a-z]{1,2}",
            1 => "\\PC{1,200}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn tokens_keep_their_promised_shape(
            kind in kind_strategy(),
            written in text_strategy(),
            attempt in 0u32..100,
            seed in any::<u64>(),
        ) {
            let padded = format!("  {written}\u{a0}");
            let Ok(parsed) = parse(kind, &padded) else { return Ok(()); };
            let canonical = parsed.canonical.clone();
            prop_assert_eq!(&canonical, written.trim());
            if validate(kind, &canonical).is_err() {
                prop_assert!(!canonical.chars().any(|c| c.is_alphanumeric()));
                return Ok(());
            }

            let token = generate(kind, &canonical, TextFormat::KeepShape, attempt, &mut StdRng::seed_from_u64(seed));
            prop_assert_ne!(&token, &canonical);
            prop_assert!(validate(kind, &token).is_ok());
            prop_assert_eq!(token.chars().count(), canonical.chars().count());
            for (a, b) in canonical.chars().zip(token.chars()) {
                if a.is_alphabetic() {
                    prop_assert!(b.is_ascii_alphabetic());
                    prop_assert_eq!(a.is_uppercase(), b.is_ascii_uppercase());
                } else if a.is_numeric() {
                    prop_assert!(b.is_ascii_digit());
                } else {
                    prop_assert_eq!(a, b);
                }
            }
            prop_assert_eq!(parse(kind, &parsed.layout.render(&token)).unwrap().canonical, token);
        }

        #[test]
        fn tagged_tokens_are_found_exactly_in_any_surrounding_text(
            kind in kind_strategy(),
            written in text_strategy(),
            before in "[ a-zA-Z0-9,.:<>\"'\n-]{0,20}",
            after in "[ a-zA-Z0-9,.:<>\"'\n-]{0,20}",
            seed in any::<u64>(),
        ) {
            let Ok(parsed) = parse(kind, &written) else { return Ok(()); };
            if validate(kind, &parsed.canonical).is_err() {
                return Ok(());
            }
            let token = generate(kind, &parsed.canonical, TextFormat::Tagged, 0, &mut StdRng::seed_from_u64(seed));
            let (open, close) = kind.tags();
            prop_assert!(token.starts_with(open) && token.ends_with(close));
            let body = &token[open.len()..token.len() - close.len()];
            prop_assert!(!body.contains(open) && !body.contains(close));
            prop_assert_eq!(body.chars().count(), parsed.canonical.chars().count());
            prop_assert!(validate(kind, &token).is_ok());
            prop_assert_eq!(parse(kind, &token).unwrap().canonical, token.clone());
            // Separated from the text around it by a non-word character, it is found with its exact bounds.
            let text = format!("{before} {token}, {after}");
            let start = before.len() + 1;
            let found = find_tagged(&text, &[kind]);
            prop_assert!(found.contains(&Tagged { kind, range: start..start + token.len() }), "{:?}", found);
            // Glued to a word on either side, it is not a token of its own.
            let glued = format!("a{token}");
            prop_assert!(find_tagged(&glued, &[kind]).iter().all(|t| t.range.start != 1));
        }

        #[test]
        fn find_tagged_never_panics(text in "(Zq|qZ|Zx|xZ|Zj|jZ|[ a-zé\n]){0,40}") {
            let found = find_tagged(&text, &[TextKind::Name, TextKind::Address, TextKind::Text]);
            for pair in found.windows(2) {
                prop_assert!(pair[0].range.end <= pair[1].range.start);
            }
            for t in &found {
                prop_assert!(text.get(t.range.clone()).is_some());
            }
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,50}|[\\x00-\\x1f a-z]{0,10}") {
            for kind in KINDS {
                if let Ok(parsed) = parse(kind, &input) {
                    prop_assert!(!parsed.canonical.is_empty());
                    prop_assert!(!parsed.canonical.chars().any(|c| c.is_control() && !"\n\r\t".contains(c)));
                }
            }
        }
    }

    #[test]
    fn invalid_inputs_are_refused_without_the_value() {
        let long_name = "a".repeat(257);
        let long_address = "b".repeat(513);
        let long_text = "c".repeat(4097);
        let cases = [
            (TextKind::Name, "", "empty"),
            (TextKind::Name, " \t ", "empty"),
            (TextKind::Text, "\u{3000}", "empty"),
            (TextKind::Name, "Jo\u{0}hn", "control"),
            (TextKind::Name, "Jane\nDoe", "control"),
            (TextKind::Address, "Main St\u{1b}12", "control"),
            (TextKind::Text, "bell\u{7}", "control"),
            (TextKind::Name, "12345", "no letter"),
            (TextKind::Name, "-- .", "no letter"),
            (TextKind::Name, long_name.as_str(), "256"),
            (TextKind::Address, long_address.as_str(), "512"),
            (TextKind::Text, long_text.as_str(), "4096"),
        ];
        for (kind, input, expected) in cases {
            let err = parse(kind, input).unwrap_err();
            assert!(err.0.contains(expected), "{input:?}: {}", err.0);
            assert!(!err.0.contains("Jo") && !err.0.contains("Main") && !err.0.contains("aaa"));
        }
        for kind in [TextKind::Address, TextKind::Text] {
            let err = validate(kind, "--- ...").unwrap_err();
            assert!(err.0.contains("no letter or digit"));
        }
        assert!(validate(TextKind::Name, " John").is_err());
        assert!(parse(TextKind::Name, &"é".repeat(256)).is_ok());
    }

    #[test]
    fn examples() {
        let mut rng = StdRng::seed_from_u64(4);
        let token = generate(TextKind::Name, "Zoë O'Brien-Smith", TextFormat::KeepShape, 0, &mut rng);
        let shape: String = token
            .chars()
            .map(|c| {
                if c.is_ascii_uppercase() {
                    'A'
                } else if c.is_ascii_lowercase() {
                    'a'
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(shape, "Aaa A'Aaaaa-Aaaaa");
        let token = generate(TextKind::Address, "Straße 12, 10115 Berlin", TextFormat::KeepShape, 0, &mut rng);
        assert_eq!(token.chars().count(), "Straße 12, 10115 Berlin".chars().count());
        assert!(token.is_ascii() && token[6..].starts_with(' ') && token[9..].starts_with(", "));
        for _ in 0..200 {
            assert_ne!(generate(TextKind::Name, "a", TextFormat::KeepShape, 0, &mut rng), "a");
            assert_ne!(generate(TextKind::Text, "7", TextFormat::KeepShape, 0, &mut rng), "7");
        }
        assert_ne!(generate(TextKind::Text, "--", TextFormat::KeepShape, 0, &mut rng), "--");
        assert_ne!(generate(TextKind::Text, "", TextFormat::KeepShape, 0, &mut rng), "");
    }

    #[test]
    fn tagged_examples() {
        let mut rng = StdRng::seed_from_u64(9);
        let name = generate(TextKind::Name, "Jane Doe", TextFormat::Tagged, 0, &mut rng);
        assert!(name.starts_with("Zq") && name.ends_with("qZ") && name.len() == 12, "{name}");
        let address = generate(TextKind::Address, "12 High Street", TextFormat::Tagged, 0, &mut rng);
        assert!(address.starts_with("Zx") && address.ends_with("xZ"), "{address}");
        let text = format!("Dear {name},\nwe ship to {address} (not to ZqNobody or ZqsomeoneqZed).");
        // A stray opening marker before a token does not swallow it.
        assert_eq!(find_tagged(&format!("Zqa {name}"), &[TextKind::Name])[0].range.start, 4);
        let found = find_tagged(&text, &[TextKind::Name, TextKind::Address]);
        let spans: Vec<&str> = found.iter().map(|t| &text[t.range.clone()]).collect();
        assert_eq!(spans, [name.as_str(), address.as_str()]);
        assert_eq!(found[0].kind, TextKind::Name);
        // Only the kinds asked for; a name marker never closes an address.
        assert_eq!(find_tagged(&text, &[TextKind::Address]).len(), 1);
        assert!(find_tagged("ZqJane DoexZ", &[TextKind::Name, TextKind::Address]).is_empty());
        // A body over its kind's length (plus the markers) is no token; one at the limit is.
        let long = format!("Zq{}qZ", "a".repeat(257));
        assert!(find_tagged(&long, &[TextKind::Name]).is_empty());
        assert!(parse(TextKind::Name, &long).is_err());
        let limit = format!("Zq{}qZ", "a".repeat(256));
        assert_eq!(find_tagged(&limit, &[TextKind::Name]).len(), 1);
        assert!(parse(TextKind::Name, &limit).is_ok());
        // A body that draws a marker is drawn again: a value full of upper/lower pairs still gets a clean body.
        let value = "Zq ".repeat(80);
        for seed in 0..50 {
            let t = generate(TextKind::Name, value.trim(), TextFormat::Tagged, 0, &mut StdRng::seed_from_u64(seed));
            assert!(!t[2..t.len() - 2].contains("Zq") && !t[2..t.len() - 2].contains("qZ"));
        }
    }

    #[test]
    fn names_and_mask() {
        for kind in KINDS {
            assert_eq!(kind.as_str().parse::<TextKind>(), Ok(kind));
        }
        assert!(TextKind::Name.max_len() < TextKind::Address.max_len());
        assert_eq!("keep-shape".parse::<TextFormat>(), Ok(TextFormat::KeepShape));
        assert_eq!("tagged".parse::<TextFormat>(), Ok(TextFormat::Tagged));
        for f in [TextFormat::KeepShape, TextFormat::Tagged] {
            assert_eq!(f.as_str().parse::<TextFormat>(), Ok(f));
        }
        for kind in KINDS {
            assert_eq!(TextKind::of(kind.class()), Some(kind));
        }
        assert_eq!(TextFormat::default(), TextFormat::KeepShape);
        assert!("shape".parse::<TextFormat>().is_err());
        assert_eq!(mask("John Smith"), "J*** *****");
        assert_eq!(mask("12 Main St."), "1* **** **.");
        assert_eq!(mask("Zoë"), "Z**");
        assert_eq!(mask(""), "");
    }
}
