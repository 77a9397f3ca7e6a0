//! Header text: RFC 2047 encoded-words both ways, unstructured values (`Subject`), and folding at 78 characters.
//!
//! Reading: white space between two adjacent encoded-words is dropped; an encoded-word in an unknown charset or
//! that does not decode stays as written. Writing: each word that cannot go out as itself (non-ASCII, a control
//! character, `=?`, longer than [`MAX_WORD`]) is encoded, together with any white space and encoded words
//! around it, as `=?utf-8?b?…?=` words of at most 64 characters; white space that the reader would lose
//! (leading, trailing, or a very long run) is encoded too. So reading what was written gives the text back.

use base64::Engine as _;

use super::charset::{self, Charset};
use super::MimeError;

/// The longest plain word written as itself; longer ones are encoded so that no line passes 998 octets.
const MAX_WORD: usize = 900;
/// The longest run of white space written as itself.
const MAX_SPACE: usize = 50;
/// UTF-8 bytes per encoded-word: 39 bytes are 52 base64 characters, 64 with `=?utf-8?b?` and `?=`.
const WORD_BYTES: usize = 39;
/// Folding aims at lines of this many characters.
const FOLD_AT: usize = 78;
/// No line may be longer (RFC 5322 §2.1.1).
pub(super) const MAX_LINE: usize = 998;

/// One unit of a header value to write: the white space before it (a place to fold) and the word itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Piece {
    pub sep: String,
    pub word: String,
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `s` cut into alternating runs of white space and of other characters: `(is_space, run)`.
pub(super) fn runs(s: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut space = None;
    for (i, c) in s.char_indices() {
        let w = is_wsp(c);
        if space.is_some_and(|s| s != w) {
            out.push((!w, &s[start..i]));
            start = i;
        }
        space = Some(w);
    }
    if let Some(w) = space {
        out.push((w, &s[start..]));
    }
    out
}

/// The charset and bytes of an encoded-word `=?charset?b|q?text?=`; `None` if `w` is not one this module reads.
pub(super) fn decode_word(w: &str) -> Option<(Charset, Vec<u8>)> {
    let inner = w.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (cs, enc, text) = (parts.next()?, parts.next()?, parts.next()?);
    if text.contains('?') || text.contains(is_wsp) {
        return None;
    }
    let cs = charset::lookup(cs.split('*').next()?)?;
    let bytes = match enc {
        "b" | "B" => super::transfer::b64_decode(text.as_bytes()).ok()?,
        "q" | "Q" => {
            let mut out = Vec::new();
            let mut b = text.bytes();
            while let Some(c) = b.next() {
                match c {
                    b'_' => out.push(b' '),
                    b'=' => {
                        let hex = [b.next()?, b.next()?];
                        out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                    }
                    c => out.push(c),
                }
            }
            out
        }
        _ => return None,
    };
    Some((cs, bytes))
}

/// Builds decoded header text from words and white space, joining adjacent encoded-words.
pub(super) struct Decoder {
    /// Quote each decoded run that would not read back as a phrase (address headers).
    quote: bool,
    out: String,
    run: Vec<(Charset, Vec<u8>)>,
    literal: String,
    held: String,
}

impl Decoder {
    pub fn new(quote: bool) -> Decoder {
        Decoder { quote, out: String::new(), run: Vec::new(), literal: String::new(), held: String::new() }
    }

    pub fn space(&mut self, s: &str) {
        if self.run.is_empty() {
            self.out.push_str(s);
        } else {
            self.held.push_str(s);
        }
    }

    /// A word that may be an encoded-word.
    pub fn word(&mut self, w: &str) {
        let Some((cs, bytes)) = decode_word(w) else { return self.plain(w) };
        if !self.run.is_empty() {
            self.literal.push_str(&self.held);
        }
        self.held.clear();
        self.literal.push_str(w);
        match self.run.last_mut() {
            Some((c, b)) if *c == cs => b.extend_from_slice(&bytes),
            _ => self.run.push((cs, bytes)),
        }
    }

    /// Text written as it is.
    pub fn plain(&mut self, s: &str) {
        self.flush();
        self.out.push_str(s);
    }

    fn flush(&mut self) {
        if self.run.is_empty() {
            return;
        }
        let decoded: Option<String> = self.run.drain(..).map(|(cs, b)| charset::decode(cs, &b)).collect();
        match decoded {
            Some(t) if self.quote && needs_quote(&t) => quote_into(&mut self.out, &t),
            Some(t) => self.out.push_str(&t),
            None => self.out.push_str(&self.literal),
        }
        self.literal.clear();
        self.out.push_str(&self.held);
        self.held.clear();
    }

    pub fn finish(mut self) -> String {
        self.flush();
        self.out
    }
}

/// Whether decoded display-name text must be quoted to read back as the same phrase.
pub(super) fn needs_quote(s: &str) -> bool {
    s.is_empty()
        || s.starts_with(is_wsp)
        || s.ends_with(is_wsp)
        || s.chars().any(|c| c.is_control() || "()<>[]:;@\\,.\"".contains(c))
}

/// Appends `s` as a quoted-string.
pub(super) fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// An unstructured value (already unfolded) with its encoded-words decoded.
pub(super) fn decode_unstructured(s: &str) -> String {
    let mut d = Decoder::new(false);
    for (space, run) in runs(s) {
        if space {
            d.space(run);
        } else {
            d.word(run);
        }
    }
    d.finish()
}

/// Whether a word cannot be written as itself in a header.
pub(super) fn must_encode(w: &str) -> bool {
    w.len() > MAX_WORD || w.contains("=?") || !w.chars().all(|c| c.is_ascii_graphic())
}

/// `text` as encoded-words (the first preceded by `sep`, the others by one space, which readers drop).
pub(super) fn encoded_words(text: &str, sep: String, out: &mut Vec<Piece>) {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut sep = sep;
    let mut start = 0;
    let mut chunk_end = 0;
    let mut flush = |from: usize, to: usize, sep: &mut String| {
        let word = format!("=?utf-8?b?{}?=", b64.encode(&text.as_bytes()[from..to]));
        out.push(Piece { sep: std::mem::replace(sep, " ".to_string()), word });
    };
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > WORD_BYTES {
            flush(start, chunk_end, &mut sep);
            start = chunk_end;
        }
        chunk_end = i + c.len_utf8();
    }
    if chunk_end > start {
        flush(start, chunk_end, &mut sep);
    }
}

/// An unstructured value to write: plain words as themselves, the rest as encoded-words.
pub(super) fn encode_unstructured(text: &str) -> Vec<Piece> {
    let toks = runs(text);
    let n = toks.len();
    let mut enc: Vec<bool> =
        toks.iter().map(|&(space, s)| if space { s.len() > MAX_SPACE } else { must_encode(s) }).collect();
    if let (Some(first), Some(last)) = (toks.first(), toks.last()) {
        enc[0] |= first.0;
        enc[n - 1] |= last.0;
    }
    // White space that is encoded takes its neighbours along; white space between encoded words goes too.
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            if !toks[i].0 {
                continue;
            }
            let between = i > 0 && i + 1 < n && enc[i - 1] && enc[i + 1];
            if !enc[i] && between {
                enc[i] = true;
                changed = true;
            }
            if enc[i] {
                for j in [i.wrapping_sub(1), i + 1] {
                    if j < n && !enc[j] {
                        enc[j] = true;
                        changed = true;
                    }
                }
            }
        }
    }
    let mut pieces = Vec::new();
    let mut sep = String::new();
    let mut i = 0;
    while i < n {
        if enc[i] {
            let mut run = String::new();
            while i < n && enc[i] {
                run.push_str(toks[i].1);
                i += 1;
            }
            encoded_words(&run, std::mem::take(&mut sep), &mut pieces);
        } else {
            if toks[i].0 {
                sep = toks[i].1.to_string();
            } else {
                pieces.push(Piece { sep: std::mem::take(&mut sep), word: toks[i].1.to_string() });
            }
            i += 1;
        }
    }
    pieces
}

/// The header field `name: pieces` ending in CRLF, folded before white space where a line would pass 78
/// characters. A line over 998 octets (a single long address) is an error.
pub(super) fn fold(name: &[u8], pieces: &[Piece]) -> Result<Vec<u8>, MimeError> {
    let mut out = name.to_vec();
    out.push(b':');
    let mut col = out.len();
    for (k, p) in pieces.iter().enumerate() {
        let sep = if k == 0 { " " } else { p.sep.as_str() };
        // The pieces that follow without white space stay on this piece's line.
        let glued: usize = pieces[k + 1..].iter().take_while(|q| q.sep.is_empty()).map(|q| q.word.len()).sum();
        if k > 0 && !sep.is_empty() && !p.word.is_empty() && col + sep.len() + p.word.len() + glued > FOLD_AT {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(p.word.as_bytes());
        col += sep.len() + p.word.len();
        if col > MAX_LINE {
            return Err(MimeError::LineTooLong);
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> String {
        String::from_utf8(fold(b"Subject", &encode_unstructured(text)).unwrap()).unwrap()
    }

    fn read(field: &str) -> String {
        let value = field.strip_prefix("Subject:").unwrap().replace("\r\n", "");
        decode_unstructured(value.trim_matches([' ', '\t']))
    }

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(decode_unstructured("=?UTF-8?Q?caf=C3=A9_au?= lait"), "café au lait");
        assert_eq!(decode_unstructured("=?iso-8859-1?q?M=FCller?=  =?utf-8?b?IGp1bg==?= x"), "Müller jun x");
        // Split inside a character across two words of the same charset.
        assert_eq!(decode_unstructured("=?utf-8?q?=C3?= =?utf-8?q?=A9?="), "é");
        assert_eq!(decode_unstructured("=?koi8-r?b?AAAA?= =?utf-8?q?bad=ZZ?="), "=?koi8-r?b?AAAA?= =?utf-8?q?bad=ZZ?=");
        assert_eq!(decode_unstructured("=?utf-8?q?=FF?= a"), "=?utf-8?q?=FF?= a");
        assert_eq!(decode_unstructured("a =?utf-8*en?q?b?= c"), "a b c");
    }

    #[test]
    fn ascii_subject_is_written_as_is_and_folded() {
        assert_eq!(write("Your order"), "Subject: Your order\r\n");
        let long = "word ".repeat(30);
        let field = write(long.trim_end());
        assert!(field.split("\r\n").all(|l| l.len() <= 78), "{field}");
        assert!(field.contains("\r\n word"));
        assert_eq!(read(&field), long.trim_end());
        assert_eq!(write(""), "Subject:\r\n");
    }

    #[test]
    fn non_ascii_words_are_encoded_with_the_space_between_them() {
        let field = write("Bestellung für Jürgen Müller ist da");
        assert!(field.is_ascii());
        assert!(field.starts_with("Subject: Bestellung =?utf-8?b?"), "{field}");
        assert!(field.contains("?= ist da"));
        assert_eq!(read(&field), "Bestellung für Jürgen Müller ist da");
    }

    #[test]
    fn hard_texts_read_back() {
        for text in [
            " lead",
            "trail\t",
            "   ",
            "a=?utf-8?q?x?=b",
            "line\r\nbreak",
            &format!("a{}b", " ".repeat(80)),
            &"é".repeat(200),
            &"x".repeat(2000),
        ] {
            let field = write(text);
            assert!(field.split("\r\n").all(|l| l.len() <= MAX_LINE && !l.contains(['\r', '\n'])));
            assert_eq!(read(&field), text, "{field}");
        }
    }

    #[test]
    fn quoting_rules() {
        assert!(needs_quote("Müller, Hans") && needs_quote(" a") && needs_quote("") && needs_quote("J. R."));
        assert!(!needs_quote("Jürgen Müller"));
        let mut s = String::new();
        quote_into(&mut s, "a\"b\\c");
        assert_eq!(s, r#""a\"b\\c""#);
    }
}
