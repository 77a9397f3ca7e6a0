//! Format-preserving token formats: one file per class, and the shared shapes they use.
//!
//! A class module turns a raw input into a [`Parsed`] value — the *canonical* form that is fingerprinted and
//! sealed (digits only for a card, upper-case without spaces for an IBAN) plus the [`Layout`] that the input was
//! written in (separators, grouping, case) — and draws canonical tokens of the same shape. The vault renders a
//! canonical token back in the caller's layout, so `4111 1111 1111 1111` and `4111-1111-1111-1111` are the same
//! value with one token, each written back in its own way.

mod class;
pub mod email;
pub mod iban;
pub mod iban_de;
pub mod pan;
pub mod phone;
pub mod text;

use std::fmt;

pub use class::{generate, mask, parse, validate, ClassFormats};

/// Why a value was refused for its class. Carries a fixed sentence only: never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// How an input was written, so that a canonical token can be written the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The canonical form is the written form.
    Identity,
    /// The written form is the canonical characters in order (`None` slots) with these other characters
    /// (`Some`) kept in place; `lowercase` writes the slots in lower case.
    Template { slots: Vec<Option<char>>, lowercase: bool },
}

impl Layout {
    /// The layout of `input` where the characters for which `is_slot` holds form the canonical value.
    pub fn template(input: &str, is_slot: impl Fn(char) -> bool, lowercase: bool) -> Layout {
        let slots = input.chars().map(|c| if is_slot(c) { None } else { Some(c) }).collect();
        Layout::Template { slots, lowercase }
    }

    /// Writes `canonical` in this layout. Extra canonical characters (never expected) are appended so that
    /// nothing is silently lost.
    pub fn render(&self, canonical: &str) -> String {
        match self {
            Layout::Identity => canonical.to_owned(),
            Layout::Template { slots, lowercase } => {
                let mut chars = canonical.chars();
                let mut out = String::with_capacity(slots.len());
                for slot in slots {
                    match slot {
                        Some(kept) => out.push(*kept),
                        None => match chars.next() {
                            Some(c) if *lowercase => out.extend(c.to_lowercase()),
                            Some(c) => out.push(c),
                            None => break,
                        },
                    }
                }
                out.extend(chars);
                out
            }
        }
    }
}

/// A validated input: its canonical form and how it was written.
#[derive(Clone, PartialEq, Eq)]
pub struct Parsed {
    pub canonical: String,
    pub layout: Layout,
}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Parsed(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips_separators_and_case() {
        let layout = Layout::template("de89 3704-0044", |c| c.is_ascii_alphanumeric(), true);
        assert_eq!(layout.render("DE8937040044"), "de89 3704-0044");
        assert_eq!(layout.render("FR12345"), "fr12 345");
        assert_eq!(Layout::Identity.render("x@y.z"), "x@y.z");
    }

    #[test]
    fn parsed_debug_is_redacted() {
        let p = Parsed { canonical: "4111111111111111".into(), layout: Layout::Identity };
        assert!(!format!("{p:?}").contains("4111"));
    }
}
