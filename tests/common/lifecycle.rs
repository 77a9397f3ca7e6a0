//! Helpers for the lifecycle tests: a clock the test moves, config with extra callers/classes, and a vault
//! started on either store with them.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::pg::{self, Backend};
use super::{config_text, Client, Pki, TestVault};

/// Callers with the lifecycle rights: `dpo` may export, erase and detokenize everything; `auditor` may export
/// pan only and reveal nothing.
pub const DPO_KEY: &str = "test-dpo-key-0123456789";
pub const AUDITOR_KEY: &str = "test-auditor-key-0123456789";

pub fn lifecycle_callers() -> String {
    format!(
        r#"
[[caller]]
name = "dpo"
api_key_sha256 = "{}"
allow = ["export:*", "erase:*", "detokenize:*"]

[[caller]]
name = "auditor"
api_key_sha256 = "{}"
allow = ["export:pan"]
"#,
        super::sha256_hex(DPO_KEY),
        super::sha256_hex(AUDITOR_KEY)
    )
}

/// A clock (unix seconds) the test sets.
#[derive(Clone)]
pub struct ManualClock(pub Arc<AtomicI64>);

impl ManualClock {
    pub fn at(t: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(t)))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn clock(&self) -> veil::vault::engine::Clock {
        let t = self.0.clone();
        Arc::new(move || t.load(Ordering::SeqCst))
    }
}

/// The test config on `store_url`, with the lifecycle callers, `vault_extra` lines in [vault] and `extra`
/// sections at the end.
pub fn config_with(dir: &Path, store_url: &str, vault_extra: &str, extra: &str) -> String {
    let text = pg::with_store(&config_text(dir, false, None), store_url)
        .replace("max_batch = 50\n", &format!("max_batch = 50\n{vault_extra}\n"));
    format!("{text}\n{}\n{extra}\n", lifecycle_callers())
}

/// A vault (plain HTTP) on `backend` with [`config_with`]; the config is also written to `dir/veil.toml`.
pub async fn start_lifecycle_vault(backend: Backend, vault_extra: &str, extra: &str, clock: ManualClock) -> TestVault {
    start_lifecycle_vault_edited(backend, vault_extra, extra, clock, |t| t).await
}

/// Like [`start_lifecycle_vault`], with the config text passed through `edit` first.
pub async fn start_lifecycle_vault_edited(
    backend: Backend,
    vault_extra: &str,
    extra: &str,
    clock: ManualClock,
    edit: impl Fn(String) -> String,
) -> TestVault {
    let dir = tempfile::tempdir().unwrap();
    veil::crypto::Keyring::generate_file(&dir.path().join("master.key")).unwrap();
    let pki = Pki::new(dir.path());
    let store_url = backend.store_url(dir.path()).await;
    let text = edit(config_with(dir.path(), &store_url, vault_extra, extra));
    std::fs::write(dir.path().join("veil.toml"), &text).unwrap();
    let cfg = veil::config::parse(&text).unwrap();
    let running = veil::app::start(cfg, clock.clock()).await.unwrap();
    let client = Client { addr: running.vault_addr.unwrap(), tls: None, pki: Some(Arc::new(pki)) };
    let admin = running.admin_addr.unwrap();
    TestVault { dir, running: Some(running), client, admin, store_url }
}
