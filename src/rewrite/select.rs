//! JSON paths for a route's `fields`: a small JSONPath subset (`$.a.b`, `['k']`, `[*]`, `[N]`, `..key`, `.*`).
//!
//! A path is a list of steps from the document root; each step selects children of the current values:
//! `.key` / `['key']` a member, `[N]` an array element, `.*` / `[*]` every member value or element.
//! A step written after `..` (`..key`, `..*`, `..['key']`, `..[N]`) may first descend any number of levels.
//! Matching is an NFA walked alongside the document ([`JsonPath::start`], [`JsonPath::step`],
//! [`JsonPath::accepts`]), so a body is traversed once for all of a route's paths.

use std::fmt;
use std::str::FromStr;

/// Most steps a path may have (the matcher state is a `u128` bit set; JSON bodies nest at most 128 deep).
const MAX_STEPS: usize = 127;

/// A parsed JSON path such as `$.items[*].pan` or `$..email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// Written after `..`: any number of levels may be skipped before `sel` matches.
    deep: bool,
    sel: Sel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sel {
    Key(String),
    Index(usize),
    Any,
}

/// One level down a JSON document: an object member (by key) or an array element (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where a path's matcher stands after some segments: a set of positions in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State(u128);

impl State {
    /// No descendant can match any more: the walk below this value can skip this path.
    pub fn is_dead(self) -> bool {
        self.0 == 0
    }
}

impl JsonPath {
    /// Parses a path; the error is a sentence naming the path and what is wrong with it.
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| format!("invalid JSON path `{s}`: {why}");
        let mut rest = s.strip_prefix('$').ok_or_else(|| bad("it must start with `$`"))?;
        let mut steps = Vec::new();
        while let Some(c) = rest.chars().next() {
            match c {
                '.' => {
                    let deep = rest.starts_with("..");
                    rest = &rest[if deep { 2 } else { 1 }..];
                    if deep && rest.starts_with('[') {
                        let (sel, after) = bracket(rest).map_err(bad)?;
                        steps.push(Step { deep, sel });
                        rest = after;
                        continue;
                    }
                    let end = rest.find(|c: char| matches!(c, '.' | '[' | ']') || c.is_whitespace());
                    let end = end.unwrap_or(rest.len());
                    let name = &rest[..end];
                    if name.is_empty() {
                        return Err(bad(match rest.chars().next() {
                            None => "it ends with a dot; a key name or `*` must follow it",
                            Some('.') => "it has an empty step (`...`); a dot must be followed by a key name or `*`",
                            Some('[') => "`.[` is not allowed; write `['key']`, `[N]` or `[*]` without the dot",
                            Some(']') => "it has a `]` without a matching `[`",
                            Some(_) => "it contains whitespace; quote such keys, e.g. `['my key']`",
                        }));
                    }
                    let sel = if name == "*" { Sel::Any } else { Sel::Key(name.to_owned()) };
                    steps.push(Step { deep, sel });
                    rest = &rest[end..];
                }
                '[' => {
                    let (sel, after) = bracket(rest).map_err(bad)?;
                    steps.push(Step { deep: false, sel });
                    rest = after;
                }
                ']' => return Err(bad("it has a `]` without a matching `[`")),
                c if c.is_whitespace() => {
                    return Err(bad("it contains whitespace; quote such keys, e.g. `['my key']`"))
                }
                _ => return Err(bad("each step must start with `.`, `..` or `[`")),
            }
        }
        if steps.is_empty() {
            return Err(bad("it has no step after `$`; write e.g. `$.card.number`"));
        }
        if steps.len() > MAX_STEPS {
            return Err(bad("it has more than 127 steps"));
        }
        Ok(JsonPath { steps })
    }

    /// The matcher state at the document root (which no path matches itself).
    pub fn start(&self) -> State {
        State(1)
    }

    /// The state after going down `seg` from a value whose state was `state`.
    pub fn step(&self, state: State, seg: Seg<'_>) -> State {
        let mut next = 0u128;
        // Only the positions in the set: usually one or two of them, often none.
        let mut live = state.0;
        while live != 0 {
            let i = live.trailing_zeros() as usize;
            live &= live - 1;
            let Some(step) = self.steps.get(i) else { break };
            if step.deep {
                next |= 1u128 << i;
            }
            let hit = match (&step.sel, seg) {
                (Sel::Any, _) => true,
                (Sel::Key(k), Seg::Key(s)) => k == s,
                (Sel::Index(n), Seg::Index(j)) => *n == j,
                _ => false,
            };
            if hit {
                next |= 1u128 << (i + 1);
            }
        }
        State(next)
    }

    /// Whether the value reached in `state` is selected by this path.
    pub fn accepts(&self, state: State) -> bool {
        state.0 & (1u128 << self.steps.len()) != 0
    }

    /// Whether this path selects the value at `segs` below the root.
    pub fn matches(&self, segs: &[Seg<'_>]) -> bool {
        let end = segs.iter().fold(self.start(), |st, seg| self.step(st, *seg));
        self.accepts(end)
    }
}

/// Parses `[...]` at the start of `rest`; returns the selector and what follows the `]`.
fn bracket(rest: &str) -> Result<(Sel, &str), &'static str> {
    let inner = rest.get(1..).unwrap_or_default();
    if let Some(after) = inner.strip_prefix("*]") {
        return Ok((Sel::Any, after));
    }
    match inner.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let mut key = String::new();
            let mut chars = inner[1..].char_indices();
            while let Some((i, c)) = chars.next() {
                if c == q {
                    let after = &inner[1 + i + 1..];
                    return match after.strip_prefix(']') {
                        Some(after) => Ok((Sel::Key(key), after)),
                        None => Err("a quoted key must be followed by `]`"),
                    };
                }
                if c == '\\' {
                    match chars.next() {
                        Some((_, e)) if e == q || e == '\\' => key.push(e),
                        _ => return Err("inside a quoted key, `\\` may only escape the quote or `\\`"),
                    }
                } else {
                    key.push(c);
                }
            }
            Err("it has a quoted key without its closing quote")
        }
        Some(c) if c.is_ascii_digit() => {
            let end = inner.find(|c: char| !c.is_ascii_digit()).unwrap_or(inner.len());
            let n = inner[..end].parse::<usize>().map_err(|_| "an array index is too large")?;
            match inner[end..].strip_prefix(']') {
                Some(after) => Ok((Sel::Index(n), after)),
                None if end == inner.len() => Err("it has an unclosed `[`"),
                None => Err("an array index must be digits followed by `]`"),
            }
        }
        None => Err("it has an unclosed `[`"),
        Some(']') => Err("it has an empty `[]`"),
        Some('-') => Err("negative array indexes are not supported"),
        Some('*') => Err("`[*` must be followed by `]`"),
        Some(_) => Err("`[` must hold `*`, an index or a quoted key such as `['key']`"),
    }
}

impl FromStr for JsonPath {
    type Err = String;
    fn from_str(s: &str) -> Result<JsonPath, String> {
        JsonPath::parse(s)
    }
}

/// Writes the canonical form, which parses back to the same path.
impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.steps {
            let dots = if step.deep { ".." } else { "" };
            match &step.sel {
                Sel::Any => write!(f, "{}*", if step.deep { ".." } else { "." })?,
                Sel::Index(n) => write!(f, "{dots}[{n}]")?,
                Sel::Key(k) if is_plain(k) => write!(f, "{}{k}", if step.deep { ".." } else { "." })?,
                Sel::Key(k) => write!(f, "{dots}['{}']", k.replace('\\', "\\\\").replace('\'', "\\'"))?,
            }
        }
        Ok(())
    }
}

/// A key that can be written as `.key`.
fn is_plain(k: &str) -> bool {
    !k.is_empty() && k != "*" && !k.chars().any(|c| matches!(c, '.' | '[' | ']') || c.is_whitespace())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Seg::{Index as I, Key as K};

    fn p(s: &str) -> JsonPath {
        JsonPath::parse(s).unwrap()
    }

    #[test]
    fn parses_good_paths() {
        for s in [
            "$.card.number",
            "$.items[*].pan",
            "$..email",
            "$.a[0].b",
            "$['weird.key']",
            "$[\"dq\"]",
            "$.*",
            "$[*]",
            "$..*",
            "$..[0]",
            "$..['a b']",
            "$.a-b_c",
            "$['it\\'s']",
            "$['']",
            "$[12]",
        ] {
            assert!(JsonPath::parse(s).is_ok(), "{s}");
            assert_eq!(s.parse::<JsonPath>(), JsonPath::parse(s));
        }
        assert_eq!(p("$['weird.key']").steps, vec![Step { deep: false, sel: Sel::Key("weird.key".into()) }]);
        assert_eq!(p("$['it\\'s']").steps[0].sel, Sel::Key("it's".into()));
        assert_eq!(p("$.a[0]").steps[1].sel, Sel::Index(0));
        assert_eq!(p("$.card").to_string(), "$.card");
        assert_eq!(p("$[\"a.b\"]..x[*].*[3]").to_string(), "$['a.b']..x.*.*[3]");
    }

    #[test]
    fn rejects_bad_paths_with_a_reason() {
        for (s, why) in [
            ("", "start with `$`"),
            ("card.number", "start with `$`"),
            ("$", "no step"),
            ("$.", "ends with a dot"),
            ("$.a.", "ends with a dot"),
            ("$..", "ends with a dot"),
            ("$.a..", "ends with a dot"),
            ("$...a", "empty step"),
            ("$.a[0", "unclosed `[`"),
            ("$.a[", "unclosed `[`"),
            ("$['a'", "followed by `]`"),
            ("$['a]", "closing quote"),
            ("$[*", "`[*`"),
            ("$[]", "empty `[]`"),
            ("$[-1]", "negative"),
            ("$[a]", "must hold"),
            ("$[1x]", "digits followed"),
            ("$[99999999999999999999999]", "too large"),
            ("$.a]", "without a matching"),
            ("$.a b", "whitespace"),
            ("$. a", "whitespace"),
            ("$.[0]", "`.[`"),
            ("$a", "must start with `.`"),
            ("$['a']b", "must start with `.`"),
            ("$['a\\x']", "may only escape"),
        ] {
            let err = JsonPath::parse(s).unwrap_err();
            assert!(err.contains(why), "{s:?}: {err}");
            assert!(err.starts_with("invalid JSON path `"), "{err}");
        }
        let long = format!("${}", ".a".repeat(128));
        assert!(JsonPath::parse(&long).unwrap_err().contains("127 steps"));
    }

    #[test]
    fn matches_each_syntax() {
        assert!(p("$.card.number").matches(&[K("card"), K("number")]));
        assert!(!p("$.card.number").matches(&[K("card")]));
        assert!(!p("$.card.number").matches(&[K("card"), K("number"), K("x")]));
        assert!(p("$.items[*].pan").matches(&[K("items"), I(3), K("pan")]));
        assert!(p("$.items[*].pan").matches(&[K("items"), K("x"), K("pan")]), "[*] also covers members");
        assert!(p("$.a[0].b").matches(&[K("a"), I(0), K("b")]));
        assert!(!p("$.a[0].b").matches(&[K("a"), I(1), K("b")]));
        assert!(!p("$.a[0]").matches(&[K("a"), K("0")]), "an index is not a key");
        assert!(!p("$.a.0").matches(&[K("a"), I(0)]), "a key is not an index");
        assert!(p("$['weird.key']").matches(&[K("weird.key")]));
        assert!(p("$.*").matches(&[K("x")]) && p("$.*").matches(&[I(0)]));
        for depth in 0..5 {
            let mut segs = vec![K("x"); depth];
            segs.push(K("b"));
            assert!(p("$..b").matches(&segs), "depth {depth}");
            assert!(p("$.x..b").matches(&segs) == (depth > 0), "depth {depth}");
        }
        assert!(p("$..b").matches(&[K("b"), I(2), K("b")]));
        assert!(!p("$..b").matches(&[K("b"), K("c")]));
        assert!(p("$..*").matches(&[I(1), K("q")]));
        assert!(p("$..[1]").matches(&[K("a"), I(1)]));
        assert!(p("$..a..b").matches(&[K("a"), K("a"), I(0), K("b")]));
    }

    #[test]
    fn dead_states_prune() {
        let path = p("$.a.b");
        let st = path.step(path.start(), K("z"));
        assert!(st.is_dead());
        assert!(!p("$..b").step(path.start(), K("z")).is_dead());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn parse_never_panics(s in "\\$?[.\\[\\]'\"*a-c0-9\\\\ ]{0,12}") {
            if let Ok(path) = JsonPath::parse(&s) {
                prop_assert_eq!(JsonPath::parse(&path.to_string()), Ok(path));
            }
        }
    }
}
