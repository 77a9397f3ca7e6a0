//! The methods of the former ESER system of the East German savings banks (52, 53, and through them B6, C0):
//! the check digit belongs to the old account number, which is rebuilt from the bank code and the account.
//!
//! The old number is the last four digits of the bank code (52) or a mix of bank-code and account digits (53),
//! then the account's leading digit(s) and its check digit, then the rest of the account without leading zeros.
//! Its digits are weighted 2, 4, 8, 5, 10, 9, 7, 3, 6, 1, 2, 4 from the right with the check digit as 0; the check
//! digit is the factor `i` (0–9) of the weight over it that brings the sum to remainder 10 mod 11.

use super::common::{at, leading_zeros, Digits};
use super::mod11::m20;

const WEIGHTS: [u32; 12] = [2, 4, 8, 5, 10, 9, 7, 3, 6, 1, 2, 4];

/// The digits of an eight-digit bank code, position 1 first.
fn blz_digits(blz: u32) -> [u32; 8] {
    let mut out = [0; 8];
    let mut n = blz;
    for slot in out.iter_mut().rev() {
        *slot = n % 10;
        n /= 10;
    }
    out
}

/// Checks an old ESER account number whose check digit is at index 5 (the sixth digit).
fn old_number_valid(old: &[u32]) -> bool {
    if old.len() > WEIGHTS.len() || old.len() < 6 {
        return false;
    }
    let mut sum = 0;
    let mut over_check = 0;
    for (i, (&digit, &w)) in old.iter().rev().zip(WEIGHTS.iter()).enumerate() {
        if old.len() - 1 - i == 5 {
            over_check = w;
        } else {
            sum += digit * w;
        }
    }
    let r = sum % 11;
    let factor = (0..10).find(|i| (r + over_check * i) % 11 == 10);
    factor.is_some_and(|f| old.get(5) == Some(&f))
}

/// The ESER part of method 52: an eight- to ten-digit account at a bank whose code has 5 as its fourth digit.
pub(super) fn eser52(blz: u32, d: &Digits) -> bool {
    let zeros = leading_zeros(d);
    if zeros > 2 {
        return false;
    }
    let b = blz_digits(blz);
    let mut old: Vec<u32> = b.get(4..8).map(<[u32]>::to_vec).unwrap_or_default();
    old.push(at(d, zeros + 1));
    old.push(at(d, zeros + 2));
    old.extend((zeros + 3..=10).map(|p| at(d, p)).skip_while(|&x| x == 0));
    old_number_valid(&old)
}

/// 52: ten-digit numbers starting with 9 as 20, all others through the old ESER number.
pub(super) fn m52(blz: u32, d: &Digits) -> bool {
    if at(d, 1) == 9 {
        m20(d)
    } else {
        eser52(blz, d)
    }
}

/// 53: as 52 for nine-digit account numbers `XTPXXXXXX` (T goes into the old number, P is the check digit).
pub(super) fn m53(blz: u32, d: &Digits) -> bool {
    if at(d, 1) == 9 {
        return m20(d);
    }
    if at(d, 1) != 0 || at(d, 2) == 0 {
        return false;
    }
    let b = blz_digits(blz);
    let mut old = vec![b[4], b[5], at(d, 3), b[7], at(d, 2), at(d, 4)];
    old.extend((5..=10).map(|p| at(d, p)).skip_while(|&x| x == 0));
    old_number_valid(&old)
}
