//! The bytes of one SMTP connection, either side: a stream that is plain TCP or TLS (STARTTLS swaps it), read
//! line by line with a length limit and never buffering more than one line, plus the DATA reader
//! (dot-unstuffing, a size limit that keeps reading to the end without keeping what is over it).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A connection's stream: plain, or TLS as the server (the shop's side) or the client (the upstream's side).
pub enum Stream {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Taken out for a TLS handshake that failed: every read and write fails.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// One line as read: its bytes with the terminator, or a line longer than the limit (read and dropped).
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// A stream read line by line. Holds what arrived beyond the current line (a pipelining client sends several
/// commands at once), never more than one read's worth plus one line.
pub struct Lines {
    pub stream: Stream,
    buf: Vec<u8>,
}

const READ_CHUNK: usize = 8 * 1024;

impl Lines {
    pub fn new(stream: Stream) -> Lines {
        Lines { stream, buf: Vec::new() }
    }

    /// Whether bytes beyond the last line have arrived (a client must not pipeline past STARTTLS).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Forgets what arrived beyond the last line.
    pub fn discard_buffered(&mut self) {
        self.buf.clear();
    }

    /// The next line, up to and including its `\n`, of at most `max` bytes; a longer one is read to its end and
    /// dropped. End of stream is `UnexpectedEof`.
    pub async fn line(&mut self, max: usize) -> io::Result<Line> {
        let mut too_long = false;
        let mut scanned = 0;
        loop {
            if let Some(at) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + at + 1;
                let line: Vec<u8> = self.buf.drain(..end).collect();
                return Ok(if too_long || line.len() > max { Line::TooLong } else { Line::Complete(line) });
            }
            if self.buf.len() > max {
                // Too long already: keep nothing of it, read on to its end.
                too_long = true;
                self.buf.clear();
            }
            scanned = self.buf.len();
            let mut chunk = [0u8; READ_CHUNK];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}

/// A message as DATA delivered it.
#[derive(Debug, PartialEq, Eq)]
pub enum Data {
    /// Dot-unstuffed, every line ending in CRLF.
    Message(Vec<u8>),
    /// Over the size limit (read to its end, not kept).
    TooBig,
    /// A line ended in a bare LF: refused (one reading of where a message ends for every hop: no smuggling).
    BareLf,
}

/// Reads DATA's lines up to the lone `.` line, keeping at most `max` bytes of message.
pub async fn read_data(lines: &mut Lines, max: usize) -> io::Result<Data> {
    let mut message = Vec::new();
    let (mut too_big, mut bare_lf) = (false, false);
    loop {
        let line = match lines.line(max.saturating_add(3)).await? {
            Line::Complete(l) => l,
            Line::TooLong => {
                too_big = true;
                message = Vec::new();
                continue;
            }
        };
        let content = match line.strip_suffix(b"\r\n") {
            Some(c) => c,
            None => {
                bare_lf = true;
                continue;
            }
        };
        if content == b"." {
            break;
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        if too_big || message.len() + content.len() + 2 > max {
            too_big = true;
            message = Vec::new();
            continue;
        }
        message.extend_from_slice(content);
        message.extend_from_slice(b"\r\n");
    }
    Ok(match (too_big, bare_lf) {
        (true, _) => Data::TooBig,
        (_, true) => Data::BareLf,
        _ => Data::Message(message),
    })
}

/// `message` (lines ending in CRLF, a missing final CRLF added) dot-stuffed and ended with `.`: DATA's wire form.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        match line.strip_suffix(b"\n") {
            Some(body) => {
                out.extend_from_slice(body.strip_suffix(b"\r").unwrap_or(body));
                out.extend_from_slice(b"\r\n");
            }
            None => {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    /// `Lines` over a loopback TCP connection fed `input` (then closed).
    async fn lines_of(input: Vec<u8>) -> Lines {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&input).await.unwrap();
        });
        let (s, _) = listener.accept().await.unwrap();
        Lines::new(Stream::Plain(s))
    }

    #[tokio::test]
    async fn pipelined_lines_and_limits() {
        let mut l = lines_of(b"EHLO a\r\nMAIL FROM:<x>\r\nxxxxxxxxxxxxxxxxxxxx\r\nNOOP\r\n".to_vec()).await;
        assert_eq!(l.line(16).await.unwrap(), Line::Complete(b"EHLO a\r\n".to_vec()));
        assert_eq!(l.line(16).await.unwrap(), Line::Complete(b"MAIL FROM:<x>\r\n".to_vec()));
        assert_eq!(l.line(16).await.unwrap(), Line::TooLong);
        assert_eq!(l.line(16).await.unwrap(), Line::Complete(b"NOOP\r\n".to_vec()));
        assert_eq!(l.line(16).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn data_is_unstuffed_limited_and_refuses_bare_lf() {
        let mut l = lines_of(b"a\r\n..b\r\n.\r\nNOOP\r\n".to_vec()).await;
        assert_eq!(read_data(&mut l, 100).await.unwrap(), Data::Message(b"a\r\n.b\r\n".to_vec()));
        assert_eq!(l.line(100).await.unwrap(), Line::Complete(b"NOOP\r\n".to_vec()));
        let mut big = b"0123456789\r\n".repeat(20);
        big.extend_from_slice(b".\r\nQUIT\r\n");
        let mut l = lines_of(big).await;
        assert_eq!(read_data(&mut l, 100).await.unwrap(), Data::TooBig);
        assert_eq!(l.line(100).await.unwrap(), Line::Complete(b"QUIT\r\n".to_vec()), "read to the end of DATA");
        let mut l = lines_of(b"a\n.\nb\r\n.\r\n".to_vec()).await;
        assert_eq!(read_data(&mut l, 100).await.unwrap(), Data::BareLf, "a bare-LF dot does not end DATA");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn stuffing_then_reading_gives_the_message_back(lines in prop::collection::vec("[.a-z ]{0,12}", 0..8)) {
            let message: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let wire = dot_stuff(&message);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let back = rt.block_on(async { read_data(&mut lines_of(wire).await, 1 << 20).await.unwrap() });
            prop_assert_eq!(back, Data::Message(message));
        }
    }
}
