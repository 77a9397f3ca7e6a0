//! The modulus 11 methods: weights 2 to 7 (06 and the methods that restrict it to part of the account number),
//! 2 to 10 (10, 11), the A-weights 2, 4, 8, 5, 10, 9, 7, 3, 6 (34, 38, 40, 44), and those with ranges that are
//! not checked (95, 99).

use super::common::{at, is, is_some, mod11_02, mod11_06, number, shifted_left, value, weighted, Digits};

const W2_7: &[u32] = &[2, 3, 4, 5, 6, 7];
const W2_10: &[u32] = &[2, 3, 4, 5, 6, 7, 8, 9, 10];
const WA: &[u32] = &[2, 4, 8, 5, 10, 9, 7, 3, 6];

/// 02: weights 2 to 9, then 2; remainder 1 makes the number unusable.
pub(super) fn m02(d: &Digits) -> bool {
    is_some(d, 10, mod11_02(weighted(d, 1, 9, &[2, 3, 4, 5, 6, 7, 8, 9, 2])))
}

/// 04: weights 2 to 7 repeating; remainder 1 makes the number unusable.
pub(super) fn m04(d: &Digits) -> bool {
    is_some(d, 10, mod11_02(weighted(d, 1, 9, W2_7)))
}

/// 06: weights 2 to 7 repeating over positions 1–9; remainders 0 and 1 give 0.
pub(super) fn m06(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 1, 9, W2_7)))
}

/// 07: weights 2 to 10; remainder 1 makes the number unusable.
pub(super) fn m07(d: &Digits) -> bool {
    is_some(d, 10, mod11_02(weighted(d, 1, 9, W2_10)))
}

/// 10: weights 2 to 10, as 06.
pub(super) fn m10(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 1, 9, W2_10)))
}

/// 11: weights 2 to 10, as 06 but remainder 1 gives 9.
pub(super) fn m11(d: &Digits) -> bool {
    let check = match weighted(d, 1, 9, W2_10) % 11 {
        0 => 0,
        1 => 9,
        r => 11 - r,
    };
    is(d, 10, check)
}

/// 16: as 06 (weights 2 to 7, 2, 3, 4); remainder 1: right when positions 9 and 10 are equal.
pub(super) fn m16(d: &Digits) -> bool {
    let sum = weighted(d, 1, 9, W2_7);
    if sum % 11 == 1 {
        at(d, 9) == at(d, 10)
    } else {
        is(d, 10, mod11_06(sum))
    }
}

/// 17: base number at 2–7 weighted 1, 2, 1, 2, 1, 2 from the left with cross sums, minus 1, mod 11, subtracted
/// from 10; check digit at 8.
pub(super) fn m17(d: &Digits) -> bool {
    is_some(d, 8, mod11_17(d, 2, 7))
}

/// The check digit of method 17 (and C1) over positions `first..=last`, weights 1, 2, … from the left. A sum of 0
/// (minus 1 makes it negative) gives no check digit, as in konto_check: such numbers are wrong.
pub(super) fn mod11_17(d: &Digits, first: usize, last: usize) -> Option<u32> {
    let sum: u32 = (first..=last).zip([1, 2].iter().cycle()).map(|(p, w)| super::common::cross(at(d, p) * w)).sum();
    match sum.checked_sub(1)? % 11 {
        0 => Some(0),
        r => Some(10 - r),
    }
}

/// 19: weights 2 to 9, then 1; as 06.
pub(super) fn m19(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 1, 9, &[2, 3, 4, 5, 6, 7, 8, 9, 1])))
}

/// 20: weights 2 to 9, then 3; as 06.
pub(super) fn m20(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 1, 9, &[2, 3, 4, 5, 6, 7, 8, 9, 3])))
}

/// 25: weights 2 to 9 over positions 2–9; remainder 1 gives 0, allowed only when position 2 is 8 or 9.
pub(super) fn m25(d: &Digits) -> bool {
    match weighted(d, 2, 9, &[2, 3, 4, 5, 6, 7, 8, 9]) % 11 {
        0 => is(d, 10, 0),
        1 => is(d, 10, 0) && matches!(at(d, 2), 8 | 9),
        r => is(d, 10, 11 - r),
    }
}

/// 26: weights 2 to 7, 2 over positions 1–7, check digit at 8; a number starting with 00 is shifted two positions
/// to the left first.
pub(super) fn m26(d: &Digits) -> bool {
    let d = if at(d, 1) == 0 && at(d, 2) == 0 { shifted_left(d, 2) } else { *d };
    is(&d, 8, mod11_06(weighted(&d, 1, 7, W2_7)))
}

/// 28: weights 2 to 8 over positions 1–7, check digit at 8.
pub(super) fn m28(d: &Digits) -> bool {
    is(d, 8, mod11_06(weighted(d, 1, 7, &[2, 3, 4, 5, 6, 7, 8])))
}

/// 31: weights 9 to 1 from the right; the remainder is the check digit, 10 makes the number wrong.
pub(super) fn m31(d: &Digits) -> bool {
    let r = weighted(d, 1, 9, &[9, 8, 7, 6, 5, 4, 3, 2, 1]) % 11;
    r < 10 && is(d, 10, r)
}

/// 32: weights 2 to 7 over positions 4–9, as 06.
pub(super) fn m32(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 4, 9, W2_7)))
}

/// 33: weights 2 to 6 over positions 5–9, as 06.
pub(super) fn m33(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 5, 9, W2_7)))
}

/// 34: weights 2, 4, 8, 5, 10, 9, 7 over positions 1–7, check digit at 8.
pub(super) fn m34(d: &Digits) -> bool {
    is(d, 8, mod11_06(weighted(d, 1, 7, WA)))
}

/// 38: weights 2, 4, 8, 5, 10, 9 over positions 4–9.
pub(super) fn m38(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 4, 9, WA)))
}

/// 40: weights 2, 4, 8, 5, 10, 9, 7, 3, 6 over positions 1–9.
pub(super) fn m40(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 1, 9, WA)))
}

/// 42: weights 2 to 9 over positions 2–9.
pub(super) fn m42(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 2, 9, &[2, 3, 4, 5, 6, 7, 8, 9])))
}

/// 44: weights 2, 4, 8, 5, 10 over positions 5–9.
pub(super) fn m44(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 5, 9, WA)))
}

/// 46: weights 2 to 6 over positions 3–7, check digit at 8.
pub(super) fn m46(d: &Digits) -> bool {
    is(d, 8, mod11_06(weighted(d, 3, 7, W2_7)))
}

/// 47: weights 2 to 6 over positions 4–8, check digit at 9.
pub(super) fn m47(d: &Digits) -> bool {
    is(d, 9, mod11_06(weighted(d, 4, 8, W2_7)))
}

/// 48: weights 2 to 7 over positions 3–8, check digit at 9.
pub(super) fn m48(d: &Digits) -> bool {
    is(d, 9, mod11_06(weighted(d, 3, 8, W2_7)))
}

/// 50: weights 2 to 7 over positions 1–6, check digit at 7; a number starting with 000 may lack its
/// sub-account 000 (shifted three positions to the left).
pub(super) fn m50(d: &Digits) -> bool {
    let base = |d: &Digits| is(d, 7, mod11_06(weighted(d, 1, 6, W2_7)));
    base(d) || (number(d, 1, 3) == 0 && base(&shifted_left(d, 3)))
}

/// 51, the exception for position 3 = 9 (also used by A8): weights 2 to 8 over positions 3–9, failing that
/// weights 2 to 10 over positions 1–9, both as 06.
pub(super) fn m51_exception(d: &Digits) -> bool {
    is(d, 10, mod11_06(weighted(d, 3, 9, &[2, 3, 4, 5, 6, 7, 8]))) || is(d, 10, mod11_06(weighted(d, 1, 9, W2_10)))
}

/// 56: weights 2 to 7, 2, 3, 4; results 10 and 11 are wrong, except for ten-digit numbers starting with 9,
/// where they give 7 and 8.
pub(super) fn m56(d: &Digits) -> bool {
    let check = 11 - weighted(d, 1, 9, W2_7) % 11;
    match check {
        10 | 11 if at(d, 1) == 9 => is(d, 10, check - 3),
        10 | 11 => false,
        c => is(d, 10, c),
    }
}

/// 58: weights 2 to 6 over positions 5–9; remainder 1 makes the number wrong, as do numbers under six digits.
pub(super) fn m58(d: &Digits) -> bool {
    number(d, 1, 5) != 0 && is_some(d, 10, mod11_02(weighted(d, 5, 9, W2_7)))
}

/// 64: weights 9, 10, 5, 8, 4, 2 from the left over positions 1–6, check digit at 7.
pub(super) fn m64(d: &Digits) -> bool {
    is(d, 7, mod11_06(weighted(d, 1, 6, &[2, 4, 8, 5, 10, 9])))
}

/// 71: weights 6 to 1 from the left over positions 2–7; remainder 1 gives 1.
pub(super) fn m71(d: &Digits) -> bool {
    let check = match weighted(d, 2, 7, &[1, 2, 3, 4, 5, 6]) % 11 {
        0 => 0,
        1 => 1,
        r => 11 - r,
    };
    is(d, 10, check)
}

/// 76: account type (position 1: 0, 4, 6, 7, 8 or 9), base number at 2–7 weighted 2 to 7, the remainder is the
/// check digit at 8; a number starting with 00 may lack its sub-account 00 (everything two positions right).
pub(super) fn m76(d: &Digits) -> bool {
    let kind_ok = |k: u32| matches!(k, 0 | 4 | 6 | 7 | 8 | 9);
    let r = weighted(d, 2, 7, W2_7) % 11;
    if kind_ok(at(d, 1)) && r < 10 && is(d, 8, r) {
        return true;
    }
    if at(d, 1) != 0 || at(d, 2) != 0 || !kind_ok(at(d, 3)) {
        return false;
    }
    let r = weighted(d, 4, 9, W2_7) % 11;
    r < 10 && is(d, 10, r)
}

/// 88: weights 2 to 7 over positions 4–9; when position 3 is 9, weights 2 to 8 over positions 3–9.
pub(super) fn m88(d: &Digits) -> bool {
    let sum = if at(d, 3) == 9 { weighted(d, 3, 9, &[2, 3, 4, 5, 6, 7, 8]) } else { weighted(d, 4, 9, W2_7) };
    is(d, 10, mod11_06(sum))
}

/// 93: a five-digit base number with its check digit at 6 (or, for numbers starting with 0000, at 5–9 with the
/// check digit at 10), weights 2 to 6, modulus 11 as 06; failing that, modulus 7.
pub(super) fn m93(d: &Digits) -> bool {
    let (sum, check_at) =
        if number(d, 1, 4) == 0 { (weighted(d, 5, 9, W2_7), 10) } else { (weighted(d, 1, 5, W2_7), 6) };
    is(d, check_at, mod11_06(sum)) || is(d, check_at, (7 - sum % 7) % 7)
}

/// Account ranges without a check digit in method 95 since 2013-03 (as D2 reads them).
const UNCHECKED_95_D2: [(u64, u64); 4] =
    [(1, 1_999_999), (9_000_000, 25_999_999), (396_000_000, 499_999_999), (700_000_000, 799_999_999)];

/// 95: as 06 (weights 2 to 7, 2, 3, 4), except the ranges that carry no check digit (since 2013-09 also
/// 0910000000–0989999999).
pub(super) fn m95(d: &Digits) -> bool {
    let n = value(d);
    (910_000_000..=989_999_999).contains(&n) || m95_d2(d)
}

/// 95 as its first variant in D2: D2 was defined in 2013-03, before 95 gained the range 0910000000–0989999999;
/// that range is checked here (konto_check reads it so; the stricter reading is the safe one for tokens).
pub(super) fn m95_d2(d: &Digits) -> bool {
    let n = value(d);
    UNCHECKED_95_D2.iter().any(|&(lo, hi)| (lo..=hi).contains(&n)) || m06(d)
}

/// 99: as 06, except 0396000000 to 0499999999, which carry no check digit.
pub(super) fn m99(d: &Digits) -> bool {
    (396_000_000..=499_999_999).contains(&value(d)) || m06(d)
}
