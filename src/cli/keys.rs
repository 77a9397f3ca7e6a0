//! `veil keys …`: master keyring maintenance (rotate; more subcommands slot into [`KeysCommand`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::crypto::Keyring;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Append a new master key version: new records are sealed under it, older versions still open.
    /// A running veil picks it up when restarted.
    Rotate(KeyFileArg),
    /// Re-seal records sealed under older master key versions with the newest one; resumable, safe to rerun,
    /// and the vault keeps serving meanwhile (restart the vaults after `rotate`, first).
    Rewrap {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Records per page (one transaction each).
        #[arg(long, default_value_t = 500)]
        page: usize,
        /// Stop after this many records (a rerun continues).
        #[arg(long)]
        max: Option<u64>,
    },
}

/// Which key file: the config's `vault.master_key_file`, or a path given directly.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct KeyFileArg {
    /// Path of the TOML config file (its `vault.master_key_file` is rotated).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Path of the key file itself (no config needed).
    #[arg(long = "key-file")]
    pub key_file: Option<PathBuf>,
}

pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Rotate(arg) => match key_file(&arg) {
            Ok(path) => rotate(&arg, &path),
            Err(code) => code,
        },
        KeysCommand::Rewrap { config, page, max } => match super::load(&config) {
            Ok(cfg) => super::offline::rewrap(cfg, page, max),
            Err(code) => code,
        },
    }
}

/// The key file named by the arguments; a config that does not validate exits 2.
pub fn key_file(arg: &KeyFileArg) -> Result<PathBuf, ExitCode> {
    match (&arg.config, &arg.key_file) {
        (_, Some(path)) => Ok(path.clone()),
        (Some(config), None) => {
            let cfg = super::load(config)?;
            cfg.master_key_file().map(Path::to_path_buf).ok_or_else(|| {
                eprintln!("veil: {} names no master_key_file ([vault] or [vault_client])", config.display());
                ExitCode::from(2)
            })
        }
        (None, None) => {
            eprintln!("veil: name the config (-c) or the key file (--key-file)");
            Err(ExitCode::from(2))
        }
    }
}

/// Rotates the key file at `path`: through the config's vault when it has one (the rotation is then in its
/// audit log), else unaudited, with a note saying so.
fn rotate(arg: &KeyFileArg, path: &Path) -> ExitCode {
    let vault_cfg = match &arg.config {
        Some(c) if arg.key_file.is_none() => match super::load(c) {
            Ok(cfg) if cfg.vault.is_some() => Some(cfg),
            Ok(_) => None,
            Err(code) => return code,
        },
        _ => None,
    };
    let result = match vault_cfg {
        Some(cfg) => super::offline::rotate(cfg, path),
        None => {
            eprintln!(
                "veil: note: this rotation is not audited (no [vault] audit log); rotate with -c and the vault's config \
                 to record it"
            );
            Keyring::rotate_file(path).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(version) => {
            println!(
                "{}: added master key version {version}; new records are sealed under it, older versions still \
                 open. Restart veil to use it, and back the key file up.",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}
