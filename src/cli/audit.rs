//! `veil audit verify`: checks the audit log's signatures and chain, and its end against the head the store
//! holds, with only the public key.

use std::process::ExitCode;

use crate::crypto::audit_key::{public_path, AuditVerifier};
use crate::vault::audit::{verify_log, Verdict};

use super::VerifyArgs;

/// Exit 0 intact, 3 broken, 2 bad config, 1 cannot read.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    let cfg = match super::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(vault) = &cfg.vault else {
        eprintln!("veil: {}: audit verify needs the [vault] section of the vault's config", args.config.display());
        return ExitCode::from(2);
    };
    let shares = match super::unseal::read_shares(&args.shares) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("veil: {e}");
            return ExitCode::from(1);
        }
    };
    let verifier = match verifier(args.public_key.as_deref(), vault, &shares) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("veil: {e}");
            return ExitCode::from(1);
        }
    };
    let log_id = args.log_id.clone().unwrap_or_else(|| crate::app::audit_log_id(vault));
    let path = &vault.audit_log;
    let checked =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(|rt| {
            rt.block_on(async {
                let store = crate::app::open_store(vault).await.map_err(|e| e.to_string())?;
                verify_log(path, &verifier, &log_id, &*store).await
            })
        });
    match checked {
        Ok(Verdict::Intact { entries, tail, unacknowledged, torn, cut, signed, .. }) => {
            println!(
                "{}: intact, {entries} entries; signed by audit key {} ({signed} signed lines: the last of each group \
                 commit, the chain covers the lines before it); the store's head (log {log_id}) is at line {}",
                path.display(),
                verifier.id(),
                tail.seq - unacknowledged
            );
            if unacknowledged > 0 {
                println!("  {unacknowledged} line(s) after the head: written, not yet acknowledged (or a crash between file and store)");
            }
            if torn {
                println!(
                    "  after line {entries}: a write cut by a crash ({cut} unsigned line(s) and a torn one, never \
                     acknowledged; the vault cuts it at its next start)"
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Verdict::Empty) => {
            println!(
                "{}: intact, 0 entries (no chain started yet; the store holds no head for log {log_id})",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Verdict::Broken { line: 0, reason }) => {
            eprintln!("{}: BROKEN: {reason}", path.display());
            ExitCode::from(3)
        }
        Ok(Verdict::Broken { line, reason }) => {
            eprintln!("{}: BROKEN at line {line}: {reason}", path.display());
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}

/// The public key: `--public-key`, else the configured key file's `.pub`, else (no audit key file) the key
/// derived from the master key, which then must be readable (with `shares` for provider `shares`).
pub(super) fn verifier(
    public_key: Option<&std::path::Path>,
    vault: &crate::config::VaultConfig,
    shares: &[crate::crypto::Secret<String>],
) -> Result<AuditVerifier, String> {
    if let Some(p) = public_key {
        return AuditVerifier::load(p).map_err(|e| e.to_string());
    }
    if let Some(k) = &vault.audit_key_file {
        return AuditVerifier::load(&public_path(k)).map_err(|e| e.to_string());
    }
    let keys = crate::app::keys_from(&vault.master_key, shares).map_err(|e| e.to_string())?;
    Ok(crate::app::audit_signer(vault, &keys).map_err(|e| e.to_string())?.verifier())
}

/// `veil receipt verify`: an erasure receipt's public signature checked with the audit public key.
/// Exit 0 intact, 3 not (edited, forged, or signed by another key), 2 bad usage, 1 cannot read.
pub fn verify_receipt(args: &super::ReceiptArgs) -> ExitCode {
    let verifier = match (&args.public_key, &args.config) {
        (Some(p), _) => AuditVerifier::load(p).map_err(|e| e.to_string()),
        (None, Some(c)) => match super::load(c) {
            Ok(cfg) => match (&cfg.vault, super::unseal::read_shares(&args.shares)) {
                (Some(v), Ok(shares)) => verifier(None, v, &shares),
                (Some(_), Err(e)) => Err(e),
                (None, _) => Err(format!("{}: has no [vault] section", c.display())),
            },
            Err(code) => return code,
        },
        (None, None) => {
            eprintln!("veil: receipt verify needs --public-key FILE (or -c with the vault's config)");
            return ExitCode::from(2);
        }
    };
    let verifier = match verifier {
        Ok(v) => v,
        Err(e) => {
            eprintln!("veil: {e}");
            return ExitCode::from(1);
        }
    };
    let signed: serde_json::Value = match std::fs::read(&args.receipt).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("veil: {}: not a receipt (JSON: {e})", args.receipt.display());
            return ExitCode::from(3);
        }
        Err(e) => {
            eprintln!("veil: cannot read {}: {e}", args.receipt.display());
            return ExitCode::from(1);
        }
    };
    if crate::vault::subjects::verify_receipt_public(&verifier, &signed) {
        let r = &signed["receipt"];
        println!(
            "{}: intact — signed by audit key {}: subject {} erased at {} by {} ({} tokens erased, {} kept as shared)",
            args.receipt.display(),
            verifier.id(),
            r["subject_fp"].as_str().unwrap_or("?"),
            r["erased_at"],
            r["caller"].as_str().unwrap_or("?"),
            r["erased"].as_array().map_or(0, Vec::len),
            r["kept_shared"].as_array().map_or(0, Vec::len),
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{}: NOT a receipt signed by audit key {}", args.receipt.display(), verifier.id());
        ExitCode::from(3)
    }
}
