//! Command-line interface: the commands and their flags, and what each does.

pub mod api_key;
pub mod audit;
pub mod keys;
pub mod offline;
pub mod progress;
pub mod retire;
pub mod try_route;
pub mod unseal;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Mode;
use crate::config;
use crate::crypto::Keyring;

/// veil: a tokenisation and encryption proxy sidecar.
#[derive(Debug, Parser)]
#[command(name = "veil", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run veil in one process (proxy, egress routes, vault API and admin) on the configured store.
    Run(ServeArgs),
    /// Run the vault API service alone (split deployment; mTLS unless on loopback).
    Vault(ServeArgs),
    /// Run the proxy and egress routes alone, calling a remote vault ([vault_client]; split deployment).
    Proxy(ConfigArg),
    /// Write a new master key file (mode 0600); with --audit-key an audit signing key (and its public key beside
    /// it as OUT.pub); with --encrypt-only a split proxy's key for `encrypt` fields; with --shares a sealed keyring
    /// and N custodians' shares into the directory --out. Never overwrites.
    Keygen {
        /// The key file, or (with --shares) the directory for the sealed keyring and the share files.
        #[arg(long)]
        out: PathBuf,
        /// Succeed without writing when the file already exists.
        #[arg(long)]
        if_missing: bool,
        /// Write an Ed25519 audit signing key (`[vault] audit_key_file`) instead of a master key.
        #[arg(long, conflicts_with_all = ["shares", "encrypt_only"])]
        audit_key: bool,
        /// Write a new random API key for a `[[caller]]` and print the sha-256 its config entry holds.
        #[arg(long, conflicts_with_all = ["shares", "encrypt_only", "audit_key", "if_missing"])]
        api_key: bool,
        /// Split the key that seals the keyring into this many shares (key provider "shares").
        #[arg(long, requires = "threshold", conflicts_with = "if_missing")]
        shares: Option<u8>,
        /// How many of the shares unseal the vault (2 at least).
        #[arg(long, requires = "shares")]
        threshold: Option<u8>,
        /// Write a split proxy's own key for `encrypt` fields ([vault_client] encrypt_key_file), not a master key.
        #[arg(long, conflicts_with = "shares")]
        encrypt_only: bool,
    },
    /// Give one custodian's share to a sealed vault (key provider "shares").
    Unseal(unseal::UnsealArgs),
    /// Validate a config file and print every problem with its path.
    Check(ConfigArg),
    /// Erasure receipts (GDPR Art. 17).
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the GDPR Art. 30 record of processing (Markdown) derived from the config.
    Register(ConfigArg),
    /// Master key tools.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Data subjects: export everything held for one (Art. 15) or erase it (Art. 17).
    Subjects {
        #[command(subcommand)]
        command: offline::SubjectsCommand,
    },
    /// Delete the records past their class's retention now (the vault also does it every purge_interval).
    Purge {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// A custodian's share file (key provider "shares": give --share once per custodian, M in all).
        #[arg(long = "share")]
        shares: Vec<PathBuf>,
    },
    /// Run one request through the config's routes as the proxy would, against a throwaway vault: print what the
    /// app would receive and what hit where (exit 2 with the proxy's error where it would refuse).
    Try(try_route::TryArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log: every line's signature and link, and its end against the head kept in the store
    /// (detects edited, removed, reordered, cut-off or rolled-back lines, and an emptied or deleted log).
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Check an erasure receipt's public signature with the audit public key (no secret needed).
    Verify(ReceiptArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReceiptArgs {
    /// The receipt: the JSON a `DELETE /v1/subjects/{id}` or `veil subjects erase` answered.
    pub receipt: PathBuf,
    /// The audit public key file (`[vault] audit_key_file` + `.pub`).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Or the vault's config, to find it.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// With -c, a custodian's share (key provider "shares", M in all) when the audit key is derived from the master
    /// key (no `audit_key_file`).
    #[arg(long = "share", requires = "config")]
    pub shares: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Path of the TOML config file.
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Path of the TOML config file.
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// If the audit log is broken or missing, keep it aside and begin a new chain whose first line records the
    /// restart and the head the store held (without this flag the vault refuses to start on such a log).
    #[arg(long)]
    pub new_audit_chain: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Path of the TOML config file (the audit log, the store holding its head).
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// The audit public key file (default: `[vault] audit_key_file` + `.pub`). Needs no secret.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The log's id in the store (default: as the vault computes it: `[vault] audit_log_id`, else host name and
    /// the log's absolute path) — for a log checked on another host.
    #[arg(long)]
    pub log_id: Option<String>,
    /// A custodian's share (key provider "shares", M in all): only for a log whose key is derived from the master
    /// key (no `audit_key_file`).
    #[arg(long = "share")]
    pub shares: Vec<PathBuf>,
}

/// Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage, 3 audit log broken.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(a) => serve(&a.config, Mode::All, a.new_audit_chain),
        Command::Vault(a) => serve(&a.config, Mode::Vault, a.new_audit_chain),
        Command::Proxy(a) => serve(&a.config, Mode::Proxy, false),
        Command::Keygen { out, shares: Some(n), threshold: Some(m), .. } => unseal::keygen(&out, n, m),
        Command::Keygen { out, api_key: true, .. } => api_key::generate(&out),
        Command::Keygen { out, if_missing, audit_key, encrypt_only, .. } => {
            keygen(&out, if_missing, audit_key, encrypt_only)
        }
        Command::Unseal(a) => {
            let path = a.config.clone();
            with_config(&path, |cfg| unseal::run(a, cfg))
        }
        Command::Check(a) => check(&a.config),
        Command::Audit { command: AuditCommand::Verify(a) } => audit::verify(&a),
        Command::Receipt { command: ReceiptCommand::Verify(a) } => audit::verify_receipt(&a),
        Command::Keys { command } => keys::run(command),
        Command::Register(a) => register(&a.config),
        Command::Subjects { command } => match unseal::read_shares(command.shares()) {
            Ok(shares) => {
                let path = command.config().to_path_buf();
                with_config(&path, |cfg| offline::subjects(cfg, command, shares))
            }
            Err(e) => {
                eprintln!("veil: {e}");
                ExitCode::from(1)
            }
        },
        Command::Purge { config, shares } => match unseal::read_shares(&shares) {
            Ok(shares) => with_config(&config, |cfg| offline::purge(cfg, shares)),
            Err(e) => {
                eprintln!("veil: {e}");
                ExitCode::from(1)
            }
        },
        Command::Try(a) => {
            let path = a.config.clone();
            with_config(&path, |cfg| try_route::run(a, cfg))
        }
    }
}

/// Loads the config, then runs `f` (exit 2 on a bad config).
fn with_config(path: &Path, f: impl FnOnce(config::Config) -> ExitCode) -> ExitCode {
    match load(path) {
        Ok(cfg) => f(cfg),
        Err(code) => code,
    }
}

fn load(path: &Path) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("veil: invalid config {}:", path.display());
        for p in &e.problems {
            eprintln!("  {p}");
        }
        ExitCode::from(2)
    })
}

fn serve(path: &Path, mode: Mode, new_audit_chain: bool) -> ExitCode {
    let mut cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(v) = &mut cfg.vault {
        v.new_audit_chain = new_audit_chain;
    }
    let problems = crate::app::mode_problems(&cfg, mode);
    if !problems.is_empty() {
        eprintln!("veil: {} cannot start with {}:", mode.command(), path.display());
        for p in &problems {
            eprintln!("  {p}");
        }
        return ExitCode::from(2);
    }
    for w in cfg.warnings() {
        tracing::warn!(setting = %w, "unsafe for the data subjects");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("veil: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(crate::app::run(cfg, mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}

fn keygen(out: &Path, if_missing: bool, audit_key: bool, encrypt_only: bool) -> ExitCode {
    if if_missing && out.exists() {
        println!("{} exists; keeping it", out.display());
        return ExitCode::SUCCESS;
    }
    if audit_key {
        return match crate::crypto::audit_key::AuditSigner::generate_file(out) {
            Ok(v) => {
                let public = crate::crypto::audit_key::public_path(out);
                println!(
                    "wrote new audit signing key {} (mode 0600; keep it secret, apart from the master key) and its \
                     public key {} (id {}): give the public key to whoever verifies the audit log",
                    out.display(),
                    public.display(),
                    v.id()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("veil: {e}");
                ExitCode::from(1)
            }
        };
    }
    let (written, what) = match encrypt_only {
        true => (crate::crypto::BlobKeys::generate_file(out), "encrypt-only key (for a split proxy's encrypt fields)"),
        false => (Keyring::generate_file(out), "master key"),
    };
    match written {
        Ok(()) => {
            println!("wrote new {what} {} (mode 0600): back it up, keep it secret", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok(cfg) => {
            for w in cfg.warnings() {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn register(path: &Path) -> ExitCode {
    match load(path) {
        Ok(cfg) => {
            print!("{}", crate::register::render(&cfg, &path.display().to_string()));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
