//! The vault without listeners, for operator commands (`veil subjects export|erase`, `veil purge`): the same
//! keys, store, audit log and retention as the running vault, acting as the operator caller `cli`.

use std::sync::Arc;

use crate::app::{self, StartError};
use crate::config::Config;
use crate::crypto::Secret;
use crate::metrics::Metrics;
use crate::vault::auth::Caller;
use crate::vault::engine::{Clock, Engine};
use crate::vault::LocalVault;

/// Opens keys, store and audit log as configured (needs a tokio runtime). The audit log is checked against the
/// store's head and appended to under its file lock, so these commands may run beside a serving vault.
pub async fn open(cfg: &Config, clock: Clock) -> Result<LocalVault, StartError> {
    open_with_shares(cfg, clock, &[]).await
}

/// [`open`] with custodians' shares (key provider `shares`).
pub async fn open_with_shares(cfg: &Config, clock: Clock, shares: &[Secret<String>]) -> Result<LocalVault, StartError> {
    let keys = app::keys_from(&vault_section(cfg)?.master_key, shares)?;
    open_with_keys(cfg, clock, keys).await
}

fn vault_section(cfg: &Config) -> Result<&crate::config::VaultConfig, StartError> {
    cfg.vault.as_ref().ok_or_else(|| {
        StartError::Mode(crate::config::ConfigError {
            problems: vec!["vault: this command needs the [vault] section (keys, store, audit log)".into()],
        })
    })
}

/// [`open`] with the subkeys of a keyring already read (a provider is asked once per process: an HSM's library
/// initialises once).
pub(super) async fn open_with_keys(
    cfg: &Config,
    clock: Clock,
    keys: crate::crypto::KeySet,
) -> Result<LocalVault, StartError> {
    let v = vault_section(cfg)?;
    let keys = Arc::new(keys);
    let store = app::open_store(v).await?;
    let metrics = Arc::new(Metrics::new()?);
    let audit = app::open_audit(v, &keys, store.clone(), &metrics, &clock).await?;
    let engine = Engine::new(keys, store, cfg.formats, clock.clone());
    Ok(LocalVault::new(engine, audit, metrics, clock)
        .with_audit_path(v.audit_log.clone())
        .with_retention(cfg.retention.clone()))
}

/// `veil subjects …`
#[derive(Debug, clap::Subcommand)]
pub enum SubjectsCommand {
    /// Print everything held for the subject as JSON (values included).
    Export {
        /// The subject id (as the routes' subject selector or the API's "subject" field gave it).
        id: String,
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
        /// A custodian's share file (key provider "shares": once per custodian, M in all).
        #[arg(long = "share")]
        shares: Vec<std::path::PathBuf>,
    },
    /// Erase the subject's tokens (those no other subject holds) and print the signed receipt.
    Erase {
        id: String,
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
        /// A custodian's share file (key provider "shares": once per custodian, M in all).
        #[arg(long = "share")]
        shares: Vec<std::path::PathBuf>,
    },
}

impl SubjectsCommand {
    pub fn config(&self) -> &std::path::Path {
        match self {
            SubjectsCommand::Export { config, .. } | SubjectsCommand::Erase { config, .. } => config,
        }
    }

    pub fn shares(&self) -> &[std::path::PathBuf] {
        match self {
            SubjectsCommand::Export { shares, .. } | SubjectsCommand::Erase { shares, .. } => shares,
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(f)
}

fn exit(result: Result<String, String>) -> std::process::ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs `veil subjects export|erase ID -c …`.
pub fn subjects(cfg: Config, command: SubjectsCommand, shares: Vec<Secret<String>>) -> std::process::ExitCode {
    exit(block_on(async move {
        let clock = crate::vault::engine::system_clock();
        let vault = open_with_shares(&cfg, clock, &shares).await.map_err(|e| e.to_string())?;
        let out = match &command {
            SubjectsCommand::Export { id, .. } => vault.export_subject(&Caller::operator(), id).await,
            SubjectsCommand::Erase { id, .. } => vault.erase_subject(&Caller::operator(), id).await,
        }
        .map_err(|e| e.to_string())?;
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())
    }))
}

/// Runs `veil purge -c …`.
pub fn purge(cfg: Config, shares: Vec<Secret<String>>) -> std::process::ExitCode {
    exit(block_on(async move {
        let clock = crate::vault::engine::system_clock();
        let vault = open_with_shares(&cfg, clock, &shares).await.map_err(|e| e.to_string())?;
        // One bar per class: (class, bar, its total).
        let mut bars: Vec<(crate::domain::Class, super::progress::Progress, Option<u64>)> = Vec::new();
        let purged = vault
            .purge_expired_reporting("cli", |p| {
                if !bars.iter().any(|(c, _, _)| *c == p.class) {
                    let bar = super::progress::Progress::new(format!("purge {}", p.class.name()));
                    bars.push((p.class, bar, p.total));
                }
                if let Some((_, bar, _)) = bars.iter_mut().find(|(c, _, _)| *c == p.class) {
                    bar.update(p.done, p.total);
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        for (class, bar, total) in &mut bars {
            bar.finish(purged.classes.iter().find(|(c, _)| c == class).map_or(0, |(_, n)| *n), *total);
        }
        let mut out = format!("purged {} records", purged.total());
        for (class, n) in &purged.classes {
            out.push_str(&format!("\n  {}: {n}", class.name()));
        }
        if purged.classes.is_empty() {
            out.push_str(" (no class has a retention)");
        }
        Ok(out)
    }))
}

/// Runs `veil keys rewrap -c …`, audited (start, then the end with its counts). `subjects`: a file of subject
/// ids, one a line, whose links made under older versions are moved too (legacy links have no sealed id).
pub fn rewrap(
    cfg: Config,
    page: usize,
    max: Option<u64>,
    subjects: Option<&std::path::Path>,
    shares: Vec<Secret<String>>,
) -> std::process::ExitCode {
    let ids = match subjects.map(read_ids).transpose() {
        Ok(ids) => ids.unwrap_or_default(),
        Err(e) => return exit(Err(e)),
    };
    exit(block_on(async move {
        let clock = crate::vault::engine::system_clock();
        let vault = open_with_shares(&cfg, clock, &shares).await.map_err(|e| e.to_string())?;
        let engine = vault.engine();
        let target = u64::from(engine.keys().current_version());
        vault
            .audit_command("keys_rewrap", "started", vec![("version".into(), target)])
            .await
            .map_err(|e| e.to_string())?;
        let older = engine.store().count_stale_before(engine.keys().current_version()).await;
        let total = older.map_err(|e| e.to_string())?.map(|n| max.map_or(n, |m| n.min(m)));
        let mut bar = super::progress::Progress::new("rewrap");
        let result =
            crate::vault::rewrap::rewrap(engine, page.max(1), max, &ids, |p| bar.update(p.resealed + p.skipped, total))
                .await;
        let progress = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = vault.audit_command("keys_rewrap", "failed", vec![("version".into(), target)]).await;
                return Err(e.to_string());
            }
        };
        bar.finish(progress.resealed + progress.skipped, total);
        let counts = vec![
            ("version".into(), u64::from(progress.target_version)),
            ("resealed".into(), progress.resealed),
            ("skipped".into(), progress.skipped),
            ("subjects".into(), progress.subjects),
            ("links".into(), progress.links),
            ("volatiles_dropped".into(), progress.volatiles),
        ];
        let outcome = if progress.done { "ok" } else { "stopped" };
        vault.audit_command("keys_rewrap", outcome, counts).await.map_err(|e| e.to_string())?;
        let mut out = format!(
            "re-sealed {} records under key version {} ({} changed meanwhile and were left alone); {}",
            progress.resealed,
            progress.target_version,
            progress.skipped,
            if progress.done { "done" } else { "stopped early: run again to continue" }
        );
        if progress.done {
            out.push_str(&format!(
                "\nsubjects: {} checked, {} links moved; {} CVCs of older versions dropped; {}",
                progress.subjects,
                progress.links,
                progress.volatiles,
                if progress.unlisted {
                    "older fingerprint versions unused: restart the vaults (one lookup per value again), then `veil \
                     keys retire` can remove old versions"
                } else {
                    "some records still use an older fingerprint version (they changed meanwhile): run again"
                }
            ));
        }
        Ok(out)
    }))
}

/// The subject ids of a `--subjects` file: one a line, surrounding spaces trimmed, empty lines skipped.
fn read_ids(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// Runs `veil keys rotate -c …`: rotates the key file of the config's vault, audited (start, then the end with
/// the new version).
pub fn rotate(cfg: Config, provider: &dyn crate::crypto::KeyProvider) -> Result<u32, String> {
    block_on(async move {
        let clock = crate::vault::engine::system_clock();
        let ring = provider.keyring().map_err(|e| e.to_string())?;
        let keys = crate::crypto::KeySet::derive(&ring, &crate::domain::Class::names()).map_err(|e| e.to_string())?;
        drop(ring);
        let vault = open_with_keys(&cfg, clock, keys).await.map_err(|e| e.to_string())?;
        vault.audit_command("keys_rotate", "started", Vec::new()).await.map_err(|e| e.to_string())?;
        match provider.rotate() {
            Ok(version) => {
                let counts = vec![("version".into(), u64::from(version))];
                vault.audit_command("keys_rotate", "ok", counts).await.map_err(|e| e.to_string())?;
                Ok(version)
            }
            Err(e) => {
                let _ = vault.audit_command("keys_rotate", "failed", Vec::new()).await;
                Err(e.to_string())
            }
        }
    })
}
