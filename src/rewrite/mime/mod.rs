//! MIME messages for the SMTP listener: read an RFC 5322 / MIME message into the texts that may hold tokens
//! ([`Slot`]s), and write it back with some of them replaced, as valid MIME.
//!
//! Slots, in order: the top-level `To`, `Cc`, `Bcc`, `Reply-To` and `Subject` fields as they appear (unfolded,
//! encoded-words decoded; in address fields only display names are decoded), then every `text/plain` and
//! `text/html` part that is not an attachment, walked through nested multiparts (`message/rfc822` and other
//! types are not entered). A body's text is transfer-decoded (quoted-printable, base64, 7bit/8bit) and
//! charset-decoded (UTF-8, US-ASCII, ISO-8859-1, windows-1252); a part in another charset or transfer encoding is
//! left untouched. Line breaks in a body's text are CRLF (a bare LF in a 7bit/8bit body is read as one); the
//! message's own final line break is not part of a top-level body's text.
//!
//! [`Message::render`] writes every byte it was not asked to change as it was, and:
//! - a replaced body in its own quoted-printable or base64, else (7bit/8bit/none) as it is when the text is ASCII
//!   with CRLF line breaks and lines of at most 998 octets, or as quoted-printable (the
//!   `Content-Transfer-Encoding` set or added); `charset=utf-8` set or added when the text is not ASCII; a
//!   message without MIME-Version gets `MIME-Version`, `Content-Type` and `Content-Transfer-Encoding` then;
//! - a replaced header field refolded at 78 characters, non-ASCII words as `=?utf-8?b?…?=` (in address fields only
//!   in display names: a non-ASCII address is an error);
//! - every line break as CRLF (an LF-only message comes out CRLF). Lines it writes are at most 998 octets.
//!
//! Errors are fixed sentences: never message text. Malformed input is an error, never a panic.

mod address;
mod charset;
mod header;
mod lines;
mod render;
mod transfer;
mod walk;
mod words;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

/// How much structure a message may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Multipart nesting (a single multipart is depth 1).
    pub max_depth: usize,
    /// MIME entities in all, the message itself included.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_depth: 16, max_parts: 256 }
    }
}

/// Why a message could not be read or written. Messages never contain message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    #[error("the message is empty")]
    Empty,
    #[error("header section has no end: a line before the blank line is not a header field")]
    HeaderNoEnd,
    #[error("a header section starts with a folded line")]
    FoldFirst,
    #[error("a header field is not UTF-8")]
    HeaderNotUtf8,
    #[error("a multipart part has no boundary")]
    NoBoundary,
    #[error("multipart boundary never closes")]
    BoundaryNeverCloses,
    #[error("nested too deep")]
    TooDeep,
    #[error("too many parts")]
    TooManyParts,
    #[error("a part's base64 does not decode")]
    BadBase64,
    #[error("a part's quoted-printable does not decode")]
    BadQuotedPrintable,
    #[error("a part's text is not valid in its charset")]
    BadCharset,
    #[error("an address header does not parse")]
    AddressSyntax,
    #[error("non-ASCII text in an address header outside a display name")]
    AddressNotAscii,
    #[error("a header line would be longer than 998 octets")]
    LineTooLong,
    #[error("replacements do not match the slots")]
    SlotCount,
    #[error("edits overlap")]
    Overlap,
}

/// Where a text was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// An address header: "To", "Cc", "Bcc", "Reply-To" (as spelled canonically, whatever case it had).
    Address(&'static str),
    /// Any other header whose value is unstructured text a token may sit in: "Subject" only.
    Subject,
    /// A text body part: `html` true for text/html, false for text/plain (other text/* are left untouched).
    Body { html: bool },
}

/// One text that may hold tokens, decoded to UTF-8 (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Slot {
    pub place: Place,
    pub text: String,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("place", &self.place).finish_non_exhaustive()
    }
}

/// A parsed message: its bytes, its slots and where each slot came from.
pub struct Message {
    raw: Vec<u8>,
    slots: Vec<Slot>,
    sources: Vec<walk::Source>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("bytes", &self.raw.len()).field("slots", &self.slots).finish()
    }
}

impl Message {
    /// `raw` is the DATA of one SMTP transaction after dot-unstuffing, lines ending CRLF (bare LF accepted too).
    pub fn parse(raw: &[u8], limits: &Limits) -> Result<Message, MimeError> {
        let (slots, sources) = walk::walk(raw, limits)?;
        Ok(Message { raw: raw.to_vec(), slots, sources })
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The message with slot i's text replaced by `new[i]` where it is `Some`; `None` keeps those bytes exactly.
    /// `new.len()` must equal `slots().len()`.
    pub fn render(&self, new: &[Option<String>]) -> Result<Vec<u8>, MimeError> {
        render::render(&self.raw, &self.sources, new)
    }

    /// The bytes slot `i` was read from (a whole header field, or a body as encoded).
    #[cfg(test)]
    fn source_bytes(&self, i: usize) -> &[u8] {
        match &self.sources[i] {
            walk::Source::Header(h) => &self.raw[h.whole.clone()],
            walk::Source::Body(b) => &self.raw[b.body.clone()],
        }
    }
}
