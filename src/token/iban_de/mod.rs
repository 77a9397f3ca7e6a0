//! German account numbers: the Deutsche Bundesbank's check-digit methods (Prüfzifferberechnungsmethoden) and the
//! bank-code file (Bankleitzahlendatei) that assigns one to every bank code (BLZ).
//!
//! A German IBAN is `DE` + 2 ISO check digits + the 8-digit BLZ + the 10-digit account number (Kontonummer).
//! German applications often check the account number with the method of its bank, so a format-preserving token
//! that keeps the bank code must carry an account number that this method accepts. [`check`] applies a method
//! code (`00`–`E4`) to an account number; [`method_of`] looks the method of a bank code up in the generated
//! [`table`] (its validity dates are [`VALID_FROM`] and [`VALID_UNTIL`]).
//!
//! Every method code used in that file is implemented ([`is_implemented`]), plus 02, 04, 07, 58 and 93 that
//! others build on. The files group them by family: `mod10.rs` (weights 2-1 with cross sums, 3-7-1, M10H),
//! `mod11.rs` (weights 2 to 7, 2 to 10, …), `eser.rs` (the bank-code dependent 52, 53 and their users B6, C0),
//! `special.rs` (24, 57, 91, 96, C1, C5) and `variants.rs` (methods that try variants in turn or choose one by
//! the account's leading digits). `common.rs` holds the arithmetic they share. The methods follow the
//! Bundesbank's descriptions; the tests hold them to the Bundesbank's published example accounts.
//!
//! Where the descriptions leave room, the stricter reading is taken (a token drawn to pass it passes the laxer
//! one too); the methods were compared with the konto_check library on 5.9 million random accounts, and differ only
//! where konto_check goes beyond the published text (44: the accounts of IBAN rule 49; 50: sub-numbers of one or
//! two digits left off) or falls short of it (74: six-digit numbers right by the second variant, as the
//! Bundesbank's example 242241 — [`check`] accepts them, [`check_for_token`] does not draw them). Readings taken
//! from konto_check: in 17 and C1 a weighted sum of 0 gives no check digit; D2 applies 95 with its ranges of
//! 2013-03 (without 0910000000–0989999999).
//!
//! An account number of zero is never right, whatever the method. Method 09 (and the ranges other methods leave
//! unchecked) accepts any other number.
//!
//! `account.rs` applies all this to IBANs: which inputs can be tokenised with their bank kept, whether a token
//! passes its bank's method, and drawing account numbers that do (used by `iban.rs`).

mod account;
mod common;
mod eser;
#[cfg(test)]
mod examples;
mod mod10;
mod mod11;
mod special;
mod table;
#[cfg(test)]
mod tests;
mod variants;

use common::Digits;

pub use account::{bank_usable, bban_valid, draw_bban, RANDOM_DRAWS, RESERVED_BLZ};
pub use table::{VALID_FROM, VALID_UNTIL};

/// The check-digit method of a bank code, from the bank-code file; `None` for a code that is not in it.
pub fn method_of(blz: u32) -> Option<[u8; 2]> {
    let banks = table::BANKS;
    banks.binary_search_by_key(&blz, |&(code, _)| code).ok().and_then(|i| banks.get(i)).map(|&(_, method)| method)
}

/// Every bank code of the bank-code file with its method, sorted by bank code.
pub fn banks() -> &'static [(u32, [u8; 2])] {
    table::BANKS
}

/// Whether `method` is a method code this module implements.
pub fn is_implemented(method: [u8; 2]) -> bool {
    dispatch(method, 0, &[0; 10]).is_some()
}

/// Whether the ten-digit `account` (ASCII digits, leading zeros included) is right under `method` for the bank
/// `blz`. False for an unknown method, for anything but ten digits, and for the account number zero.
pub fn check(method: [u8; 2], blz: u32, account: &[u8]) -> bool {
    let Some(digits) = digits(account) else { return false };
    if digits.iter().all(|&d| d == 0) {
        return false;
    }
    dispatch(method, blz, &digits).unwrap_or(false)
}

/// Whether a drawn token account is right under `method` in every reading of the Bundesbank's text that veil
/// knows of: [`check`], except that method 74's six-digit numbers that only its second variant accepts (as the
/// Bundesbank's example 242241) are not drawn, because konto_check, which many applications use, tries no second
/// variant for them.
pub fn check_for_token(method: [u8; 2], blz: u32, account: &[u8]) -> bool {
    if !check(method, blz, account) {
        return false;
    }
    match digits(account) {
        Some(d) if method == *b"74" && common::leading_zeros(&d) == 4 => mod10::m74_v1(&d),
        _ => true,
    }
}

/// The digit values of a ten-digit ASCII account number.
fn digits(account: &[u8]) -> Option<Digits> {
    if account.len() != 10 {
        return None;
    }
    let mut out = [0; 10];
    for (slot, &b) in out.iter_mut().zip(account) {
        if !b.is_ascii_digit() {
            return None;
        }
        *slot = u32::from(b - b'0');
    }
    Some(out)
}

/// Applies a method; `None` for a code that is not implemented.
fn dispatch(method: [u8; 2], blz: u32, d: &Digits) -> Option<bool> {
    use mod10::*;
    use mod11::*;
    use special::*;
    use variants::*;
    let ok = match &method {
        b"00" => m00(d),
        b"01" => m01(d),
        b"02" => m02(d),
        b"03" => m03(d),
        b"04" => m04(d),
        b"05" => m05(d),
        b"06" => m06(d),
        b"07" => m07(d),
        b"08" => m08(d),
        b"09" => true,
        b"10" => m10(d),
        b"11" => m11(d),
        b"13" => m13(d),
        b"16" => m16(d),
        b"17" => m17(d),
        b"18" => m18(d),
        b"19" => m19(d),
        b"20" => m20(d),
        b"21" => m21(d),
        b"22" => m22(d),
        b"24" => m24(d),
        b"25" => m25(d),
        b"26" => m26(d),
        b"27" => m27(d),
        b"28" => m28(d),
        b"29" => m29(d),
        b"30" => m30(d),
        b"31" => m31(d),
        b"32" => m32(d),
        b"33" => m33(d),
        b"34" => m34(d),
        b"38" => m38(d),
        b"40" => m40(d),
        b"41" => m41(d),
        b"42" => m42(d),
        b"43" => m43(d),
        b"44" => m44(d),
        b"46" => m46(d),
        b"47" => m47(d),
        b"48" => m48(d),
        b"49" => m49(d),
        b"50" => m50(d),
        b"52" => eser::m52(blz, d),
        b"53" => eser::m53(blz, d),
        b"56" => m56(d),
        b"57" => m57(d),
        b"58" => m58(d),
        b"59" => m59(d),
        b"60" => m60(d),
        b"61" => m61(d),
        b"63" => m63(d),
        b"64" => m64(d),
        b"65" => m65(d),
        b"67" => m67(d),
        b"68" => m68(d),
        b"71" => m71(d),
        b"74" => m74(d),
        b"76" => m76(d),
        b"78" => m78(d),
        b"88" => m88(d),
        b"91" => m91(d),
        b"92" => m92(d),
        b"93" => m93(d),
        b"94" => m94(d),
        b"95" => m95(d),
        b"96" => m96(d),
        b"98" => m98(d),
        b"99" => m99(d),
        b"A2" => ma2(d),
        b"A3" => ma3(d),
        b"A4" => ma4(d),
        b"A5" => ma5(d),
        b"A6" => ma6(d),
        b"A7" => ma7(d),
        b"A8" => ma8(d),
        b"B1" => mb1(d),
        b"B2" => mb2(d),
        b"B3" => mb3(d),
        b"B5" => mb5(d),
        b"B6" => mb6(blz, d),
        b"B7" => mb7(d),
        b"B8" => mb8(d),
        b"C0" => mc0(blz, d),
        b"C1" => mc1(d),
        b"C2" => mc2(d),
        b"C3" => mc3(d),
        b"C5" => mc5(d),
        b"C7" => mc7(d),
        b"C8" => mc8(d),
        b"C9" => mc9(d),
        b"D0" => md0(d),
        b"D2" => md2(d),
        b"D6" => md6(d),
        b"D7" => md7(d),
        b"D8" => md8(d),
        b"E0" => me0(d),
        b"E3" => me3(d),
        b"E4" => me4(d),
        _ => return None,
    };
    Some(ok)
}
