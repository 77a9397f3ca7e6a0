//! The charsets a text part or an encoded-word may be in: UTF-8 (and US-ASCII, read as its superset), ISO-8859-1
//! and windows-1252. Any other is unknown: its part is left untouched.

/// A charset this module can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Charset {
    Utf8,
    Latin1,
    Windows1252,
}

/// The charset a MIME charset name stands for (case-insensitive, common aliases included).
pub(super) fn lookup(name: &str) -> Option<Charset> {
    match name.trim().to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" | "ansi_x3.4-1968" => Some(Charset::Utf8),
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" => Some(Charset::Latin1),
        "windows-1252" | "cp1252" | "x-cp1252" => Some(Charset::Windows1252),
        _ => None,
    }
}

/// windows-1252's 0x80..=0x9F (the five bytes it leaves undefined map to the C1 controls, as browsers do).
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
    '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}',
    '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
    '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// `bytes` as text; `None` when they are not valid in the charset (only UTF-8 can fail).
pub(super) fn decode(charset: Charset, bytes: &[u8]) -> Option<String> {
    match charset {
        Charset::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
        Charset::Latin1 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Charset::Windows1252 => Some(
            bytes
                .iter()
                .map(|&b| match b {
                    0x80..=0x9f => CP1252_HIGH[usize::from(b - 0x80)],
                    _ => char::from(b),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_decoding() {
        assert_eq!(lookup(" UTF-8"), Some(Charset::Utf8));
        assert_eq!(lookup("us-ascii"), Some(Charset::Utf8));
        assert_eq!(lookup("Latin1"), Some(Charset::Latin1));
        assert_eq!(lookup("CP1252"), Some(Charset::Windows1252));
        assert_eq!(lookup("koi8-r"), None);
        assert_eq!(decode(Charset::Latin1, b"M\xfcller \x80").as_deref(), Some("Müller \u{80}"));
        assert_eq!(decode(Charset::Windows1252, b"\x80 \x93q\x94 \xe9").as_deref(), Some("€ “q” é"));
        assert_eq!(decode(Charset::Utf8, b"\xc3\xa9").as_deref(), Some("é"));
        assert_eq!(decode(Charset::Utf8, b"\xe9"), None);
    }
}
