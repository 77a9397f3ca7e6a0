//! PostgreSQL for tests: every test gets a fresh database of its own (`CREATE DATABASE` with a random name) in
//! the cluster named by `VEIL_TEST_PG_URL` (`.ci/postgres.sh` starts one), or — when the variable is unset — in
//! a throwaway cluster this test process starts on 127.0.0.1 with a free port (`initdb` into a temporary
//! directory; as `postgres` via `runuser` when running as root) and that stops when the process exits.
//! Missing PostgreSQL binaries fail the test with a clear message: a store test is never silently skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sqlx::Connection;

/// The store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A `store = "…"` URL for a new, empty store: a file in `dir`, or a fresh PostgreSQL database.
    pub async fn store_url(self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite://{}/vault.db", dir.display()),
            Backend::Postgres => fresh_database().await,
        }
    }
}

/// Replaces the `store = …` line of config text.
pub fn with_store(config: &str, store_url: &str) -> String {
    config
        .lines()
        .map(|l| if l.starts_with("store = ") { format!("store = \"{store_url}\"") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// URL of a new, empty database.
pub async fn fresh_database() -> String {
    let base = base_url();
    let name = format!("veil_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {base}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let _ = conn.close().await;
    let (server, _db) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// `VEIL_TEST_PG_URL`, or a cluster started for this process.
fn base_url() -> String {
    if let Ok(url) = std::env::var("VEIL_TEST_PG_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    static CLUSTER: OnceLock<String> = OnceLock::new();
    CLUSTER.get_or_init(start_cluster).clone()
}

fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    dirs.sort();
    if let Some((_, d)) = dirs.pop() {
        return Some(d);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("postgres").exists() && d.join("initdb").exists())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (initdb and postgres refuse to run as root).
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The watchdog shell, with the write end of its stdin: that stays open for the life of this process; when
/// the process ends, the pipe closes and the watchdog stops PostgreSQL and removes its directory.
static WATCHDOG: Mutex<Vec<std::process::Child>> = Mutex::new(Vec::new());

fn start_cluster() -> String {
    let bin = pg_bin_dir().unwrap_or_else(|| {
        panic!(
            "PostgreSQL binaries not found (looked in /usr/lib/postgresql/*/bin and PATH): install postgresql \
             (apt-get install -y postgresql) or set VEIL_TEST_PG_URL to a server the tests may create databases on"
        )
    });
    let dir = tempfile::Builder::new().prefix("veil-pg-").tempdir().unwrap().keep();
    if is_root() {
        let ok = Command::new("chown").args(["postgres:", dir.to_str().unwrap()]).status().unwrap();
        assert!(ok.success(), "cannot hand {} to the postgres user", dir.display());
    }
    let data = dir.join("data");
    let out = as_pg_user(&bin.join("initdb"))
        .args(["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"])
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // fsync off: this cluster only lives for one test process and is never crashed; the tests kill veil,
    // not PostgreSQL.
    let script = format!(
        "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -c fsync=off \
         -c max_connections=200 >'{dir}/log' 2>&1 & pid=$!; read _; kill $pid; wait $pid; rm -rf '{dir}'",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let child = as_pg_user(Path::new("/bin/sh"))
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    WATCHDOG.lock().unwrap().push(child);
    for _ in 0..300 {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            return format!("postgres://postgres@127.0.0.1:{port}/postgres");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    if let Some(mut c) = WATCHDOG.lock().unwrap().pop() {
        let _ = c.stdin.take().map(|mut s| s.write_all(b"\n"));
        let _ = c.wait();
    }
    panic!("the test PostgreSQL did not start on port {port}:\n{log}");
}

/// Starts `veil <command> -c config` (e.g. `vault`); returns the child and the vault address it logged.
pub async fn spawn_veil_command(command: &str, config: &Path) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([command, "-c"])
        .arg(config)
        .env("VEIL_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("vault API listening") {
                let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
                return addr.parse::<std::net::SocketAddr>().unwrap();
            }
        }
        panic!("veil {command} exited before listening")
    })
    .await
    .expect("veil did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Generates `sqlite::NAME` and `postgres::NAME` tests, each calling the invoking file's `async fn NAME(Backend)`
/// (one suite, both stores).
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;
