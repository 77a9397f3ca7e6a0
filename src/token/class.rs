//! Dispatch from a data class to its token module: parse, validate, draw a token, mask; and the token format
//! configured for each class. Every `match` here is exhaustive, so a new [`Class`] does not compile until each
//! operation knows it.

use rand::Rng;

use super::cvc;
use super::email::{self, EmailFormat};
use super::iban::{self, IbanFormat};
use super::pan::{self, PanFormat};
use super::phone::{self, PhoneFormat};
use super::text::{self, TextFormat, TextKind};
use super::{Invalid, Layout, Parsed};
use crate::domain::Class;

/// The token format chosen for each class (`[class.X] format = "…"`), defaults otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassFormats {
    pub pan: PanFormat,
    pub iban: IbanFormat,
    pub email: EmailFormat,
    pub phone: PhoneFormat,
    /// `name`, `address` and `text`, by [`TextKind`].
    pub name: TextFormat,
    pub address: TextFormat,
    pub text: TextFormat,
    /// Classes tokenised afresh every time (`[class.X] deterministic = false`), by [`Class::index`].
    pub fresh: [bool; Class::ALL.len()],
    /// `[class.cvc] ttl`: seconds a CVC is kept for its card (default 1 h, at most 24 h).
    pub cvc_ttl: u64,
    /// `[class.cvc] uses`: reveals a CVC allows before it is erased (default 1).
    pub cvc_uses: u32,
    /// New cards the vault takes per BIN and last four (and length) per day (`[class.pan]
    /// new_values_per_range_per_day`); `None`: unbudgeted. See [`card_range`].
    pub pan_range_per_day: Option<u32>,
}

/// The range a card is enumerated in: its length, BIN (first six) and last four — what a `keep-bin-last4` token
/// shows, so what an attacker walking a tokenisation oracle for one token must stay within (~10^5 candidates).
/// Real customers' new cards spread over millions of such ranges; a walk piles into one.
pub fn card_range(canonical: &str) -> Option<(u8, [u8; 6], [u8; 4])> {
    let b = canonical.as_bytes();
    let len = u8::try_from(b.len()).ok().filter(|&l| l >= 10)?;
    let bin: [u8; 6] = b.get(..6)?.try_into().ok()?;
    let last4: [u8; 4] = b.get(b.len() - 4..)?.try_into().ok()?;
    Some((len, bin, last4))
}

impl Default for ClassFormats {
    fn default() -> Self {
        ClassFormats {
            pan: PanFormat::default(),
            iban: IbanFormat::default(),
            email: EmailFormat::default(),
            phone: PhoneFormat::default(),
            name: TextFormat::default(),
            address: TextFormat::default(),
            text: TextFormat::default(),
            fresh: [false; Class::ALL.len()],
            cvc_ttl: 3600,
            cvc_uses: 1,
            pan_range_per_day: None,
        }
    }
}

impl ClassFormats {
    /// Does the same value always get the same token (the default)?
    pub fn deterministic(&self, class: Class) -> bool {
        !self.fresh[class.index()]
    }

    /// Can no token of this class be a real value? Then a value equal to an issued token is that token, whoever
    /// sends it. (A `99…` card is no issuer's, a non-Luhn number no card, `99999999` no German bank.)
    pub fn distinguishable(&self, class: Class) -> bool {
        match class {
            Class::Pan => matches!(self.pan, PanFormat::Last4Reserved | PanFormat::NonLuhn),
            Class::Iban => matches!(self.iban, IbanFormat::ReservedBank),
            Class::Email => matches!(self.email, EmailFormat::ReservedDomain | EmailFormat::Relay(_)),
            Class::Phone => matches!(self.phone, PhoneFormat::ReservedRange(_)),
            Class::Name | Class::Address | Class::Text => self.text_format(class) == Some(TextFormat::Tagged),
            Class::Cvc => false,
        }
    }

    /// The format of a text class (`name`, `address`, `text`); `None` for the others.
    pub fn text_format(&self, class: Class) -> Option<TextFormat> {
        match class {
            Class::Name => Some(self.name),
            Class::Address => Some(self.address),
            Class::Text => Some(self.text),
            Class::Pan | Class::Iban | Class::Email | Class::Phone | Class::Cvc => None,
        }
    }

    /// Can tokens of `class` be found inside text an app renders (a mail, a page)? Card, IBAN, e-mail and phone
    /// tokens by their formats; text classes only when `tagged`.
    pub fn findable(&self, class: Class) -> bool {
        class.detectable() || self.text_format(class) == Some(TextFormat::Tagged)
    }

    pub fn set(&mut self, class: Class, format: &str) -> Result<(), String> {
        let bad = |e: Invalid| e.to_string();
        match class {
            Class::Pan => self.pan = format.parse().map_err(bad)?,
            Class::Iban => self.iban = format.parse().map_err(bad)?,
            Class::Email => self.email = format.parse().map_err(bad)?,
            Class::Phone => self.phone = format.parse().map_err(bad)?,
            Class::Name => self.name = format.parse().map_err(bad)?,
            Class::Address => self.address = format.parse().map_err(bad)?,
            Class::Text => self.text = format.parse().map_err(bad)?,
            Class::Cvc => return Err("a cvc has no token format: it is kept, not tokenised".into()),
        }
        Ok(())
    }
}

/// Text classes by their kind; the other classes never reach the text module's functions.
fn kind(class: Class) -> TextKind {
    TextKind::of(class).unwrap_or(TextKind::Text)
}

/// Shape check and canonical form: anything a value or a token of the class can look like.
pub fn parse(class: Class, input: &str) -> Result<Parsed, Invalid> {
    match class {
        Class::Pan => pan::parse(input),
        Class::Iban => iban::parse(input),
        Class::Email => email::parse(input),
        Class::Phone => phone::parse(input),
        Class::Name | Class::Address | Class::Text => text::parse(kind(class), input),
        Class::Cvc => cvc::parse(input),
    }
}

/// Is the canonical value a real value of the class (checksums and all)?
pub fn validate(class: Class, canonical: &str) -> Result<(), Invalid> {
    match class {
        Class::Pan => pan::validate(canonical),
        Class::Iban => iban::validate(canonical),
        Class::Email => email::validate(canonical),
        Class::Phone => phone::validate(canonical),
        Class::Name | Class::Address | Class::Text => text::validate(kind(class), canonical),
        Class::Cvc => cvc::validate(canonical),
    }
}

/// A candidate canonical token; `attempt` counts candidates already taken by other values.
pub fn generate<R: Rng + ?Sized>(class: Class, f: &ClassFormats, canonical: &str, attempt: u32, rng: &mut R) -> String {
    match class {
        Class::Pan => pan::generate(canonical, f.pan, attempt, rng),
        Class::Iban => iban::generate(canonical, f.iban, attempt, rng),
        Class::Email => email::generate(canonical, f.email, attempt, rng),
        Class::Phone => phone::generate(canonical, f.phone, attempt, rng),
        Class::Name | Class::Address | Class::Text => {
            text::generate(kind(class), canonical, f.text_format(class).unwrap_or_default(), attempt, rng)
        }
        Class::Cvc => cvc::placeholder(canonical, rng),
    }
}

/// An irreversible masked form of a canonical value, written in `layout`.
pub fn mask(class: Class, canonical: &str, layout: &Layout) -> String {
    match class {
        Class::Pan => layout.render(&pan::mask(canonical)),
        Class::Iban => layout.render(&mask_iban(canonical)),
        Class::Email => email::mask(canonical),
        Class::Phone => layout.render(&phone::mask(canonical)),
        Class::Name | Class::Address | Class::Text => text::mask(canonical),
        Class::Cvc => "*".repeat(canonical.len()),
    }
}

/// Country code and last four kept, the rest starred.
fn mask_iban(canonical: &str) -> String {
    let n = canonical.chars().count();
    canonical.chars().enumerate().map(|(i, c)| if i < 2 || i + 4 >= n { c } else { '*' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_what_is_safe() {
        let p = parse(Class::Pan, "4111 1111 1111 1111").unwrap();
        assert_eq!(mask(Class::Pan, &p.canonical, &p.layout), "**** **** **** 1111");
        let i = parse(Class::Iban, "DE89370400440532013000").unwrap();
        assert_eq!(mask(Class::Iban, &i.canonical, &i.layout), "DE****************3000");
    }
}
