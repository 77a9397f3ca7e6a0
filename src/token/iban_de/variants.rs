//! The methods that combine others: variants tried in turn ("Variante 1, 2, 3": the first that holds makes the
//! number right) or chosen by the account's leading digits or range (A2 to E4, 49).

use super::common::{at, is, mod10, mod11_06, number, value, weighted, weighted_cross, Digits};
use super::mod10::{m00, m01, m03, m05, m21, m22, m29, m63, m68, m74_v1};
use super::mod11::{m02, m04, m06, m07, m10, m20, m32, m51_exception, m58, m93, m95_d2};

/// 49: 00, failing that 01.
pub(super) fn m49(d: &Digits) -> bool {
    m00(d) || m01(d)
}

/// 74: 00 with the half-decade rule for six-digit numbers, failing that 04; numbers of one digit are wrong.
pub(super) fn m74(d: &Digits) -> bool {
    value(d) >= 10 && (m74_v1(d) || m04(d))
}

/// A2: 00, failing that 04.
pub(super) fn ma2(d: &Digits) -> bool {
    m00(d) || m04(d)
}

/// A3: 00, failing that 10.
pub(super) fn ma3(d: &Digits) -> bool {
    m00(d) || m10(d)
}

/// A4: numbers with 99 at positions 3–4: weights 2 to 6 over 5–9 (as 06), failing that 93. Others: weights 2 to 7
/// over 4–9 as 06, failing that modulus 7 with the same weights, failing that 93.
pub(super) fn ma4(d: &Digits) -> bool {
    if number(d, 3, 4) == 99 {
        return is(d, 10, mod11_06(weighted(d, 5, 9, &[2, 3, 4, 5, 6]))) || m93(d);
    }
    let sum = weighted(d, 4, 9, &[2, 3, 4, 5, 6, 7]);
    is(d, 10, mod11_06(sum)) || is(d, 10, (7 - sum % 7) % 7) || m93(d)
}

/// A5: 00; failing that, ten-digit numbers starting with 9 are wrong and the others are checked with 10.
pub(super) fn ma5(d: &Digits) -> bool {
    m00(d) || (at(d, 1) != 9 && m10(d))
}

/// A6: 00 when position 2 is 8, otherwise 01.
pub(super) fn ma6(d: &Digits) -> bool {
    if at(d, 2) == 8 {
        m00(d)
    } else {
        m01(d)
    }
}

/// A7: 00, failing that 03.
pub(super) fn ma7(d: &Digits) -> bool {
    m00(d) || m03(d)
}

/// A8: position 3 = 9: the exception of 51. Otherwise weights 2 to 7 over 4–9 (as 06), failing that weights 2, 1
/// over 4–9 (as 00).
pub(super) fn ma8(d: &Digits) -> bool {
    if at(d, 3) == 9 {
        m51_exception(d)
    } else {
        m32(d) || is(d, 10, mod10(weighted_cross(d, 4, 9, &[2, 1])))
    }
}

/// B1: 05, failing that 01, failing that 00.
pub(super) fn mb1(d: &Digits) -> bool {
    m05(d) || m01(d) || m00(d)
}

/// B2: 02 when position 1 is 0–7, 00 when it is 8 or 9.
pub(super) fn mb2(d: &Digits) -> bool {
    if at(d, 1) <= 7 {
        m02(d)
    } else {
        m00(d)
    }
}

/// B3: 32 when position 1 is 0–8, 06 when it is 9.
pub(super) fn mb3(d: &Digits) -> bool {
    if at(d, 1) <= 8 {
        m32(d)
    } else {
        m06(d)
    }
}

/// B5: 05 (weights 7, 3, 1); failing that, numbers starting with 8 or 9 are wrong, others are checked with 00.
pub(super) fn mb5(d: &Digits) -> bool {
    m05(d) || (at(d, 1) < 8 && m00(d))
}

/// B6: 20 for numbers starting with 1–9 or 02691–02699, otherwise 53 (with the bank code).
pub(super) fn mb6(blz: u32, d: &Digits) -> bool {
    if at(d, 1) != 0 || (2691..=2699).contains(&number(d, 1, 5)) {
        m20(d)
    } else {
        super::eser::m53(blz, d)
    }
}

/// B7: 01 for 0001000000–0005999999 and 0700000000–0899999999, no check otherwise.
pub(super) fn mb7(d: &Digits) -> bool {
    let n = value(d);
    if (1_000_000..=5_999_999).contains(&n) || (700_000_000..=899_999_999).contains(&n) {
        m01(d)
    } else {
        true
    }
}

/// B8: 20, failing that 29, failing that right for 5100000000–5999999999 and 9010000000–9109999999.
pub(super) fn mb8(d: &Digits) -> bool {
    m20(d) || m29(d) || (51..=59).contains(&number(d, 1, 2)) || (901..=910).contains(&number(d, 1, 3))
}

/// C0: numbers with exactly two leading zeros: the ESER rule of 52, failing that 20; all others 20.
pub(super) fn mc0(blz: u32, d: &Digits) -> bool {
    (super::common::leading_zeros(d) == 2 && super::eser::eser52(blz, d)) || m20(d)
}

/// C2: 22, failing that 00, failing that 04.
pub(super) fn mc2(d: &Digits) -> bool {
    m22(d) || m00(d) || m04(d)
}

/// C3: 00 unless position 1 is 9, then 58.
pub(super) fn mc3(d: &Digits) -> bool {
    if at(d, 1) == 9 {
        m58(d)
    } else {
        m00(d)
    }
}

/// C7: 63, failing that 06.
pub(super) fn mc7(d: &Digits) -> bool {
    m63(d) || m06(d)
}

/// C8: 00, failing that 04, failing that 07.
pub(super) fn mc8(d: &Digits) -> bool {
    m00(d) || m04(d) || m07(d)
}

/// C9: 00, failing that 07.
pub(super) fn mc9(d: &Digits) -> bool {
    m00(d) || m07(d)
}

/// D0: no check for 5700000000–5799999999, otherwise 20.
pub(super) fn md0(d: &Digits) -> bool {
    number(d, 1, 2) == 57 || m20(d)
}

/// D2: 95 (with the ranges of 2013-03), failing that 00, failing that 68.
pub(super) fn md2(d: &Digits) -> bool {
    m95_d2(d) || m00(d) || m68(d)
}

/// D6: 07, failing that 03, failing that 00.
pub(super) fn md6(d: &Digits) -> bool {
    m07(d) || m03(d) || m00(d)
}

/// D8: 00 for ten-digit numbers, no check for 0010000000–0099999999, anything else is wrong.
pub(super) fn md8(d: &Digits) -> bool {
    if at(d, 1) != 0 {
        m00(d)
    } else {
        (10_000_000..=99_999_999).contains(&value(d))
    }
}

/// E3: 00, failing that 21.
pub(super) fn me3(d: &Digits) -> bool {
    m00(d) || m21(d)
}

/// E4: 02, failing that 00.
pub(super) fn me4(d: &Digits) -> bool {
    m02(d) || m00(d)
}
