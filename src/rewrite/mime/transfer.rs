//! Content-Transfer-Encodings: quoted-printable and base64 (RFC 2045 §6.7, §6.8), both ways.
//!
//! Decoding is strict where a wrong guess would change the text (an `=` not followed by two hex digits, a
//! character outside the base64 alphabet) and lenient where RFC 2045 asks it (white space at the end of a
//! quoted-printable line is dropped; base64 line breaks and padding are optional). Encoded lines are at most 76
//! characters and end in CRLF; a quoted-printable hard line break stands for a CRLF in the text.

use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine as _;

use super::MimeError;

const LINE: usize = 76;

/// Decodes quoted-printable; each hard line break (CRLF or bare LF) becomes CRLF.
pub(super) fn qp_decode(data: &[u8]) -> Result<Vec<u8>, MimeError> {
    let mut out = Vec::with_capacity(data.len());
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(mut line) = lines.next() {
        let has_break = lines.peek().is_some();
        if has_break {
            line = line.strip_suffix(b"\r").unwrap_or(line);
        }
        while let Some(rest) = line.strip_suffix(b" ").or_else(|| line.strip_suffix(b"\t")) {
            line = rest;
        }
        let mut soft = false;
        let mut i = 0;
        while i < line.len() {
            if line[i] != b'=' {
                out.push(line[i]);
                i += 1;
                continue;
            }
            if i + 1 == line.len() {
                soft = true;
                break;
            }
            let hex = line.get(i + 1..i + 3).ok_or(MimeError::BadQuotedPrintable)?;
            out.push(hex_byte(hex).ok_or(MimeError::BadQuotedPrintable)?);
            i += 3;
        }
        if has_break && !soft {
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(out)
}

fn hex_byte(hex: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    Some(u8::try_from(digit(hex[0])? * 16 + digit(hex[1])?).unwrap_or(0))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Encodes text as quoted-printable: each CRLF is a hard line break; `=`, control characters (a bare CR or LF
/// included), non-ASCII bytes and white space before a line break or at the end are `=XX`; soft line breaks keep
/// every line at most 76 characters. A `-` that would start a line is `=2D`, so no line reads as a boundary.
pub(super) fn qp_encode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 4);
    let mut rest = text;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let mut literal = ((b == b' ' || b == b'\t') && !last) || (b.is_ascii_graphic() && b != b'=');
            let room = if last { LINE } else { LINE - 1 };
            if col + if literal { 1 } else { 3 } > room {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            // A line never starts with `-`, so never with a multipart delimiter.
            literal &= !(col == 0 && b == b'-');
            let width = if literal { 1 } else { 3 };
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
        match next {
            Some(n) => {
                out.extend_from_slice(b"\r\n");
                rest = n;
            }
            None => return out,
        }
    }
}

fn engine() -> GeneralPurpose {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
}

/// Decodes base64, ignoring line breaks and white space.
pub(super) fn b64_decode(data: &[u8]) -> Result<Vec<u8>, MimeError> {
    let compact: Vec<u8> = data.iter().copied().filter(|b| !b" \t\r\n".contains(b)).collect();
    engine().decode(compact).map_err(|_| MimeError::BadBase64)
}

/// Encodes base64 in lines of 76 characters joined by CRLF (no line break after the last).
pub(super) fn b64_encode(bytes: &[u8]) -> Vec<u8> {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes).into_bytes();
    let mut out = Vec::with_capacity(flat.len() + flat.len() / LINE * 2);
    for (i, chunk) in flat.chunks(LINE).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp_decodes_soft_and_hard_breaks() {
        assert_eq!(qp_decode(b"caf=C3=A9 =\r\nau lait  \r\nend").unwrap(), "café au lait\r\nend".as_bytes());
        assert_eq!(qp_decode(b"a=\nb\nc=3d").unwrap(), b"ab\r\nc=");
        assert_eq!(qp_decode(b"a=").unwrap(), b"a");
        assert_eq!(qp_decode(b"a=4").unwrap_err(), MimeError::BadQuotedPrintable);
        assert_eq!(qp_decode(b"a=XY").unwrap_err(), MimeError::BadQuotedPrintable);
    }

    #[test]
    fn qp_encodes_per_rfc_2045() {
        assert_eq!(qp_encode("a=b é \r\nx\t".as_bytes()), b"a=3Db =C3=A9=20\r\nx=09");
        assert_eq!(qp_encode(b"a\rb\nc"), b"a=0Db=0Ac");
        assert_eq!(qp_encode(b"--b\r\nx--"), b"=2D-b\r\nx--");
        let dashes = qp_encode(&[b'-'; 200]);
        assert!(dashes.split(|&b| b == b'\n').all(|l| !l.starts_with(b"-") && l.len() <= LINE + 1));
        assert_eq!(qp_decode(&dashes).unwrap(), vec![b'-'; 200]);
        let long = "x".repeat(200);
        let enc = qp_encode(long.as_bytes());
        assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= LINE + 1));
        assert_eq!(qp_decode(&enc).unwrap(), long.as_bytes());
        // Exactly 76 characters fit on one line without a soft break.
        assert_eq!(qp_encode(&[b'y'; 76]), vec![b'y'; 76]);
    }

    #[test]
    fn base64_both_ways() {
        let bytes: Vec<u8> = (0..=255).collect();
        let enc = b64_encode(&bytes);
        assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= LINE + 1));
        assert_eq!(b64_decode(&enc).unwrap(), bytes);
        assert_eq!(b64_decode(b"aGk\r\n").unwrap(), b"hi");
        assert_eq!(b64_decode(b"a*k=").unwrap_err(), MimeError::BadBase64);
        assert!(b64_encode(b"").is_empty());
    }
}
