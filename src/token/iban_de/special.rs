//! Methods with their own arithmetic or several account-number ranges: 24, 57, 91, C1 (second variant), C5, and the
//! ranges of 96.

use super::common::{
    at, cross, is, is_some, leading_zeros, mod10, mod11_06, number, value, weighted, weighted_cross, Digits,
};
use super::mod10::{m00, m29};
use super::mod11::{m17, m19, mod11_17};

/// 24: weights 1, 2, 3 from the first non-zero digit, each product plus its weight taken mod 11, the sum's last
/// digit is the check digit. A leading 3–6 counts as 0; a leading 9 makes positions 1–3 count as 0.
pub(super) fn m24(d: &Digits) -> bool {
    let mut v = *d;
    match v[0] {
        3..=6 => v[0] = 0,
        9 => {
            v[0] = 0;
            v[1] = 0;
            v[2] = 0;
        }
        _ => {}
    }
    let start = v.iter().take(9).position(|&x| x != 0).unwrap_or(9);
    let sum: u32 =
        v.iter().take(9).skip(start).zip([1, 2, 3].iter().cycle()).map(|(&digit, &w)| (digit * w + w) % 11).sum();
    is(d, 10, sum % 10)
}

/// 57: the first two digits choose the variant: weights 1, 2 from the left over 1–9 (variant 1), or over all
/// positions but 3 with the check digit at 3 (variant 2), or no check (variant 3), or for 01–31 a plausibility rule
/// (variant 4). Numbers starting with 00 are wrong; 777777…, 888888… and 0185125434 are right.
pub(super) fn m57(d: &Digits) -> bool {
    let head = number(d, 1, 6);
    if head == 777_777 || head == 888_888 || value(d) == 185_125_434 {
        return true;
    }
    match number(d, 1, 2) {
        51 | 55 | 61 | 64 | 65 | 66 | 70 | 73..=82 | 88 | 94 | 95 => is(d, 10, mod10(weighted_cross(d, 1, 9, &[1, 2]))),
        32..=39 | 41..=49 | 52..=54 | 56..=60 | 62 | 63 | 67..=69 | 71 | 72 | 83..=87 | 89 | 90 | 92 | 93 | 96..=98 => {
            let sum = weighted_cross(d, 4, 10, &[1, 2]) + at(d, 1) + cross(at(d, 2) * 2);
            is(d, 3, mod10(sum))
        }
        40 | 50 | 91 | 99 => true,
        1..=31 => (1..=12).contains(&number(d, 3, 4)) && number(d, 7, 9) < 500,
        _ => false,
    }
}

/// 91: check digit at 7; four weightings tried in turn (2–7 and 7–2 over 1–6, 2, 3, 4, 0, 5, …, 10 over 1–10, and
/// 2, 4, 8, 5, 10, 9 over 1–6), each as 06.
pub(super) fn m91(d: &Digits) -> bool {
    let v1 = weighted(d, 1, 6, &[2, 3, 4, 5, 6, 7]);
    let v2 = weighted(d, 1, 6, &[7, 6, 5, 4, 3, 2]);
    let v3 = weighted(d, 1, 10, &[2, 3, 4, 0, 5, 6, 7, 8, 9, 10]);
    let v4 = weighted(d, 1, 6, &[2, 4, 8, 5, 10, 9]);
    [v1, v2, v3, v4].iter().any(|&sum| is(d, 7, mod11_06(sum)))
}

/// 96: as 19, failing that as 00, failing that right for 0001300000 to 0099399999.
pub(super) fn m96(d: &Digits) -> bool {
    m19(d) || m00(d) || (1_300_000..=99_399_999).contains(&value(d))
}

/// C1: as 17 unless position 1 is 5; then weights 1, 2 from the left over 1–9 with cross sums, minus 1, mod 11,
/// subtracted from 10.
pub(super) fn mc1(d: &Digits) -> bool {
    if at(d, 1) == 5 {
        is_some(d, 10, mod11_17(d, 1, 9))
    } else {
        m17(d)
    }
}

/// C5: the variant follows the account number's length and leading digits (75 for six- and nine-digit numbers,
/// 29 for ten-digit numbers starting with 1, 4, 5, 6 or 9, 00 for those starting with 3, no check for some
/// ranges); any other number is wrong.
pub(super) fn mc5(d: &Digits) -> bool {
    let zeros = leading_zeros(d);
    let first = at(d, 1);
    match zeros {
        4 if (1..=8).contains(&at(d, 5)) => is(d, 10, mod10(weighted_cross(d, 5, 9, &[2, 1]))),
        1 if (1..=8).contains(&at(d, 2)) => is(d, 7, mod10(weighted_cross(d, 2, 6, &[2, 1]))),
        2 if (3..=5).contains(&at(d, 3)) => true,
        0 if matches!(first, 1 | 4 | 5 | 6 | 9) => m29(d),
        0 if first == 3 => m00(d),
        0 => matches!(number(d, 1, 2), 70 | 85),
        _ => false,
    }
}
