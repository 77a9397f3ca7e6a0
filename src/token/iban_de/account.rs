//! German IBANs and the bank's method: which inputs veil can keep the bank of, whether a token's account number
//! passes its bank's method, and drawing account numbers that do.
//!
//! The policy, applied by `iban.rs`:
//! * **Input values** are held to ISO 13616 only — never to the bank's method: real customers' accounts must not be
//!   refused because of an old numbering scheme or a mistake in a method. The bank code, though, must be in the
//!   bank-code file with a method veil implements ([`bank_usable`]): a token that keeps it is then sure to pass the
//!   method, and a bank code that is not in the file (an IBAN no German validator accepts) is refused with a fixed
//!   message rather than given a token that would fail.
//! * **Tokens** are held to the method strictly ([`bban_valid`]). The reserved bank code of the `reserved-bank`
//!   format ([`RESERVED_BLZ`]) belongs to no bank and has no method: any account passes.
//! * **Drawing** ([`draw_bban`]): random account numbers, first with as many digits as the input's account (so
//!   that a savings bank's 8-digit accounts stay 8 digits; only on the first attempts for a value: a short account
//!   like `0000000123` has a few hundred such numbers, soon all taken), then of any length, until the method
//!   accepts one;
//!   after [`RANDOM_DRAWS`] a deterministic search through the numbers of each length in turn, which finds one for
//!   every method (each accepts numbers of some length densely) and never returns the input's account.

use rand::Rng;

use super::{check, check_for_token, is_implemented, method_of};
use crate::token::Invalid;

/// The bank code of `reserved-bank` tokens (`99999999`): no bank has it, so no method applies.
pub const RESERVED_BLZ: u32 = 99_999_999;

/// Random account numbers tried before the deterministic scan (the rarest methods accept about 1 in 50).
pub const RANDOM_DRAWS: usize = 512;
/// Attempts (candidates that collided with other tokens) after which a token no longer keeps the input's account
/// length.
const KEEP_LENGTH_ATTEMPTS: u32 = 4;

/// Numbers of one length tried by the deterministic search before the next length.
const SCAN: u64 = 200_000;

/// The step of the deterministic search: a prime other than 2, 3 and 5, so prime to 9 × 10^k.
const STRIDE: u64 = 1_000_003;

/// The bank code and account number of a German BBAN (`8!n10!n`).
fn split(bban: &[u8]) -> Option<(u32, &[u8])> {
    let (blz, account) = (bban.get(..8)?, bban.get(8..)?);
    if account.len() != 10 || !blz.iter().chain(account).all(u8::is_ascii_digit) {
        return None;
    }
    Some((blz.iter().fold(0u32, |n, &b| n * 10 + u32::from(b - b'0')), account))
}

/// Whether veil can tokenise an input IBAN with this German BBAN: its bank code is in the bank-code file with an
/// implemented method, or is the reserved code. The account number itself is not checked (see the module doc).
pub fn bank_usable(bban: &[u8]) -> Result<(), Invalid> {
    let (blz, _) = split(bban).ok_or(Invalid("a German IBAN has an 8-digit bank code and a 10-digit account"))?;
    if blz == RESERVED_BLZ {
        return Ok(());
    }
    let method = method_of(blz).ok_or(Invalid("the German bank code is not in the Bundesbank's bank-code file"))?;
    if !is_implemented(method) {
        return Err(Invalid("the check-digit method of this German bank is not supported"));
    }
    Ok(())
}

/// Whether a German BBAN's account number passes its bank's method (strict: an unknown bank code fails; the
/// reserved code passes).
pub fn bban_valid(bban: &[u8]) -> bool {
    match split(bban) {
        Some((RESERVED_BLZ, _)) => true,
        Some((blz, account)) => method_of(blz).is_some_and(|method| check(method, blz, account)),
        None => false,
    }
}

/// A BBAN with the bank code of `bban` and a drawn account number that its bank's method accepts and that differs
/// from the account of `bban`. `None` when the bank code has no implemented method (or `bban` is not a German
/// BBAN).
pub fn draw_bban<R: Rng + ?Sized>(bban: &[u8], attempt: u32, rng: &mut R) -> Option<Vec<u8>> {
    let (blz, input) = split(bban)?;
    let method = method_of(blz).filter(|&m| is_implemented(m))?;
    let accepts = |account: &[u8]| account != input && check_for_token(method, blz, account);
    let input_zeros = input.iter().take_while(|&&b| b == b'0').count().min(9);
    // The input's length is preferred while candidates of it are free: after collisions, any length.
    let keep_length = if attempt < KEEP_LENGTH_ATTEMPTS { RANDOM_DRAWS / 2 } else { 0 };
    for i in 0..RANDOM_DRAWS {
        let zeros = if i < keep_length { input_zeros } else { rng.gen_range(0..=5) };
        let (low, high) = with_leading_zeros(zeros);
        let account = format!("{:010}", rng.gen_range(low..high));
        if accepts(account.as_bytes()) {
            return Some(with_account(bban, account.as_bytes()));
        }
    }
    // Deterministic: every length in turn (the input's first), from a random point in steps of STRIDE, which is
    // prime to every range's size and so varies the leading digits (that some methods choose by) and the last.
    for zeros in (0..10).map(|i| (input_zeros + i) % 10) {
        let (low, high) = with_leading_zeros(zeros);
        let span = high - low;
        let start = rng.gen_range(0..span);
        let found = (0..span.min(SCAN))
            .map(|i| format!("{:010}", low + (start + i * STRIDE) % span))
            .find(|account| accepts(account.as_bytes()));
        if let Some(account) = found {
            return Some(with_account(bban, account.as_bytes()));
        }
    }
    None
}

/// The account numbers (as numbers) whose ten-digit form has `zeros` leading zeros (at most 9).
fn with_leading_zeros(zeros: usize) -> (u64, u64) {
    let digits = 10 - zeros.min(9) as u32;
    (if digits == 1 { 1 } else { 10u64.pow(digits - 1) }, 10u64.pow(digits))
}

/// `bban` with its account number replaced.
fn with_account(bban: &[u8], account: &[u8]) -> Vec<u8> {
    bban.iter().take(8).chain(account).copied().collect()
}
