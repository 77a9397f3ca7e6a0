//! The plain notation of a JSON number: how an application that parses it prints its value back.
//!
//! A number is text to the application twice over: a parser that keeps numbers as written (Go's `json.Number`,
//! Python's `parse_float=str`, a JSON column) hands on its raw text, and one that reads the value prints it in
//! plain notation (`5.555555555554444e15` is `5555555555554444` to JavaScript, `BigDecimal::toPlainString`, a
//! Rust `f64`). Detection reads both; [`plain`] gives the second form.
//!
//! Plain notation: an optional `-`, the significant digits with the decimal point moved by the exponent, no
//! leading zeros before the point (one `0` when the value is below one), no trailing zeros after it, no point
//! when nothing follows it; zero is `0` (or `-0`). An exponent can pad the digits with more zeros than any value
//! of a class can hold beside them: past [`MAX_PADDING`] zeros the padding is cut to that many, so that reading
//! `1e999999999` costs no more than reading `1e40` ([`Plain::Cut`]).

/// Most zeros of padding kept in a plain form (the longest value detection looks for has 34 characters).
pub const MAX_PADDING: usize = 40;

/// The plain form of a number, next to its raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    /// The raw text is already in plain notation.
    Same,
    /// The plain notation, different from the raw text.
    Text(String),
    /// The plain notation with its padding cut to [`MAX_PADDING`] zeros: fit for reading, not for writing.
    Cut(String),
}

/// The plain notation of `raw`, a number already checked to be valid JSON.
pub fn plain(raw: &str) -> Plain {
    let (negative, unsigned) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (unsigned.get(..at).unwrap_or_default(), Some(unsigned.get(at + 1..).unwrap_or_default())),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if exponent.is_none() && !frac.ends_with('0') {
        return Plain::Same;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    // Where the decimal point goes, counted from the first significant digit.
    let leading = digits.len() - significant.len();
    let point = exponent.map_or(0, parse_exponent) + signed(int.len()) - signed(leading);
    let significant = significant.trim_end_matches('0');
    let mut out = String::with_capacity(significant.len() + MAX_PADDING + 3);
    if negative {
        out.push('-');
    }
    let mut cut = false;
    let mut pad = |out: &mut String, zeros: i64| {
        let zeros = usize::try_from(zeros).unwrap_or(0);
        cut |= zeros > MAX_PADDING;
        out.extend(std::iter::repeat_n('0', zeros.min(MAX_PADDING)));
    };
    if significant.is_empty() {
        out.push('0');
    } else if point <= 0 {
        out.push_str("0.");
        pad(&mut out, -point);
        out.push_str(significant);
    } else if point >= signed(significant.len()) {
        out.push_str(significant);
        pad(&mut out, point - signed(significant.len()));
    } else {
        let at = usize::try_from(point).unwrap_or(0);
        out.push_str(significant.get(..at).unwrap_or_default());
        out.push('.');
        out.push_str(significant.get(at..).unwrap_or_default());
    }
    match (cut, out == raw) {
        (true, _) => Plain::Cut(out),
        (false, true) => Plain::Same,
        (false, false) => Plain::Text(out),
    }
}

/// A length as a signed count (a body is far below `i64::MAX` bytes).
fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An exponent's value, saturated far beyond any padding that is kept (so arithmetic on it cannot overflow).
fn parse_exponent(e: &str) -> i64 {
    const LIMIT: i64 = 1 << 40;
    let (negative, digits) = match e.as_bytes().first() {
        Some(b'-') => (true, e.get(1..).unwrap_or_default()),
        Some(b'+') => (false, e.get(1..).unwrap_or_default()),
        _ => (false, e),
    };
    let value = digits.bytes().fold(0i64, |v, d| (v * 10 + i64::from(d - b'0')).min(LIMIT));
    if negative {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Plain {
        Plain::Text(s.to_owned())
    }

    #[test]
    fn plain_notation_of_numbers() {
        for same in ["0", "-0", "1", "-5555555555554444", "1.5", "0.25", "10", "5555555555554444.25"] {
            assert_eq!(plain(same), Plain::Same, "{same}");
        }
        assert_eq!(plain("5.555555555554444e15"), text("5555555555554444"));
        assert_eq!(plain("-5.555555555554444E+15"), text("-5555555555554444"));
        assert_eq!(plain("5555555555554444.000"), text("5555555555554444"));
        assert_eq!(plain("555555555555444400e-2"), text("5555555555554444"));
        assert_eq!(plain("0.5555555555554444e1"), text("5.555555555554444"));
        assert_eq!(plain("1.5e-3"), text("0.0015"));
        assert_eq!(plain("12e2"), text("1200"));
        assert_eq!(plain("1.0"), text("1"));
        assert_eq!(plain("0.0e5"), text("0"));
        assert_eq!(plain("-0.00"), text("-0"));
        assert_eq!(plain("1e0"), text("1"));
        let forty = "0".repeat(MAX_PADDING);
        assert_eq!(plain("1e40"), text(&format!("1{forty}")));
        assert_eq!(plain("1e41"), Plain::Cut(format!("1{forty}")));
        assert_eq!(plain("5e-999999999999999999999"), Plain::Cut(format!("0.{forty}5")));
        assert_eq!(plain("5e999999999999999999999"), Plain::Cut(format!("5{forty}")));
    }

    proptest! {
        /// The plain form has the same value (up to cut padding), and is itself a plain JSON number.
        #[test]
        fn same_value(n in "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?") {
            let value = |s: &str| s.parse::<f64>().unwrap();
            match plain(&n) {
                Plain::Same => prop_assert!(!n.contains(['e', 'E'])),
                Plain::Text(p) => {
                    prop_assert!(super::super::tape::is_number(&p), "{}", p);
                    prop_assert_eq!(plain(&p), Plain::Same);
                    let (a, b) = (value(&n), value(&p));
                    prop_assert!((a - b).abs() <= a.abs() * 1e-12, "{} {}", n, p);
                }
                Plain::Cut(p) => prop_assert!(p.contains(&"0".repeat(MAX_PADDING))),
            }
        }
    }
}
