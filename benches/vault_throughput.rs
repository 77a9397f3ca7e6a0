//! Tokens per second through the in-process vault engine on the durable embedded store:
//! new values (each one a committed record, group-committed) and repeated values (lookups only), through the
//! engine alone and through `LocalVault` (every tokenisation audited: a signed line, fsynced, and the log's head
//! moved in the store, group-committed).
//! A checkout-shaped row tokenises four new values (card, IBAN, email, phone) for a new data subject per call,
//! as the proxy's unique-values load does.
//! Run: `cargo bench --bench vault_throughput` (prints a small table; no timing assertions).
//! `VEIL_BENCH_PREFILL=N` first tokenises N other checkouts in large calls (a vault that has been serving a
//! while: its B-trees no longer fit the page cache); `VEIL_BENCH_KEEP=DIR` keeps the database in DIR,
//! runs only the engine's checkout row and does not checkpoint the WAL after the prefill (the WAL then holds
//! exactly what the checkouts wrote: `python3 benches/wal_pages.py DIR/snap.db` counts its pages per B-tree).

use std::sync::Arc;
use std::time::Instant;

use veil::crypto::audit_key::AuditSigner;
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::metrics::Metrics;
use veil::store::sqlite::{CheckpointOptions, SqliteOptions, SqliteStore};
use veil::store::Store;
use veil::token::ClassFormats;
use veil::vault::audit::{AuditLog, AuditSetup};
use veil::vault::auth::Caller;
use veil::vault::engine::{system_clock, Engine};
use veil::vault::{LocalVault, Vault};

const TASKS: usize = 64;
const PER_TASK: usize = 300;

fn pan(n: u64) -> String {
    let body = format!("4{n:014}");
    (0..10).map(|d| format!("{body}{d}")).find(|c| luhn(c)).unwrap_or(body)
}

fn luhn(s: &str) -> bool {
    let sum: u32 = s
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { (d * 2) % 10 + (d * 2) / 10 } else { d })
        .sum();
    sum.is_multiple_of(10)
}

fn iban(n: u64) -> String {
    let bban = format!("37040044{:010}", n % 10_000_000_000);
    // "DE00" moved to the end, letters as numbers: D=13, E=14.
    let rem = format!("{bban}131400").bytes().fold(0u64, |r, b| (r * 10 + u64::from(b - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

/// The four values of checkout `n` and its customer id.
fn checkout(n: u64) -> ([(Class, String); 4], String) {
    let values = [
        (Class::Pan, pan(n)),
        (Class::Iban, iban(n)),
        (Class::Email, format!("c{n}@example.com")),
        (Class::Phone, format!("+49 30 {:08}", n % 100_000_000)),
    ];
    (values, format!("cust-{n}"))
}

/// CPU seconds this process has used (user and system), from /proc (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name (in parentheses): state is field 3, utime and stime fields 14 and 15, in ticks.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

/// `n` checkouts' values (distinct from the runs' values) tokenised in calls of 64 checkouts, four at a time:
/// records with real tokens and fingerprints, as a vault that has been serving a while holds.
async fn prefill(engine: &Arc<Engine>, n: usize) {
    let started = Instant::now();
    let calls = n.div_ceil(64);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (engine, next) = (engine.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let call = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if call >= calls {
                    break;
                }
                let values: Vec<(Class, String)> =
                    (0..64).flat_map(|i| checkout((3 << 40) + (call * 64 + i) as u64).0).collect();
                let items: Vec<(Class, &str)> = values.iter().map(|(c, v)| (*c, v.as_str())).collect();
                let subject = engine.subject_fingerprint(&format!("prefill-{call}"));
                if engine.tokenize_for(&items, Some(subject)).await.is_err() {
                    eprintln!("prefill failed");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    eprintln!("prefilled {n} checkouts (4 values each) in {:.1}s", started.elapsed().as_secs_f64());
}

/// One tokenisation path: the engine alone, or the audited vault.
#[derive(Clone)]
enum Path {
    Engine(Arc<Engine>),
    Vault(Arc<LocalVault>),
}

impl Path {
    async fn tokenize(&self, value: &str) -> bool {
        match self {
            Path::Engine(e) => e.tokenize(&[(Class::Pan, value)]).await.is_ok(),
            Path::Vault(v) => v.tokenize(&Caller::operator(), &[(Class::Pan, value)], None).await.is_ok(),
        }
    }

    /// Checkout `n`: four values for its customer.
    async fn checkout(&self, n: u64) -> bool {
        let (values, customer) = checkout(n);
        let items: Vec<(Class, &str)> = values.iter().map(|(c, v)| (*c, v.as_str())).collect();
        match self {
            Path::Engine(e) => e.tokenize_for(&items, Some(e.subject_fingerprint(&customer))).await.is_ok(),
            Path::Vault(v) => v.tokenize(&Caller::operator(), &items, Some(&customer)).await.is_ok(),
        }
    }
}

/// Checkouts per second (each four new values for a new subject), from `offset` on.
async fn run_checkouts(path: Path, offset: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                if !path.checkout(offset + (t * PER_TASK + i) as u64).await {
                    eprintln!("checkout failed");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (TASKS * PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

async fn run(path: Path, offset: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let value = pan(offset + (t * PER_TASK + i) as u64);
                if !path.tokenize(&value).await {
                    eprintln!("tokenize failed");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (TASKS * PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else { return };
    rt.block_on(async {
        let Ok(tmp) = tempfile::tempdir() else { return };
        let keep = std::env::var_os("VEIL_BENCH_KEEP").map(std::path::PathBuf::from);
        let dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
        let prefill_n: usize = std::env::var("VEIL_BENCH_PREFILL").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        let ring = Keyring::from_keys([(1, [42u8; 32])]);
        let Ok(keys) = KeySet::derive(&ring, &Class::names()) else { return };
        let url = format!("sqlite://{}/bench.db", dir.display());
        let mut opts = SqliteOptions::default();
        let snapshot = std::env::var_os("VEIL_BENCH_SNAPSHOT").is_some();
        if snapshot {
            opts.checkpoint = CheckpointOptions { every: std::time::Duration::from_secs(3600), ..opts.checkpoint };
        }
        let Ok(store) = SqliteStore::open(&url, opts).await else { return };
        let store: Arc<dyn Store> = Arc::new(store);
        let keys = Arc::new(keys);
        let formats = ClassFormats { pan_range_per_day: None, ..ClassFormats::default() };
        let engine = Arc::new(Engine::new(keys.clone(), store.clone(), formats, system_clock()));
        if prefill_n > 0 {
            prefill(&engine, prefill_n).await;
        }
        if snapshot {
            // The WAL from here on holds only what the runs below write.
            let _ = std::process::Command::new("sqlite3")
                .arg(dir.join("bench.db"))
                .arg("PRAGMA wal_checkpoint(TRUNCATE)")
                .status();
        }
        if keep.is_some() {
            // Values no earlier run on this database tokenised (phone numbers may repeat now and then).
            let offset = (5 << 40) + u64::from(rand::random::<u32>()) * (TASKS * PER_TASK) as u64;
            // The store's work at open (its key filter's scan) done first: the run measures serving alone.
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            let cpu = cpu_seconds();
            let checkouts = run_checkouts(Path::Engine(engine.clone()), offset).await;
            let per = (cpu_seconds() - cpu) / (TASKS * PER_TASK) as f64 * 1e6;
            println!("checkouts (engine, 4 new values for a new subject each): {checkouts:.0}/s, {per:.0} us CPU each");
            // Closing the store would checkpoint the WAL away: a copy of both files first (nothing writes now).
            for (from, to) in [("bench.db", "snap.db"), ("bench.db-wal", "snap.db-wal")].iter().filter(|_| snapshot) {
                if let Err(e) = std::fs::copy(dir.join(from), dir.join(to)) {
                    eprintln!("cannot copy {from}: {e}");
                }
            }
            if snapshot {
                println!("database and its WAL copied to {}/snap.db", dir.display());
            }
            return;
        }
        let fresh = run(Path::Engine(engine.clone()), 0).await;
        let repeated = run(Path::Engine(engine.clone()), 0).await;
        let checkouts = run_checkouts(Path::Engine(engine.clone()), 1 << 40).await;
        let setup = AuditSetup {
            path: dir.join("audit.jsonl"),
            log_id: "bench".into(),
            signer: AuditSigner::from_seed(&[7; 32]),
            new_chain: false,
            sequence: None,
        };
        let Ok(audit) = AuditLog::open(setup, store.clone(), keys.audit.clone(), 0).await else { return };
        let Ok(metrics) = Metrics::new() else { return };
        let engine = Engine::new(keys, store, formats, system_clock());
        let vault = Arc::new(LocalVault::new(engine, audit, Arc::new(metrics), system_clock()));
        let offset = (TASKS * PER_TASK) as u64;
        let audited_fresh = run(Path::Vault(vault.clone()), offset).await;
        let audited_repeated = run(Path::Vault(vault.clone()), offset).await;
        let audited_checkouts = run_checkouts(Path::Vault(vault), (1 << 40) + offset).await;
        println!(
            "| workload ({TASKS} concurrent callers, {prefill_n} records per class before) | engine calls/s | audited vault calls/s |"
        );
        println!("|---|---|---|");
        println!(
            "| 1 new value per call, durably committed (group commit, synchronous=FULL) | {fresh:.0} | {audited_fresh:.0} |"
        );
        println!("| 1 repeated value per call (lookup only) | {repeated:.0} | {audited_repeated:.0} |");
        println!("| checkout: 4 new values for a new subject per call | {checkouts:.0} | {audited_checkouts:.0} |");
    });
}
