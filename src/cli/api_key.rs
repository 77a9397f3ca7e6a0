//! `veil keygen --api-key`: a new random API key for a `[[caller]]`, written to a file the caller (or a split
//! proxy's `[vault_client] api_keys`) reads, and the sha-256 the vault's config holds instead of the key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Writes a new key (32 random bytes, base64url) to `out`, mode 0600, never overwriting; prints its sha-256.
pub fn generate(out: &Path) -> ExitCode {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let mut key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    raw.zeroize();
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .and_then(|mut f| f.write_all(key.as_bytes()).and_then(|()| f.sync_all()));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    key.zeroize();
    match written {
        Ok(()) => {
            println!(
                "wrote a new API key to {} (mode 0600). Put its hash in the caller's entry of the vault's config:\n\
                 api_key_sha256 = \"{hash}\"",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("veil: {} exists; refusing to overwrite a key", out.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("veil: cannot write {}: {e}", out.display());
            ExitCode::from(1)
        }
    }
}
