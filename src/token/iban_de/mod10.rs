//! The modulus 10 methods: weights 2-1 with cross sums (00 and its many variations), 3-7-1 and 7-3-1 (01, 05),
//! the iterated transformation M10H (27, 29), and the methods that check only part of the account number.

use super::common::{
    at, cross, is, leading_zeros, m10h_sum, mod10, shifted_left, value, weighted, weighted_cross, Digits,
};

const W21: &[u32] = &[2, 1];

/// 00: weights 2, 1, 2, … from the right over positions 1–9 with cross sums; check digit at 10.
pub(super) fn m00(d: &Digits) -> bool {
    is(d, 10, mod10(weighted_cross(d, 1, 9, W21)))
}

/// 01: weights 3, 7, 1 over positions 1–9.
pub(super) fn m01(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 1, 9, &[3, 7, 1])))
}

/// 03: weights 2, 1 without cross sums.
pub(super) fn m03(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 1, 9, W21)))
}

/// 05: weights 7, 3, 1.
pub(super) fn m05(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 1, 9, &[7, 3, 1])))
}

/// 08: as 00, from account number 60 000 on (smaller ones are not checked).
pub(super) fn m08(d: &Digits) -> bool {
    value(d) < 60_000 || m00(d)
}

/// 13: six-digit base number at 2–7, check digit at 8; failing that, the number without its sub-account
/// (shifted two positions to the left), for numbers starting with 00.
pub(super) fn m13(d: &Digits) -> bool {
    let base = |d: &Digits| is(d, 8, mod10(weighted_cross(d, 2, 7, W21)));
    base(d) || (at(d, 1) == 0 && at(d, 2) == 0 && base(&shifted_left(d, 2)))
}

/// 18: weights 3, 9, 7, 1.
pub(super) fn m18(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 1, 9, &[3, 9, 7, 1])))
}

/// 21: as 00, but the sum is reduced by repeated cross sums to one digit, subtracted from 10.
pub(super) fn m21(d: &Digits) -> bool {
    let mut sum = weighted_cross(d, 1, 9, W21);
    while sum > 9 {
        sum = cross(sum);
    }
    is(d, 10, 10 - sum)
}

/// 22: weights 3, 1; only the unit digit of each product counts.
pub(super) fn m22(d: &Digits) -> bool {
    let sum: u32 = (1..=9).rev().zip([3, 1].iter().cycle()).map(|(p, w)| at(d, p) * w % 10).sum();
    is(d, 10, mod10(sum))
}

/// 27: as 00 up to 999 999 999, the iterated transformation (29) from 1 000 000 000.
pub(super) fn m27(d: &Digits) -> bool {
    if value(d) < 1_000_000_000 {
        m00(d)
    } else {
        m29(d)
    }
}

/// 29: iterated transformation M10H over positions 1–9.
pub(super) fn m29(d: &Digits) -> bool {
    is(d, 10, mod10(m10h_sum(d)))
}

/// 30: weights 2, 0, 0, 0, 0, 1, 2, 1, 2 from the left, no cross sums.
pub(super) fn m30(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 1, 9, &[2, 1, 2, 1, 0, 0, 0, 0, 2])))
}

/// 41: as 00; when position 4 is 9, positions 1–3 are left out.
pub(super) fn m41(d: &Digits) -> bool {
    let first = if at(d, 4) == 9 { 4 } else { 1 };
    is(d, 10, mod10(weighted_cross(d, first, 9, W21)))
}

/// 43: weights 1 to 9 from the right, modulus 10.
pub(super) fn m43(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 1, 9, &[1, 2, 3, 4, 5, 6, 7, 8, 9])))
}

/// 59: as 00; numbers of fewer than nine digits are not checked.
pub(super) fn m59(d: &Digits) -> bool {
    value(d) < 100_000_000 || m00(d)
}

/// 60: as 00 over positions 3–9.
pub(super) fn m60(d: &Digits) -> bool {
    is(d, 10, mod10(weighted_cross(d, 3, 9, W21)))
}

/// 61: as 00 over positions 1–7, check digit at 8; when position 9 is 8, positions 9 and 10 count too.
pub(super) fn m61(d: &Digits) -> bool {
    let mut sum = weighted_cross(d, 1, 7, W21);
    if at(d, 9) == 8 {
        sum += cross(at(d, 9)) + cross(at(d, 10) * 2);
    }
    is(d, 8, mod10(sum))
}

/// 63: six-digit base number at 2–7, check digit at 8, position 1 must be 0; a number starting with 000 may
/// lack its sub-account 00 (base number at 4–9, check digit at 10).
pub(super) fn m63(d: &Digits) -> bool {
    if at(d, 1) != 0 {
        return false;
    }
    if is(d, 8, mod10(weighted_cross(d, 2, 7, W21))) {
        return true;
    }
    at(d, 2) == 0 && at(d, 3) == 0 && is(d, 10, mod10(weighted_cross(d, 4, 9, W21)))
}

/// 65: as 00 over positions 1–7, check digit at 8; when position 9 is 9, positions 9 and 10 count too.
pub(super) fn m65(d: &Digits) -> bool {
    let mut sum = weighted_cross(d, 1, 7, W21);
    if at(d, 9) == 9 {
        sum += cross(at(d, 9)) + cross(at(d, 10) * 2);
    }
    is(d, 8, mod10(sum))
}

/// 67: as 00 over positions 1–7, check digit at 8.
pub(super) fn m67(d: &Digits) -> bool {
    is(d, 8, mod10(weighted_cross(d, 1, 7, W21)))
}

/// 68: numbers of six to ten digits. Ten-digit numbers: positions 4–9, position 4 must be 9. Nine-digit numbers
/// 400 000 000 to 499 999 999 are not checked. Other numbers: as 00, or failing that as 00 without positions 3
/// and 4 (the 7th and 8th from the right).
pub(super) fn m68(d: &Digits) -> bool {
    let n = value(d);
    if n < 100_000 {
        return false;
    }
    if at(d, 1) != 0 {
        return at(d, 4) == 9 && is(d, 10, mod10(weighted_cross(d, 4, 9, W21)));
    }
    if (400_000_000..=499_999_999).contains(&n) {
        return true;
    }
    if m00(d) {
        return true;
    }
    is(d, 10, mod10(at(d, 2) + weighted_cross(d, 5, 9, W21)))
}

/// 74 (first variant): as 00; a six-digit number may also carry the digit that brings the sum to the next
/// half-decade.
pub(super) fn m74_v1(d: &Digits) -> bool {
    let sum = weighted_cross(d, 1, 9, W21);
    if is(d, 10, mod10(sum)) {
        return true;
    }
    // The sum brought up to the next half-decade (…5): 21 gives 4, 27 gives 8.
    leading_zeros(d) == 4 && is(d, 10, mod10(sum + 5))
}

/// 78: as 00; eight-digit numbers are not checked.
pub(super) fn m78(d: &Digits) -> bool {
    leading_zeros(d) == 2 || m00(d)
}

/// 92: weights 3, 7, 1 over positions 4–9.
pub(super) fn m92(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 4, 9, &[3, 7, 1])))
}

/// 94: as 00 with weights 1, 2, 1, … from the right.
pub(super) fn m94(d: &Digits) -> bool {
    is(d, 10, mod10(weighted_cross(d, 1, 9, &[1, 2])))
}

/// 98: weights 3, 1, 7 over positions 3–9 (as 01); failing that, method 32.
pub(super) fn m98(d: &Digits) -> bool {
    is(d, 10, mod10(weighted(d, 3, 9, &[3, 1, 7]))) || super::mod11::m32(d)
}

/// D7: as 00, but the unit digit of the sum is the check digit.
pub(super) fn md7(d: &Digits) -> bool {
    is(d, 10, weighted_cross(d, 1, 9, W21) % 10)
}

/// E0: as 00 with 7 added to the sum.
pub(super) fn me0(d: &Digits) -> bool {
    is(d, 10, mod10(weighted_cross(d, 1, 9, W21) + 7))
}
