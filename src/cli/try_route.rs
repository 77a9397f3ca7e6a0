//! `veil try`: one request through a config's routing and rewriting exactly as the proxy handles it — the real
//! proxy, on a loopback port, in front of a recorder standing in for the app, against a throwaway vault in a
//! temporary directory (removed afterwards: the operator's store, keys and audit log are never touched) — then
//! prints the request the app would receive and which rule or detector hit which place with which action.
//! Exit 0 when the proxy would forward it, 2 with the proxy's JSON error when it would refuse it, 1 on failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::config::{Config, StoreUrl, VaultConfig};

/// `veil try -c CONFIG [--route NAME] [--method M] [--path P] [--content-type T] [FILE|-]`.
#[derive(Debug, clap::Args)]
pub struct TryArgs {
    /// Path of the TOML config file.
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Send to this route's path and first method (default: --method and --path).
    #[arg(long)]
    pub route: Option<String>,
    #[arg(long)]
    pub method: Option<String>,
    #[arg(long)]
    pub path: Option<String>,
    /// Content type of the body (default: guessed from its first character).
    #[arg(long = "content-type")]
    pub content_type: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// The request body: a file, or `-` for standard input (default: no body).
    pub body: Option<PathBuf>,
}

/// One row of the table: where a value was found, by what, and what the route does with it.
#[derive(Debug, Default, Clone)]
struct Row {
    place: String,
    field: String,
    class: String,
    action: String,
}

/// What the recorder (the stand-in app) received.
struct Received {
    head: http::request::Parts,
    body: Bytes,
}

pub fn run(args: TryArgs, cfg: Config) -> ExitCode {
    let body = match &args.body {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut b = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut b) {
                eprintln!("veil try: cannot read standard input: {e}");
                return ExitCode::from(1);
            }
            b
        }
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("veil try: cannot read {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
    };
    let (method, path) = match target(&args, &cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("veil try: {e}");
            return ExitCode::from(2);
        }
    };
    let content_type = args.content_type.clone().unwrap_or_else(|| guess_content_type(&body).to_owned());
    let rows: Arc<Mutex<Vec<Row>>> = Arc::default();
    // One thread: the proxy's own events (which rule hit where) reach the collector installed for it.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veil try: {e}");
            return ExitCode::from(1);
        }
    };
    let collector = tracing_subscriber::registry().with(Explained(rows.clone()));
    let mut headers = vec![(String::from("content-type"), content_type)];
    for h in &args.headers {
        match h.split_once(':') {
            Some((name, value)) => headers.push((name.trim().to_owned(), value.trim().to_owned())),
            None => {
                eprintln!("veil try: a header is `Name: value`, got {h:?}");
                return ExitCode::from(2);
            }
        }
    }
    let outcome = tracing::subscriber::with_default(collector, || {
        runtime.block_on(send_through(cfg, method, &path, &headers, body))
    });
    match outcome {
        Err(e) => {
            eprintln!("veil try: {e}");
            ExitCode::from(1)
        }
        Ok(Outcome::Refused(status, error)) => {
            println!("{error}");
            eprintln!("veil try: the proxy refuses this request ({status}); nothing would reach the app");
            print_rows(&rows.lock().map(|r| r.clone()).unwrap_or_default());
            ExitCode::from(2)
        }
        Ok(Outcome::Forwarded(got)) => {
            print_request(&got);
            print_rows(&rows.lock().map(|r| r.clone()).unwrap_or_default());
            ExitCode::SUCCESS
        }
    }
}

enum Outcome {
    Forwarded(Box<Received>),
    Refused(u16, String),
}

/// The method and path to send: the route's (its first method, its path with a prefix's `*` as `x`), overridden
/// by `--method` and `--path`.
fn target(args: &TryArgs, cfg: &Config) -> Result<(Method, String), String> {
    let route = match &args.route {
        None => None,
        Some(name) => Some(cfg.routes.iter().find(|r| &r.name == name).ok_or(format!("no route is named {name:?}"))?),
    };
    let method = match (&args.method, route) {
        (Some(m), _) => {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| format!("{m:?} is no method"))?
        }
        (None, Some(r)) => r.methods.first().cloned().unwrap_or(Method::POST),
        (None, None) => Method::POST,
    };
    let path = match (&args.path, route) {
        (Some(p), _) => p.clone(),
        (None, Some(r)) => r.path.as_str().replace('*', "x"),
        (None, None) => return Err("name a --route or a --path".into()),
    };
    Ok((method, path))
}

fn guess_content_type(body: &[u8]) -> &'static str {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => "application/json",
        Some(b'<') => "application/xml",
        Some(_) if body.contains(&b'=') && !body.contains(&b' ') => "application/x-www-form-urlencoded",
        _ => "text/plain",
    }
}

/// Runs the proxy of `cfg` on a throwaway vault in front of a recorder, sends the request, and says what came of it.
async fn send_through(
    mut cfg: Config,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let key = dir.path().join("master.key");
    crate::crypto::Keyring::generate_file(&key).map_err(|e| e.to_string())?;
    let (recorder, received) = recorder().await?;
    let proxy = cfg.proxy.as_mut().ok_or("the config has no [proxy] section")?;
    proxy.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    proxy.tls = None;
    proxy.upstream = format!("http://{recorder}").parse().map_err(|_| "recorder address".to_owned())?;
    let max_body_bytes = cfg.vault.as_ref().map_or(1 << 20, |v| v.max_body_bytes);
    cfg.vault = Some(VaultConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        store: StoreUrl::Sqlite(format!("sqlite://{}/try.db", dir.path().display())),
        master_key: crate::config::MasterKeySpec::File { path: key },
        audit_log: dir.path().join("audit.jsonl"),
        audit_key_file: None,
        audit_log_id: Some("veil-try".into()),
        new_audit_chain: false,
        max_body_bytes,
        max_batch: 1000,
        purge_interval: std::time::Duration::from_secs(3600),
        tls: None,
    });
    cfg.vault_client = None;
    cfg.admin = None;
    cfg.egress.clear();
    let running = crate::app::start(cfg, crate::vault::engine::system_clock()).await.map_err(|e| e.to_string())?;
    let addr = running.proxy_addr.ok_or("the proxy did not start")?;
    let mut req = Request::builder().method(method).uri(path).header(http::header::HOST, "localhost");
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("cannot build the request: {e}"))?;
    let answer = send(addr, req).await;
    running.shutdown().await;
    let (status, answer) = answer?;
    let got = received.lock().map_err(|_| "recorder".to_owned())?.take();
    match got {
        Some(got) => Ok(Outcome::Forwarded(Box::new(got))),
        None => Ok(Outcome::Refused(status, String::from_utf8_lossy(&answer).into_owned())),
    }
}

async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// A one-request app on a loopback port that keeps what it receives and answers 200.
async fn recorder() -> Result<(SocketAddr, Arc<Mutex<Option<Received>>>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let received: Arc<Mutex<Option<Received>>> = Arc::default();
    let keep = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let keep = keep.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let keep = keep.clone();
                async move {
                    let (head, body) = req.into_parts();
                    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    if let Ok(mut k) = keep.lock() {
                        *k = Some(Received { head, body });
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
        }
    });
    Ok((addr, received))
}

fn print_request(got: &Received) {
    println!("{} {} {:?}", got.head.method, got.head.uri, got.head.version);
    print_headers(&got.head.headers);
    println!();
    println!("{}", String::from_utf8_lossy(&got.body));
}

fn print_headers(headers: &HeaderMap) {
    for (name, value) in headers {
        println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
}

fn print_rows(rows: &[Row]) {
    eprintln!();
    if rows.is_empty() {
        eprintln!("no rule or detector found a value");
        return;
    }
    let w = |f: fn(&Row) -> &str, title: &str| rows.iter().map(|r| f(r).len()).chain([title.len()]).max().unwrap_or(0);
    let (wp, wf, wc) = (w(|r| &r.place, "place"), w(|r| &r.field, "rule or detector"), w(|r| &r.class, "class"));
    eprintln!("{:wp$}  {:wf$}  {:wc$}  action", "place", "rule or detector", "class");
    for r in rows {
        eprintln!("{:wp$}  {:wf$}  {:wc$}  {}", r.place, r.field, r.class, r.action);
    }
}

/// Collects the proxy's `veil::explain` events into rows.
struct Explained(Arc<Mutex<Vec<Row>>>);

impl<S: tracing::Subscriber> Layer<S> for Explained {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "veil::explain" {
            return;
        }
        let mut row = Row::default();
        event.record(&mut row);
        if let Ok(mut rows) = self.0.lock() {
            rows.push(row);
        }
    }
}

impl Visit for Row {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}").trim_matches('"').to_owned();
        match field.name() {
            "place" => self.place = text,
            "field" => self.field = text,
            "class" => self.class = text,
            "action" => self.action = text,
            _ => {}
        }
    }
}
