//! Binary content (`image/*`, `application/octet-stream`, `application/pdf`…): detection over every run of text in
//! the bytes, found values replaced in place.
//!
//! A binary content type is only what the client chose to send: a card number typed into a part labelled
//! `image/png` is still there for whoever opens the file, and an uploaded CSV is often `application/octet-stream`.
//! So the bytes are read as the runs of valid UTF-8 between the bytes that are not (ASCII text is such a run,
//! whatever binary surrounds it), each run scanned like a text body, and a match replaced in place; every other
//! byte is kept (a replacement of another length shifts what follows it).
//!
//! What is not in the bytes as text is not read: compressed or encrypted content (PNG image data, PDF streams,
//! ZIP members) and text in other encodings (UTF-16).

use std::ops::Range;

use super::{Edit, Found, Origin, RewriteError};
use crate::detect;
use crate::domain::Class;

/// Binary bytes and the values detected in them.
pub struct BinaryDoc {
    bytes: Vec<u8>,
    /// Where the values of the last [`BinaryDoc::find`] are.
    matches: Vec<Range<usize>>,
}

/// Never the content: it holds the values veil is there to protect.
impl std::fmt::Debug for BinaryDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryDoc").field("bytes", &self.bytes.len()).finish_non_exhaustive()
    }
}

impl BinaryDoc {
    pub fn parse(body: &[u8]) -> BinaryDoc {
        BinaryDoc { bytes: body.to_vec(), matches: Vec::new() }
    }

    /// The values of the given classes in the text runs, in order. Replaces the result of an earlier call.
    pub fn find(&mut self, detect: &[Class]) -> Vec<Found> {
        self.matches.clear();
        let mut found = Vec::new();
        let mut at = 0;
        for chunk in self.bytes.utf8_chunks() {
            let text = chunk.valid();
            for m in detect::find_tokens(text, detect) {
                let Some(value) = text.get(m.start..m.end) else { continue };
                self.matches.push(at + m.start..at + m.end);
                found.push(Found { origin: Origin::Detected(m.class), value: value.to_owned() });
            }
            at += text.len() + chunk.invalid().len();
        }
        found
    }

    /// The bytes with one edit per value of the last [`BinaryDoc::find`]: `Replace` writes the new value (UTF-8)
    /// in place, `Remove` cuts the value out.
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.matches.len() {
            return Err(RewriteError::EditCount);
        }
        super::splice(&self.bytes, self.matches.iter().cloned(), edits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_runs_between_binary_bytes_are_read() {
        let body = b"\x89PNG\r\n\x1a\n\x00\x00\xff5555555555554444\xfe\x00tEXt card 4111 1111 1111 1111\x00\xc3";
        let mut doc = BinaryDoc::parse(body);
        let found = doc.find(&[Class::Pan]);
        let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(values, ["5555555555554444", "4111 1111 1111 1111"]);
        let out = doc.apply(&[Edit::Replace("5555550000004444".into()), Edit::Remove]).unwrap();
        let want = b"\x89PNG\r\n\x1a\n\x00\x00\xff5555550000004444\xfe\x00tEXt card \x00\xc3";
        assert_eq!(out, want);
        let mut doc = BinaryDoc::parse(body);
        let n = doc.find(&[Class::Pan]).len();
        assert_eq!(doc.apply(&vec![Edit::Keep; n]).unwrap(), body);
        assert!(!format!("{:?}", BinaryDoc::parse(body)).contains("5555"));
        let mut doc = BinaryDoc::parse(b"x");
        doc.find(&[Class::Pan]);
        assert_eq!(doc.apply(&[Edit::Keep]), Err(RewriteError::EditCount));
    }

    proptest! {
        /// A card anywhere among random bytes is found and replaced, and nothing else changes.
        #[test]
        fn a_card_among_random_bytes(before in prop::collection::vec(any::<u8>(), 0..64),
                                     after in prop::collection::vec(any::<u8>(), 0..64), next in 0u8..0x20) {
            // A control byte on each side, so that nothing joins the card into a longer run of digits or words.
            let body = [&before[..], &[next], b"5555555555554444", &[next], &after[..]].concat();
            let mut doc = BinaryDoc::parse(&body);
            let found = doc.find(&[Class::Pan]);
            prop_assert!(found.iter().any(|f| f.value == "5555555555554444"));
            let edits: Vec<Edit> = found.iter().map(|_| Edit::Replace("T".into())).collect();
            let out = doc.apply(&edits).unwrap();
            prop_assert!(!out.windows(16).any(|w| w == b"5555555555554444"));
        }
    }
}
