//! Tokens per second through the in-process vault engine on the durable embedded store:
//! new values (each one a committed record, group-committed) and repeated values (lookups only).
//! Run: `cargo bench --bench vault_throughput` (prints a small table; no timing assertions).

use std::sync::Arc;
use std::time::Instant;

use veil::crypto::{KeySet, Keyring};
use veil::domain::Class;
use veil::store::sqlite::{SqliteOptions, SqliteStore};
use veil::token::ClassFormats;
use veil::vault::engine::{system_clock, Engine};

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

async fn run(engine: Arc<Engine>, offset: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let value = pan(offset + (t * PER_TASK + i) as u64);
                if engine.tokenize(&[(Class::Pan, value.as_str())]).await.is_err() {
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
        let engine = Arc::new(Engine::new(keys, Arc::new(store), ClassFormats::default(), system_clock()));
        let fresh = run(engine.clone(), 0).await;
        let repeated = run(engine.clone(), 0).await;
        println!("| workload ({TASKS} concurrent callers, 1 value per call) | tokens/s |");
        println!("|---|---|");
        println!("| new values, durably committed (group commit, synchronous=FULL) | {fresh:.0} |");
        println!("| repeated values (lookup only) | {repeated:.0} |");
    });
}
