//! The lines of a byte range, each ending in CRLF or a bare LF (the last one may have no line break at all).

use std::ops::Range;

/// One line: `start..end` is its content, `next` is where the following line starts (after the line break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Line {
    pub start: usize,
    pub end: usize,
    pub next: usize,
}

/// The lines of `raw[range]`, with offsets into `raw`.
pub(super) fn lines(raw: &[u8], range: Range<usize>) -> impl Iterator<Item = Line> + '_ {
    let mut pos = range.start;
    let stop = range.end.min(raw.len());
    std::iter::from_fn(move || {
        if pos >= stop {
            return None;
        }
        let start = pos;
        let line = match raw[start..stop].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let lf = start + i;
                let end = if lf > start && raw[lf - 1] == b'\r' { lf - 1 } else { lf };
                Line { start, end, next: lf + 1 }
            }
            None => Line { start, end: stop, next: stop },
        };
        pos = line.next;
        Some(line)
    })
}

/// `range` without the line break that ends it, if it ends in one; and whether it did.
pub(super) fn without_final_break(raw: &[u8], range: Range<usize>) -> (Range<usize>, bool) {
    let bytes = &raw[range.clone()];
    let cut = if bytes.ends_with(b"\r\n") {
        2
    } else if bytes.ends_with(b"\n") {
        1
    } else {
        0
    };
    (range.start..range.end - cut, cut > 0)
}

/// `bytes` with every bare LF written as CRLF (a CR not followed by LF is left alone).
pub(super) fn crlf(bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r')) {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_lf_and_unterminated_lines() {
        let raw = b"a\r\nbc\nd";
        let got: Vec<Line> = lines(raw, 0..raw.len()).collect();
        assert_eq!(
            got,
            vec![
                Line { start: 0, end: 1, next: 3 },
                Line { start: 3, end: 5, next: 6 },
                Line { start: 6, end: 7, next: 7 }
            ]
        );
        assert_eq!(lines(raw, 3..6).count(), 1);
        assert_eq!(lines(raw, 3..3).count(), 0);
    }

    #[test]
    fn final_break_and_crlf() {
        assert_eq!(without_final_break(b"ab\r\n", 0..4), (0..2, true));
        assert_eq!(without_final_break(b"ab\n", 0..3), (0..2, true));
        assert_eq!(without_final_break(b"ab", 0..2), (0..2, false));
        assert_eq!(crlf(b"a\nb\r\nc\rd\n".to_vec()), b"a\r\nb\r\nc\rd\r\n".to_vec());
        assert_eq!(crlf(b"\n".to_vec()), b"\r\n".to_vec());
    }
}
