//! Detection over a body that is not buffered: requests no route takes whose body is larger than
//! `max_body_bytes` stream to the app through a scanner. A task reads the body, keeps a tail of [`TAIL`] bytes
//! (longer than any value with its separators) so no value is cut in two, tokenises what the detector finds in
//! each window in one vault call, and sends the rest on. Tokens may differ in length from their values, so the
//! body goes on chunked (Content-Length removed).
//!
//! The body is read as bytes: invalid UTF-8 is seen as NUL bytes of the same length (a value in a binary upload
//! is still found). A failure mid-stream (vault down, too many values, the client stalls) ends the body with an
//! error: the app gets a request that breaks off, never a value in clear.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::pipeline::{PublicTerms, VaultCall, VaultOp};
use super::ProxyBody;
use crate::budget::{Budgets, Rate};
use crate::detect;
use crate::domain::Class;
use crate::vault::auth::Caller;
use crate::vault::Vault;

/// Bytes kept back at the end of each window: more than the longest value with its separators.
pub const TAIL: usize = 512;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a streamed body is scanned for and how its values are tokenised.
pub struct Scanner {
    pub vault: Arc<dyn Vault>,
    pub caller: Caller,
    pub classes: Vec<Class>,
    pub vault_timeout: Duration,
    /// Longest wait for the next piece of the body.
    pub read_timeout: Duration,
    /// Most values the whole body may hold.
    pub max_values: usize,
    /// The ingress's client budgets, and the rate they refill at (`None`: unbudgeted).
    pub budgets: Arc<Budgets<IpAddr>>,
    pub rate: Option<Rate>,
}

/// Why a streamed body was cut off.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("the request body could not be read")]
    Read,
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("the request body holds more values than a request may carry")]
    TooMany,
    #[error("the vault could not tokenise a value in the request body")]
    Vault,
}

impl Scanner {
    /// The body to forward instead of one whose first bytes `prefix` were already read and whose rest is `rest`.
    pub fn wrap<B>(self: &Arc<Self>, headers: &mut http::HeaderMap, prefix: Bytes, rest: B, client: IpAddr) -> ProxyBody
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
    {
        headers.remove(header::CONTENT_LENGTH);
        let (tx, rx) = mpsc::channel(2);
        let scanner = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = scanner.run(prefix, rest, client, &tx).await {
                tracing::info!(error = %e, "streamed request body cut off");
                let _ = tx.send(Err(Box::new(e) as BoxError)).await;
            }
        });
        ChannelBody { rx }.boxed()
    }

    async fn run<B>(
        &self,
        prefix: Bytes,
        mut incoming: B,
        client: IpAddr,
        tx: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    ) -> Result<(), StreamError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let mut buf = BytesMut::from(&prefix[..]);
        let mut values = 0;
        let mut trailers = None;
        loop {
            let frame = tokio::time::timeout(self.read_timeout, incoming.frame()).await;
            let eof = match frame.map_err(|_| StreamError::Timeout)? {
                None => true,
                Some(Err(_)) => return Err(StreamError::Read),
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => {
                        buf.extend_from_slice(&data);
                        false
                    }
                    Err(f) => {
                        trailers = f.into_trailers().ok();
                        false
                    }
                },
            };
            let ready = self.window(&mut buf, eof, &mut values, client).await?;
            if !ready.is_empty() && tx.send(Ok(Frame::data(ready))).await.is_err() {
                return Ok(()); // the upstream request is gone
            }
            if eof {
                if let Some(t) = trailers {
                    let _ = tx.send(Ok(Frame::trailers(t))).await;
                }
                return Ok(());
            }
        }
    }

    /// Takes from the front of `buf` what can be sent on: every value that lies wholly before the tail,
    /// tokenised; nothing from the first value that reaches into the tail on.
    async fn window(
        &self,
        buf: &mut BytesMut,
        eof: bool,
        values: &mut usize,
        client: IpAddr,
    ) -> Result<Bytes, StreamError> {
        let safe = if eof { buf.len() } else { buf.len().saturating_sub(TAIL) };
        if safe == 0 {
            return Ok(Bytes::new());
        }
        let text = text_view(buf);
        let mut cut = safe;
        let mut ready = Vec::new();
        for m in detect::find(&text, &self.classes) {
            if m.end <= safe {
                ready.push(m);
            } else {
                cut = cut.min(m.start);
                break;
            }
        }
        *values += ready.len();
        if *values > self.max_values {
            return Err(StreamError::TooMany);
        }
        let head = buf.split_to(cut);
        if ready.is_empty() {
            return Ok(head.freeze());
        }
        let items: Vec<(Class, &str)> = ready.iter().map(|m| (m.class, &text[m.start..m.end])).collect();
        let call = VaultCall {
            vault: &*self.vault,
            caller: &self.caller,
            timeout: self.vault_timeout,
            op: VaultOp::Tokenize { subject: None },
            public: Some(PublicTerms { budgets: &self.budgets, rate: self.rate, key: client }),
        };
        let tokens = call.tokenize(&items, &[]).await.map_err(|_| StreamError::Vault)?;
        let mut out = Vec::with_capacity(head.len());
        let mut at = 0;
        for (m, token) in ready.iter().zip(tokens) {
            out.extend_from_slice(&head[at..m.start]);
            out.extend_from_slice(token.as_bytes());
            at = m.end;
        }
        out.extend_from_slice(&head[at..]);
        Ok(Bytes::from(out))
    }
}

/// `bytes` as text of the same length: each byte of an invalid UTF-8 sequence becomes NUL, so offsets in the
/// text are offsets in the bytes.
fn text_view(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len()).max(1).min(after.len());
                out.extend(std::iter::repeat_n('\0', bad));
                rest = &after[bad..];
            }
        }
    }
}

/// The receiving end of the scanner task, as a body.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_view_keeps_every_offset() {
        let bytes = b"ab\xff\xfe4111 1111 1111 1111\xc3";
        let text = text_view(bytes);
        assert_eq!(text.len(), bytes.len());
        assert_eq!(&text[4..23], "4111 1111 1111 1111");
        assert_eq!(text_view("grüße".as_bytes()), "grüße");
    }
}
