//! Durations as written in the config (`"250ms"`, `"10s"`, `"2m"`, `"1h"`, `"180d"`, `"2w"`, `"7y"`): one parser
//! and one printer for every key; each key checks its own bounds.

use std::time::Duration;

/// The units, largest first: name and length in milliseconds. A year is 365 days.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// The longest duration any key may hold: 1000 years.
const MAX_MILLIS: u64 = 1000 * 365 * 86_400_000;

/// Parses a whole number followed by one unit: `ms`, `s`, `m`, `h`, `d`, `w` or `y`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("expected a whole number and a unit (ms, s, m, h, d, w, y), e.g. \"10s\" or \"180d\"; got {s:?}");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).filter(|&i| i > 0).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let (_, millis) = UNITS.into_iter().find(|(name, _)| *name == unit).ok_or_else(bad)?;
    let total =
        n.checked_mul(millis).filter(|t| *t <= MAX_MILLIS).ok_or_else(|| "too long (1000y at most)".to_owned())?;
    Ok(Duration::from_millis(total))
}

/// Writes a duration back in the largest unit that divides it exactly (`"7y"`, `"180d"`, `"90s"`, `"250ms"`).
pub fn format(d: Duration) -> String {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match UNITS.into_iter().find(|(_, size)| millis % size == 0 && millis > 0) {
        Some((unit, size)) => format!("{}{unit}", millis / size),
        None => "0s".to_owned(),
    }
}

/// A duration of whole seconds, at least one (retention ages, purge intervals).
pub fn parse_secs(s: &str) -> Result<i64, String> {
    let d = parse(s)?;
    if d.subsec_millis() != 0 {
        return Err("must be whole seconds".into());
    }
    match i64::try_from(d.as_secs()) {
        Ok(0) => Err("must be more than zero".into()),
        Ok(secs) => Ok(secs),
        Err(_) => Err("too long (1000y at most)".into()),
    }
}

/// Seconds written back as by [`format`].
pub fn format_secs(secs: i64) -> String {
    format(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("180d").unwrap(), Duration::from_secs(180 * 86_400));
        assert_eq!(parse("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse("7y").unwrap(), Duration::from_secs(7 * 365 * 86_400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in ["", "s", "10", "-1s", "1.5s", "1 s", "1S", "1sec", "ms", "1000000y", "99999999999999999999s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["7y", "180d", "2w", "1h", "90s", "250ms", "3m"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn whole_seconds() {
        assert_eq!(parse_secs("180d"), Ok(180 * 86_400));
        assert_eq!(parse_secs("12h"), Ok(12 * 3600));
        for s in ["7y", "180d", "12h", "90s", "8w", "30m"] {
            assert_eq!(format_secs(parse_secs(s).unwrap()), s);
        }
        for bad in ["", "d", "12", "12x", "-3d", "1.5d", "0d", "1500ms", "99999999999y", "12 h"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }
}
