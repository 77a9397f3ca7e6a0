//! Permissions: `OPERATION:CLASS` with `*` wildcards, deny by default.

use std::fmt;
use std::str::FromStr;

use super::class::Class;

/// What a caller asks the vault to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Tokenize,
    Detokenize,
    Mask,
    Export,
    Erase,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Tokenize, Op::Detokenize, Op::Mask, Op::Export, Op::Erase];

    pub fn name(self) -> &'static str {
        match self {
            Op::Tokenize => "tokenize",
            Op::Detokenize => "detokenize",
            Op::Mask => "mask",
            Op::Export => "export",
            Op::Erase => "erase",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `allow` entry; `None` is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub op: Option<Op>,
    pub class: Option<Class>,
}

impl Permission {
    pub fn allows(&self, op: Op, class: Class) -> bool {
        self.op.is_none_or(|o| o == op) && self.class.is_none_or(|c| c == class)
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Permission, String> {
        let (op, class) = s.split_once(':').ok_or("expected OPERATION:CLASS, e.g. \"detokenize:pan\"")?;
        let op = match op {
            "*" => None,
            _ => Some(
                Op::ALL
                    .into_iter()
                    .find(|o| o.name() == op)
                    .ok_or("unknown operation; expected tokenize, detokenize, mask, export, erase or *")?,
            ),
        };
        let class = match class {
            "*" => None,
            _ => Some(class.parse::<Class>()?),
        };
        Ok(Permission { op, class })
    }
}

/// Deny by default: allowed only if some permission matches.
pub fn allowed(perms: &[Permission], op: Op, class: Class) -> bool {
    perms.iter().any(|p| p.allows(op, class))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(list: &[&str]) -> Vec<Permission> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn deny_by_default_and_wildcards() {
        assert!(!allowed(&[], Op::Detokenize, Class::Pan));
        let p = perms(&["detokenize:pan", "mask:*"]);
        assert!(allowed(&p, Op::Detokenize, Class::Pan));
        assert!(!allowed(&p, Op::Detokenize, Class::Iban));
        assert!(allowed(&p, Op::Mask, Class::Email));
        assert!(!allowed(&p, Op::Tokenize, Class::Pan));
        assert!(allowed(&perms(&["*:*"]), Op::Erase, Class::Text));
        assert!(allowed(&perms(&["*:iban"]), Op::Tokenize, Class::Iban));
    }

    #[test]
    fn malformed_permissions_are_refused() {
        for bad in ["detokenize", "fly:pan", "tokenize:ssn", ":", "detokenize:"] {
            assert!(bad.parse::<Permission>().is_err(), "{bad}");
        }
    }
}
