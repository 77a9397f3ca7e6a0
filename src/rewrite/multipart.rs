//! `multipart/form-data` bodies (RFC 7578 over RFC 2046): find parts by name or by detection, then rewrite.
//!
//! Parsing is strict so that veil and the application cannot disagree about where a part starts or what it is
//! called: lines end in CRLF only, a `--boundary` at the start of a line must be followed by `--` or by optional
//! spaces/tabs and CRLF, the preamble may not hold the boundary and the epilogue may not either, header lines may
//! not be folded, every part has exactly one `Content-Disposition: form-data` with one unambiguous `name`, and a
//! `Content-Transfer-Encoding` other than 7bit/8bit/binary is refused. [`MultipartDoc::apply`] writes untouched
//! parts (headers and body) and the preamble/epilogue byte for byte; only changed bodies are new.

use std::ops::Range;

use super::{Edit, Found, Origin, RewriteError};
use crate::detect;
use crate::domain::Class;

/// More parts than this is refused (no real form has them; bounds the work done per body).
const MAX_PARTS: usize = 1000;

/// The boundary of a `multipart/form-data` content type (quoted or not); `None` for another type, a missing,
/// repeated or invalid boundary, or parameters that do not parse.
pub fn boundary(content_type: &str) -> Option<String> {
    let kind = content_type.split(';').next().unwrap_or_default();
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let params = params(&content_type[kind.len()..])?;
    let mut found = params.iter().filter(|(p, _)| p.eq_ignore_ascii_case("boundary"));
    match (found.next(), found.next()) {
        (Some(&(_, b)), None) if valid_boundary(b) => Some(b.to_owned()),
        _ => None,
    }
}

/// `; param=value` pairs, the value a token or a quoted string; `None` unless they parse unambiguously: no spaces
/// around `=`, and no quote after an odd run of backslashes (parsers with and without `\` escapes would end the
/// value at different places).
fn params(mut rest: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    loop {
        // `;` before each parameter; spaces around it, and one final `;`, are allowed.
        rest = match rest.trim_start_matches([' ', '\t']) {
            "" => return Some(out),
            more => more.strip_prefix(';')?.trim_start_matches([' ', '\t']),
        };
        if rest.is_empty() {
            return Some(out);
        }
        let (param, after) = rest.split_once('=')?;
        if param.is_empty() || param.contains([' ', '\t', '"', ';']) {
            return None;
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                let escaped = quoted[..end].bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1;
                (!escaped).then_some((&quoted[..end], &quoted[end + 1..]))?
            }
            None => {
                let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
                let token = &after[..end];
                (!token.is_empty() && !token.contains(['"', '\\'])).then_some((token, &after[end..]))?
            }
        };
        out.push((param, value));
        rest = after;
    }
}

/// RFC 2046 `boundary`: 1 to 70 of `bchars`, not ending in a space.
fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

struct Part {
    /// Where its `--boundary` line starts.
    start: usize,
    body: Range<usize>,
    name: String,
    /// No `Content-Type`, or a `text/*` one: scanned by detection.
    text: bool,
}

/// A parsed multipart body.
pub struct MultipartDoc {
    src: Vec<u8>,
    /// `--boundary`.
    delim: Vec<u8>,
    /// Where the first `--boundary` starts (everything before is the preamble).
    first: usize,
    /// Where the closing `--boundary--` starts.
    close: usize,
    parts: Vec<Part>,
    /// What the last [`MultipartDoc::find`] returned, in order: part index and byte range of its body.
    targets: Vec<(usize, Range<usize>)>,
}

fn malformed(why: &'static str) -> RewriteError {
    RewriteError::Malformed(why)
}

fn find_at(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// `bytes` after its transport padding (spaces and tabs), if a CRLF follows; `tail` also takes the end of input.
fn line_end(bytes: &[u8], tail: bool) -> Option<&[u8]> {
    let padding = bytes.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    let rest = &bytes[padding..];
    rest.strip_prefix(b"\r\n").or_else(|| (tail && rest.is_empty()).then_some(rest))
}

impl MultipartDoc {
    pub fn parse(body: &[u8], boundary: &str) -> Result<MultipartDoc, RewriteError> {
        if !valid_boundary(boundary) {
            return Err(malformed("invalid multipart boundary"));
        }
        let delim = [b"--", boundary.as_bytes()].concat();
        let line_delim = [b"\r\n", &delim[..]].concat();
        let first = find_at(body, &delim, 0).ok_or(malformed("missing first multipart boundary"))?;
        if first != 0 && !body[..first].ends_with(b"\r\n") {
            return Err(malformed("multipart boundary inside a line"));
        }
        let (mut parts, mut start) = (Vec::new(), first);
        let close = loop {
            let rest = &body[start + delim.len()..];
            if rest.starts_with(b"--") {
                break start;
            }
            let headers_on = line_end(rest, false).ok_or(malformed("multipart boundary line does not end in CRLF"))?;
            let head = body.len() - headers_on.len();
            if parts.len() == MAX_PARTS {
                return Err(malformed("more than 1000 multipart parts"));
            }
            let end = find_at(body, &line_delim, head).ok_or(malformed("missing closing multipart boundary"))?;
            let content = &body[head..end];
            let blank = if content.starts_with(b"\r\n") { Some(0) } else { find_at(content, b"\r\n\r\n", 0) };
            let blank = blank.ok_or(malformed("part header block without blank line"))?;
            let (name, text) = part_headers(&content[..blank])?;
            let body_start = head + blank + if blank == 0 { 2 } else { 4 };
            parts.push(Part { start, body: body_start..end, name, text });
            start = end + 2;
        };
        let tail = &body[close + delim.len() + 2..];
        if line_end(tail, true).is_none() {
            return Err(malformed("closing multipart boundary followed by unexpected bytes"));
        }
        if find_at(tail, &delim, 0).is_some() {
            return Err(malformed("multipart boundary in the epilogue"));
        }
        Ok(MultipartDoc { src: body.to_vec(), delim, first, close, parts, targets: Vec::new() })
    }

    /// Lists the values to decide about: each selector's parts (exact `name`), in order of selector then body
    /// (a part is reported once, for its first selector; a selected body that is not UTF-8 is an error), then with
    /// `detect` non-empty the matches in every other part without a `Content-Type` or with a `text/*` one.
    pub fn find(&mut self, fields: &[&str], detect: &[Class]) -> Result<Vec<Found>, RewriteError> {
        self.targets.clear();
        let mut found = Vec::new();
        let mut taken = vec![false; self.parts.len()];
        for (i, field) in fields.iter().enumerate() {
            for (p, part) in self.parts.iter().enumerate() {
                if !taken[p] && part.name == *field {
                    taken[p] = true;
                    let value = std::str::from_utf8(&self.src[part.body.clone()]);
                    let value = value.map_err(|_| malformed("selected part is not text"))?;
                    self.targets.push((p, 0..value.len()));
                    found.push(Found { origin: Origin::Field(i), value: value.to_owned() });
                }
            }
        }
        if detect.is_empty() {
            return Ok(found);
        }
        for (p, part) in self.parts.iter().enumerate().filter(|(p, part)| !taken[*p] && part.text) {
            let Ok(text) = std::str::from_utf8(&self.src[part.body.clone()]) else { continue };
            for m in detect::find(text, detect) {
                let value = text.get(m.start..m.end).ok_or(malformed("detected value outside its part"))?;
                self.targets.push((p, m.start..m.end));
                found.push(Found { origin: Origin::Detected(m.class), value: value.to_owned() });
            }
        }
        Ok(found)
    }

    /// Writes the body with one edit per value the last `find` returned ([`RewriteError::EditCount`] if the counts
    /// differ). `Remove` drops the whole part, also for a detected value. A replacement that would contain the
    /// boundary delimiter is refused as [`RewriteError::Unsupported`].
    pub fn apply(self, edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        if edits.len() != self.targets.len() {
            return Err(RewriteError::EditCount);
        }
        let mut removed = vec![false; self.parts.len()];
        let mut subs: Vec<Vec<(Range<usize>, &str)>> = vec![Vec::new(); self.parts.len()];
        for ((p, range), edit) in self.targets.iter().zip(edits) {
            match edit {
                Edit::Keep => {}
                Edit::Remove => removed[*p] = true,
                Edit::Replace(v) => subs[*p].push((range.clone(), v)),
            }
        }
        let line_delim = [b"\r\n", &self.delim[..]].concat();
        let mut out = self.src[..self.first].to_vec();
        let mut emitted = false;
        for (p, part) in self.parts.iter().enumerate().filter(|(p, _)| !removed[*p]) {
            if std::mem::replace(&mut emitted, true) {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&self.src[part.start..part.body.start]);
            let old = &self.src[part.body.clone()];
            if subs[p].is_empty() {
                out.extend_from_slice(old);
                continue;
            }
            let (mut new, mut last) = (b"\r\n".to_vec(), 0);
            for (range, replacement) in &subs[p] {
                new.extend_from_slice(old.get(last..range.start).ok_or(malformed("detected values overlap"))?);
                new.extend_from_slice(replacement.as_bytes());
                last = range.end;
            }
            new.extend_from_slice(old.get(last..).ok_or(malformed("detected values overlap"))?);
            // `new` starts with the CRLF that ends the headers, so a boundary at its start is seen too.
            if find_at(&new, &line_delim, 0).is_some() {
                return Err(RewriteError::Unsupported("replacement contains the multipart boundary"));
            }
            out.extend_from_slice(&new[2..]);
        }
        // The closing line and epilogue, with the CRLF that ends the last written part.
        out.extend_from_slice(&self.src[if emitted { self.close - 2 } else { self.close }..]);
        Ok(out)
    }
}

/// A part's `name` and whether it is text, from its header block (CRLF-separated lines, no final CRLF).
fn part_headers(block: &[u8]) -> Result<(String, bool), RewriteError> {
    let block = std::str::from_utf8(block).map_err(|_| malformed("part headers are not UTF-8"))?;
    let (mut name, mut kind) = (None, None);
    for line in block.split("\r\n").filter(|_| !block.is_empty()) {
        let (field, value) = line.split_once(':').ok_or(malformed("part header line without a colon"))?;
        let bad_name = field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic());
        if bad_name || line.contains(['\r', '\n']) {
            return Err(malformed("invalid part header line"));
        }
        let value = value.trim_matches([' ', '\t']);
        if field.eq_ignore_ascii_case("content-disposition") {
            if name.replace(disposition_name(value)?).is_some() {
                return Err(malformed("part with two Content-Disposition headers"));
            }
        } else if field.eq_ignore_ascii_case("content-type") {
            let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if kind.replace(media).is_some() {
                return Err(malformed("part with two Content-Type headers"));
            }
        } else if field.eq_ignore_ascii_case("content-transfer-encoding")
            && !["7bit", "8bit", "binary"].iter().any(|e| value.eq_ignore_ascii_case(e))
        {
            return Err(RewriteError::Unsupported("part with a content transfer encoding"));
        }
    }
    let name = name.ok_or(malformed("part without Content-Disposition"))?;
    Ok((name, kind.is_none_or(|k| k.is_empty() || k.starts_with("text/"))))
}

/// The `name` of a `form-data` disposition: exactly one, without backslashes, and no `name*`.
fn disposition_name(value: &str) -> Result<String, RewriteError> {
    let kind = value.split(';').next().unwrap_or_default();
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(malformed("part disposition is not form-data"));
    }
    let params = params(&value[kind.len()..]).ok_or(malformed("unparseable part disposition"))?;
    if params.iter().any(|(p, _)| p.eq_ignore_ascii_case("name*")) {
        return Err(malformed("extended part name (name*)"));
    }
    let mut names = params.iter().filter(|(p, _)| p.eq_ignore_ascii_case("name"));
    match (names.next(), names.next()) {
        (Some(&(_, name)), None) if !name.contains('\\') => Ok(name.to_owned()),
        (None, _) => Err(malformed("part without a name")),
        _ => Err(malformed("ambiguous part name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: &str = "XyZ";

    /// A body written with `\n` for CRLF (and `¶` for a bare LF).
    fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").replace('¶', "\n").into_bytes()
    }
    /// (name, body) of every part: what a second parse of an output sees.
    fn parts_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let doc = MultipartDoc::parse(bytes, B).unwrap();
        doc.parts.iter().map(|p| (p.name.clone(), doc.src[p.body.clone()].to_vec())).collect()
    }
    fn run(body: &[u8], fields: &[&str], edits: &[Edit]) -> Result<Vec<u8>, RewriteError> {
        let mut doc = MultipartDoc::parse(body, B)?;
        doc.find(fields, &[Class::Pan])?;
        doc.apply(edits)
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(boundary("multipart/form-data; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("Multipart/Form-Data;BOUNDARY=\"a b:c\"; charset=utf-8").as_deref(), Some("a b:c"));
        assert_eq!(boundary("multipart/form-data; charset=utf-8; boundary=x;").as_deref(), Some("x"));
        assert!(boundary(&format!("multipart/form-data; boundary={}", "a".repeat(70))).is_some());
        let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
        let bad = ["multipart/mixed; boundary=a", "multipart/form-data", "multipart/form-data; boundary=", &long];
        let worse = ["; boundary=a; boundary=b", "; boundary=a b", "; boundary=\"a\\\"b\"", "; boundary=\"ab", "; x"];
        for ct in bad.map(str::to_owned).into_iter().chain(worse.map(|w| format!("multipart/form-data{w}"))) {
            assert_eq!(boundary(&ct), None, "{ct}");
        }
    }

    #[test]
    fn parses_finds_and_round_trips() {
        let mut src = crlf("preamble\n--XyZ\ncontent-disposition: form-data; name=card\n\n4111 1111\n--XyZ \t\n\
            Content-Disposition: form-data; name=\"note\"\n\nmy 4111111111111111 ok\n--XyZ\n\
            Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\nContent-Type: text/plain\n\n4111111111111111\n\
            --XyZ\nContent-Disposition: form-data; name=\"pic\"; filename=\"a.png\"\nCONTENT-TYPE: image/png\n\n");
        src.extend_from_slice(b"\x89PNG 4111111111111111\xff");
        src.extend(crlf("\n--XyZ--  \nepilogue"));
        let mut doc = MultipartDoc::parse(&src, B).unwrap();
        let found = doc.find(&["note", "card", "note"], &[Class::Pan]).unwrap();
        let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(values, ["my 4111111111111111 ok", "4111 1111", "4111111111111111"]);
        let origins: Vec<Origin> = found.iter().map(|f| f.origin).collect();
        assert_eq!(origins, [Origin::Field(0), Origin::Field(1), Origin::Detected(Class::Pan)]);
        assert_eq!(doc.apply(&[Edit::Keep, Edit::Keep, Edit::Keep]).unwrap(), src);
        // The binary file part is not text: selecting it is an error (detection skips it, as above).
        let mut doc = MultipartDoc::parse(&src, B).unwrap();
        assert_eq!(doc.find(&["pic"], &[]).unwrap_err(), RewriteError::Malformed("selected part is not text"));
    }

    #[test]
    fn replace_remove_and_detect() {
        let part = |name: &str, body: &str| format!("--XyZ\nContent-Disposition: form-data; name={name}\n\n{body}\n");
        let src =
            crlf(&format!("{}{}{}--XyZ--", part("a", "1"), part("card", "4111"), part("n", "x 4111111111111111 y")));
        let r = |v: &str| Edit::Replace(v.to_owned());
        let out = run(&src, &["card"], &[r("tok\r\nen"), r("T")]).unwrap();
        let expect = [("a", "1"), ("card", "tok\r\nen"), ("n", "x T y")].map(|(n, b)| (n.to_owned(), b.into()));
        assert_eq!(parts_of(&out), expect);
        assert_eq!(out, crlf(&format!("{}{}{}--XyZ--", part("a", "1"), part("card", "tok\nen"), part("n", "x T y"))));
        let out = run(&src, &["a"], &[Edit::Remove, Edit::Remove]).unwrap();
        assert_eq!(out, crlf(&format!("{}--XyZ--", part("card", "4111"))));
        let out = run(&src, &["a", "card"], &[Edit::Remove, Edit::Remove, Edit::Remove]).unwrap();
        assert_eq!((out, parts_of(b"--XyZ--")), (b"--XyZ--".to_vec(), vec![]));
        let err = run(&src, &["card"], &[r("x\r\n--XyZ--"), Edit::Keep]);
        assert!(matches!(err, Err(RewriteError::Unsupported(_))));
        assert_eq!(run(&src, &["card"], &[Edit::Keep]), Err(RewriteError::EditCount));
    }

    #[test]
    fn malformed_shapes() {
        let ok = "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n";
        assert_eq!(parts_of(&crlf(&format!("{}--XyZ--", ok.repeat(1000)))).len(), 1000);
        let long = "b".repeat(71);
        let too_long = format!("--{long}\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--{long}--");
        assert!(matches!(MultipartDoc::parse(too_long.as_bytes(), &long), Err(RewriteError::Malformed(_))));
        let cases = [
            &format!("{}--XyZ--", ok.repeat(1001)),
            ok,                                                                    // no closing boundary
            "--XyZ\nContent-Type: text/plain\n\n1\n--XyZ--",                       // no Content-Disposition
            "--XyZ\nContent-Disposition: form-data; filename=\"x\"\n\n1\n--XyZ--", // no name
            "--XyZ\nContent-Disposition: attachment; name=a\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a\n1\n--XyZ--", // header block without blank line
            "--XyZ\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a\n x: y\n\n1\n--XyZ--", // folded header
            "--XyZ\nContent-Disposition: form-data; name=a\nX-A\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a¶X: y\n\n1\n--XyZ--", // bare LF
            "--XyZ\nContent-Disposition: form-data; name=a\nContent-Disposition: form-data; name=b\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a\ncontent-type: text/plain\nContent-Type: x/y\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a; NAME=b\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a; name*=UTF-8''b\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=\"a\\\"; filename=\"b\"\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=\"a\\\\b\"\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name=a b\n\n1\n--XyZ--",
            "--XyZ\nContent-Disposition: form-data; name =a\n\n1\n--XyZ--",
            "x--XyZ\n--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--", // boundary inside a line
            "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZx\n--XyZ--", // boundary prefix
            "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ-",
            "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--x",
            "--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--\n--XyZ\n", // boundary in the epilogue
            "",
        ];
        for case in cases {
            assert!(matches!(MultipartDoc::parse(&crlf(case), B), Err(RewriteError::Malformed(_))), "{case:?}");
        }
        let b64 =
            crlf("--XyZ\nContent-Disposition: form-data; name=a\nContent-Transfer-Encoding: base64\n\nMQ==\n--XyZ--");
        assert!(matches!(MultipartDoc::parse(&b64, B), Err(RewriteError::Unsupported(_))));
        assert!(MultipartDoc::parse(b"--a\xff\r\n", "a\u{ff}").is_err());
    }

    /// A generated part: (name, filename, content type, body, transport padding after the boundary).
    type GenPart = (String, Option<String>, Option<String>, Vec<u8>, bool);

    fn gen_part() -> impl Strategy<Value = GenPart> {
        let body = prop_oneof!["\\PC{0,20}".prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..40)];
        let (name, filename) = ("[a-z_]{0,3}|[^\"\\\\\r\n]{0,8}", prop::option::of("[^\"\\\\\r\n]{0,8}"));
        (name, filename, prop::option::of("text/plain|image/png|Text/X"), body, any::<bool>())
    }

    fn build(preamble: &str, parts: &[GenPart], epilogue: &str) -> Vec<u8> {
        let mut src = preamble.as_bytes().to_vec();
        for (name, filename, ctype, data, pad) in parts {
            let pad = if *pad { " \t" } else { "" };
            src.extend(format!("--XyZ{pad}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes());
            src.extend(filename.iter().flat_map(|f| format!("; filename=\"{f}\"").into_bytes()));
            src.extend(ctype.iter().flat_map(|t| format!("\r\ncontent-type: {t}").into_bytes()));
            src.extend([b"\r\n\r\n", &data[..], b"\r\n"].concat());
        }
        src.extend(format!("--XyZ--{epilogue}").bytes());
        src
    }

    proptest! {
        /// Raw bytes, and valid bodies with a few splices of structural fragments: parse never panics, and
        /// whatever parses comes back byte for byte.
        #[test]
        fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300),
                                       parts in prop::collection::vec(gen_part(), 0..4),
                                       cuts in prop::collection::vec((any::<prop::sample::Index>(), 0..4usize,
                                           "\r\n--XyZ|\r\n|--|\r\n\r\n|Content-Disposition: form-data; name=a|\\PC{0,4}"), 0..4)) {
            let mut mutated = build("", &parts, "");
            for (at, drop, piece) in cuts {
                let at = at.index(mutated.len() + 1);
                mutated.splice(at..at + drop.min(mutated.len() - at), piece.bytes());
            }
            for src in [raw, mutated] {
                let Ok(mut doc) = MultipartDoc::parse(&src, B) else { continue };
                let Ok(found) = doc.find(&["a"], &[Class::Pan]) else { continue };
                prop_assert_eq!(doc.apply(&vec![Edit::Keep; found.len()]).unwrap(), src);
            }
        }

        #[test]
        fn generated_multiparts_round_trip(parts in prop::collection::vec(gen_part(), 0..5), new in "\\PC{0,10}",
                                           preamble in "([^-]{0,10}\r\n)?", epilogue in "(\r\n\\PC{0,10})?") {
            let src = build(&preamble, &parts, &epilogue);
            prop_assume!(src.windows(B.len()).filter(|w| *w == B.as_bytes()).count() == parts.len() + 1);
            let expect: Vec<(String, Vec<u8>)> = parts.iter().map(|p| (p.0.clone(), p.3.clone())).collect();
            prop_assert_eq!(parts_of(&src), expect.clone());
            let mut doc = MultipartDoc::parse(&src, B).unwrap();
            let found = doc.find(&[], &[Class::Pan]).unwrap();
            prop_assert_eq!(doc.apply(&vec![Edit::Keep; found.len()]).unwrap(), src.clone());
            // Every text part replaced by name: the output parses to the same parts with the new bodies.
            let binary = |n: &str| parts.iter().any(|p| p.0 == n && std::str::from_utf8(&p.3).is_err());
            let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).filter(|n| !binary(n)).collect();
            let mut doc = MultipartDoc::parse(&src, B).unwrap();
            let found = doc.find(&names, &[]).unwrap();
            let out = doc.apply(&vec![Edit::Replace(new.clone()); found.len()]).unwrap();
            let replaced =
                expect.into_iter().map(|(n, b)| if names.contains(&n.as_str()) { (n, new.clone().into()) } else { (n, b) });
            prop_assert_eq!(parts_of(&out), replaced.collect::<Vec<_>>());
        }
    }
}
