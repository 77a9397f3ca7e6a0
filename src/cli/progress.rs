//! Progress of long operator commands (`veil keys rewrap`, `veil purge`) on stderr: on a terminal a bar redrawn in
//! place (count, rate, ETA); otherwise plain lines, at most one a second, and always the last one.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    what: String,
    started: Instant,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub fn new(what: impl Into<String>) -> Progress {
        Progress { what: what.into(), started: Instant::now(), last: None, tty: std::io::stderr().is_terminal() }
    }

    /// `done` of `total` (when known) so far; drawn when enough time has passed since the last drawing.
    pub fn update(&mut self, done: u64, total: Option<u64>) {
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(1) };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.draw(done, total);
    }

    /// The final state, always drawn (and the terminal's line ended).
    pub fn finish(&mut self, done: u64, total: Option<u64>) {
        self.draw(done, total);
        if self.tty {
            eprintln!();
        }
    }

    fn draw(&mut self, done: u64, total: Option<u64>) {
        self.last = Some(Instant::now());
        let text = line(&self.what, done, total, self.started.elapsed(), self.tty);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the command.
        let _ = if self.tty { write!(err, "\r\x1b[2K{text}") } else { writeln!(err, "{text}") };
        let _ = err.flush();
    }
}

/// One progress line: `what: done/total (pct%) [bar] rate/s, ETA …`, or `what: done (rate/s)` when the total is
/// not known.
fn line(what: &str, done: u64, total: Option<u64>, elapsed: Duration, bar: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let Some(total) = total.filter(|t| *t > 0) else {
        return format!("{what}: {done} ({rate:.0}/s)");
    };
    let share = (done as f64 / total as f64).min(1.0);
    let eta = match rate > 0.0 {
        true => format!("ETA {}", eta_text(total.saturating_sub(done) as f64 / rate)),
        false => "ETA -".into(),
    };
    let bar = match bar {
        true => {
            let filled = (share * 30.0).round() as usize;
            format!(" [{}{}]", "#".repeat(filled), ".".repeat(30 - filled.min(30)))
        }
        false => String::new(),
    };
    format!("{what}: {done}/{total} ({:.0}%){bar} {rate:.0}/s, {eta}", share * 100.0)
}

fn eta_text(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_count_rate_and_eta() {
        let l = line("rewrap", 500, Some(2000), Duration::from_secs(5), false);
        assert_eq!(l, "rewrap: 500/2000 (25%) 100/s, ETA 15s");
        let l = line("rewrap", 500, Some(2000), Duration::from_secs(5), true);
        assert!(l.contains("[########......................]"), "{l}");
        assert_eq!(line("purge pan", 42, None, Duration::from_secs(2), false), "purge pan: 42 (21/s)");
        assert_eq!(line("purge pan", 0, Some(0), Duration::ZERO, false), "purge pan: 0 (0/s)");
        assert!(line("x", 0, Some(10), Duration::ZERO, false).ends_with("ETA -"));
        assert_eq!(eta_text(3725.0), "1h02m");
        assert_eq!(eta_text(61.0), "1m01s");
    }
}
