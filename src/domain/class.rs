//! The built-in data classes (`pan`, `iban`, …): their fixed names and their order.
//!
//! The list is written once, in the `classes!` invocation below; the enum, [`Class::ALL`] and the names come from
//! it, so a new class is one line here, and every `match` on `Class` elsewhere (token formats, detection,
//! masking) stops compiling until it handles the new class.

use std::fmt;
use std::str::FromStr;

macro_rules! classes {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// The built-in data classes (fixed names).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Class {
            $($variant),+
        }

        impl Class {
            /// Every class, in declaration order (metric series are kept by this index).
            pub const ALL: [Class; [$(Class::$variant),+].len()] = [$(Class::$variant),+];

            /// The fixed name of the class, as in config, the API and metric labels.
            pub fn name(self) -> &'static str {
                match self {
                    $(Class::$variant => $name),+
                }
            }
        }
    };
}

classes! {
    Pan => "pan",
    Iban => "iban",
    Email => "email",
    Phone => "phone",
    Name => "name",
    Address => "address",
    Text => "text",
    Cvc => "cvc",
}

impl Class {
    /// This class's position in [`Class::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn names() -> [&'static str; Class::ALL.len()] {
        Class::ALL.map(Class::name)
    }

    /// Can detection find values of this class in free text (each confirmed by its validator)?
    pub fn detectable(self) -> bool {
        match self {
            Class::Pan | Class::Iban | Class::Email | Class::Phone => true,
            Class::Name | Class::Address | Class::Text | Class::Cvc => false,
        }
    }

    /// Are this class's values few enough to enumerate (a card keeping BIN and last four leaves ~10^5 candidates,
    /// a phone number ~10^7 per area)? New values of these classes are budgeted, and where their tokens share
    /// the space of real values the ingress never takes a value for a token.
    pub fn enumerable(self) -> bool {
        match self {
            Class::Pan | Class::Iban | Class::Phone => true,
            // A CVC is never tokenised for good: kept bound to its card's token, revealed once, then erased.
            Class::Email | Class::Name | Class::Address | Class::Text | Class::Cvc => false,
        }
    }
}

/// A set of classes (a bitmask over [`Class::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassSet(u32);

impl ClassSet {
    pub fn insert(&mut self, class: Class) {
        self.0 |= 1 << class.index();
    }

    pub fn contains(self, class: Class) -> bool {
        self.0 & (1 << class.index()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in the set, in [`Class::ALL`] order.
    pub fn to_vec(self) -> Vec<Class> {
        Class::ALL.into_iter().filter(|c| self.contains(*c)).collect()
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Class, String> {
        Class::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown class; expected one of {}", Class::names().join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Class::ALL {
            assert_eq!(c.name().parse::<Class>().unwrap(), c);
        }
        for (i, c) in Class::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i, "{c}: metric series are kept by this index");
        }
        assert!("ssn".parse::<Class>().unwrap_err().contains("pan, iban"));
    }
}
