//! Body rewriting: find the configured fields (and detected values) of a request, then apply edits.
//!
//! Every body format works in two passes around one vault batch:
//! 1. `Doc::parse(body)` then `doc.find(selectors, detect)` lists every [`Found`] value, in a stable order:
//!    first each selector's matches (`Origin::Field(i)` for the route's i-th field), then values found by
//!    detection (`Origin::Detected(class)`) in every *other* place of the body that holds text, read as the
//!    application decodes it (each format's module lists its places: JSON keys and numbers, XML attributes and
//!    comments, multipart parts of every type and their headers…);
//! 2. the proxy decides one [`Edit`] per found value (tokenise through the vault, mask, encrypt, drop…) and
//!    `doc.apply(&edits)` writes the new body: the same format and shape, only those values changed.
//!
//! Parsing is strict: a body that does not parse under a rule is an error (fail closed), never forwarded. So is a
//! value detection finds where it cannot be rewritten in place, and a part of a body it cannot read: `find`
//! refuses them rather than let them through.
//!
//! [`mime`] is the exception: e-mail for the SMTP listener has no selectors, so `mime::Message::parse` lists every
//! text that may hold tokens (address and Subject headers, text parts) and `render` writes back replacements.

pub mod binary;
pub mod form;
pub mod json;
pub mod mime;
pub mod multipart;
pub mod refs;
pub mod select;
pub mod text;
pub mod xml;

use crate::domain::Class;

/// Where a found value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Matched the i-th of the selectors `find` was given.
    Field(usize),
    /// Matched the route's subject selector (read to link tokens, never edited). Format modules never produce it:
    /// the proxy's `Doc::find` turns the subject selector's matches into it.
    Subject,
    /// Found by detection in a string no selector matched.
    Detected(Class),
}

/// One value in the body that the proxy must decide about.
#[derive(Clone, PartialEq, Eq)]
pub struct Found {
    pub origin: Origin,
    /// The value as the application would see it (decoded: JSON unescaped, URL-decoded, XML entities resolved).
    pub value: String,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// What to do with one found value.
#[derive(Clone, PartialEq, Eq)]
pub enum Edit {
    Keep,
    /// Put this (decoded) value in its place; the format re-encodes it.
    Replace(String),
    /// Remove the field (JSON member or array element, form pair, multipart part, XML element).
    Remove,
}

impl std::fmt::Debug for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Edit::Keep => "Keep",
            Edit::Replace(_) => "Replace(<redacted>)",
            Edit::Remove => "Remove",
        })
    }
}

/// `bytes` with one edit per range (ordered, not overlapping): `Replace` writes the new value in place, `Remove`
/// cuts the range out, `Keep` leaves it. The text and binary formats write back through this.
pub(crate) fn splice(
    bytes: &[u8],
    ranges: impl IntoIterator<Item = std::ops::Range<usize>>,
    edits: &[Edit],
) -> Result<Vec<u8>, RewriteError> {
    let out_of_range = || RewriteError::Malformed("value offsets out of range");
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    for (range, edit) in ranges.into_iter().zip(edits) {
        let with = match edit {
            Edit::Keep => continue,
            Edit::Replace(v) => v.as_bytes(),
            Edit::Remove => b"",
        };
        out.extend_from_slice(bytes.get(pos..range.start).ok_or_else(out_of_range)?);
        out.extend_from_slice(with);
        pos = range.end;
    }
    out.extend_from_slice(bytes.get(pos..).ok_or_else(out_of_range)?);
    Ok(out)
}

/// Why a body could not be rewritten. Messages are fixed sentences: never body content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    #[error("unsupported body: {0}")]
    Unsupported(&'static str),
    #[error("edits do not match the values found")]
    EditCount,
}

/// Escapes a value for an HTML (or XML) text or attribute context.
pub fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
