//! Tokens per second through the in-process vault engine on the durable embedded store:
//! new values (each one a committed record, group-committed) and repeated values (lookups only), through the
//! engine alone and through `LocalVault` (every tokenisation audited: a signed line, fsynced, and the log's head
//! moved in the store, group-committed).
//! Run: `cargo bench --bench vault_throughput` (prints a small table; no timing assertions).

use std::sync::Arc;
use std::time::Instant;

use veil::crypto::audit_key::AuditSigner;
use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::metrics::Metrics;
use veil::store::sqlite::{SqliteOptions, SqliteStore};
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
        let Ok(dir) = tempfile::tempdir() else { return };
        let ring = Keyring::from_keys([(1, [42u8; 32])]);
        let Ok(keys) = KeySet::derive(&ring, &Class::names()) else { return };
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        let Ok(store) = SqliteStore::open(&url, SqliteOptions::default()).await else { return };
        let store: Arc<dyn veil::store::Store> = Arc::new(store);
        let keys = Arc::new(keys);
        let engine = Arc::new(Engine::new(keys.clone(), store.clone(), ClassFormats::default(), system_clock()));
        let fresh = run(Path::Engine(engine.clone()), 0).await;
        let repeated = run(Path::Engine(engine.clone()), 0).await;
        let setup = AuditSetup {
            path: dir.path().join("audit.jsonl"),
            log_id: "bench".into(),
            signer: AuditSigner::from_seed(&[7; 32]),
            new_chain: false,
            sequence: None,
        };
        let Ok(audit) = AuditLog::open(setup, store.clone(), keys.audit.clone(), 0).await else { return };
        let Ok(metrics) = Metrics::new() else { return };
        let engine = Engine::new(keys, store, ClassFormats::default(), system_clock());
        let vault = Arc::new(LocalVault::new(engine, audit, Arc::new(metrics), system_clock()));
        let offset = (TASKS * PER_TASK) as u64;
        let audited_fresh = run(Path::Vault(vault.clone()), offset).await;
        let audited_repeated = run(Path::Vault(vault), offset).await;
        println!(
            "| workload ({TASKS} concurrent callers, 1 value per call) | engine tokens/s | audited vault tokens/s |"
        );
        println!("|---|---|---|");
        println!(
            "| new values, durably committed (group commit, synchronous=FULL) | {fresh:.0} | {audited_fresh:.0} |"
        );
        println!("| repeated values (lookup only) | {repeated:.0} | {audited_repeated:.0} |");
    });
}
