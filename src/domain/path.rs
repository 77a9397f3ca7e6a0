//! Canonical request paths for route matching: the path an application router would see, or a typed refusal.
//!
//! Routes must match what the application behind us routes on, not the bytes on the wire: Express, Rails, Django,
//! Spring/Tomcat, PHP and ASP.NET all percent-decode the path, and most also resolve dot segments, collapse repeated
//! slashes, drop `;` path parameters (Tomcat, Jetty, Spring) and compare case-insensitively (ASP.NET, Spring with
//! `setCaseSensitive(false)`, IIS). A route that matched raw bytes let `POST /%63heckout` pass a card number in
//! clear. [`canonical_path`] therefore turns a request path into the one path every such router agrees on, and
//! refuses ([`PathRefusal`]) whatever routers disagree on, so a caller can reject it instead of guessing.
//!
//! Normalisation, in order, per `/`-separated segment of the raw path:
//! - `;` and everything after it up to the next `/` is a path parameter and is dropped (Tomcat/Jetty do this before
//!   decoding, so `..;x` is `..` to them: the famous `/x/..;/admin` bypass).
//! - every `%XX` is decoded, hex in either case, exactly once. A result that still holds an escape (`%252e` →
//!   `%2e`) is refused: a server that decodes twice (IIS without `allowDoubleEscaping`, nginx in front of an app)
//!   would see `.`, one that decodes once sees `%2e`.
//! - empty segments (repeated or leading slashes) and `.` are dropped, `..` removes the previous segment and is
//!   clamped at the root (as Express, Django, Spring and PHP's built-in servers do), also when the dots were encoded.
//! - a trailing slash is kept (`/a/` stays `/a/`, `/a/.` and `/a/b/..` become `/a/`, RFC 3986 §5.2.4); whether it
//!   matters is the route's choice ([`PatternOptions::trailing_slash`]).
//!
//! Refused, because servers disagree or treat them as separators: an encoded `/` (`%2F`); a backslash raw or
//! encoded (IIS, Windows Tomcat and some Node servers read it as `/`); an encoded `;` (a delimiter to some, text to
//! Tomcat); NUL and every other control character, raw or decoded, C1 included; a raw space, `?` or `#` (not valid
//! in a request-target, so the caller passed something that is not a path); a malformed escape (`%`, `%4`, `%zz`,
//! IIS's `%u002e`); bytes that are not UTF-8 (overlong `%C0%AF`, surrogates, stray `%FF`); a segment ending in `.`
//! or a space (Windows servers trim them: `/checkout.jsp%20` runs `/checkout.jsp`); compatibility forms of ASCII that
//! Unicode NFKC or Windows best-fit mapping fold onto `/`, `\`, `.` or letters (full-width `／` and `ｃ`, small form
//! variants, dot leaders, division and fraction slashes); a path not starting with `/` (asterisk-form `*`,
//! authority-form, an empty path); more than [`MAX_PATH_BYTES`] bytes. Other Unicode is kept as written (no NFC/NFKC:
//! no mainstream router applies it).
//!
//! The canonical path is decoded text taken from a request: never log it.

use std::borrow::Cow;

use http::Method;

/// Longest raw path accepted, in bytes. Servers cap the request line at 8 KiB (nginx, Node) or less.
pub const MAX_PATH_BYTES: usize = 8192;

/// Why a request path has no canonical form. Messages are fixed and never quote the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("request path is longer than the limit")]
    TooLong,
    #[error("request path does not start with '/'")]
    NotOriginForm,
    #[error("request path has a malformed percent escape")]
    MalformedEscape,
    #[error("request path has an encoded '/'")]
    EncodedSlash,
    #[error("request path has a backslash")]
    Backslash,
    #[error("request path has an encoded ';'")]
    EncodedSemicolon,
    #[error("request path has a control character")]
    ControlCharacter,
    #[error("request path has a space, '?' or '#' that is not percent-encoded")]
    InvalidCharacter,
    #[error("request path is percent-encoded twice")]
    DoubleEncoding,
    #[error("request path does not decode to UTF-8")]
    InvalidUtf8,
    #[error("request path has a character that some servers fold to ASCII")]
    Confusable,
    #[error("request path has a segment ending in '.' or a space")]
    TrailingDotOrSpace,
}

/// The path an application router would see for `raw`, the request-target's path without the query (for hyper,
/// `uri.path()`). The result starts with `/`, has no empty, `.` or `..` segments, no `;` parameters and no escapes;
/// it ends with `/` only if the raw path's last segment was empty, `.` or `..`. See the module doc for each rule.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, PathRefusal> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathRefusal::TooLong);
    }
    match already_canonical(raw) {
        true => Ok(Cow::Borrowed(raw)),
        false => normalise(raw).map(Cow::Owned),
    }
}

/// Every rule of the module doc, applied segment by segment.
fn normalise(raw: &str) -> Result<String, PathRefusal> {
    let rest = raw.strip_prefix('/').ok_or(PathRefusal::NotOriginForm)?;
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in rest.split('/') {
        let (name, params) = raw_segment.split_once(';').unwrap_or((raw_segment, ""));
        decode(params)?; // checked like the rest, then dropped
        let name = decode(name)?;
        trailing_slash = true;
        match name.as_slice() {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => {
                segments.push(segment(name)?);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if segments.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// The common case, checked without allocating: `/`-separated segments of letters, digits and `-_.~` (nothing
/// to decode or refuse), none empty (no `//`) and none ending in `.` (so no `.`/`..` segment either). Such a
/// path is its own canonical form.
fn already_canonical(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else { return false };
    let plain = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        // Only the last segment may be empty (a trailing slash, or the root itself).
        if (seg.is_empty() && !last) || seg.ends_with('.') || !seg.bytes().all(|b| plain(&b)) {
            return false;
        }
    }
    true
}

/// Percent-decodes one segment (or its parameters), refusing separators and control characters, raw or encoded.
fn decode(part: &str) -> Result<Vec<u8>, PathRefusal> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let byte = if b == b'%' {
            let pair = bytes.get(i + 1..i + 3).and_then(hex_pair).ok_or(PathRefusal::MalformedEscape)?;
            i += 3;
            match pair {
                b'/' => return Err(PathRefusal::EncodedSlash),
                b';' => return Err(PathRefusal::EncodedSemicolon),
                d => d,
            }
        } else {
            i += 1;
            match b {
                b' ' | b'?' | b'#' => return Err(PathRefusal::InvalidCharacter),
                b => b,
            }
        };
        match byte {
            b'\\' => return Err(PathRefusal::Backslash),
            0..=0x1f | 0x7f => return Err(PathRefusal::ControlCharacter),
            _ => out.push(byte),
        }
    }
    Ok(out)
}

/// A decoded segment other than empty, `.` and `..`, checked for what servers read differently.
fn segment(bytes: Vec<u8>) -> Result<String, PathRefusal> {
    let s = String::from_utf8(bytes).map_err(|_| PathRefusal::InvalidUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(PathRefusal::ControlCharacter);
    }
    if s.chars().any(is_confusable) {
        return Err(PathRefusal::Confusable);
    }
    if s.ends_with(['.', ' ']) {
        return Err(PathRefusal::TrailingDotOrSpace);
    }
    if s.as_bytes().windows(3).any(|w| matches!(w, [b'%', rest @ ..] if hex_pair(rest).is_some())) {
        return Err(PathRefusal::DoubleEncoding);
    }
    Ok(s)
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: &u8| char::from(*b).to_digit(16);
    match pair {
        [h, l] => u8::try_from(digit(h)? * 16 + digit(l)?).ok(),
        _ => None,
    }
}

/// Characters that NFKC (Python apps, some WAFs) or Windows best-fit code-page mapping (IIS, ANSI APIs) turn into
/// ASCII: full-width forms (`／` `＼` `．` `ｃ`), small form variants, dot leaders, division/fraction/big slashes.
fn is_confusable(c: char) -> bool {
    matches!(c, '\u{2024}'..='\u{2026}' | '\u{2044}' | '\u{2215}' | '\u{29F5}' | '\u{29F8}' | '\u{29F9}')
        || matches!(c, '\u{FE50}'..='\u{FE6B}' | '\u{FF01}'..='\u{FF5E}')
}

/// Per-route matching options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternOptions {
    /// `false` (default): `/Checkout` is `/checkout`, as in ASP.NET, IIS, case-insensitive Spring and any app on a
    /// case-insensitive file system. Folding is generous, as Java's `equalsIgnoreCase`: a character matches if its
    /// upper- or lower-case form does (Kelvin sign `K` is `k`, long `ſ` is `s`, dotless `ı` and dotted `İ` are `i`).
    pub case_sensitive: bool,
    /// `true` (default): a trailing slash is the same path (`/checkout/` is `/checkout`, `/api` is under `/api/*`),
    /// as in Express (non-strict), Spring before 6, Django with `APPEND_SLASH` and Rails.
    pub trailing_slash: bool,
}

impl Default for PatternOptions {
    fn default() -> Self {
        PatternOptions { case_sensitive: false, trailing_slash: true }
    }
}

/// A route's configured path, matched against canonical paths: `/checkout` (exact), `/api/*` (that path and
/// everything under it) or `/api*` (every path starting with `/api`, including `/apix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    configured: String,
    /// Exact: the canonical path, without a trailing slash if those do not count. Prefix: what a matching path
    /// starts with. Case-folded unless case-sensitive.
    base: String,
    prefix: bool,
    options: PatternOptions,
}

impl PathPattern {
    /// Validates a configured path: it starts with `/`, has `*` only at the end, and is already canonical (written
    /// decoded, without `.`/`..`, `//` or `;` parameters). The error is a message for the config problem list.
    pub fn new(configured: &str, options: PatternOptions) -> Result<Self, String> {
        if !configured.starts_with('/') {
            return Err("must start with '/'".into());
        }
        let (base, prefix) = match configured.strip_suffix('*') {
            Some(base) => (base, true),
            None => (configured, false),
        };
        if base.contains('*') {
            return Err("'*' is allowed only at the end (prefix match)".into());
        }
        match canonical_path(base) {
            Ok(canonical) if canonical == base => {}
            Ok(canonical) => {
                let rules = "decoded, no '.' or '..' segments, no '//', no ';' parameters";
                return Err(format!("is not canonical ({rules}): write {canonical:?}"));
            }
            Err(refusal) => return Err(format!("no request can match it: {refusal}")),
        }
        let mut base = if options.case_sensitive { base.to_owned() } else { fold(base).into_owned() };
        if !prefix && options.trailing_slash && base.len() > 1 && base.ends_with('/') {
            base.pop();
        }
        Ok(PathPattern { configured: configured.to_owned(), base, prefix, options })
    }

    /// Every path (`/*`): the pattern of flows that take every request.
    pub fn any() -> PathPattern {
        PathPattern { configured: "/*".into(), base: "/".into(), prefix: true, options: PatternOptions::default() }
    }

    /// Whether the pattern is a prefix (`/api/*`) rather than one path.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether a path from [`canonical_path`] falls under this pattern.
    pub fn matches(&self, canonical: &str) -> bool {
        let path = if self.options.case_sensitive { Cow::Borrowed(canonical) } else { fold(canonical) };
        let base = self.base.as_str();
        let slash_free = self.options.trailing_slash && base.len() > 1;
        if self.prefix {
            path.starts_with(base) || (slash_free && base.strip_suffix('/') == Some(&*path))
        } else {
            path == base || (slash_free && path.strip_suffix('/') == Some(base))
        }
    }

    /// The path as configured, for messages and `veil register`.
    pub fn as_str(&self) -> &str {
        &self.configured
    }

    pub fn options(&self) -> PatternOptions {
        self.options
    }
}

/// Case folding for matching (see [`PatternOptions::case_sensitive`]).
fn fold(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        let mut upper = c.to_uppercase();
        let simple = match (upper.next(), upper.next()) {
            (Some(u), None) => u,
            _ => c,
        };
        // `İ` lowercases to `i` + U+0307; Java's per-character mapping, which routers use, gives plain `i`.
        let mut lower = simple.to_lowercase();
        if let Some(first) = lower.next() {
            out.push(first);
            if !first.is_ascii() {
                out.extend(lower);
            }
        }
    }
    Cow::Owned(out)
}

/// Whether a request's method is a route's configured method. Case-insensitive: hyper keeps `post` as an extension
/// method distinct from `POST`, but PHP, Express (`method-override`), Rails and others upper-case it before routing.
pub fn method_matches(configured: &Method, request: &Method) -> bool {
    configured.as_str().eq_ignore_ascii_case(request.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(path: &str) -> PathPattern {
        PathPattern::new(path, PatternOptions::default()).unwrap()
    }

    fn matches(pattern: &PathPattern, raw: &str) -> bool {
        pattern.matches(&canonical_path(raw).unwrap())
    }

    #[test]
    fn canonical_checkout_variants_match() {
        let p = pattern("/checkout");
        for raw in [
            "/checkout",
            "/checkout/",
            "/Checkout",
            "/CHECKOUT/",
            "/checkout;jsessionid=1",
            "/checkout;a=1;b=2/",
            "/;x/checkout",
            "/%63heckout",
            "/%63%68%65%63%6B%6f%75%74",
            "/./checkout",
            "/checkout/.",
            "/x/../checkout",
            "/x/y/../../checkout",
            "//checkout",
            "/checkout//",
            "///x//..//checkout",
            "/%2e/checkout",
            "/x/%2e%2e/checkout",
            "/x/%2E%2e/checkout",
            "/x/.%2E/checkout",
            "/x/..;/checkout",
            "/x;p=1/../checkout",
            "/x/%2e%2e;p/checkout",
            "/../checkout",
            "/../../%2e%2e/checkout",
            "/CheckOut;JSESSIONID=ABC/./",
        ] {
            assert!(matches(&p, raw), "{raw}");
        }
        for raw in ["/checkout/x", "/checkou", "/checkoutx", "/x/checkout", "/checkout/x/..;/y", "/", "/check%20out"] {
            assert!(!matches(&p, raw), "{raw}");
        }
    }

    #[test]
    fn canonical_forms() {
        for (raw, canonical) in [
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a//b/", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
            ("/a;x", "/a"),
            ("/a;x/", "/a/"),
            ("/a/;x", "/a/"),
            ("/%7Euser/A", "/~user/A"),
            ("/caf%C3%A9", "/café"),
            ("/caf%c3%a9", "/café"),
            ("/café", "/café"),
            ("/a%20b", "/a b"),
            ("/100%25", "/100%"),
            ("/50%25off", "/50%off"),
            ("/a%3Fb%23c", "/a?b#c"),
            ("/.a/..b", "/.a/..b"),
            ("/a..b", "/a..b"),
            ("/%20a", "/ a"),
            ("/x/%252", "/x/%2"),
        ] {
            assert_eq!(canonical_path(raw).as_deref(), Ok(canonical), "{raw}");
        }
    }

    #[test]
    fn canonical_refusals() {
        use PathRefusal::*;
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        for (raw, refusal) in [
            ("/a%2Fb", EncodedSlash),
            ("/a%2fb", EncodedSlash),
            ("/a;p=%2F", EncodedSlash),
            ("/a\\b", Backslash),
            ("/a%5Cb", Backslash),
            ("/a%5c..%5cb", Backslash),
            ("/checkout%3Bx", EncodedSemicolon),
            ("/a%00", ControlCharacter),
            ("/a\0", ControlCharacter),
            ("/a%0a", ControlCharacter),
            ("/a%0D%0A", ControlCharacter),
            ("/a%09", ControlCharacter),
            ("/a\tb", ControlCharacter),
            ("/a%7F", ControlCharacter),
            ("/a%C2%85", ControlCharacter),
            ("/a\u{85}", ControlCharacter),
            ("/a b", InvalidCharacter),
            ("/a?b", InvalidCharacter),
            ("/a#b", InvalidCharacter),
            ("/a%", MalformedEscape),
            ("/a%4", MalformedEscape),
            ("/a%zz", MalformedEscape),
            ("/a%%41", MalformedEscape),
            ("/%u002e%u002e/checkout", MalformedEscape),
            ("/a%C0%AF", InvalidUtf8),
            ("/%C0%AE%C0%AE/checkout", InvalidUtf8),
            ("/a%ED%A0%80", InvalidUtf8),
            ("/a%FF", InvalidUtf8),
            ("/a%C3", InvalidUtf8),
            ("/%252e%252e/checkout", DoubleEncoding),
            ("/%2563heckout", DoubleEncoding),
            ("/%25%32%65", DoubleEncoding),
            ("/checkout.", TrailingDotOrSpace),
            ("/checkout%2e", TrailingDotOrSpace),
            ("/checkout...", TrailingDotOrSpace),
            ("/checkout%20", TrailingDotOrSpace),
            ("/checkout.%20/", TrailingDotOrSpace),
            ("/..%20/checkout", TrailingDotOrSpace),
            ("/x/.../checkout", TrailingDotOrSpace),
            ("/\u{FF0F}checkout", Confusable),
            ("/x%EF%BC%8F..%EF%BC%8Fcheckout", Confusable),
            ("/%EF%BD%83heckout", Confusable),
            ("/x/\u{FF0E}\u{FF0E}/checkout", Confusable),
            ("/x\u{FF3C}checkout", Confusable),
            ("/x/\u{2025}/checkout", Confusable),
            ("/x\u{2215}checkout", Confusable),
            ("/x\u{FE68}checkout", Confusable),
            ("", NotOriginForm),
            ("*", NotOriginForm),
            ("checkout", NotOriginForm),
            ("shop.example:443", NotOriginForm),
            ("http://shop.example/checkout", NotOriginForm),
            ("\\checkout", NotOriginForm),
            (long.as_str(), TooLong),
        ] {
            let got = canonical_path(raw);
            assert_eq!(got, Err(refusal), "{raw:?}");
            assert!(!refusal.to_string().contains("checkout"));
        }
        assert!(canonical_path(&long[..MAX_PATH_BYTES]).is_ok());
    }

    #[test]
    fn canonical_pattern_options() {
        let strict = PatternOptions { case_sensitive: true, trailing_slash: false };
        let p = PathPattern::new("/checkout", strict).unwrap();
        assert!(matches(&p, "/checkout") && matches(&p, "/./checkout;x") && matches(&p, "/%63heckout"));
        assert!(!matches(&p, "/Checkout") && !matches(&p, "/checkout/") && !matches(&p, "/checkout/."));
        let p = PathPattern::new("/checkout/", strict).unwrap();
        assert!(matches(&p, "/checkout/") && !matches(&p, "/checkout"));
        let p = pattern("/checkout/");
        assert!(matches(&p, "/checkout") && matches(&p, "/checkout/"));
        let p = pattern("/");
        assert!(matches(&p, "/") && matches(&p, "//") && matches(&p, "/x/..") && !matches(&p, "/x"));
        let p = pattern("/Api/Orders");
        assert!(matches(&p, "/api/orders") && matches(&p, "/API/ORDERS/"));
        assert_eq!(p.as_str(), "/Api/Orders");
    }

    #[test]
    fn canonical_prefix_patterns() {
        let p = pattern("/api/*");
        for raw in
            ["/api/x", "/API/x", "/api/", "/api", "/Api", "/api/x/y;p", "/x/../api/%78", "//api//x", "/ap\u{131}"]
        {
            assert!(matches(&p, raw), "{raw}");
        }
        for raw in ["/apix", "/ap", "/", "/x/api/y", "/api/../x"] {
            assert!(!matches(&p, raw), "{raw}");
        }
        let p = PathPattern::new("/api/*", PatternOptions { case_sensitive: true, trailing_slash: false }).unwrap();
        assert!(matches(&p, "/api/") && matches(&p, "/api/x"));
        assert!(!matches(&p, "/api") && !matches(&p, "/API/x"));
        let p = pattern("/api*");
        assert!(matches(&p, "/api") && matches(&p, "/apix") && matches(&p, "/APIX/y") && !matches(&p, "/ap"));
        let p = pattern("/*");
        assert!(matches(&p, "/") && matches(&p, "/x/y/") && matches(&p, "/X"));
    }

    #[test]
    fn canonical_unicode_case_folds() {
        let p = pattern("/subscribe/kit");
        for raw in ["/\u{17F}ubscribe/kit", "/subscribe/\u{212A}it", "/subscribe/k\u{131}t", "/SUBSCRIBE/K\u{130}T"] {
            assert!(matches(&p, raw), "{raw}");
        }
        assert!(matches(&p, "/%C5%BFubscribe/%E2%84%AAit"));
        let p = pattern("/stra\u{DF}e/\u{C9}t\u{C9}");
        assert!(matches(&p, "/STRA\u{DF}E/\u{E9}t\u{E9}") && !matches(&p, "/strasse/ete"));
        let cs = PathPattern::new("/kit", PatternOptions { case_sensitive: true, ..PatternOptions::default() });
        assert!(!matches(&cs.unwrap(), "/\u{212A}it"));
    }

    #[test]
    fn canonical_pattern_config_errors() {
        for bad in [
            "",
            "checkout",
            "*",
            "/a*b",
            "/**",
            "/check%6Fut",
            "/a/../b",
            "/a/./b",
            "/a//b",
            "//a",
            "/a;b",
            "/a.",
            "/a%2Fb",
            "/a b",
            "/a\\b",
            "/\u{FF0F}a",
        ] {
            assert!(PathPattern::new(bad, PatternOptions::default()).is_err(), "{bad:?}");
        }
        let err = PathPattern::new("/x/../checkout", PatternOptions::default()).unwrap_err();
        assert!(err.contains("\"/checkout\""), "{err}");
    }

    #[test]
    fn canonical_method_matching() {
        let post = Method::POST;
        for m in ["POST", "post", "Post", "pOsT"] {
            assert!(method_matches(&post, &Method::from_bytes(m.as_bytes()).unwrap()), "{m}");
        }
        assert!(!method_matches(&post, &Method::GET));
        assert!(!method_matches(&post, &Method::from_bytes(b"POSTX").unwrap()));
        assert!(method_matches(&Method::from_bytes(b"purge").unwrap(), &Method::from_bytes(b"PURGE").unwrap()));
    }

    /// A route segment: letters, digits and `-_.~`, not ending in `.` (such segments are refused, see module doc).
    fn route_segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_~-]([A-Za-z0-9._~-]{0,6}[A-Za-z0-9_~-])?"
    }

    /// How one segment is written in a variant: case flips and percent-encoding per character (bit masks), hex
    /// case, a `;` parameter, inserted `./` segments, an inserted `seg/../` detour (`..` maybe encoded), and `//`.
    #[derive(Debug, Clone)]
    struct Edit {
        flip: u16,
        encode: u16,
        lower_hex: bool,
        param: Option<String>,
        dots: usize,
        detour: Option<(String, bool)>,
        double_slash: bool,
    }

    fn edit() -> impl Strategy<Value = Edit> {
        (
            any::<u16>(),
            prop_oneof![Just(0u16), any::<u16>()],
            any::<bool>(),
            proptest::option::of("[A-Za-z]{1,10}(=[A-Za-z0-9._~-]{0,8})?"),
            0usize..3,
            proptest::option::of((route_segment(), any::<bool>())),
            any::<bool>(),
        )
            .prop_map(|(flip, encode, lower_hex, param, dots, detour, double_slash)| Edit {
                flip,
                encode,
                lower_hex,
                param,
                dots,
                detour,
                double_slash,
            })
    }

    fn write_segment(out: &mut String, segment: &str, e: &Edit) {
        for (i, c) in segment.chars().enumerate() {
            let bit = 1u16 << (i % 16);
            let c = if e.flip & bit != 0 {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            };
            match (e.encode & bit != 0, e.lower_hex) {
                (false, _) => out.push(c),
                (true, false) => out.push_str(&format!("%{:02X}", u32::from(c))),
                (true, true) => out.push_str(&format!("%{:02x}", u32::from(c))),
            }
        }
    }

    fn variant(segments: &[String], edits: &[Edit], trailing_slash: bool) -> String {
        let mut out = String::new();
        for (segment, e) in segments.iter().zip(edits.iter().cycle()) {
            out.push_str(if e.double_slash { "//" } else { "/" });
            for _ in 0..e.dots {
                out.push_str("./");
            }
            if let Some((detour, encoded_dots)) = &e.detour {
                write_segment(&mut out, detour, e);
                out.push_str(if *encoded_dots { "/%2E%2e/" } else { "/../" });
            }
            write_segment(&mut out, segment, e);
            if let Some(param) = &e.param {
                out.push(';');
                out.push_str(param);
            }
        }
        if trailing_slash {
            out.push('/');
        }
        out
    }

    fn route() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(route_segment(), 1..5)
    }

    fn edits() -> impl Strategy<Value = Vec<Edit>> {
        proptest::collection::vec(edit(), 1..5)
    }

    proptest! {
        /// The allocation-free fast path only ever answers what the full rules would.
        #[test]
        fn canonical_fast_path_agrees_with_the_rules(raw in "/[a-zA-Z0-9._~/-]{0,24}") {
            if already_canonical(&raw) {
                prop_assert_eq!(normalise(&raw), Ok(raw.clone()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn canonical_variants_match_their_route(
            segments in route(), edits in edits(), trailing in any::<bool>(), extra in route(),
        ) {
            let configured = format!("/{}", segments.join("/"));
            let raw = variant(&segments, &edits, trailing);
            let canonical = canonical_path(&raw);
            prop_assert!(canonical.is_ok(), "{raw:?}: {canonical:?}");
            let canonical = canonical.unwrap_or_default();
            prop_assert!(pattern(&configured).matches(&canonical), "{raw:?} -> {canonical:?}");
            let under = pattern(&format!("{configured}/*"));
            prop_assert!(under.matches(&canonical), "{raw:?}");
            let deeper_raw = format!("{raw}/{}", variant(&extra, &edits, trailing));
            let deeper = canonical_path(&deeper_raw);
            prop_assert!(deeper.as_ref().is_ok_and(|d| under.matches(d)), "{raw:?}: {deeper:?}");
            prop_assert!(deeper.as_ref().is_ok_and(|d| !pattern(&configured).matches(d)), "{raw:?}: {deeper:?}");
        }

        #[test]
        fn canonical_other_segment_never_matches(
            segments in route(), edits in edits(), trailing in any::<bool>(), at in any::<prop::sample::Index>(),
            other in route_segment(),
        ) {
            let at = at.index(segments.len());
            prop_assume!(!other.eq_ignore_ascii_case(&segments[at]));
            let configured = format!("/{}", segments.join("/"));
            let mut changed = segments.clone();
            changed[at] = other;
            let raw = variant(&changed, &edits, trailing);
            let canonical = canonical_path(&raw);
            prop_assert!(canonical.as_ref().is_ok_and(|c| !pattern(&configured).matches(c)), "{raw:?}: {canonical:?}");
            let under = pattern(&format!("{configured}/*"));
            prop_assert!(canonical.as_ref().is_ok_and(|c| !under.matches(c)), "{raw:?}");
            let shorter = format!("/{}", variant(&segments[..segments.len() - 1], &edits, trailing));
            prop_assert!(canonical_path(&shorter).is_ok_and(|c| !pattern(&configured).matches(&c)), "{shorter:?}");
        }

        #[test]
        fn canonical_output_is_normal_or_refused(raw in "/[/.;%a-cA-C0-9 ?\\\\\u{0}\u{FF0F}é]{0,40}") {
            if let Ok(c) = canonical_path(&raw) {
                prop_assert!(c.starts_with('/') && !c.contains("//") && !c.contains('\\') && !c.contains(';'));
                prop_assert!(c.split('/').all(|s| s != "." && s != ".."), "{raw:?} -> {c:?}");
                prop_assert!(!c.chars().any(char::is_control), "{raw:?}");
                if !c.contains(['%', ' ']) {
                    prop_assert_eq!(canonical_path(&c), Ok(c.clone()));
                }
            }
        }
    }
}
