//! Unit and property tests of the HTTP/1 guard, driven without a runtime through a scripted reader.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;

/// Hands out the scripted chunks one read at a time (a chunk larger than the read is split), then EOF.
struct Script {
    chunks: VecDeque<Vec<u8>>,
}

impl AsyncRead for Script {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.chunks.pop_front() {
            let n = chunk.len().min(out.remaining());
            out.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.chunks.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Pending,
    Error,
}

struct Run {
    out: Vec<u8>,
    end: End,
    verdict: Option<(u64, Refusal)>,
}

fn drive(chunks: Vec<Vec<u8>>, limit: usize, read_size: usize) -> Run {
    let verdicts = Arc::new(Verdicts::default());
    let script = Script { chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect() };
    let mut guard = H1Guard::new(script, limit, verdicts.clone());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    let mut scratch = vec![0u8; read_size];
    let end = loop {
        let mut rb = ReadBuf::new(&mut scratch);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break End::Eof,
            Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
            Poll::Ready(Err(_)) => break End::Error,
            Poll::Pending => break End::Pending,
        }
    };
    Run { out, end, verdict: verdicts.refusal() }
}

fn one(input: &[u8]) -> Run {
    drive(vec![input.to_vec()], 16 * 1024, 16 * 1024)
}

const GET: &[u8] = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
const POST_CL: &[u8] = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
const POST_CHUNKED: &[u8] = b"POST /c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n\
    5;name=value;q=\"a b\"\r\nhello\r\n6\r\n world\r\n0;last\r\nX-Checksum: abc\r\nX-Other:\t1\r\n\r\n";
const HTTP10: &[u8] = b"\r\nPOST /old HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc";

fn pipeline() -> Vec<u8> {
    [GET, POST_CL, POST_CHUNKED, HTTP10, GET].concat()
}

#[test]
fn legit_requests_pass_byte_identical() {
    for input in [GET, POST_CL, POST_CHUNKED, HTTP10, &pipeline()[..]] {
        let run = one(input);
        assert_eq!(run.out, input, "{}", String::from_utf8_lossy(input));
        assert_eq!((run.end, run.verdict), (End::Eof, None));
    }
}

#[test]
fn pipelined_stream_split_at_every_byte_boundary_passes_unchanged() {
    let input = pipeline();
    for cut in 0..=input.len() {
        for read_size in [1, 3, 64, 16 * 1024] {
            let run = drive(vec![input[..cut].to_vec(), input[cut..].to_vec()], 16 * 1024, read_size);
            assert_eq!(run.out, input, "cut {cut} read {read_size}");
            assert_eq!((run.end, run.verdict), (End::Eof, None));
        }
    }
    let bytes = input.iter().map(|b| vec![*b]).collect();
    let run = drive(bytes, 16 * 1024, 7);
    assert_eq!((run.out, run.end), (input, End::Eof));
}

#[test]
fn large_bodies_stream_through_hyper_sized_reads() {
    let body = vec![b'x'; 300_000];
    let mut input = format!("PUT /big HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    input.extend_from_slice(&body);
    input.extend_from_slice(b"PUT /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n30d40\r\n");
    input.extend_from_slice(&body[..200_000]);
    input.extend_from_slice(b"\r\n0\r\n\r\n");
    input.extend_from_slice(GET);
    let chunks = input.chunks(65536).map(<[u8]>::to_vec).collect();
    let run = drive(chunks, 16 * 1024, 8192);
    assert_eq!((run.out == input, run.end, run.verdict), (true, End::Eof, None));
}

/// Each shape alone, and behind a valid pipelined request (which still passes first).
#[test]
fn smuggling_shapes_are_withheld_and_replaced() {
    use Refusal::*;
    let cases: &[(&[u8], Refusal)] = &[
        (
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (
            b"GET / HTTP/1.1\r\ntRaNsFeR-eNcOdInG: CHUNKED\r\ncontent-length: 0\r\n\r\n0\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde", DuplicateContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", DuplicateContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nabcde", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nabcde", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nabcde", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", InvalidContentLength),
        (b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", MalformedHead),
        (b"GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\nabcde", MalformedHead),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", BareLineEnding),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", BareLineEnding),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", BareLineEnding),
        (b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", BareLineEnding),
        (b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", ControlCharacter),
        (b"GET / HTTP/1.1\r\nX-A: a\x0bb\r\n\r\n", ControlCharacter),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n0\r\n\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 4\r\nabc\r\n0\r\n\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nY: b\r\n\r\n", InvalidChunk),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", UnsupportedTransferEncoding),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", TransferEncodingInHttp10),
        (b"GET / HTTP/1.2\r\n\r\n", MalformedHead),
        (b"GET  / HTTP/1.1\r\n\r\n", MalformedHead),
    ];
    for &(attack, refusal) in cases {
        let text = String::from_utf8_lossy(attack);
        let run = one(attack);
        assert_eq!(
            (&run.out[..], run.end, run.verdict),
            (REPLACEMENT_HEAD, End::Pending, Some((0, refusal))),
            "{text}"
        );

        let input = [POST_CL, attack].concat();
        for cut in 0..=input.len() {
            let run = drive(vec![input[..cut].to_vec(), input[cut..].to_vec()], 16 * 1024, 5);
            let expected = [POST_CL, REPLACEMENT_HEAD].concat();
            // A shape found in a body chunk read after its head was released fails the read instead.
            if run.end == End::Error {
                assert_eq!(refusal, InvalidChunk, "{text} cut {cut}");
                assert!(input.starts_with(&run.out) && run.out.len() > POST_CL.len(), "{text} cut {cut}");
                continue;
            }
            assert_eq!((run.out, run.end, run.verdict), (expected, End::Pending, Some((1, refusal))), "{text} {cut}");
        }
    }
}

#[test]
fn bad_chunk_after_the_head_was_released_fails_the_read() {
    let head = b"POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec();
    let run = drive(vec![head.clone(), b"zz\r\n".to_vec(), GET.to_vec()], 16 * 1024, 4096);
    assert_eq!((run.out, run.end, run.verdict), (head, End::Error, None));
}

#[test]
fn heads_over_the_limit_or_with_too_many_lines_get_431() {
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let run = drive(vec![big.clone().into_bytes()], 8192, 4096);
    assert_eq!((&run.out[..], run.verdict), (REPLACEMENT_HEAD, Some((0, Refusal::HeadTooLarge))));
    let run = drive(vec![big.clone().into_bytes()], 16 * 1024, 4096);
    assert_eq!((run.out, run.verdict), (big.into_bytes(), None), "under a larger limit it passes");
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let run = one(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(run.verdict, Some((0, Refusal::TooManyHeaders)));
    assert_eq!(Refusal::TooManyHeaders.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[test]
fn an_unfinished_head_is_never_released() {
    let run = one(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chu");
    assert_eq!((run.out, run.end, run.verdict), (Vec::new(), End::Eof, None));
}

#[tokio::test(start_paused = true)]
async fn a_first_head_slower_than_the_deadline_gets_408_and_silence_gets_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1024);
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let verdicts = Arc::new(Verdicts::default());
    let mut guard = H1Guard::new(server, 8192, verdicts.clone()).with_first_head_deadline(Duration::from_secs(5));
    let mut out = vec![0u8; REPLACEMENT_HEAD.len()];
    guard.read_exact(&mut out).await.unwrap();
    assert_eq!((&out[..], verdicts.refusal()), (REPLACEMENT_HEAD, Some((0, Refusal::HeadTimeout))));
    assert_eq!(Refusal::HeadTimeout.status(), StatusCode::REQUEST_TIMEOUT);

    let (_client, server) = tokio::io::duplex(1024);
    let mut guard = H1Guard::new(server, 8192, Arc::default()).with_first_head_deadline(Duration::from_secs(5));
    let err = guard.read(&mut [0u8; 64]).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);

    // Once the first head is through, hyper's own header timer takes over: the guard just waits.
    let (mut client, server) = tokio::io::duplex(1024);
    client.write_all(GET).await.unwrap();
    let mut guard = H1Guard::new(server, 8192, Arc::default()).with_first_head_deadline(Duration::from_secs(5));
    let mut out = vec![0u8; GET.len()];
    guard.read_exact(&mut out).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(60), guard.read(&mut [0u8; 64])).await;
    assert!(waited.is_err(), "no deadline after the first head");
}

#[test]
fn the_h2_preface_turns_the_guard_off() {
    let input = [H2_PREFACE, b"\0\0\x12\x04\0\0\0\0\0\n\n\r\0garbage"].concat();
    for cut in 0..input.len() {
        let run = drive(vec![input[..cut].to_vec(), input[cut..].to_vec()], 16 * 1024, 4);
        assert_eq!((&run.out, run.end, run.verdict), (&input, End::Eof, None), "cut {cut}");
    }
    // A head that merely starts like the preface is checked as usual.
    let run = one(b"PRI * HTTP/1.1\r\nX: \0\r\n\r\n");
    assert_eq!(run.verdict, Some((0, Refusal::ControlCharacter)));
}

#[test]
fn verdicts_answer_the_replaced_request_and_everything_after_it() {
    let v = Verdicts::default();
    assert_eq!(v.next_request(), None);
    v.refuse(2, Refusal::DuplicateContentLength);
    v.refuse(5, Refusal::InvalidChunk);
    assert_eq!(v.next_request(), None);
    assert_eq!(v.next_request(), Some(Refusal::DuplicateContentLength));
    assert_eq!(v.next_request(), Some(Refusal::DuplicateContentLength));
}

#[test]
fn refused_response_is_the_spec_json_error_and_closes() {
    let resp = refused_response(Refusal::ContentLengthWithTransferEncoding);
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[http::header::CONNECTION], "close");
    assert_eq!(resp.headers()[http::header::CONTENT_TYPE], "application/json");
    let resp = refused_response(Refusal::HeadTooLarge);
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body = serde_json::json!({"error": {"code": "headers_too_large", "message": Refusal::HeadTooLarge.message()}});
    let bytes = futures_bytes(resp.into_body());
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), body);
}

fn futures_bytes(body: Full<Bytes>) -> Bytes {
    use http_body_util::BodyExt;
    let mut fut = std::pin::pin!(body.collect());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(c)) => c.to_bytes(),
        _ => panic!("a full body is ready at once"),
    }
}

use std::future::Future;

// ---- property tests ----

/// One generated valid request.
fn request() -> impl Strategy<Value = Vec<u8>> {
    // Some bodies are themselves valid chunked framing, so an injected Transfer-Encoding line frames cleanly.
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
    ];
    let chunks = prop::collection::vec(1usize..40, 0..6);
    (0u8..3, "[a-z/]{1,12}", body, chunks, any::<bool>(), any::<bool>()).prop_map(
        |(kind, path, body, sizes, ext, trailer)| {
            let mut out = format!("POST /{path} HTTP/1.1\r\nHost: x\r\n").into_bytes();
            match kind {
                0 => out.extend_from_slice(b"\r\n"),
                1 => {
                    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                }
                _ => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut rest = &body[..];
                    for size in sizes {
                        let (chunk, tail) = rest.split_at(size.min(rest.len()));
                        if chunk.is_empty() {
                            break;
                        }
                        let ext = if ext { ";a=b" } else { "" };
                        out.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                        rest = tail;
                    }
                    out.extend_from_slice(b"0\r\n");
                    if trailer {
                        out.extend_from_slice(b"X-T: 1\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            out
        },
    )
}

fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts {
        out.push(input[from..c].to_vec());
        from = c;
    }
    out.push(input[from..].to_vec());
    out
}

const INSERTS: &[&[u8]] = &[
    b"\r\nTransfer-Encoding: chunked",
    b"\r\nContent-Length: 3",
    b"\r\ncontent-length: 0",
    b"\r\ntransfer-encoding : chunked",
    b"\r\n Transfer-Encoding: chunked",
    b"\nTransfer-Encoding: chunked",
    b"\r\nTransfer-Encoding:\tchunked\t",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"0\r\n\r\n",
    b"ff\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), prop::sample::select(b"\r\n :;0aAF\0\t,-".to_vec())).prop_map(|(at, b)| Mutation::Set(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        (any::<usize>(), 0..INSERTS.len()).prop_map(|(at, i)| Mutation::Insert(at, i)),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Delete(at, n)),
    ]
}

fn mutate(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = input.len().max(1);
        match *m {
            Mutation::Set(at, b) => {
                if let Some(slot) = input.get_mut(at % len) {
                    *slot = b;
                }
            }
            Mutation::Insert(at, i) => {
                let at = at % (input.len() + 1);
                input.splice(at..at, INSERTS[i].iter().copied());
            }
            Mutation::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(input.len());
                input.drain(at.min(end)..end);
            }
        }
    }
    input
}

/// An independent walk over what hyper would read: every head it can frame must be a clean, single-framed
/// head (no Content-Length with Transfer-Encoding, at most one Content-Length, CRLF lines only).
fn assert_released_heads_are_clean(mut stream: &[u8]) -> Result<(), TestCaseError> {
    loop {
        while let Some(rest) = stream.strip_prefix(b"\r\n") {
            stream = rest;
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let n = match req.parse(stream) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Ok(()),
        };
        let head = &stream[..n];
        for (i, b) in head.iter().enumerate() {
            prop_assert!(*b != b'\n' || (i > 0 && head[i - 1] == b'\r'), "bare LF released");
        }
        let named = |name: &str| req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
        let (cl, te) = (named("content-length"), named("transfer-encoding"));
        prop_assert!(!(cl > 0 && te > 0), "CL+TE released: {:?}", String::from_utf8_lossy(head));
        prop_assert!(cl <= 1, "duplicate CL released");
        stream = &stream[n..];
        if te > 0 {
            loop {
                let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(stream) else {
                    return Ok(());
                };
                stream = &stream[used..];
                if size == 0 {
                    match stream.windows(4).position(|w| w == b"\r\n\r\n") {
                        _ if stream.starts_with(b"\r\n") => stream = &stream[2..],
                        Some(p) => stream = &stream[p + 4..],
                        None => return Ok(()),
                    }
                    break;
                }
                let Some(rest) = usize::try_from(size).ok().and_then(|s| stream.get(s + 2..)) else {
                    return Ok(());
                };
                stream = rest;
            }
        } else if cl == 1 {
            let len = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| h.value);
            let Some(len) = len.and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok()) else {
                return Ok(());
            };
            let Some(rest) = stream.get(len..) else { return Ok(()) };
            stream = rest;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_pipelines_pass_unchanged_however_they_are_split(
        reqs in prop::collection::vec(request(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        read_size in 1usize..5000,
    ) {
        let input = reqs.concat();
        let run = drive(split(&input, &cuts), 16 * 1024, read_size);
        prop_assert_eq!(run.verdict, None);
        prop_assert_eq!(run.end, End::Eof);
        prop_assert!(run.out == input);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn mutations_never_panic_and_never_release_a_smuggling_head(
        reqs in prop::collection::vec(request(), 1..5),
        mutations in prop::collection::vec(mutation(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        read_size in 1usize..3000,
    ) {
        let input = mutate(reqs.concat(), &mutations);
        let run = drive(split(&input, &cuts), 2048, read_size);
        let released = match run.verdict {
            Some(_) => {
                prop_assert_eq!(&run.end, &End::Pending);
                let released = run.out.strip_suffix(REPLACEMENT_HEAD);
                prop_assert!(released.is_some(), "a refusal ends with the replacement head");
                released.unwrap_or_default()
            }
            None => &run.out[..],
        };
        prop_assert!(input.starts_with(released), "the guard never alters bytes");
        assert_released_heads_are_clean(released)?;
    }

    #[test]
    fn a_cl_te_head_anywhere_in_a_pipeline_is_refused_in_place(
        before in prop::collection::vec(request(), 0..4),
        te_first in any::<bool>(),
        upper in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        read_size in 1usize..3000,
    ) {
        let (te, cl) = ("Transfer-Encoding: chunked\r\n", "Content-Length: 5\r\n");
        let lines = if te_first { format!("{te}{cl}") } else { format!("{cl}{te}") };
        let lines = if upper { lines.to_uppercase() } else { lines.to_lowercase() };
        let attack = format!("POST /x HTTP/1.1\r\nHost: x\r\n{lines}\r\n0\r\n\r\n").into_bytes();
        let prefix = before.concat();
        let input = [&prefix[..], &attack, GET].concat();
        let run = drive(split(&input, &cuts), 16 * 1024, read_size);
        prop_assert_eq!(run.verdict, Some((before.len() as u64, Refusal::ContentLengthWithTransferEncoding)));
        prop_assert!(run.out == [&prefix[..], REPLACEMENT_HEAD].concat());
    }
}
