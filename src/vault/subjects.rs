//! Data subjects (GDPR Art. 15 and 17): export everything held for a subject, and erase it with a signed receipt.
//!
//! A subject is known only by the keyed fingerprint of its id. The export lists the subject's tokens (classes
//! the caller may `export`), their values (classes the caller may also `detokenize`), creation and last-use
//! times, and every reveal of those tokens found in the audit log (audit lines hold keyed token fingerprints,
//! matched here). Erasure tombstones the tokens no other subject holds and answers an HMAC-signed receipt.
//! Both are audited; an export is refused if its audit record cannot be written, an erasure if its intent
//! cannot be.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::{json, Value};

use super::audit::{token_fp_with, Event, Item};
use super::auth::Caller;
use super::wire::{ErasedToken, ExportItem, Receipt, SubjectExport, SubjectReveal, TokenState};
use super::{engine_error, LocalVault, VaultError};
use crate::crypto::KeySet;
use crate::domain::permission::{self as policy, Op};
use crate::domain::Class;
use crate::store::{Fingerprint, Record, SubjectMove, SubjectRow};

const RECEIPT_TYPE: &str = "veil-erasure-receipt";

impl LocalVault {
    /// Everything held for `subject` that `caller` may export (see the module docs).
    pub async fn export_subject(&self, caller: &Caller, subject: &str) -> Result<Value, VaultError> {
        let exportable: Vec<Class> =
            Class::ALL.into_iter().filter(|c| policy::allowed(&caller.allow, Op::Export, *c)).collect();
        if exportable.is_empty() {
            self.audit_subject_denied(caller, Op::Export).await;
            return Err(VaultError::ForbiddenOp(Op::Export));
        }
        let engine = self.engine();
        let fp = self.gather_subject(subject).await?;
        let records = engine.store().subject_records(&fp).await.map_err(|e| engine_error(e.into()))?;
        let mut withheld = 0usize;
        let mut items = Vec::new();
        let mut audited = vec![self.subject_item(&fp, "subject")];
        let mut by_fp: HashMap<String, (String, String)> = HashMap::new();
        for rec in &records {
            let Some(class) = rec.class.parse::<Class>().ok().filter(|c| exportable.contains(c)) else {
                withheld += 1;
                continue;
            };
            let token_fp = self.audit.token_fp(&rec.class, &rec.token);
            // Older lines fingerprinted tokens under the key versions of their day.
            for mac in engine.keys().versions().filter_map(|v| engine.keys().audit_at(v)) {
                by_fp.insert(token_fp_with(mac, &rec.class, &rec.token), (rec.class.clone(), rec.token.clone()));
            }
            audited.push(Item { class: rec.class.clone().into(), token_fp, result: "exported".into() });
            items.push(self.export_item(caller, class, rec)?);
        }
        let reveals = self.reveals_of(&by_fp)?;
        let event = Event { items: audited, ..self.event(caller, "export", "ok", None) };
        self.audit.append(event, (self.clock)()).await.map_err(|_| VaultError::AuditUnavailable)?;
        self.metrics.vault_operations.with_label_values(&["export", "-", "ok"]).inc();
        let export = SubjectExport {
            subject_fp: hex::encode(fp),
            complete: withheld == 0,
            withheld_records: withheld,
            items,
            reveals,
        };
        serde_json::to_value(export).map_err(|_| VaultError::Internal)
    }

    fn export_item(&self, caller: &Caller, class: Class, rec: &Record) -> Result<ExportItem, VaultError> {
        let value = match rec.gone_at {
            None if policy::allowed(&caller.allow, Op::Detokenize, class) => {
                Some(self.engine().open_record(rec).map_err(engine_error)?.expose().to_owned())
            }
            _ => None,
        };
        Ok(ExportItem {
            class: rec.class.clone(),
            token: rec.token.clone(),
            state: if rec.gone_at.is_some() { TokenState::Gone } else { TokenState::Active },
            created_at: rec.created_at,
            last_used_at: rec.last_used_at,
            gone_at: rec.gone_at,
            value,
        })
    }

    /// Reveals (detokenize, mask) of these token fingerprints in the audit log, oldest first.
    fn reveals_of(&self, tokens: &HashMap<String, (String, String)>) -> Result<Vec<SubjectReveal>, VaultError> {
        let Some(path) = &self.audit_path else { return Ok(Vec::new()) };
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(_) => return Err(VaultError::AuditUnavailable),
        };
        // Only a regular file can be read to its end (a device such as /dev/zero never ends).
        if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            return Err(VaultError::AuditUnavailable);
        }
        let mut out = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|_| VaultError::AuditUnavailable)?;
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            let op = entry["op"].as_str().unwrap_or_default();
            if op != "detokenize" && op != "mask" {
                continue;
            }
            for item in entry["items"].as_array().into_iter().flatten() {
                let Some((class, token)) = item["token_fp"].as_str().and_then(|fp| tokens.get(fp)) else { continue };
                out.push(SubjectReveal {
                    at: entry["ts"].as_i64().unwrap_or_default(),
                    caller: entry["caller"].as_str().unwrap_or_default().to_owned(),
                    op: op.to_owned(),
                    class: class.clone(),
                    token: token.clone(),
                    result: item["result"].as_str().unwrap_or_default().to_owned(),
                    purpose: entry["purpose"].as_str().map(str::to_owned),
                });
            }
        }
        Ok(out)
    }

    /// Erases `subject` (see the module docs) and answers the signed receipt.
    pub async fn erase_subject(&self, caller: &Caller, subject: &str) -> Result<Value, VaultError> {
        if !Class::ALL.into_iter().all(|c| policy::allowed(&caller.allow, Op::Erase, c)) {
            self.audit_subject_denied(caller, Op::Erase).await;
            return Err(VaultError::ForbiddenOp(Op::Erase));
        }
        let engine = self.engine();
        let fp = engine.subject_fingerprint(subject);
        // Fail closed: nothing is erased unless the request is on record.
        let intent =
            Event { items: vec![self.subject_item(&fp, "subject")], ..self.event(caller, "erase", "requested", None) };
        self.audit.append(intent, (self.clock)()).await.map_err(|_| VaultError::AuditUnavailable)?;
        self.gather_subject(subject).await?;
        let now = engine.now();
        let erased = engine.store().erase_subject(&fp, now).await.map_err(|e| engine_error(e.into()))?;
        engine.forget_links(&fp);
        engine.known().invalidate();
        let mut audited = vec![self.subject_item(&fp, "subject")];
        let (mut gone, mut kept) = (Vec::new(), Vec::new());
        for e in &erased {
            let token_fp = self.audit.token_fp(&e.class, &e.token);
            let entry = ErasedToken { class: e.class.clone(), token_fp: token_fp.clone() };
            if e.erased {
                gone.push(entry);
            } else {
                kept.push(entry);
            }
            let result = if e.erased { "erased" } else { "kept_shared" };
            audited.push(Item { class: e.class.clone().into(), token_fp, result: result.into() });
        }
        let done = Event { items: audited, ..self.event(caller, "erase", "ok", None) };
        if self.audit.append(done, (self.clock)()).await.is_err() {
            // The erasure is committed and cannot be undone; its request is on record.
            tracing::error!(caller = %caller.name, "erasure result could not be audited");
        }
        self.metrics.vault_operations.with_label_values(&["erase", "-", "ok"]).inc();
        let receipt = Receipt {
            kind: RECEIPT_TYPE.to_owned(),
            version: 1,
            key_version: Some(engine.keys().current_version()),
            subject_fp: hex::encode(fp),
            erased_at: now,
            caller: caller.name.clone(),
            erased: gone,
            kept_shared: kept,
        };
        // Signed as JSON (the signature is over its compact form): the answer has [`super::wire::SignedReceipt`]'s shape.
        let receipt = serde_json::to_value(receipt).map_err(|_| VaultError::Internal)?;
        let mut signed = sign_receipt(engine.keys(), receipt);
        let compact = serde_json::to_vec(&signed["receipt"]).map_err(|_| VaultError::Internal)?;
        let (signature, key_id) = self.audit.sign_evidence(&compact);
        signed["public_signature"] = json!({ "key_id": key_id, "signature": signature });
        Ok(signed)
    }

    /// The subject's fingerprint under the newest key version, its links made under older versions (if the
    /// keyring holds any) moved there first and its id kept sealed: found under one fingerprint from then on.
    async fn gather_subject(&self, id: &str) -> Result<Fingerprint, VaultError> {
        let engine = self.engine();
        let fp = engine.subject_fingerprint(id);
        let from = engine.older_subject_fingerprints(id);
        if !from.is_empty() {
            let sealed = engine.seal_subject(&fp, id).map_err(engine_error)?;
            let to = SubjectRow { subject_fp: fp, fp_version: engine.keys().current_version(), id: sealed };
            let moved = engine.store().move_subjects(&[SubjectMove { from, to }]).await;
            moved.map_err(|e| engine_error(e.into()))?;
        }
        Ok(fp)
    }

    fn subject_item(&self, fp: &[u8; 32], result: &'static str) -> Item {
        Item { class: "-".into(), token_fp: self.audit.token_fp("subject", &hex::encode(fp)), result: result.into() }
    }

    async fn audit_subject_denied(&self, caller: &Caller, op: Op) {
        self.metrics.vault_operations.with_label_values(&[op.name(), "-", "denied"]).inc();
        let event = self.event(caller, op.name(), "denied", None);
        if self.audit.append(event, (self.clock)()).await.is_err() {
            tracing::error!(caller = %caller.name, op = op.name(), "denial could not be audited");
        }
    }
}

/// `{"receipt": …, "signature": hex(HMAC-SHA256(receipt key, compact JSON of the receipt))}`, under the receipt key
/// of the version the receipt names (`key_version`), else the newest.
pub fn sign_receipt(keys: &KeySet, receipt: Value) -> Value {
    let bytes = serde_json::to_vec(&receipt).unwrap_or_default();
    let version = receipt_version(&receipt, keys.current_version());
    let key = keys.receipt_at(version).unwrap_or(&keys.receipt);
    let signature = hex::encode(key.fingerprint(&bytes));
    json!({ "receipt": receipt, "signature": signature })
}

/// The key version a receipt names, else `default` (receipts from before versions were named: the oldest).
fn receipt_version(receipt: &Value, default: u32) -> u32 {
    let named = receipt.get("key_version").and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
    named.unwrap_or(default)
}

/// Whether a receipt's public signature (as answered by an erasure, possibly after a JSON round trip) is
/// intact under `verifier`, the audit key's public half.
pub fn verify_receipt_public(verifier: &crate::crypto::audit_key::AuditVerifier, signed: &Value) -> bool {
    let (Some(receipt), Some(sig)) = (signed.get("receipt"), signed["public_signature"]["signature"].as_str()) else {
        return false;
    };
    let (Ok(bytes), Ok(sig)) = (serde_json::to_vec(receipt), hex::decode(sig)) else { return false };
    receipt["type"] == RECEIPT_TYPE && verifier.verify(&bytes, &sig)
}

/// Whether a signed receipt (as answered by an erasure, possibly after a JSON round trip) is intact.
pub fn verify_receipt(keys: &KeySet, signed: &Value) -> bool {
    let (Some(receipt), Some(sig)) = (signed.get("receipt"), signed["signature"].as_str()) else { return false };
    if receipt["type"] != RECEIPT_TYPE {
        return false;
    }
    let Ok(bytes) = serde_json::to_vec(receipt) else { return false };
    let Ok(sig) = hex::decode(sig) else { return false };
    let Some(key) = keys.receipt_at(receipt_version(receipt, keys.oldest_version())) else { return false };
    let expected = key.fingerprint(&bytes);
    use subtle::ConstantTimeEq;
    sig.len() == expected.len() && bool::from(expected.ct_eq(&sig[..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::Keyring;

    #[test]
    fn receipts_verify_and_edits_break_them() {
        let keys = KeySet::derive(&Keyring::from_keys([(1, [3u8; 32])]), &Class::names()).unwrap();
        let signed = sign_receipt(&keys, json!({"type": RECEIPT_TYPE, "erased": [{"class": "pan"}], "erased_at": 5}));
        let round_trip: Value = serde_json::from_str(&signed.to_string()).unwrap();
        assert!(verify_receipt(&keys, &round_trip));
        let mut edited = round_trip.clone();
        edited["receipt"]["erased_at"] = json!(6);
        assert!(!verify_receipt(&keys, &edited));
        let other = KeySet::derive(&Keyring::from_keys([(1, [4u8; 32])]), &Class::names()).unwrap();
        assert!(!verify_receipt(&other, &round_trip));
        assert!(!verify_receipt(&keys, &json!({"receipt": {}, "signature": "zz"})));
    }

    #[test]
    fn a_receipt_names_the_key_version_that_signed_it() {
        let ring = |n| Keyring::from_keys((1..=n).map(|v| (v, [v as u8; 32])));
        let two = KeySet::derive(&ring(2), &Class::names()).unwrap();
        let signed = sign_receipt(&two, json!({"type": RECEIPT_TYPE, "key_version": 2, "erased_at": 5}));
        assert!(verify_receipt(&two, &signed));
        assert!(verify_receipt(&KeySet::derive(&ring(3), &Class::names()).unwrap(), &signed), "after a rotation");
        let mut other = signed.clone();
        other["receipt"]["key_version"] = json!(1);
        assert!(!verify_receipt(&two, &other), "another version's key does not verify it");
        // A receipt from before receipts named their version: the oldest version's key signed it.
        let one = KeySet::derive(&ring(1), &Class::names()).unwrap();
        let legacy = sign_receipt(&one, json!({"type": RECEIPT_TYPE, "erased_at": 5}));
        assert!(verify_receipt(&two, &legacy));
    }
}
