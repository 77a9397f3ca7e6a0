//! Purposes: the short label (`payment`, `egress:psp`) a reveal is recorded under in the audit log.
//!
//! A purpose is written to the audit log and into subject exports, so it must be a label no value can hide in:
//! 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`, `:`, and no run of digits long enough to be a card number or the
//! account part of an IBAN. The vault API and config checks use this one rule, so the vault never refuses a
//! purpose the config accepted.

/// The longest run of digits a purpose may hold (a card number has at least 12, IBAN account parts as many).
const MAX_DIGIT_RUN: usize = 8;

/// Why `purpose` is not acceptable, if it is not. A fixed sentence: never the purpose itself.
pub fn problem(purpose: &str) -> Option<&'static str> {
    let label = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c);
    if purpose.is_empty() || purpose.len() > 64 || !purpose.chars().all(label) {
        return Some("purpose must be a short label: 1 to 64 of a-z, 0-9, '-', '_', '.', ':'");
    }
    // Separators between digits would let a card through in groups: count digits across them.
    let longest = purpose
        .split(|c: char| c.is_ascii_lowercase())
        .map(|run| run.chars().filter(char::is_ascii_digit).count())
        .max()
        .unwrap_or(0);
    (longest > MAX_DIGIT_RUN).then_some("purpose must not hold more than 8 digits in a row (it could hold a value)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_accepted() {
        for ok in ["payment", "egress:psp", "refund-2024", "a.b_c:d-e", "order:12345678"] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn values_cannot_hide_in_a_purpose() {
        for bad in [
            "",
            "Payment",
            "pay ment",
            "4111111111111111",
            "pay:4111111111111111",
            "4111-1111-1111-1111",
            "x:4111.1111.1111.1111",
            "de89370400440532013000",
            "jane@example.org",
            &"a".repeat(65),
        ] {
            assert!(problem(bad).is_some(), "{bad}");
        }
    }
}
