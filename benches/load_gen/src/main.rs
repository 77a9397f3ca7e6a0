//! Open-loop HTTP/1.1 load generator for `benches/load.sh`: a fixed request rate with latency corrected for
//! coordinated omission, optional TLS, and checkout bodies with fresh valid values for every request.
//!
//! Debian's `wrk` has no fixed-rate mode and `oha` can only send a fixed body (or one drawn from a file), so the
//! latency runs use this small tool; throughput (closed loop) is measured with `wrk`.
//!
//! Modes:
//! - `rate`: send `--rate` requests/s for `--duration` seconds over `--connections` keep-alive connections and
//!   print one JSON line with counts and latency percentiles (microseconds).
//! - `idle`: open `--connections` connections (TLS handshakes completed), print `ready`, hold them until stdin
//!   closes or `--duration` seconds pass.
//! - `body`: print one checkout body filled with values derived from `--seed` (the "repeated" body).
//!
//! Latency is measured from the moment a request was *due* when the generator was late because every connection
//! was still busy (the server was behind: wrk2-style correction), and from the moment it was actually written when
//! a connection was free and only the client's timer granularity delayed it.

use std::error::Error;
use std::io::{BufReader, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn Error + Send + Sync>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

#[derive(Clone)]
enum Body {
    None,
    Static(Arc<Vec<u8>>),
    Unique(Arc<String>),
}

struct Opts {
    mode: String,
    url: String,
    method: String,
    rate: f64,
    duration: f64,
    connections: usize,
    cacert: Option<String>,
    body_file: Option<String>,
    template: Option<String>,
    seed: u64,
}

fn parse_args() -> Result<Opts, BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("usage: veil-load-gen rate|idle|body [--flag value]...")?;
    let mut o = Opts {
        mode,
        url: String::new(),
        method: "GET".into(),
        rate: 1000.0,
        duration: 10.0,
        connections: 64,
        cacert: None,
        body_file: None,
        template: None,
        seed: 0,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => o.url = value,
            "--method" => o.method = value,
            "--rate" => o.rate = value.parse()?,
            "--duration" => o.duration = value.parse()?,
            "--connections" => o.connections = value.parse()?,
            "--cacert" => o.cacert = Some(value),
            "--body-file" => o.body_file = Some(value),
            "--template" => o.template = Some(value),
            "--seed" => o.seed = value.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(o)
}

fn target(o: &Opts) -> Result<Target, BoxError> {
    let (tls, rest) = if let Some(r) = o.url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = o.url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("--url must start with http:// or https://".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().map_err(|e| format!("--url needs IP:PORT ({e})"))?;
    let tls = if tls {
        let mut roots = rustls::RootCertStore::empty();
        let ca = o.cacert.as_ref().ok_or("https needs --cacert")?;
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(addr.ip().to_string())?;
        Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    Ok(Target { addr, host: authority.to_owned(), path: path.to_owned(), tls })
}

async fn connect(t: &Target) -> Result<Box<dyn Io>, BoxError> {
    let tcp = TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    match &t.tls {
        None => Ok(Box::new(tcp)),
        Some((connector, name)) => Ok(Box::new(connector.connect(name.clone(), tcp).await?)),
    }
}

// ------------------------------------------------------------------ checkout bodies with valid values

fn luhn_digit(digits: &str) -> u8 {
    // Check digit to append so that the whole number passes Luhn.
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    ((10 - sum % 10) % 10) as u8
}

fn mod97(s: &str) -> u32 {
    s.bytes().fold(0u32, |acc, c| (acc * 10 + u32::from(c - b'0')) % 97)
}

/// A German IBAN (no national check scheme) with valid ISO 13616 check digits.
fn iban(n: u64) -> String {
    let bban = format!("37040044{:010}", n % 10_000_000_000);
    // "DE00" moved to the end, letters as numbers: D=13, E=14.
    let check = 98 - mod97(&format!("{bban}131400"));
    format!("DE{check:02}{bban}")
}

fn pan(n: u64) -> String {
    let body = format!("4{:014}", n % 100_000_000_000_000);
    let d = luhn_digit(&body);
    format!("{body}{d}")
}

/// Returning customers of the one-new-value scenario: `{R_*}` placeholders get customer `n % RETURNING`'s values
/// (as benches/load_wrk.lua fills them), `{PAN}` a new card.
const RETURNING: u64 = 4096;

fn fill(template: &str, n: u64) -> String {
    let r = n % RETURNING;
    // Account numbers and phone numbers spread over their digits (a token keeps the shape of its value).
    let bban = format!("37040044{:010}", 5_000_000_000 + r * 104_729);
    let check = 98 - mod97(&format!("{bban}131400"));
    template
        .replace("{PAN}", &pan(n))
        .replace("{EMAIL}", &format!("c{n}@example.com"))
        .replace("{IBAN}", &iban(n))
        .replace("{PHONE}", &format!("+49 30 {:08}", n % 100_000_000))
        // Digit runs split by a letter, as benches/load_wrk.lua's: a subject id holding a card-like run (a
        // long counter is Luhn-valid one time in ten) is refused on a detecting route.
        .replace("{CUST}", &format!("cust-{:06}-x{:06}", n / 1_000_000, n % 1_000_000))
        .replace("{R_EMAIL}", &format!("returning.{r:06}@example.com"))
        .replace("{R_IBAN}", &format!("DE{check:02}{bban}"))
        .replace("{R_PHONE}", &format!("+49 40 {:08}", 30_000_000 + r * 7_919))
        .replace("{R_CUST}", &format!("cust-r{r:06}"))
}

fn request_bytes(method: &str, t: &Target, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(200 + body.len());
    let _ = write!(out, "{method} {} HTTP/1.1\r\nHost: {}\r\n", t.path, t.host);
    if !body.is_empty() || method == "POST" {
        let _ = write!(out, "Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

// ------------------------------------------------------------------ HTTP/1.1 response reading

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn fill_until(io: &mut Box<dyn Io>, buf: &mut Vec<u8>, need: usize) -> Result<(), BoxError> {
    let mut chunk = [0u8; 16384];
    while buf.len() < need {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed mid-response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Reads one response; returns (status, keep_alive). `buf` keeps any bytes past the response.
async fn read_response(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<(u16, bool), BoxError> {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).ok_or("short status line")?.parse()?;
    let keep_alive = !head.contains("\r\nconnection: close");
    let mut length = None;
    let mut chunked = false;
    for line in head.split("\r\n") {
        if let Some(v) = line.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>()?);
        } else if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            chunked = true;
        }
    }
    buf.drain(..head_end);
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                let need = buf.len() + 1;
                fill_until(io, buf, need).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
            buf.drain(..line_end + 2);
            fill_until(io, buf, size + 2).await?;
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(len) = length {
        fill_until(io, buf, len).await?;
        buf.drain(..len);
    } else if status != 204 && status != 304 {
        return Err("response without length".into());
    }
    Ok((status, keep_alive))
}

// ------------------------------------------------------------------ modes

struct Shared {
    next: AtomicU64,
    start: Instant,
    interval: Duration,
    end: Instant,
    seed: u64,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non2xx: u64,
    errors: u64,
}

async fn worker(t: Target, method: String, body: Body, s: Arc<Shared>, conn: Box<dyn Io>) -> Tally {
    let mut tally = Tally::default();
    let mut conn = Some(conn);
    let mut buf = Vec::with_capacity(16384);
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        let due = s.start + s.interval.mul_f64(i as f64);
        // Stop at the end of the run even when behind schedule: requests that were due but never sent are
        // reported as `missed` (an overloaded server shows as a low achieved rate plus missed requests).
        if due >= s.end || Instant::now() >= s.end {
            break;
        }
        let started = if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
            Instant::now()
        } else {
            due
        };
        let bytes = match &body {
            Body::None => request_bytes(&method, &t, b""),
            Body::Static(b) => request_bytes(&method, &t, b),
            Body::Unique(tpl) => request_bytes(&method, &t, fill(tpl, s.seed.wrapping_add(i)).as_bytes()),
        };
        let mut io = match conn.take() {
            Some(io) => io,
            None => match connect(&t).await {
                Ok(io) => io,
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            },
        };
        buf.clear();
        let outcome = async {
            io.write_all(&bytes).await?;
            read_response(&mut io, &mut buf).await
        }
        .await;
        match outcome {
            Ok((status, keep_alive)) => {
                let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                tally.latencies_us.push(us);
                if !(200..300).contains(&status) {
                    tally.non2xx += 1;
                }
                if keep_alive {
                    conn = Some(io);
                }
            }
            Err(_) => tally.errors += 1,
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn rate_mode(o: &Opts) -> Result<(), BoxError> {
    let t = target(o)?;
    let body = if let Some(path) = &o.template {
        Body::Unique(Arc::new(std::fs::read_to_string(path)?))
    } else if let Some(path) = &o.body_file {
        Body::Static(Arc::new(std::fs::read(path)?))
    } else {
        Body::None
    };
    if o.rate <= 0.0 || o.duration <= 0.0 || o.connections == 0 {
        return Err("--rate, --duration and --connections must be positive".into());
    }
    let seed = if o.seed != 0 {
        o.seed
    } else {
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 % 1_000_000_000_000
    };
    // Connections (and TLS handshakes) are set up before the clock starts: the latency runs measure requests on
    // warm keep-alive connections, as the throughput runs do.
    let mut conns = Vec::with_capacity(o.connections);
    for _ in 0..o.connections {
        conns.push(connect(&t).await?);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        start,
        interval: Duration::from_secs_f64(1.0 / o.rate),
        end: start + Duration::from_secs_f64(o.duration),
        seed,
    });
    let mut tasks = Vec::new();
    for conn in conns {
        tasks.push(tokio::spawn(worker(t.clone(), o.method.clone(), body.clone(), shared.clone(), conn)));
    }
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await?;
        all.latencies_us.extend(tally.latencies_us);
        all.non2xx += tally.non2xx;
        all.errors += tally.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let due = (o.duration * o.rate).floor() as u64;
    let missed = due.saturating_sub(all.latencies_us.len() as u64 + all.errors);
    all.latencies_us.sort_unstable();
    let l = &all.latencies_us;
    println!(
        "{{\"requests\":{},\"missed\":{},\"errors\":{},\"non2xx\":{},\"target_rps\":{},\"achieved_rps\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        l.len(),
        missed,
        all.errors,
        all.non2xx,
        o.rate,
        l.len() as f64 / elapsed,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        percentile(l, 99.9),
        l.last().copied().unwrap_or(0),
    );
    Ok(())
}

async fn idle_mode(o: &Opts) -> Result<(), BoxError> {
    let t = target(o)?;
    // Handshakes 100 at a time, so that N connections are open well within the server's header timeout.
    let mut conns = Vec::with_capacity(o.connections);
    while conns.len() < o.connections {
        let batch = (o.connections - conns.len()).min(100);
        let mut handshakes = Vec::with_capacity(batch);
        for _ in 0..batch {
            let t = t.clone();
            handshakes.push(tokio::spawn(async move { connect(&t).await }));
        }
        for h in handshakes {
            conns.push(h.await??);
        }
    }
    println!("ready {}", conns.len());
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs_f64(o.duration), async {
        while let Ok(n) = stdin.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    drop(conns);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let o = parse_args()?;
    if o.mode == "body" {
        let path = o.template.as_ref().ok_or("body needs --template")?;
        let template = std::io::read_to_string(BufReader::new(std::fs::File::open(path)?))?;
        print!("{}", fill(&template, o.seed));
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match o.mode.as_str() {
        "rate" => rt.block_on(rate_mode(&o)),
        "idle" => rt.block_on(idle_mode(&o)),
        m => Err(format!("unknown mode {m}").into()),
    }
}
