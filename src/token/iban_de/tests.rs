//! Tests of the check-digit methods, the bank-code table and German tokens.

use std::collections::BTreeSet;

use rand::rngs::mock::StepRng;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::examples::{BUNDESBANK, CROSS_CHECKED};
use super::*;
use crate::token::iban::{self, IbanFormat};
use crate::token::Invalid;

type Example = ([u8; 2], u32, &'static str, bool);

fn code(method: [u8; 2]) -> String {
    String::from_utf8_lossy(&method).into_owned()
}

#[test]
fn bundesbank_examples_hold() {
    let mut failures = Vec::new();
    for &(method, blz, account, right) in BUNDESBANK {
        if check(method, blz, account.as_bytes()) != right {
            failures.push(format!("{} {blz} {account}: expected {right}", code(method)));
        }
    }
    assert!(failures.is_empty(), "{} failures: {failures:#?}", failures.len());
}

#[test]
fn cross_checked_examples_hold() {
    let mut failures = Vec::new();
    for &(method, blz, account, right) in CROSS_CHECKED {
        if check(method, blz, account.as_bytes()) != right {
            failures.push(format!("{} {blz} {account}: expected {right}", code(method)));
        }
    }
    assert!(failures.is_empty(), "{} failures: {failures:#?}", failures.len());
}

#[test]
fn every_method_in_use_is_implemented_and_has_examples() {
    let in_use: BTreeSet<[u8; 2]> = banks().iter().map(|&(_, m)| m).collect();
    assert_eq!(in_use.len(), 93);
    for method in in_use {
        assert!(is_implemented(method), "{}", code(method));
        let examples = BUNDESBANK.iter().chain(CROSS_CHECKED).filter(|e| e.0 == method);
        let (right, wrong): (Vec<&Example>, Vec<&Example>) = examples.partition(|e| e.3);
        assert!(!right.is_empty(), "{}: no right example", code(method));
        assert!(method == *b"09" || !wrong.is_empty(), "{}: no wrong example", code(method));
    }
    assert!(!is_implemented(*b"12") && !is_implemented(*b"F0") && !is_implemented(*b"  "));
}

#[test]
fn bundesbank_examples_cover_the_variant_methods() {
    let covered: BTreeSet<[u8; 2]> = BUNDESBANK.iter().map(|e| e.0).collect();
    for method in [
        *b"24", *b"52", *b"53", *b"57", *b"61", *b"63", *b"68", *b"74", *b"76", *b"88", *b"91", *b"95", *b"96", *b"A2",
        *b"A4", *b"A8", *b"B6", *b"B8", *b"C0", *b"C1", *b"C5", *b"D2", *b"D8", *b"E4",
    ] {
        assert!(covered.contains(&method), "{}", code(method));
    }
}

#[test]
fn bank_code_dependent_methods_use_the_bank_code() {
    // 52: the ESER account number is built from the bank code (the Bundesbank's example 13051172 / 43001500).
    assert!(check(*b"52", 13_051_172, b"0043001500"));
    assert!(!check(*b"52", 13_051_173, b"0043001500"));
    // 53: 16052072 / 382432256.
    assert!(check(*b"53", 16_052_072, b"0382432256"));
    assert!(!check(*b"53", 16_052_172, b"0382432256"));
    // B6, second variant: method 53 with the bank code.
    assert!(check(*b"B6", 80_053_782, b"0487310018"));
    assert!(!check(*b"B6", 80_053_762, b"0467310018"));
    assert!(!check(*b"B6", 80_053_772, b"0477310018"));
}

#[test]
fn accounts_that_are_not_ten_digits_or_zero_are_wrong() {
    for method in [*b"00", *b"09", *b"52", *b"E4"] {
        assert!(!check(method, 13_051_172, b"0000000000"));
        assert!(!check(method, 13_051_172, b"123456789"));
        assert!(!check(method, 13_051_172, b"12345678901"));
        assert!(!check(method, 13_051_172, b"12345A7890"));
    }
    assert!(check(*b"09", 0, b"0000000001"));
    assert!(!check(*b"ZZ", 0, b"1234567890"));
}

#[test]
fn the_table_is_sorted_current_and_complete() {
    let banks = banks();
    assert_eq!(banks.len(), 3434);
    assert!(banks.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
    assert!(banks.iter().all(|&(blz, _)| (10_000_000..=99_999_999).contains(&blz)));
    assert_eq!((VALID_FROM, VALID_UNTIL), ("2026-09-07", "2026-12-06"));
    assert_eq!(method_of(37_040_044), Some(*b"13"), "Commerzbank Köln");
    assert_eq!(method_of(10_010_010), Some(*b"24"), "Postbank Berlin");
    assert_eq!(method_of(10_000_000), Some(*b"09"), "Bundesbank Berlin");
    assert_eq!(method_of(13_051_172), Some(*b"52"), "the Bundesbank's test bank for 52");
    assert_eq!(method_of(73_311_600), None, "marked for deletion");
    assert_eq!(method_of(69_291_099), None, "deleted with this file");
    assert_eq!(method_of(RESERVED_BLZ), None);
    assert_eq!(method_of(12_345_678), None);
}

#[test]
fn inputs_need_a_known_bank_but_not_a_right_account() {
    assert_eq!(bank_usable(b"370400440532013000"), Ok(()));
    assert_eq!(bank_usable(b"370400440532013105"), Ok(()), "an account its method refuses is still accepted");
    assert_eq!(bank_usable(b"999999990000000017"), Ok(()), "the reserved code of reserved-bank tokens");
    assert_eq!(
        bank_usable(b"123456780532013000"),
        Err(Invalid("the German bank code is not in the Bundesbank's bank-code file"))
    );
    assert!(bank_usable(b"37040044053201300").is_err());
    assert!(bban_valid(b"370400440532013000"));
    assert!(!bban_valid(b"370400440532013105"));
    assert!(bban_valid(b"999999991234567890"));
    assert!(!bban_valid(b"123456780532013000"));
}

#[test]
fn drawn_accounts_pass_their_method_for_every_bank() {
    let mut rng = StdRng::seed_from_u64(21);
    for &(blz, method) in banks() {
        for input in ["0000000001", "9999999999", "0043001500"] {
            let bban = format!("{blz:08}{input}");
            let drawn = draw_bban(bban.as_bytes(), 0, &mut rng).expect("every method in use is implemented");
            assert_eq!(&drawn[..8], &bban.as_bytes()[..8]);
            let shown = String::from_utf8_lossy(&drawn);
            assert!(check_for_token(method, blz, &drawn[8..]), "{blz} {}: {shown}", code(method));
            assert_ne!(&drawn[8..], input.as_bytes());
        }
    }
    assert_eq!(draw_bban(b"123456780000000001", 0, &mut rng), None, "unknown bank code");
}

#[test]
fn the_deterministic_search_finds_an_account_for_every_method() {
    // A constant generator draws the same number every time: the search after the random draws must still find
    // an account, and a different one when the input is the account it found before.
    let mut seen = BTreeSet::new();
    for &(blz, method) in banks() {
        if !seen.insert(method) {
            continue;
        }
        for input in ["0000000001", "1000000000", "9999999999", "0012345678"] {
            let bban = format!("{blz:08}{input}");
            let first = draw_bban(bban.as_bytes(), 0, &mut StepRng::new(0, 0));
            let first = first.unwrap_or_else(|| panic!("{} {input}", code(method)));
            assert!(check_for_token(method, blz, &first[8..]) && first[8..] != *input.as_bytes());
            let second = draw_bban(&first, 0, &mut StepRng::new(0, 0)).expect("found");
            assert!(check_for_token(method, blz, &second[8..]) && second != first, "{}", code(method));
        }
    }
}

/// A random valid German IBAN of the bank: an account of 5 to 10 digits drawn until the method accepts it.
fn valid_iban(blz: u32, method: [u8; 2], rng: &mut StdRng) -> String {
    loop {
        let zeros = rng.gen_range(0..=5u32);
        let account = format!("{:010}", rng.gen_range(10u64.pow(9 - zeros)..10u64.pow(10 - zeros)));
        if !check(method, blz, account.as_bytes()) {
            continue;
        }
        let bban = format!("{blz:08}{account}");
        let r = format!("{bban}131400").bytes().fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
        return format!("DE{:02}{bban}", 98 - r);
    }
}

#[test]
fn thousands_of_german_ibans_get_tokens_that_pass_their_banks_method() {
    let mut rng = StdRng::seed_from_u64(13616);
    let banks = banks();
    let mut codes = BTreeSet::new();
    let mut methods = BTreeSet::new();
    for _ in 0..2_000 {
        let (blz, method) = banks[rng.gen_range(0..banks.len())];
        let input = valid_iban(blz, method, &mut rng);
        assert!(iban::mod97_valid(&input), "{input}");
        assert_eq!(iban::validate(&input), Ok(()), "{input}");
        let token = iban::generate(&input, IbanFormat::KeepBank, 0, &mut rng);
        assert_ne!(token, input);
        assert_eq!(&token[4..12], &input[4..12], "bank code kept");
        assert!(iban::mod97_valid(&token), "{input} -> {token}: ISO 13616");
        assert_eq!(iban::validate(&token), Ok(()), "{input} -> {token}");
        assert!(check(method, blz, &token.as_bytes()[12..]), "{input} -> {token}: method {}", code(method));
        assert!(iban::national_check_valid(&token), "{input} -> {token}");
        codes.insert(blz);
        methods.insert(method);
    }
    assert!(codes.len() >= 200, "{} bank codes", codes.len());
    assert!(methods.len() >= 40, "{} methods", methods.len());
}

#[test]
fn every_method_gets_tokens_that_pass_it() {
    let mut rng = StdRng::seed_from_u64(52);
    let mut seen = BTreeSet::new();
    for &(blz, method) in banks() {
        if !seen.insert(method) {
            continue;
        }
        for _ in 0..20 {
            let input = valid_iban(blz, method, &mut rng);
            for attempt in [0, 40] {
                let token = iban::generate(&input, IbanFormat::KeepBank, attempt, &mut rng);
                assert!(check(method, blz, &token.as_bytes()[12..]), "{input} -> {token}: {}", code(method));
                assert!(iban::mod97_valid(&token) && token != input);
            }
            let reserved = iban::generate(&input, IbanFormat::ReservedBank, 0, &mut rng);
            assert_eq!(&reserved[4..12], "99999999");
            assert!(iban::national_check_valid(&reserved) && iban::validate(&reserved).is_ok(), "{reserved}");
        }
    }
    assert_eq!(seen.len(), 93);
}
