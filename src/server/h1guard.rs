//! HTTP/1.x request-head guard: refuses request-smuggling shapes before hyper can parse them.
//!
//! hyper tolerates a few framing shapes that RFC 9112 lets a server accept but that a proxy must refuse: it
//! reframes `Content-Length` + `Transfer-Encoding: chunked` as chunked, merges identical duplicate
//! `Content-Length` lines, and httparse accepts bare `\n` line endings. [`H1Guard`] wraps the client stream of
//! an HTTP/1.x connection and watches the request bytes hyper reads, request by request:
//!
//! - A request head is withheld in a bounded buffer (the listener's header limit) until it is complete, checked
//!   byte by byte (CRLF line endings only, no control characters), parsed with httparse in strict mode and
//!   framed per RFC 9112 §6.3: exactly one `Transfer-Encoding: chunked` (HTTP/1.1 only), or exactly one
//!   all-digit `Content-Length`, or no body. Anything else is refused.
//! - Body bytes then flow through while a small state machine skips them (a length, or chunk-size lines, chunk
//!   data, CRLFs and trailers for chunked) so that the next pipelined head is found. Body data is not
//!   buffered (beyond what arrived in the same read as its head): the guard reads it straight into hyper's
//!   buffer and checks it in place; when a body ends inside such a read, the bytes after it (the next head)
//!   are taken back into the head buffer before hyper sees them.
//!   A chunked body already in hand with its head is checked before the head is released, so a head whose
//!   first chunk line is bad is refused whole; a chunk framing error found later fails the read, which hyper
//!   treats like its own chunk decoding error (the body errors, nothing more is parsed on the connection).
//!
//! How a refused head is answered: the guard never passes the bad bytes on. It records the refusal, with the
//! index of the request it replaces, in the connection's [`Verdicts`], and hands hyper a fixed, harmless head
//! (`GET / HTTP/1.1`, `Connection: close`) in its place; after that its reads stay pending. hyper answers
//! requests on a connection in order, so any earlier pipelined request still gets its own response first. The
//! service wrapper in `server.rs` asks [`Verdicts::next_request`] before each call and answers the replacement
//! request itself with [`refused_response`]: 400 (431 for an over-long head or too many header lines, 408 for
//! a first head not complete within the header timeout), the spec's JSON error and `Connection: close`, so
//! hyper closes the connection after writing it. The replacement request never reaches a handler, so nothing
//! is forwarded. While the answer is written the guard discards (a bounded amount of) what the client still
//! sends, so that closing with unread bytes does not turn into a reset that destroys the answer.
//!
//! veil never accepts a protocol upgrade (no `hyper::upgrade::on`): after a `101` or a successful `CONNECT`
//! hyper drops the connection. The guard therefore keeps watching after `Upgrade`/`CONNECT` heads: stopping
//! there would let a request whose upgrade was declined carry an unchecked pipelined head behind it.
//! h2 connections are not guarded: TLS connections that negotiated ALPN `h2` are not wrapped, and on other
//! connections the guard steps aside once the first 24 bytes are the h2 connection preface.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The h2 connection preface (RFC 9113 §3.4), sent first by prior-knowledge h2 clients.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// hyper's default limit on header lines; more is answered 431 by hyper too.
const MAX_HEADERS: usize = 100;
/// What hyper reads in place of a refused head: it becomes one request that the service wrapper answers.
const REPLACEMENT_HEAD: &[u8] = b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n";
/// Longest chunk extension accepted on one chunk-size line.
const MAX_CHUNK_EXTENSION: usize = 4096;
/// Largest trailer section after the last chunk (hyper's own limit).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// First size of the head buffer; it grows up to the header limit only for larger heads.
const INITIAL_BUFFER: usize = 8 * 1024;
/// Client bytes discarded after a refusal, at most.
const DISCARD_LIMIT: usize = 256 * 1024;

/// Why the guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ContentLengthWithTransferEncoding,
    DuplicateContentLength,
    InvalidContentLength,
    UnsupportedTransferEncoding,
    TransferEncodingInHttp10,
    BareLineEnding,
    ControlCharacter,
    MalformedHead,
    InvalidChunk,
    HeadTooLarge,
    TooManyHeaders,
    /// The first head did not arrive within the header timeout.
    HeadTimeout,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => "headers_too_large",
            Refusal::HeadTimeout => "header_timeout",
            _ => "bad_request",
        }
    }

    /// A fixed sentence: never echoes request bytes.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ContentLengthWithTransferEncoding => "Content-Length together with Transfer-Encoding",
            Refusal::DuplicateContentLength => "more than one Content-Length",
            Refusal::InvalidContentLength => "Content-Length is not a decimal number",
            Refusal::UnsupportedTransferEncoding => "Transfer-Encoding other than a single chunked",
            Refusal::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Refusal::BareLineEnding => "request head line not ended by CRLF",
            Refusal::ControlCharacter => "control character in the request head",
            Refusal::MalformedHead => "malformed request head",
            Refusal::InvalidChunk => "invalid chunked body framing",
            Refusal::HeadTooLarge => "request head is larger than the limit",
            Refusal::TooManyHeaders => "too many header lines",
            Refusal::HeadTimeout => "request head did not arrive in time",
        }
    }
}

/// The answer to a refused request: the spec's JSON error, and the connection closes after it.
pub fn refused_response(refusal: Refusal) -> Response<Full<Bytes>> {
    crate::respond::closing_error(refusal.status(), refusal.code(), refusal.message())
}

/// What the guard of one connection tells its service wrapper: which request (by index) it replaced.
#[derive(Debug, Default)]
pub struct Verdicts {
    refused: OnceLock<(u64, Refusal)>,
    calls: AtomicU64,
}

impl Verdicts {
    fn refuse(&self, index: u64, refusal: Refusal) {
        let _ = self.refused.set((index, refusal));
    }

    /// Called once per request, in order: `Some` when this request stands for a refused head.
    pub fn next_request(&self) -> Option<Refusal> {
        let index = self.calls.fetch_add(1, Ordering::AcqRel);
        match self.refused.get() {
            Some(&(at, refusal)) if index >= at => Some(refusal),
            _ => None,
        }
    }

    /// The recorded refusal, if any (tests and logs).
    pub fn refusal(&self) -> Option<(u64, Refusal)> {
        self.refused.get().copied()
    }
}

/// Where the incremental head check stands.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    scanned: usize,
    prev_cr: bool,
    line_len: usize,
    lines: usize,
}

enum HeadStep {
    Incomplete,
    /// The head ends after this many bytes.
    Complete(usize),
    Bad(Refusal),
}

impl HeadScan {
    /// Continues over `head` (the whole head so far); every byte is looked at once.
    fn scan(&mut self, head: &[u8]) -> HeadStep {
        while let Some(&b) = head.get(self.scanned) {
            self.scanned += 1;
            if self.prev_cr {
                if b != b'\n' {
                    return HeadStep::Bad(Refusal::BareLineEnding);
                }
                self.prev_cr = false;
                if self.line_len > 0 {
                    self.lines += 1;
                } else if self.lines > 0 {
                    return HeadStep::Complete(self.scanned);
                }
                // An empty line before the request line is ignored (RFC 9112 §2.2), as httparse does.
                self.line_len = 0;
                continue;
            }
            match b {
                b'\r' => self.prev_cr = true,
                b'\n' => return HeadStep::Bad(Refusal::BareLineEnding),
                b'\t' => self.line_len += 1,
                0..=0x1f | 0x7f => return HeadStep::Bad(Refusal::ControlCharacter),
                _ => self.line_len += 1,
            }
        }
        HeadStep::Incomplete
    }
}

/// Parses a complete head (strict httparse) and decides how its body is framed (RFC 9112 §6.3).
fn frame(head: &[u8]) -> Result<Option<Body>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(Refusal::MalformedHead),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
        Err(_) => return Err(Refusal::MalformedHead),
    }
    let (mut lengths, mut length, mut codings, mut chunked) = (0usize, None, 0usize, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = parse_length(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings += 1;
            chunked = trim_ows(h.value).eq_ignore_ascii_case(b"chunked");
        }
    }
    if lengths > 0 && codings > 0 {
        return Err(Refusal::ContentLengthWithTransferEncoding);
    }
    if lengths > 1 {
        return Err(Refusal::DuplicateContentLength);
    }
    if codings > 0 {
        if req.version != Some(1) {
            return Err(Refusal::TransferEncodingInHttp10);
        }
        if codings > 1 || !chunked {
            return Err(Refusal::UnsupportedTransferEncoding);
        }
        return Ok(Some(Body::Chunked(Chunked::default())));
    }
    match (lengths, length) {
        (0, _) | (_, Some(0)) => Ok(None),
        (_, Some(n)) => Ok(Some(Body::Length(n))),
        (_, None) => Err(Refusal::InvalidContentLength),
    }
}

/// `1*DIGIT` after optional whitespace, as a u64.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = trim_ows(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The body still to skip after a released head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunked),
}

impl Body {
    /// Skips body bytes at the start of `data`: how many belong to the body, and whether it ended there.
    fn advance(&mut self, data: &[u8]) -> Result<(usize, bool), Refusal> {
        match self {
            Body::Length(rest) => {
                let take = data.len().min(usize::try_from(*rest).unwrap_or(usize::MAX));
                *rest -= take as u64;
                Ok((take, *rest == 0))
            }
            Body::Chunked(c) => c.advance(data),
        }
    }
}

/// The chunked-body state machine; it mirrors hyper's decoder and is stricter in extensions and trailers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Chunked {
    state: Chunk,
    size: u64,
    /// Bytes of the current extension, or of the trailer section.
    count: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    #[default]
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line or the final CRLF.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    fn advance(&mut self, data: &[u8]) -> Result<(usize, bool), Refusal> {
        let mut at = 0;
        while let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) {
            if self.state == Chunk::Data {
                let take = rest.len().min(usize::try_from(self.size).unwrap_or(usize::MAX));
                self.size -= take as u64;
                at += take;
                if self.size == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let Some(&b) = rest.first() else { break };
            at += 1;
            self.state = self.step(b).ok_or(Refusal::InvalidChunk)?;
            if self.state == Chunk::Done {
                return Ok((at, true));
            }
        }
        Ok((at, false))
    }

    fn step(&mut self, b: u8) -> Option<Chunk> {
        use Chunk::*;
        let next = match (self.state, b) {
            (Start, _) => {
                self.size = u64::from(hex(b)?);
                Size
            }
            (Size, _) if hex(b).is_some() => {
                self.size = self.size.checked_mul(16)?.checked_add(u64::from(hex(b)?))?;
                Size
            }
            (Size | SizeSpace, b' ' | b'\t') => SizeSpace,
            (Size | SizeSpace, b';') => {
                self.count = 0;
                Extension
            }
            (Size | SizeSpace | Extension, b'\r') => SizeLf,
            (Extension, _) if visible(b) && self.count < MAX_CHUNK_EXTENSION => {
                self.count += 1;
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => {
                self.count = 0;
                TrailerStart
            }
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (TrailerStart, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (TrailerStart | Trailer, _) if visible(b) && self.count < MAX_TRAILER_BYTES => {
                self.count += 1;
                Trailer
            }
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return None,
        };
        Some(next)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A byte allowed inside a chunk extension or trailer line: HTAB, SP, VCHAR, obs-text.
fn visible(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[derive(Debug)]
enum State {
    /// Start of a connection: may still turn out to be the h2 preface.
    Sniff,
    Head(HeadScan),
    Body(Body),
    /// An h2 connection: no more checks.
    Passthrough,
    /// A head was refused: the replacement head is being handed over, then reads stay pending.
    Refused {
        sent: usize,
        discarded: usize,
    },
    /// A body framing error after its head was released: reads fail.
    Broken,
    Eof,
}

/// The guarded client stream of one HTTP/1.x connection (see the module docs).
pub struct H1Guard<T> {
    inner: T,
    /// `buf[pos..ready]`: checked bytes not yet read by hyper; `buf[ready..len]`: the head being collected.
    buf: Vec<u8>,
    pos: usize,
    ready: usize,
    len: usize,
    limit: usize,
    state: State,
    heads: u64,
    verdicts: Arc<Verdicts>,
    /// Deadline for the first head (see [`H1Guard::with_first_head_deadline`]).
    first_head: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> H1Guard<T> {
    /// Guards `inner`; heads longer than `max_head_bytes` are refused with 431.
    pub fn new(inner: T, max_head_bytes: usize, verdicts: Arc<Verdicts>) -> H1Guard<T> {
        let limit = max_head_bytes.max(H2_PREFACE.len());
        H1Guard {
            inner,
            buf: vec![0; limit.min(INITIAL_BUFFER)],
            pos: 0,
            ready: 0,
            len: 0,
            limit,
            state: State::Sniff,
            heads: 0,
            verdicts,
            first_head: None,
        }
    }

    /// Bounds the wait for the first request head. hyper's own header timer covers every later head, but the
    /// first one is awaited by hyper-util's protocol sniffing, before hyper's HTTP/1 connection (and its timer)
    /// exists, and the guard withholds it until it is complete. On expiry a partly received head is answered
    /// 408 (like hyper's header timeout); a connection that sent nothing is closed. Needs a tokio runtime.
    pub fn with_first_head_deadline(mut self, timeout: std::time::Duration) -> H1Guard<T> {
        self.first_head = Some(Box::pin(tokio::time::sleep(timeout)));
        self
    }

    /// Called when the client has nothing more yet: whether the first-head deadline has passed.
    fn first_head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.heads > 0 || !matches!(self.state, State::Sniff | State::Head(_)) {
            self.first_head = None;
        }
        self.first_head.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready())
    }

    fn refuse(&mut self, refusal: Refusal) {
        tracing::debug!(reason = refusal.message(), request = self.heads, "HTTP/1 request head refused");
        self.verdicts.refuse(self.heads, refusal);
        self.len = self.ready;
        self.state = State::Refused { sent: 0, discarded: 0 };
    }

    /// Runs the state machine over the collected bytes `buf[ready..len]`, releasing what passes.
    fn process(&mut self) {
        loop {
            let pending = self.buf.get(self.ready..self.len).unwrap_or_default();
            match &mut self.state {
                State::Sniff => {
                    let n = pending.len().min(H2_PREFACE.len());
                    if pending.get(..n) != H2_PREFACE.get(..n) {
                        self.state = State::Head(HeadScan::default());
                    } else if n == H2_PREFACE.len() {
                        self.state = State::Passthrough;
                    } else {
                        return;
                    }
                }
                State::Passthrough => {
                    self.ready = self.len;
                    return;
                }
                State::Head(scan) => match scan.scan(pending) {
                    HeadStep::Incomplete if pending.len() >= self.limit => return self.refuse(Refusal::HeadTooLarge),
                    HeadStep::Incomplete => return,
                    HeadStep::Bad(refusal) => return self.refuse(refusal),
                    HeadStep::Complete(end) => {
                        let (head, after) = pending.split_at(end.min(pending.len()));
                        // A body already in hand is checked before its head is released.
                        let framed = frame(head).and_then(|body| match body {
                            None => Ok((0, None)),
                            Some(mut body) => body.advance(after).map(|(used, done)| (used, (!done).then_some(body))),
                        });
                        match framed {
                            Err(refusal) => return self.refuse(refusal),
                            Ok((used, body)) => {
                                self.ready += end + used;
                                self.heads += 1;
                                self.state = match body {
                                    Some(body) => State::Body(body),
                                    None => State::Head(HeadScan::default()),
                                };
                            }
                        }
                    }
                },
                State::Body(body) => match body.advance(pending) {
                    Ok((used, done)) => {
                        self.ready += used;
                        if !done {
                            return;
                        }
                        self.state = State::Head(HeadScan::default());
                    }
                    Err(refusal) => {
                        tracing::debug!(reason = refusal.message(), "HTTP/1 request body framing refused");
                        self.len = self.ready;
                        self.state = State::Broken;
                        return;
                    }
                },
                State::Refused { .. } | State::Broken | State::Eof => return,
            }
        }
    }

    /// Whether the next read can go straight into hyper's buffer: body bytes are checked in place, and a
    /// following head (at most `room` bytes, within the limit) is taken back into the head buffer.
    fn direct(&self, room: usize) -> bool {
        match &self.state {
            State::Passthrough => true,
            State::Body(_) => room <= self.limit,
            _ => false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for H1Guard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.pos < this.ready {
                let n = (this.ready - this.pos).min(out.remaining());
                out.put_slice(this.buf.get(this.pos..this.pos + n).unwrap_or_default());
                this.pos += n;
                if this.pos == this.len {
                    (this.pos, this.ready, this.len) = (0, 0, 0);
                }
                return Poll::Ready(Ok(()));
            }
            match &mut this.state {
                State::Refused { sent, discarded } => {
                    let rest = REPLACEMENT_HEAD.get(*sent..).unwrap_or_default();
                    if rest.is_empty() {
                        // hyper closes after answering the replacement request; until then, drop what comes.
                        while *discarded < DISCARD_LIMIT {
                            let mut sink = ReadBuf::new(&mut this.buf);
                            match Pin::new(&mut this.inner).poll_read(cx, &mut sink) {
                                Poll::Ready(Ok(())) if !sink.filled().is_empty() => *discarded += sink.filled().len(),
                                _ => break,
                            }
                        }
                        return Poll::Pending;
                    }
                    let n = rest.len().min(out.remaining());
                    out.put_slice(rest.get(..n).unwrap_or_default());
                    *sent += n;
                    return Poll::Ready(Ok(()));
                }
                State::Broken => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "invalid chunked body framing")))
                }
                State::Eof => return Poll::Ready(Ok(())),
                _ => {}
            }
            if this.len == 0 && this.direct(out.remaining()) {
                let before = out.filled().len();
                std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                let fresh = out.filled().get(before..).unwrap_or_default();
                let State::Body(body) = &mut this.state else { return Poll::Ready(Ok(())) };
                if fresh.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                match body.advance(fresh) {
                    Ok((_, false)) => return Poll::Ready(Ok(())),
                    Ok((used, true)) => {
                        // The body ended inside this read: what follows is the next head, taken back from hyper.
                        let tail = fresh.get(used..).unwrap_or_default();
                        if this.buf.len() < tail.len() {
                            this.buf.resize(tail.len(), 0);
                        }
                        if let Some(slot) = this.buf.get_mut(..tail.len()) {
                            slot.copy_from_slice(tail);
                        }
                        (this.pos, this.ready, this.len) = (0, 0, tail.len());
                        this.state = State::Head(HeadScan::default());
                        out.set_filled(before + used);
                        this.process();
                        if used > 0 {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Err(_) => {
                        out.set_filled(before);
                        this.state = State::Broken;
                    }
                }
                continue;
            }
            // Only the head being collected is left in the buffer: move it to the front and read more.
            if this.pos > 0 {
                this.buf.copy_within(this.pos..this.len, 0);
                (this.len, this.ready, this.pos) = (this.len - this.pos, 0, 0);
            }
            if this.len == this.buf.len() {
                if this.buf.len() >= this.limit {
                    this.refuse(Refusal::HeadTooLarge);
                    continue;
                }
                let grown = (this.buf.len() * 2).min(this.limit);
                this.buf.resize(grown, 0);
            }
            let mut spare = ReadBuf::new(this.buf.get_mut(this.len..).unwrap_or_default());
            if Pin::new(&mut this.inner).poll_read(cx, &mut spare)?.is_pending() {
                if !this.first_head_expired(cx) {
                    return Poll::Pending;
                }
                this.first_head = None;
                if this.len == this.ready {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request head in time")));
                }
                this.refuse(Refusal::HeadTimeout);
                continue;
            }
            let n = spare.filled().len();
            if n == 0 {
                // End of stream: an unfinished head is dropped, hyper sees the end.
                this.len = this.ready;
                this.state = State::Eof;
                continue;
            }
            this.len += n;
            this.process();
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for H1Guard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "h1guard_tests.rs"]
mod tests;
