//! A strict JSON parser that records where every value is, instead of building values.
//!
//! [`Tape::parse`] checks a body against RFC 8259 (one value, no trailing commas, no lone surrogates,
//! no control characters in strings, at most [`MAX_DEPTH`] nested objects/arrays) and lists its values in
//! document order (pre-order) as [`Node`]s: byte ranges into the body, the member's key, and where the subtree
//! ends. Rewriting then splices new bytes into the original body, so what is not edited stays byte for byte.

use super::super::RewriteError;

/// Most objects and arrays nested in one another.
pub const MAX_DEPTH: usize = 128;

const INVALID: RewriteError = RewriteError::Malformed("not valid JSON");
const TOO_DEEP: RewriteError = RewriteError::Malformed("JSON nested too deeply");

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Object,
    Array,
    /// A string; `escaped` when its raw text has a `\` escape (so raw and decoded text differ).
    Str {
        escaped: bool,
    },
    Number,
    True,
    False,
    Null,
}

/// One value of the document, in 32 bytes: a hostile body of tiny values costs no more than serde_json's `Value`.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub ty: Ty,
    key_escaped: bool,
    /// Byte offsets (a body over 4 GiB is refused); `key_start` 0 means no key, `parent` [`NONE`] no parent.
    start: u32,
    end: u32,
    item: u32,
    key_start: u32,
    key_end: u32,
    parent: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// An offset or index of a body already checked to be under 4 GiB.
fn small(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

impl Node {
    /// The value's bytes are `start()..end()` (a string's include its quotes).
    pub fn start(&self) -> usize {
        self.start as usize
    }

    pub fn end(&self) -> usize {
        self.end as usize
    }

    /// Where the member (its key's opening quote) or array element starts; the root's is `start()`.
    pub fn item(&self) -> usize {
        self.item as usize
    }

    /// A member's key, raw (between the quotes) and whether it has escapes; `None` for elements and the root.
    pub fn key(&self) -> Option<(usize, usize, bool)> {
        (self.key_start != 0).then_some((self.key_start as usize, self.key_end as usize, self.key_escaped))
    }

    /// The enclosing object or array (`None` for the root).
    pub fn parent(&self) -> Option<usize> {
        (self.parent != NONE).then_some(self.parent as usize)
    }

    /// The index of the first node after this value's subtree.
    pub fn next(&self) -> usize {
        self.next as usize
    }
}

/// A checked JSON body and its values in document order; `nodes[0]` is the root.
#[derive(Debug)]
pub struct Tape {
    pub nodes: Vec<Node>,
}

impl Tape {
    /// Checks `body` and lists its values; fails with "not valid JSON" or "JSON nested too deeply".
    pub fn parse(body: &str) -> Result<Tape, RewriteError> {
        if body.len() >= NONE as usize {
            return Err(RewriteError::Unsupported("a JSON body of 4 GiB or more"));
        }
        // A guess for checkout-sized bodies; a large body grows the tape only as far as it has values.
        let guess = (body.len() / 16 + 1).min(1024);
        let mut p = Parser { b: body.as_bytes(), i: 0, nodes: Vec::with_capacity(guess) };
        p.ws();
        p.value(None, p.i, None, 0)?;
        p.ws();
        if p.i != body.len() {
            return Err(INVALID);
        }
        Ok(Tape { nodes: p.nodes })
    }

    /// The children of the object or array at `node`, in order.
    pub fn children(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes.get(node).map_or(0, Node::next);
        std::iter::successors(Some(node + 1), move |&c| self.nodes.get(c).map(Node::next)).take_while(move |&c| c < end)
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    nodes: Vec<Node>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Parses the value at `self.i` and its subtree; `depth` counts the objects/arrays around it.
    fn value(
        &mut self,
        parent: Option<usize>,
        item: usize,
        key: Option<(usize, usize, bool)>,
        depth: usize,
    ) -> Result<(), RewriteError> {
        let at = self.nodes.len();
        let start = self.i;
        let (key_start, key_end, key_escaped) = key.unwrap_or((0, 0, false));
        self.nodes.push(Node {
            ty: Ty::Null,
            key_escaped,
            start: small(start),
            end: small(start),
            item: small(item),
            key_start: small(key_start),
            key_end: small(key_end),
            parent: parent.map_or(NONE, small),
            next: small(at + 1),
        });
        let ty = match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                if depth >= MAX_DEPTH {
                    return Err(TOO_DEEP);
                }
                self.i += 1;
                if open == b'{' {
                    self.members(at, depth + 1)?;
                    Ty::Object
                } else {
                    self.elements(at, depth + 1)?;
                    Ty::Array
                }
            }
            Some(b'"') => Ty::Str { escaped: self.string()? },
            Some(b't') => self.literal(b"true", Ty::True)?,
            Some(b'f') => self.literal(b"false", Ty::False)?,
            Some(b'n') => self.literal(b"null", Ty::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                self.i += number_len(self.b.get(self.i..).unwrap_or_default()).ok_or(INVALID)?;
                Ty::Number
            }
            _ => return Err(INVALID),
        };
        let next = self.nodes.len();
        if let Some(n) = self.nodes.get_mut(at) {
            *n = Node { ty, end: small(self.i), next: small(next), ..*n };
        }
        Ok(())
    }

    /// After `{`: members up to and including `}`.
    fn members(&mut self, at: usize, depth: usize) -> Result<(), RewriteError> {
        self.ws();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let item = self.i;
            if self.peek() != Some(b'"') {
                return Err(INVALID);
            }
            let escaped = self.string()?;
            let key = (item + 1, self.i - 1, escaped);
            self.ws();
            if !self.eat(b':') {
                return Err(INVALID);
            }
            self.ws();
            self.value(Some(at), item, Some(key), depth)?;
            if self.next_item(b'}')? {
                return Ok(());
            }
        }
    }

    /// After `[`: elements up to and including `]`.
    fn elements(&mut self, at: usize, depth: usize) -> Result<(), RewriteError> {
        self.ws();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.value(Some(at), self.i, None, depth)?;
            if self.next_item(b']')? {
                return Ok(());
            }
        }
    }

    /// After a member or element: `true` past the container's `close`, `false` past a comma (another follows).
    fn next_item(&mut self, close: u8) -> Result<bool, RewriteError> {
        self.ws();
        if self.eat(close) {
            return Ok(true);
        }
        if !self.eat(b',') {
            return Err(INVALID);
        }
        self.ws();
        Ok(false)
    }

    fn literal(&mut self, word: &[u8], ty: Ty) -> Result<Ty, RewriteError> {
        if !self.b.get(self.i..).unwrap_or_default().starts_with(word) {
            return Err(INVALID);
        }
        self.i += word.len();
        Ok(ty)
    }

    /// The string at `self.i` (its opening quote); returns whether it has escapes.
    fn string(&mut self) -> Result<bool, RewriteError> {
        self.i += 1;
        let mut escaped = false;
        loop {
            // Skip plain bytes in a tight loop: most of a body is string content.
            let plain = self.b.get(self.i..).unwrap_or_default().iter().take_while(|&&c| !SPECIAL[usize::from(c)]);
            self.i += plain.count();
            let c = self.peek().ok_or(INVALID)?;
            self.i += 1;
            match c {
                b'"' => return Ok(escaped),
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => return Err(INVALID),
                _ => {}
            }
        }
    }

    /// After a `\`: one escape; a `\u` high surrogate must be followed by a `\u` low one.
    fn escape(&mut self) -> Result<(), RewriteError> {
        let c = self.peek().ok_or(INVALID)?;
        self.i += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => match self.hex4()? {
                0xD800..=0xDBFF if self.eat(b'\\') && self.eat(b'u') => match self.hex4()? {
                    0xDC00..=0xDFFF => Ok(()),
                    _ => Err(INVALID),
                },
                0xD800..=0xDFFF => Err(INVALID),
                _ => Ok(()),
            },
            _ => Err(INVALID),
        }
    }

    fn hex4(&mut self) -> Result<u32, RewriteError> {
        let v = self.b.get(self.i..self.i + 4).and_then(hex4).ok_or(INVALID)?;
        self.i += 4;
        Ok(v)
    }
}

/// The bytes that end a run of plain string content: `"`, `\` and the control characters.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

fn hex4(h: &[u8]) -> Option<u32> {
    let h = std::str::from_utf8(h).ok().filter(|h| h.len() == 4 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    u32::from_str_radix(h, 16).ok()
}

/// The length of the JSON number at the start of `b` (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`), if one is there.
fn number_len(b: &[u8]) -> Option<usize> {
    let digits = |from: usize| b.get(from..).map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    Some(i)
}

/// Whether `s` is exactly one JSON number.
pub fn is_number(s: &str) -> bool {
    number_len(s.as_bytes()) == Some(s.len())
}

/// The text of a raw JSON string's content (between the quotes; already checked by [`Tape::parse`]).
pub fn decode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let esc = rest.get(at + 1..).unwrap_or_default();
        let (c, used) = match esc.as_bytes().first() {
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => unicode(esc.as_bytes()),
            Some(&c) => (char::from(c), 1),
            None => break,
        };
        out.push(c);
        rest = esc.get(used..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// `u` + 4 hex digits (+ `\u` + 4 more for a surrogate pair): the character and the bytes used.
fn unicode(esc: &[u8]) -> (char, usize) {
    let hi = esc.get(1..5).and_then(hex4).unwrap_or(0xFFFD);
    if (0xD800..0xDC00).contains(&hi) {
        if let Some(lo) = esc.get(7..11).and_then(hex4).filter(|lo| (0xDC00..0xE000).contains(lo)) {
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return (char::from_u32(c).unwrap_or('\u{FFFD}'), 11);
        }
    }
    (char::from_u32(hi).unwrap_or('\u{FFFD}'), 5)
}

/// Appends `s` as the content of a JSON string: `"`, `\` and control characters escaped, nothing else.
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(s.as_bytes().get(from..i).unwrap_or_default());
        if short == 0 {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        from = i + 1;
    }
    out.extend_from_slice(s.as_bytes().get(from..).unwrap_or_default());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tys(body: &str) -> Vec<Ty> {
        Tape::parse(body).unwrap().nodes.iter().map(|n| n.ty).collect()
    }

    #[test]
    fn nodes_in_document_order_with_ranges() {
        let body = r#" {"a" : [1, "x\n"], "b\"": {}} "#;
        let t = Tape::parse(body).unwrap();
        let text = |i: usize| &body[t.nodes[i].start()..t.nodes[i].end()];
        assert_eq!(t.nodes.len(), 5);
        assert_eq!(
            (text(0), text(1), text(2), text(3), text(4)),
            (&body[1..30], "[1, \"x\\n\"]", "1", "\"x\\n\"", "{}")
        );
        assert_eq!(t.children(0).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(t.children(1).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(t.children(4).count(), 0);
        assert_eq!(t.nodes[1].key(), Some((3, 4, false)));
        assert_eq!(t.nodes[4].key(), Some((21, 24, true)));
        assert_eq!((t.nodes[1].item(), t.nodes[2].item(), t.nodes[2].key()), (2, 9, None));
        assert_eq!((t.nodes[0].parent(), t.nodes[3].parent(), t.nodes[4].parent()), (None, Some(1), Some(0)));
        assert_eq!(std::mem::size_of::<Node>(), 32);
        assert_eq!(tys("[true,false,null,-0.5e+3]")[1..], [Ty::True, Ty::False, Ty::Null, Ty::Number]);
        assert_eq!(tys(r#"["\u00e9", "é"]"#)[1..], [Ty::Str { escaped: true }, Ty::Str { escaped: false }]);
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for bad in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "{,}",
            "[,1]",
            "{\"a\" 1}",
            "{a:1}",
            "{'a':1}",
            "[1] [2]",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "-",
            "--1",
            "0x1",
            "NaN",
            "nul",
            "tru",
            "True",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12G4\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\tb\"",
            "\"\u{1}\"",
            "\u{feff}{}",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "\u{a0}1",
        ] {
            assert_eq!(Tape::parse(bad).unwrap_err(), INVALID, "{bad:?}");
        }
        for good in
            ["0", "-0", "1e5", "1E+5", "-1.5e-05", "\"\\ud83d\\ude00\"", " \t\r\n[ ] ", "{\"\":{}}", "\"\u{7f}\""]
        {
            assert!(Tape::parse(good).is_ok(), "{good:?}");
        }
        let nest = |n| format!("{}1{}", "[{\"a\":".repeat(n / 2), "}]".repeat(n / 2));
        assert!(Tape::parse(&nest(MAX_DEPTH)).is_ok());
        assert_eq!(Tape::parse(&nest(MAX_DEPTH + 2)).unwrap_err(), TOO_DEEP);
    }

    #[test]
    fn decodes_and_escapes() {
        assert_eq!(decode(r#"a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00"#), "a\"b\\c/\u{8}\u{c}\n\r\té😀");
        assert_eq!(decode("plain é"), "plain é");
        let mut out = Vec::new();
        escape_into(&mut out, "a\"b\\c/\u{8}\u{c}\n\r\t\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#"a\"b\\c/\b\f\n\r\t\u0001é"#);
        for n in ["0", "-1.5", "2E+10", "123456789012345678901234567890"] {
            assert!(is_number(n), "{n}");
        }
        for not in ["", "01", "1.", ".5", "+1", "1e", "0x1", "NaN", "--1", "1-", " 1", "1 "] {
            assert!(!is_number(not), "{not:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Agrees with serde_json on what is JSON (nesting kept shallow: serde_json's limit differs by one level).
        #[test]
        fn agrees_with_serde_json(body in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,24}") {
            let ours = Tape::parse(&body).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&body).is_ok();
            prop_assert_eq!(ours, theirs, "{:?}", body);
        }

        #[test]
        fn strings_round_trip(s in "\\PC*|[\"\\\\\u{0}-\u{1f}a-z😀]{0,12}") {
            let mut out = vec![b'"'];
            escape_into(&mut out, &s);
            out.push(b'"');
            let t = Tape::parse(std::str::from_utf8(&out).unwrap()).unwrap();
            prop_assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s.clone());
            let raw = std::str::from_utf8(&out[1..out.len() - 1]).unwrap();
            prop_assert_eq!(decode(raw), s.clone());
            prop_assert_eq!(t.nodes[0].ty, Ty::Str { escaped: raw != s });
        }
    }
}
