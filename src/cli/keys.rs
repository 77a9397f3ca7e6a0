//! `veil keys …`: master keyring maintenance (init, rotate, rewrap, retire; more subcommands slot into
//! [`KeysCommand`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::crypto::provider::file::FileProvider;
use crate::crypto::{KeyProvider, Secret};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Providers pkcs11 and kms: create the wrapping key in the HSM (unless the token has one of that label), or
    /// a data key from the KMS, and a new keyring wrapped under it at the config's `wrapped` path (never
    /// overwritten).
    Init {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Append a new master key version: new records are sealed under it, older versions still open.
    /// A running veil picks it up when restarted.
    Rotate {
        #[command(flatten)]
        file: KeyFileArg,
        /// A custodian's share file (key provider "shares": give --share once per custodian, M in all).
        #[arg(long = "share")]
        shares: Vec<PathBuf>,
    },
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
        /// A file of subject ids, one a line (the shop's customer ids): their links made under older key versions
        /// are moved too (links written before subject ids were kept sealed cannot be moved otherwise).
        #[arg(long = "subjects")]
        subjects: Option<PathBuf>,
        /// A custodian's share file (key provider "shares": give --share once per custodian, M in all).
        #[arg(long = "share")]
        shares: Vec<PathBuf>,
    },
    /// Remove an old master key version from the keyring, once nothing depends on it any more (run `rewrap`
    /// first); refused with what still does. Audited. The newest version can never be retired.
    Retire {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// The version to retire.
        #[arg(long = "version", conflicts_with = "below", required_unless_present = "below")]
        version: Option<u32>,
        /// Retire every version below this one.
        #[arg(long = "below")]
        below: Option<u32>,
        /// A custodian's share file (key provider "shares": give --share once per custodian, M in all).
        #[arg(long = "share")]
        shares: Vec<PathBuf>,
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
        KeysCommand::Init { config } => match super::load(&config) {
            Ok(cfg) => init(cfg),
            Err(code) => code,
        },
        KeysCommand::Rotate { file, shares } => rotate(&file, &shares),
        KeysCommand::Rewrap { config, page, max, subjects, shares } => {
            let shares = match super::unseal::read_shares(&shares) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("veil: {e}");
                    return ExitCode::from(1);
                }
            };
            match super::load(&config) {
                Ok(cfg) => super::offline::rewrap(cfg, page, max, subjects.as_deref(), shares),
                Err(code) => code,
            }
        }
        KeysCommand::Retire { config, version, below, shares } => {
            let shares = match super::unseal::read_shares(&shares) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("veil: {e}");
                    return ExitCode::from(1);
                }
            };
            let which = match (version, below) {
                (Some(v), _) => super::retire::Which::Version(v),
                (None, Some(b)) => super::retire::Which::Below(b),
                (None, None) => {
                    eprintln!("veil: name the version to retire (--version V or --below V)");
                    return ExitCode::from(2);
                }
            };
            match super::load(&config) {
                Ok(cfg) => super::retire::run(cfg, which, shares),
                Err(code) => code,
            }
        }
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

/// The keyring's provider named by the arguments: a key file given directly, the config's `[vault]` provider,
/// or a `veil proxy` config's key file.
fn provider(arg: &KeyFileArg, shares: &[Secret<String>]) -> Result<Box<dyn KeyProvider>, ExitCode> {
    let vault_spec = match (&arg.config, &arg.key_file) {
        (Some(config), None) => super::load(config)?.vault.map(|v| v.master_key),
        _ => None,
    };
    match vault_spec {
        Some(spec) => spec.provider_with(shares).map_err(|e| {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }),
        None => Ok(Box::new(FileProvider::new(key_file(arg)?))),
    }
}

/// Rotates the keyring: through the config's vault when it has one (the rotation is then in its audit log),
/// else unaudited, with a note saying so.
fn rotate(arg: &KeyFileArg, shares: &[PathBuf]) -> ExitCode {
    let shares = match super::unseal::read_shares(shares) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("veil: {e}");
            return ExitCode::from(1);
        }
    };
    let provider = match provider(arg, &shares) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let vault_cfg = match (&arg.config, &arg.key_file) {
        (Some(c), None) => match super::load(c) {
            Ok(cfg) if cfg.vault.is_some() => Some(cfg),
            Ok(_) => None,
            Err(code) => return code,
        },
        _ => None,
    };
    let result = match vault_cfg {
        Some(cfg) => super::offline::rotate(cfg, provider.as_ref()),
        None => {
            eprintln!(
                "veil: note: this rotation is not audited (no [vault] audit log); rotate with -c and the vault's config \
                 to record it"
            );
            provider.rotate().map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(version) => {
            println!(
                "{}: added master key version {version}; new records are sealed under it, older versions still \
                 open. Restart veil to use it, and back the key file up.",
                provider.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}

fn init(cfg: crate::config::Config) -> ExitCode {
    use crate::config::MasterKeySpec;
    let done = match cfg.vault.map(|v| v.master_key) {
        Some(MasterKeySpec::Pkcs11(spec)) => crate::crypto::provider::pkcs11::Pkcs11Provider::init(&spec).map(|()| {
            format!(
                "wrote {} (a new keyring wrapped by HSM key {:?} on token {:?}; the key never leaves the HSM)",
                spec.wrapped.display(),
                spec.key_label,
                spec.token_label
            )
        }),
        Some(MasterKeySpec::Kms(spec)) => crate::crypto::provider::kms::KmsProvider::init(&spec).map(|()| {
            format!(
                "wrote {} (a new keyring sealed under a data key that KMS key {} wraps)",
                spec.wrapped.display(),
                spec.key_id
            )
        }),
        _ => {
            eprintln!("veil: keys init is for master_key providers \"pkcs11\" and \"kms\"; use veil keygen otherwise");
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}
