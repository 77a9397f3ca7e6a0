//! `veil unseal -c CONFIG --share FILE`: gives one custodian's share to the running vault of that config
//! (`POST /v1/unseal`) and prints where unsealing stands; `veil keygen --shares N --threshold M --out DIR`; and
//! reading `--share` files for the commands that open the keyring themselves (`veil keys rotate|rewrap`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::crypto::provider::shares;
use crate::crypto::Secret;
use crate::vault::remote::{RemoteVault, VaultClientConfig};

#[derive(Debug, clap::Args)]
pub struct UnsealArgs {
    /// The vault's config (its [vault] listen address and TLS).
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// This custodian's share file (written by `veil keygen --shares`).
    #[arg(long)]
    pub share: PathBuf,
    /// The vault's URL, where the config's listen address is not how this host reaches it.
    #[arg(long)]
    pub url: Option<String>,
    /// The CA that signed the vault's certificate (default: the system roots and the certificates of
    /// [vault.tls] cert).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Reads share files; a file that cannot be read is named (its content never is).
pub fn read_shares(paths: &[PathBuf]) -> Result<Vec<Secret<String>>, String> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p).map(Secret::new).map_err(|e| format!("cannot read share {}: {e}", p.display()))
        })
        .collect()
}

/// `veil keygen --shares N --threshold M --out DIR`.
pub fn keygen(dir: &Path, n: u8, threshold: u8) -> ExitCode {
    match shares::generate(dir, n, threshold) {
        Ok(g) => {
            println!(
                "wrote {} (the keyring, sealed; configure it as [vault] master_key = {{ provider = \"shares\", sealed \
                 = \"{}\" }}) and {n} shares, any {threshold} of which unseal the vault:",
                g.sealed.display(),
                g.sealed.display()
            );
            for s in &g.shares {
                println!("  {}", s.display());
            }
            println!(
                "Give each share to one custodian (and only one), then delete it here. The master key itself was \
                 written nowhere."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}

/// `veil unseal`.
pub fn run(args: UnsealArgs, cfg: Config) -> ExitCode {
    let Some(vault) = &cfg.vault else {
        eprintln!("veil: {}: unseal needs the [vault] section of the vault's config", args.config.display());
        return ExitCode::from(2);
    };
    let tls = vault.tls.is_some();
    let url = args.url.clone().unwrap_or_else(|| {
        let mut addr = vault.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("{}://{addr}", if tls { "https" } else { "http" })
    });
    let ca = args.ca.clone().or_else(|| vault.tls.as_ref().map(|t| t.cert.clone()));
    let share = match read_shares(std::slice::from_ref(&args.share)) {
        Ok(mut s) => s.remove(0),
        Err(e) => {
            eprintln!("veil: {e}");
            return ExitCode::from(1);
        }
    };
    let client = match url.parse() {
        Ok(url) => VaultClientConfig {
            url,
            identity: None,
            ca,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_batch: 1,
            api_keys: Default::default(),
            encrypt_key_file: None,
        },
        Err(_) => {
            eprintln!("veil: {url:?} is not a URL");
            return ExitCode::from(2);
        }
    };
    let result =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(|rt| {
            rt.block_on(async {
                let remote = RemoteVault::new(&client).map_err(|e| e.to_string())?;
                remote.unseal(&share).await
            })
        });
    match result {
        Ok(a) if a.sealed => {
            println!("share taken: {} of {} given; the vault stays sealed until {} are", a.have, a.need, a.need);
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("the vault is unsealed and serving");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: the vault did not take the share: {e}");
            ExitCode::from(1)
        }
    }
}
