//! Arithmetic shared by the check-digit methods: digit access by the Bundesbank's 1-based positions, weighted
//! sums, cross sums and the usual ways a sum becomes a check digit.
//!
//! Positions are counted from the left of the ten-digit account number (1 to 10), as in the Bundesbank's
//! descriptions. Weights are listed as the Bundesbank lists them: applied from the right-most position of the
//! range leftwards, repeating when the list is shorter than the range.

/// A ten-digit account number as digit values (position 1 at index 0).
pub(super) type Digits = [u32; 10];

/// The digit at a 1-based position (0 outside 1..=10, never expected).
pub(super) fn at(d: &Digits, position: usize) -> u32 {
    position.checked_sub(1).and_then(|i| d.get(i)).copied().unwrap_or(0)
}

/// The number formed by positions `first..=last`.
pub(super) fn number(d: &Digits, first: usize, last: usize) -> u64 {
    (first..=last).fold(0u64, |n, p| n * 10 + u64::from(at(d, p)))
}

/// The whole account number as a number.
pub(super) fn value(d: &Digits) -> u64 {
    number(d, 1, 10)
}

/// How many leading zeros the ten-digit form has.
pub(super) fn leading_zeros(d: &Digits) -> usize {
    d.iter().take_while(|&&x| x == 0).count()
}

/// Cross sum (Quersumme) of a number.
pub(super) fn cross(mut n: u32) -> u32 {
    let mut sum = 0;
    while n > 0 {
        sum += n % 10;
        n /= 10;
    }
    sum
}

/// Σ digit × weight over positions `first..=last`, weights from `last` leftwards (repeating).
pub(super) fn weighted(d: &Digits, first: usize, last: usize, weights: &[u32]) -> u32 {
    (first..=last).rev().zip(weights.iter().cycle()).map(|(p, w)| at(d, p) * w).sum()
}

/// Like [`weighted`], but the cross sum of every product is added (the "Quersumme" methods, 00 and kin).
pub(super) fn weighted_cross(d: &Digits, first: usize, last: usize, weights: &[u32]) -> u32 {
    (first..=last).rev().zip(weights.iter().cycle()).map(|(p, w)| cross(at(d, p) * w)).sum()
}

/// Modulus 10: `10 − sum mod 10`, 10 becoming 0.
pub(super) fn mod10(sum: u32) -> u32 {
    (10 - sum % 10) % 10
}

/// Modulus 11 as in method 06: `11 − sum mod 11`, where remainders 0 and 1 give 0.
pub(super) fn mod11_06(sum: u32) -> u32 {
    match sum % 11 {
        0 | 1 => 0,
        r => 11 - r,
    }
}

/// Modulus 11 as in method 02: `11 − sum mod 11`, remainder 0 gives 0, remainder 1 gives no usable digit.
pub(super) fn mod11_02(sum: u32) -> Option<u32> {
    match sum % 11 {
        0 => Some(0),
        1 => None,
        r => Some(11 - r),
    }
}

/// Whether `check` is the digit at `position`.
pub(super) fn is(d: &Digits, position: usize, check: u32) -> bool {
    at(d, position) == check
}

/// Whether an optional check digit is the digit at `position` (`None` never is).
pub(super) fn is_some(d: &Digits, position: usize, check: Option<u32>) -> bool {
    check.is_some_and(|c| at(d, position) == c)
}

/// The account moved `by` positions to the left, zeros filling in from the right (the "imagined sub-account").
pub(super) fn shifted_left(d: &Digits, by: usize) -> Digits {
    let mut out = [0; 10];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = d.get(i + by).copied().unwrap_or(0);
    }
    out
}

/// The iterated transformation table of methods 27 and 29 (M10H): row by position from the right.
const M10H: [[u32; 10]; 4] = [
    [0, 1, 5, 9, 3, 7, 4, 8, 2, 6],
    [0, 1, 7, 6, 9, 8, 3, 2, 5, 4],
    [0, 1, 8, 4, 6, 2, 9, 5, 7, 3],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
];

/// Sum of the M10H transformation over positions 1..=9 (position 9 uses row 1, position 8 row 2, …).
pub(super) fn m10h_sum(d: &Digits) -> u32 {
    (1..=9).rev().enumerate().map(|(i, p)| M10H[i % 4][at(d, p) as usize % 10]).sum()
}
