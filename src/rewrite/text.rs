//! `text/*` bodies: no fields, detection only; found values are replaced (or cut out) in place, every other byte kept.
//!
//! The body must be UTF-8 (a text body in another charset is refused rather than misread). Values are found with
//! character references decoded (`4&#49;11…`, a token the app wrote as `O&#39;Brien`); a replacement covers the
//! whole escaped form.

use super::refs;
use super::{Edit, Found, Origin, RewriteError};
use crate::domain::Class;

/// A UTF-8 text body and the values detected in it.
pub struct TextDoc {
    text: String,
    matches: Vec<refs::Found>,
}

impl TextDoc {
    pub fn parse(body: &[u8]) -> Result<TextDoc, RewriteError> {
        let text = std::str::from_utf8(body).map_err(|_| RewriteError::Malformed("text body is not UTF-8"))?;
        Ok(TextDoc { text: text.to_owned(), matches: Vec::new() })
    }

    /// The values of the given classes in the body, in order. Replaces the result of an earlier call.
    pub fn find(&mut self, detect: &[Class]) -> Vec<Found> {
        self.matches = refs::find_tokens(&self.text, detect);
        self.matches.iter().map(|m| Found { origin: Origin::Detected(m.class), value: m.text.clone() }).collect()
    }

    /// The body with one edit per value of the last [`TextDoc::find`]: `Replace` writes the new value in place,
    /// `Remove` cuts the value out (the text around it stays).
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.matches.len() {
            return Err(RewriteError::EditCount);
        }
        super::splice(self.text.as_bytes(), self.matches.iter().map(|m| m.range.clone()), edits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Class; 4] = [Class::Pan, Class::Iban, Class::Email, Class::Phone];
    const BODY: &str = "Hi,\r\nmy card is 4111-1111-1111-1111 and my IBAN DE89 3704 0044 0532 0130 00.\r\n\
                        Write to jo@example.com or call +1 202 555 0143. Grüße\n";

    #[test]
    fn finds_values_in_order() {
        let mut doc = TextDoc::parse(BODY.as_bytes()).unwrap();
        let found = doc.find(&ALL);
        let got: Vec<(&str, Origin)> = found.iter().map(|f| (f.value.as_str(), f.origin)).collect();
        assert_eq!(
            got,
            [
                ("4111-1111-1111-1111", Origin::Detected(Class::Pan)),
                ("DE89 3704 0044 0532 0130 00", Origin::Detected(Class::Iban)),
                ("jo@example.com", Origin::Detected(Class::Email)),
                ("+1 202 555 0143", Origin::Detected(Class::Phone)),
            ]
        );
        assert_eq!(doc.find(&[Class::Email]).len(), 1, "a new find replaces the old one");
        assert_eq!(doc.apply(&[Edit::Remove]).unwrap(), BODY.replace("jo@example.com", "").as_bytes());
    }

    #[test]
    fn keep_is_byte_identical_and_edits_splice() {
        let mut doc = TextDoc::parse(BODY.as_bytes()).unwrap();
        let n = doc.find(&ALL).len();
        assert_eq!(doc.apply(&vec![Edit::Keep; n]).unwrap(), BODY.as_bytes());
        let mut doc = TextDoc::parse(BODY.as_bytes()).unwrap();
        doc.find(&ALL);
        let edits = [
            Edit::Replace("4000-0000-0000-0002".into()),
            Edit::Keep,
            Edit::Remove,
            Edit::Replace("+1 202 555 0199".into()),
        ];
        let out = String::from_utf8(doc.apply(&edits).unwrap()).unwrap();
        assert_eq!(
            out,
            BODY.replace("4111-1111-1111-1111", "4000-0000-0000-0002")
                .replace("jo@example.com", "")
                .replace("+1 202 555 0143", "+1 202 555 0199")
        );
    }

    #[test]
    fn refuses_non_utf8_and_wrong_edit_counts() {
        assert_eq!(TextDoc::parse(b"caf\xe9").err(), Some(RewriteError::Malformed("text body is not UTF-8")));
        let mut doc = TextDoc::parse(b"nothing here").unwrap();
        assert!(doc.find(&ALL).is_empty());
        assert_eq!(doc.apply(&[Edit::Keep]), Err(RewriteError::EditCount));
        let doc = TextDoc::parse(b"4111111111111111").unwrap();
        assert_eq!(doc.apply(&[]).unwrap(), b"4111111111111111", "without find nothing is edited");
        assert_eq!(TextDoc::parse(b"").unwrap().apply(&[]).unwrap(), b"");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "([ a-z@.+\\-]{0,6}|4111 1111 1111 1111|a@b.io|\\+44 20 7946 0958|é){0,10}".prop_map(String::into_bytes),
        ]) {
            if let Ok(mut doc) = TextDoc::parse(&body) {
                let found = doc.find(&ALL);
                let keep = vec![Edit::Keep; found.len()];
                let mut again = TextDoc::parse(&body).unwrap();
                again.find(&ALL);
                prop_assert_eq!(again.apply(&keep).unwrap(), body.clone());
                let edits: Vec<Edit> = (0..found.len()).map(|i| if i % 2 == 0 { Edit::Remove } else { Edit::Replace("X".into()) }).collect();
                let out = doc.apply(&edits).unwrap();
                prop_assert!(std::str::from_utf8(&out).is_ok());
            } else {
                prop_assert!(std::str::from_utf8(&body).is_err());
            }
        }
    }
}
