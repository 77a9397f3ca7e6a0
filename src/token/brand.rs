//! Card brands from published IIN ranges (the first digits of a card number), for the card details the tokenize
//! API returns with each card token. The most specific range wins (Discover's `622126`–`622925` inside
//! UnionPay's `62`, Maestro's `6759` inside `67`). Sources: the networks' published IIN tables as summarised by
//! ISO/IEC 7812 registries (Visa 4; Mastercard 51–55 and 2221–2720; Amex 34, 37; Discover 6011, 644–649, 65;
//! Diners Club 300–305, 3095, 36, 38–39; JCB 3528–3589; UnionPay 62, 81; Maestro 5018, 5020, 5038, 5893, 6304,
//! 6759, 6761–6763; Mir 2200–2204; Troy 9792).

/// `(low, high, brand)`: every card number whose first `low.len()` digits lie in `low..=high` is of `brand`.
const RANGES: &[(&str, &str, &str)] = &[
    ("4", "4", "visa"),
    ("51", "55", "mastercard"),
    ("2221", "2720", "mastercard"),
    ("34", "34", "amex"),
    ("37", "37", "amex"),
    ("6011", "6011", "discover"),
    ("644", "649", "discover"),
    ("65", "65", "discover"),
    ("622126", "622925", "discover"),
    ("300", "305", "diners"),
    ("3095", "3095", "diners"),
    ("36", "36", "diners"),
    ("38", "39", "diners"),
    ("3528", "3589", "jcb"),
    ("62", "62", "unionpay"),
    ("81", "81", "unionpay"),
    ("5018", "5018", "maestro"),
    ("5020", "5020", "maestro"),
    ("5038", "5038", "maestro"),
    ("5893", "5893", "maestro"),
    ("6304", "6304", "maestro"),
    ("6759", "6759", "maestro"),
    ("6761", "6763", "maestro"),
    ("2200", "2204", "mir"),
    ("9792", "9792", "troy"),
];

/// The brand of a canonical card number (ASCII digits), or `"unknown"`.
pub fn brand(canonical: &str) -> &'static str {
    let mut best: Option<(usize, &str)> = None;
    for &(low, high, name) in RANGES {
        let Some(prefix) = canonical.get(..low.len()) else { continue };
        // Same length, ASCII digits: string order is numeric order.
        if (low..=high).contains(&prefix) && best.is_none_or(|(len, _)| low.len() > len) {
            best = Some((low.len(), name));
        }
    }
    best.map_or("unknown", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_cards_have_their_brands() {
        for (card, want) in [
            ("4111111111111111", "visa"),
            ("4000056655665556", "visa"),
            ("5555555555554444", "mastercard"),
            ("2223003122003222", "mastercard"),
            ("2720999999999996", "mastercard"),
            ("378282246310005", "amex"),
            ("371449635398431", "amex"),
            ("6011111111111117", "discover"),
            ("6445644564456445", "discover"),
            ("6221260000000000", "discover"),
            ("30569309025904", "diners"),
            ("36227206271667", "diners"),
            ("3530111333300000", "jcb"),
            ("3566002020360505", "jcb"),
            ("6200000000000005", "unionpay"),
            ("6229250000000000", "discover"),
            ("6229260000000000", "unionpay"),
            ("6759649826438453", "maestro"),
            ("5018000000000009", "maestro"),
            ("2200000000000004", "mir"),
            ("9792000000000001", "troy"),
            ("9900000000001111", "unknown"),
            ("1234567890123", "unknown"),
            ("", "unknown"),
        ] {
            assert_eq!(brand(card), want, "{card}");
        }
    }
}
