//! Card verification codes (CVC/CVV/CID): 3 or 4 ASCII digits. A CVC is never tokenised for good: the ingress
//! keeps it as a volatile secret bound to its card's token (see `vault::engine`) and gives the app a placeholder
//! of the same length, random digits that are not the code.

use rand::Rng;

use super::{Invalid, Layout, Parsed};

/// Shape and canonical form: 3 or 4 ASCII digits, surrounding spaces dropped.
pub fn parse(input: &str) -> Result<Parsed, Invalid> {
    let canonical = input.trim();
    validate(canonical)?;
    Ok(Parsed { canonical: canonical.to_owned(), layout: Layout::Identity })
}

pub fn validate(canonical: &str) -> Result<(), Invalid> {
    match (3..=4).contains(&canonical.len()) && canonical.bytes().all(|b| b.is_ascii_digit()) {
        true => Ok(()),
        false => Err(Invalid("a card verification code is 3 or 4 digits")),
    }
}

/// A placeholder: as many random digits, never the code itself.
pub fn placeholder<R: Rng + ?Sized>(canonical: &str, rng: &mut R) -> String {
    loop {
        let p: String = canonical.chars().map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect();
        if p != canonical {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn three_or_four_digits() {
        assert_eq!(parse(" 123 ").unwrap().canonical, "123");
        assert_eq!(parse("1234").unwrap().canonical, "1234");
        for bad in ["12", "12345", "12a", "", "１２３"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_placeholder_has_the_shape_and_is_never_the_code(code in "[0-9]{3,4}") {
            let p = placeholder(&code, &mut rand::thread_rng());
            prop_assert_eq!(p.len(), code.len());
            prop_assert!(p.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_ne!(p, code);
        }
    }
}
