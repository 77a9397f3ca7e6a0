//! `veil keys retire`: removes old master key versions from the keyring once nothing depends on them — refused,
//! with what still does, otherwise; audited either way.

use std::process::ExitCode;

use crate::config::Config;
use crate::crypto::{KeySet, Secret};
use crate::domain::Class;
use crate::store::KeyUsage;

/// Which versions to retire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Version(u32),
    /// Every version below this one.
    Below(u32),
}

/// Runs `veil keys retire -c … --version V | --below V`.
pub fn run(cfg: Config, which: Which, shares: Vec<Secret<String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veil: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(retire(&cfg, which, &shares)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veil: {e}");
            ExitCode::from(1)
        }
    }
}

/// The versions of `held` (oldest first) that `which` names, or why none may be retired.
pub fn chosen(which: Which, held: &[u32]) -> Result<Vec<u32>, String> {
    let newest = held.last().copied().unwrap_or(0);
    let wanted: Vec<u32> = match which {
        Which::Version(v) if !held.contains(&v) => return Err(format!("the keyring holds no master key version {v}")),
        Which::Version(v) => vec![v],
        Which::Below(b) => held.iter().copied().filter(|v| *v < b).collect(),
    };
    if wanted.contains(&newest) {
        return Err(format!("version {newest} is the newest master key version: it can never be retired"));
    }
    if wanted.is_empty() {
        return Err("the keyring holds no version below that one: nothing to retire".into());
    }
    Ok(wanted)
}

/// What still depends on `version`, as a sentence.
pub fn describe(version: u32, u: &KeyUsage) -> String {
    let mut out = format!(
        "master key version {version} is still in use: {} records sealed under it, {} value fingerprints, {} subject \
         links, {} sealed subject ids, {} CVCs",
        u.sealed, u.fingerprints, u.links, u.subjects, u.volatiles
    );
    if u.unsealed_subjects > 0 {
        out.push_str(&format!(
            "; {} subjects have links but no sealed id (linked before ids were kept): give their ids to \
             `veil keys rewrap --subjects FILE`, or erase them",
            u.unsealed_subjects
        ));
    }
    out.push_str("; run `veil keys rewrap -c …` first (and restart the vaults after `keys rotate`)");
    out
}

async fn retire(cfg: &Config, which: Which, shares: &[Secret<String>]) -> Result<String, String> {
    let v = cfg.vault.as_ref().ok_or("this command needs the [vault] section (keys, store, audit log)")?;
    let provider = v.master_key.provider_with(shares).map_err(|e| e.to_string())?;
    let ring = provider.keyring().map_err(|e| e.to_string())?;
    let held: Vec<u32> = ring.versions().collect();
    let wanted = chosen(which, &held)?;
    if wanted.contains(&ring.oldest_version()) && v.audit_key_file.is_none() {
        return Err(format!(
            "the audit log is signed with a key derived from master key version {} (vault.audit_key_file is not \
             set): create an audit key (`veil keygen --audit-key --out keys/audit.key`), set audit_key_file and \
             restart the vault with --new-audit-chain before retiring it",
            ring.oldest_version()
        ));
    }
    let keys = KeySet::derive(&ring, &Class::names()).map_err(|e| e.to_string())?;
    drop(ring);
    let clock = crate::vault::engine::system_clock();
    let vault = super::offline::open_with_keys(cfg, clock, keys).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, version) in wanted.iter().copied().enumerate() {
        // Versions go oldest first: each is the oldest left when its turn comes (legacy rows count as its).
        let oldest = held.iter().copied().filter(|h| !wanted[..i].contains(h)).min() == Some(version);
        let usage = vault.engine().store().unlist_fp_version(version, oldest).await.map_err(|e| e.to_string())?;
        let mut counts = vec![("version".to_owned(), u64::from(version))];
        if !usage.is_unused() {
            counts.extend([
                ("sealed".to_owned(), usage.sealed),
                ("fingerprints".to_owned(), usage.fingerprints),
                ("links".to_owned(), usage.links),
                ("unsealed_subjects".to_owned(), usage.unsealed_subjects),
                ("subjects".to_owned(), usage.subjects),
                ("volatiles".to_owned(), usage.volatiles),
            ]);
            let _ = vault.audit_command("keys_retire", "refused", counts).await;
            out.push(describe(version, &usage));
            return Err(out.join("\n"));
        }
        vault.audit_command("keys_retire", "started", counts.clone()).await.map_err(|e| e.to_string())?;
        if let Err(e) = provider.retire(version) {
            let _ = vault.audit_command("keys_retire", "failed", counts).await;
            return Err(e.to_string());
        }
        vault.audit_command("keys_retire", "ok", counts).await.map_err(|e| e.to_string())?;
        out.push(format!("{}: retired master key version {version}", provider.describe()));
    }
    out.push(
        "Restart the vaults with the shorter keyring. Blobs of the `encrypt` action made under a retired version no \
         longer open; backups of the key file still hold the retired keys: destroy them too."
            .into(),
    );
    Ok(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_is_never_chosen_and_unknown_ones_are_refused() {
        assert_eq!(chosen(Which::Version(1), &[1, 2, 3]).unwrap(), vec![1]);
        assert_eq!(chosen(Which::Below(3), &[1, 2, 3]).unwrap(), vec![1, 2]);
        assert!(chosen(Which::Version(3), &[1, 2, 3]).unwrap_err().contains("newest"));
        assert!(chosen(Which::Below(4), &[1, 2, 3]).unwrap_err().contains("newest"));
        assert!(chosen(Which::Version(7), &[1, 2, 3]).unwrap_err().contains("no master key version 7"));
        assert!(chosen(Which::Below(1), &[1, 2, 3]).unwrap_err().contains("nothing to retire"));
        assert!(chosen(Which::Version(1), &[1]).unwrap_err().contains("newest"));
    }

    #[test]
    fn a_refusal_says_what_still_depends_on_the_version() {
        let u = KeyUsage { sealed: 3, fingerprints: 4, links: 5, unsealed_subjects: 2, subjects: 1, volatiles: 6 };
        let said = describe(1, &u);
        for part in ["3 records sealed", "4 value fingerprints", "5 subject links", "1 sealed subject ids", "6 CVCs"] {
            assert!(said.contains(part), "{said}");
        }
        assert!(said.contains("2 subjects have links but no sealed id") && said.contains("--subjects FILE"), "{said}");
        assert!(!describe(1, &KeyUsage { sealed: 1, ..KeyUsage::default() }).contains("no sealed id"));
    }
}
