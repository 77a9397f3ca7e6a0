//! Counts the values detection would find in a request body while it arrives, so a body that plainly holds more
//! than the request's cap is refused after its first window instead of being read, held and parsed whole.

use std::borrow::Cow;

use crate::detect;
use crate::domain::Class;

use super::error::ProxyError;

/// Bodies are counted once this much of them is buffered: smaller ones are parsed directly (parsing one costs
/// little), larger ones are counted step by step and refused at the first step that shows too many values.
pub const WINDOW: usize = 64 << 10;

/// How much one counting step reads: a body of nothing but values shows it holds too many within one step.
const STEP: usize = 8 << 10;

/// A value and the context detection reads around it never span more than this: a match ending further from a
/// step's end than this is settled.
const TAIL: usize = 512;

/// A running lower bound of the values in a body (values hidden by an encoding are found only by the parse).
pub struct EarlyCount<'a> {
    classes: &'a [Class],
    max: usize,
    /// Bytes before this are counted.
    from: usize,
    found: usize,
}

impl<'a> EarlyCount<'a> {
    /// A counter for routes that detect; `None` when nothing would be counted.
    pub fn new(classes: &'a [Class], max: Option<usize>) -> Option<Self> {
        let max = max.filter(|_| !classes.is_empty())?;
        Some(EarlyCount { classes, max, from: 0, found: 0 })
    }

    /// Called with everything read so far: once the body is large, counts each step as it completes.
    pub fn feed(&mut self, read: &[u8]) -> Result<(), ProxyError> {
        if read.len() < WINDOW {
            return Ok(());
        }
        while read.len() - self.from >= STEP + TAIL {
            let end = char_boundary(read, self.from + STEP + TAIL);
            self.count(&read[..end], false)?;
        }
        Ok(())
    }

    /// Called with the whole body: counts what is left, if the body was large enough to be counted at all.
    pub fn finish(&mut self, body: &[u8]) -> Result<(), ProxyError> {
        if body.len() >= WINDOW {
            self.feed(body)?;
            self.count(body, true)?;
        }
        Ok(())
    }

    fn count(&mut self, read: &[u8], last: bool) -> Result<(), ProxyError> {
        let text = String::from_utf8_lossy(&read[self.from..]);
        let settled = if last { text.len() } else { text.len().saturating_sub(TAIL) };
        let mut next = settled;
        for m in detect::find(&text, self.classes) {
            if m.end >= settled && !last {
                // More bytes may still change this one (a longer digit run is not a card): count it next time.
                next = m.start;
                break;
            }
            self.found += 1;
        }
        if self.found > self.max {
            return Err(ProxyError::TooManyValues(self.max));
        }
        self.from += match text {
            Cow::Borrowed(_) => next,
            // Offsets in a repaired text are not byte offsets: go on after everything (a bound, not an exact count).
            Cow::Owned(_) => read.len() - self.from,
        };
        Ok(())
    }
}

/// The last UTF-8 character boundary at or before `at`, so a step ends between characters (a step that is not
/// text at all ends where it was asked to).
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3)..=at).rev().find(|&i| bytes.get(i).is_none_or(|&b| b & 0xC0 != 0x80)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(n: usize) -> String {
        std::iter::repeat_n("4111111111111111 ", n).collect()
    }

    #[test]
    fn a_step_with_too_many_values_is_refused_before_the_body_is_whole() {
        let mut c = EarlyCount::new(&[Class::Pan], Some(64)).unwrap();
        let body = cards(WINDOW / 17 + 1);
        assert!(c.feed(&body.as_bytes()[..WINDOW - 1]).is_ok(), "nothing is counted before the body is large");
        assert!(matches!(c.feed(body.as_bytes()), Err(ProxyError::TooManyValues(64))));
        assert!(c.from < STEP, "refused within the first step");
    }

    #[test]
    fn steps_end_between_characters() {
        let text = "é".repeat(STEP);
        for at in [STEP, STEP + 1, STEP + 2] {
            assert!(std::str::from_utf8(&text.as_bytes()[..char_boundary(text.as_bytes(), at)]).is_ok());
        }
        assert_eq!(char_boundary(b"abc", 7), 7, "past the end is the end");
    }

    #[test]
    fn values_across_window_ends_are_counted_once() {
        // Exactly the cap, spread over several windows with values straddling their ends: accepted.
        let filler = "x".repeat(WINDOW / 4 - 9);
        let mut body = String::new();
        for _ in 0..64 {
            body.push_str("4111111111111111 ");
            body.push_str(&filler);
        }
        let mut c = EarlyCount::new(&[Class::Pan], Some(64)).unwrap();
        for end in (1..body.len()).step_by(4096) {
            c.feed(&body.as_bytes()[..end]).unwrap();
        }
        c.finish(body.as_bytes()).unwrap();
        assert_eq!(c.found, 64);
        body.push_str("4111111111111111");
        let mut c = EarlyCount::new(&[Class::Pan], Some(64)).unwrap();
        assert!(matches!(c.finish(body.as_bytes()), Err(ProxyError::TooManyValues(64))));
    }

    #[test]
    fn a_digit_run_still_growing_at_a_window_end_is_not_counted_early() {
        // 16 digits at the window's end that go on to 24: not a card once whole.
        let mut body = "x".repeat(WINDOW - 16);
        body.push_str("4111111111111111");
        let mut c = EarlyCount::new(&[Class::Pan], Some(0)).unwrap();
        c.feed(body.as_bytes()).unwrap();
        body.push_str("11111111 and more text");
        c.finish(body.as_bytes()).unwrap();
        assert_eq!(c.found, 0);
    }

    #[test]
    fn small_bodies_and_routes_without_detection_are_not_counted() {
        assert!(EarlyCount::new(&[], Some(1)).is_none());
        assert!(EarlyCount::new(&[Class::Pan], None).is_none());
        let mut c = EarlyCount::new(&[Class::Pan], Some(0)).unwrap();
        c.finish(cards(10).as_bytes()).unwrap();
    }
}
