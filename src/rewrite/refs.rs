//! Character references in text (`&amp;`, `&#39;`, `&#x27;`…): an app writing a value into HTML escapes it, so
//! a token with an apostrophe (`O'Brien`'s) or an ampersand reaches a page or a mail as `O&#39;Brien`, and a value
//! can be written as references to slip past detection. Tokens and values are found in the decoded text; each
//! match maps back to the bytes it was written as, so a replacement covers the whole escaped form.

use std::ops::Range;

use crate::detect;
use crate::domain::Class;

/// A token or value found in text: where it is written (bytes of the original text), its class, and what it
/// says once its references are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub range: Range<usize>,
    pub class: Class,
    pub text: String,
}

/// [`detect::find_tokens`] over `text` read with its character references decoded.
pub fn find_tokens(text: &str, classes: &[Class]) -> Vec<Found> {
    let Some(decoded) = Decoded::new(text) else { return find_tokens_as_written(text, classes) };
    detect::find_tokens(&decoded.text, classes)
        .into_iter()
        .map(|m| Found {
            range: decoded.origin[m.start]..decoded.origin[m.end],
            class: m.class,
            text: decoded.text[m.start..m.end].to_owned(),
        })
        .collect()
}

/// [`detect::find_tokens`] over `text` as it is written (a plain-text place: an `&` there is itself).
pub fn find_tokens_as_written(text: &str, classes: &[Class]) -> Vec<Found> {
    detect::find_tokens(text, classes)
        .into_iter()
        .filter_map(|m| {
            Some(Found { range: m.start..m.end, class: m.class, text: text.get(m.start..m.end)?.to_owned() })
        })
        .collect()
}

/// Text with its references decoded, and for each of its byte offsets (and its end) the offset in the original.
struct Decoded {
    text: String,
    origin: Vec<usize>,
}

impl Decoded {
    /// `None`: there is no reference in `text` (nothing to map).
    fn new(text: &str) -> Option<Decoded> {
        let first = text.find('&')?;
        let mut out = Decoded { text: String::with_capacity(text.len()), origin: Vec::with_capacity(text.len() + 1) };
        out.push_str(&text[..first], 0);
        let mut at = first;
        while at < text.len() {
            let rest = &text[at..];
            match reference(rest) {
                Some((c, len)) => {
                    let mut buf = [0u8; 4];
                    out.push_char(c.encode_utf8(&mut buf), at);
                    at += len;
                }
                None => {
                    let len = rest.chars().next().map_or(1, char::len_utf8);
                    out.push_str(&rest[..len], at);
                    at += len;
                }
            }
        }
        out.origin.push(text.len());
        Some(out)
    }

    /// Appends text copied as it is from offset `from` of the original.
    fn push_str(&mut self, s: &str, from: usize) {
        self.text.push_str(s);
        self.origin.extend(from..from + s.len());
    }

    /// Appends a decoded character that stood at offset `from` of the original (every byte of it maps there).
    fn push_char(&mut self, c: &str, from: usize) {
        self.text.push_str(c);
        self.origin.extend(std::iter::repeat_n(from, c.len()));
    }
}

/// The character a reference at the start of `s` stands for, and the reference's length; `None` when `s` starts
/// with no reference this decoder knows (then its `&` is read as itself). Numeric references are read as a
/// browser reads them: any number of leading zeros, the `;` optional.
fn reference(s: &str) -> Option<(char, usize)> {
    let body = s.strip_prefix('&')?;
    if let Some(number) = body.strip_prefix('#') {
        let (hex, digits) = match number.strip_prefix(['x', 'X']) {
            Some(rest) => (true, rest),
            None => (false, number),
        };
        let len = digits
            .bytes()
            .take(MAX_DIGITS + 1)
            .take_while(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            .count();
        if len == 0 || len > MAX_DIGITS {
            return None;
        }
        let code = u32::from_str_radix(&digits[..len], if hex { 16 } else { 10 }).ok()?;
        let c = char::from_u32(code).filter(|c| *c != '\0')?;
        let semicolon = usize::from(digits.as_bytes().get(len) == Some(&b';'));
        return Some((c, 2 + usize::from(hex) + len + semicolon));
    }
    let end = body.bytes().take(6).position(|b| b == b';')?;
    let c = match &body[..end] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    };
    Some((c, end + 2))
}

/// Digits a numeric reference may have (leading zeros included); longer runs are left as text.
const MAX_DIGITS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn references_decode_and_others_stay() {
        assert_eq!(reference("&amp;x"), Some(('&', 5)));
        assert_eq!(reference("&#39;"), Some(('\'', 5)));
        assert_eq!(reference("&#x27;"), Some(('\'', 6)));
        assert_eq!(reference("&#X4a;"), Some(('J', 6)));
        for not in ["&", "&amp", "& amp;", "&nosuch;", "&#;", "&#x;", "&#0;", "&#xD800;", "&#99999999999;", "x&amp;"] {
            assert_eq!(reference(not), None, "{not}");
        }
        // As browsers read them: leading zeros, no semicolon.
        assert_eq!(reference("&#0000000053;"), Some(('5', 13)));
        assert_eq!(reference("&#53x"), Some(('5', 4)));
        assert_eq!(reference("&#x000035"), Some(('5', 9)));
    }

    #[test]
    fn a_card_written_as_references_is_found_where_it_is_written() {
        let text = "pay <b>4&#49;11&#x20;1111 1111&#32;1111</b> now";
        let found = find_tokens(text, &[Class::Pan]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].text, "4111 1111 1111 1111");
        assert_eq!(&text[found[0].range.clone()], "4&#49;11&#x20;1111 1111&#32;1111");
    }

    #[test]
    fn a_tagged_name_token_escaped_by_the_app_is_found_whole() {
        let kinds = [Class::Name];
        let text = "<p>Dear ZqSbp I&#39;OlcbqZ &amp; ZqAbcqZ,</p>";
        let found = find_tokens(text, &kinds);
        let got: Vec<(&str, &str)> = found.iter().map(|f| (f.text.as_str(), &text[f.range.clone()])).collect();
        assert_eq!(got, [("ZqSbp I'OlcbqZ", "ZqSbp I&#39;OlcbqZ"), ("ZqAbcqZ", "ZqAbcqZ")]);
    }

    #[test]
    fn without_references_it_is_plain_detection() {
        let text = "call +49 170 1234567 or mail jo@example.com";
        let classes = [Class::Phone, Class::Email];
        let plain: Vec<Range<usize>> = detect::find_tokens(text, &classes).iter().map(|m| m.start..m.end).collect();
        let here: Vec<Range<usize>> = find_tokens(text, &classes).into_iter().map(|f| f.range).collect();
        assert_eq!(plain, here);
    }

    proptest! {
        /// Any text, references or not: ranges are on char boundaries, in order, and decode to what was found.
        #[test]
        fn ranges_map_back_to_what_was_found(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("&amp;".to_owned()), Just("&#39;".to_owned()), Just("&#x34;".to_owned()), Just("&".to_owned()),
                    Just("4111 1111 1111 1111".to_owned()), Just("+49 170 1234567".to_owned()), "[a-zA-Z0-9 ;#ü]{0,8}",
                ],
                0..12,
            )
        ) {
            let text: String = parts.concat();
            let found = find_tokens(&text, &[Class::Pan, Class::Phone, Class::Email]);
            let mut last = 0;
            for f in &found {
                prop_assert!(f.range.start >= last && f.range.start < f.range.end);
                let written = text.get(f.range.clone());
                prop_assert!(written.is_some());
                let written = written.unwrap_or_default();
                let redecoded = Decoded::new(written).map_or_else(|| written.to_owned(), |d| d.text);
                prop_assert_eq!(&redecoded, &f.text);
                last = f.range.end;
            }
        }
    }
}
