//! One audit line: its JSON shape, its signature (Ed25519 over the line's text without `sig`) and its link to
//! the line before (`prev` = SHA-256 of that line's whole text), and how a line read back is checked.
//!
//! A signed line: `{"seq":7,"ts":…,"caller":…,"op":…,"outcome":…,…,"items":[…],"prev":"<hex>","sig":"<hex>"}`.
//! The signed bytes are exactly the text before `,"sig":` followed by `}`: nothing is re-serialised to check it.
//! Only the last line of each group commit is signed; the lines before it have no `sig` and are vouched for by
//! the chain: the signed line's `prev` fixes the hash of the line before it, whose `prev` fixes the one before, and
//! so on back to the previous signed line. (Logs written when every line was signed read the same way.)

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::audit_key::{AuditSigner, AuditVerifier};
use crate::crypto::fingerprint::hex_lower;
use crate::store::AuditHead;

/// `prev` of a chain's first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first line of a new log.
pub const OP_START: &str = "chain_start";
/// The first line of a log started again (`--new-audit-chain`) after a broken or missing one.
pub const OP_RESTART: &str = "chain_restart";

const SIG_KEY: &str = ",\"sig\":\"";

/// One item of an event: its class, the token's keyed fingerprint, and what happened to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// A class name or outcome code is a constant of the code: borrowed, not copied, per item.
    pub class: Cow<'static, str>,
    pub token_fp: String,
    pub result: Cow<'static, str>,
}

/// A head as a restart line records it: where the store said the previous chain ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    pub seq: u64,
    pub hash: String,
}

impl From<&AuditHead> for Previous {
    fn from(h: &AuditHead) -> Previous {
        Previous { seq: h.seq, hash: h.hash.clone() }
    }
}

/// The fields of a line, without its signature.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub seq: u64,
    pub ts: i64,
    /// The log's id, on a chain's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    pub caller: String,
    pub op: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The caller's network address (`ip:port` of an API call, the ingress client's address, or `in-process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The verified identity of the caller's TLS client certificate (its SANs), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub items: Vec<Item>,
    /// Counts of an operation on many records (purge per class, rewrap), never values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// On a restart line: the head the store held for the previous chain (none: it held none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// Free text without values (a restart's reason, where the old log went).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub prev: String,
}

/// SHA-256 (hex) of a line's whole text (without its newline): the next line's `prev`, and the head.
pub fn hash(text: &str) -> String {
    hash_bytes(text.as_bytes())
}

/// [`hash`] of a line's bytes.
pub fn hash_bytes(text: &[u8]) -> String {
    hex_lower(&Sha256::digest(text))
}

/// The line's text, signed (no newline).
pub fn seal(signer: &AuditSigner, line: &Line) -> Result<String, serde_json::Error> {
    let body = serde_json::to_string(line)?;
    let sig = hex::encode(signer.sign(body.as_bytes()));
    let open = body.strip_suffix('}').unwrap_or(&body);
    Ok(format!("{open}{SIG_KEY}{sig}\"}}"))
}

/// The line's text without a signature (no newline): a line before the last of its group commit.
pub fn unsigned(line: &Line) -> Result<String, serde_json::Error> {
    serde_json::to_string(line)
}

/// The line in `text` and whether it is signed: a signed line (one with `sig`) must verify under `verifier`;
/// an unsigned one only has to be an audit entry — the chain up to the next signed line vouches for it.
pub fn read(verifier: &AuditVerifier, text: &str) -> Result<(Line, bool), &'static str> {
    if text.contains(SIG_KEY) {
        return open(verifier, text).map(|l| (l, true));
    }
    serde_json::from_str(text).map(|l| (l, false)).map_err(|_| "not an audit entry")
}

/// The line in `text`, if its signature is `verifier`'s; else why not.
pub fn open(verifier: &AuditVerifier, text: &str) -> Result<Line, &'static str> {
    let (body, sig) = split(text)?;
    let Ok(sig) = hex::decode(sig) else { return Err("signature is not hex") };
    if !verifier.verify(body.as_bytes(), &sig) {
        return Err("signature does not verify: the line was edited, or signed with another key");
    }
    serde_json::from_str(&body).map_err(|_| "signed, but not an audit entry")
}

/// The signed body (`{…}` without `sig`) and the signature's hex.
fn split(text: &str) -> Result<(String, &str), &'static str> {
    let Some(at) = text.rfind(SIG_KEY) else { return Err("not a signed audit entry (no sig)") };
    let Some(sig) = text[at + SIG_KEY.len()..].strip_suffix("\"}") else {
        return Err("not a signed audit entry (sig is not last)");
    };
    Ok((format!("{}}}", &text[..at]), sig))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer() -> AuditSigner {
        AuditSigner::from_seed(&[7; 32])
    }

    fn line(caller: &str, purpose: Option<String>) -> Line {
        Line {
            seq: 3,
            ts: 1_700_000_000,
            caller: caller.into(),
            op: "detokenize".into(),
            outcome: "ok".into(),
            purpose,
            items: vec![Item { class: "pan".into(), token_fp: "ab".into(), result: "ok".into() }],
            prev: GENESIS.into(),
            ..Line::default()
        }
    }

    #[test]
    fn sealed_line_opens_and_any_edit_or_other_key_breaks_it() {
        let l = line("payments", Some("payment".into()));
        let text = seal(&signer(), &l).unwrap();
        assert!(text.ends_with("\"}") && !text.contains('\n'));
        assert_eq!(open(&signer().verifier(), &text).unwrap(), l);
        let edited = text.replacen("payments", "paymentz", 1);
        assert!(open(&signer().verifier(), &edited).is_err());
        let other = AuditSigner::from_seed(&[8; 32]);
        assert!(open(&other.verifier(), &text).is_err());
        // Re-signed by another key: verifies under that key only.
        let forged = seal(&other, &line("payments", Some("refund".into()))).unwrap();
        assert!(open(&signer().verifier(), &forged).is_err());
        assert_eq!(hash(&text).len(), 64);
    }

    #[test]
    fn unsigned_lines_read_as_unsigned_and_a_signed_one_must_verify() {
        let l = line("payments", None);
        let text = unsigned(&l).unwrap();
        assert!(!text.contains("sig"));
        assert_eq!(read(&signer().verifier(), &text).unwrap(), (l.clone(), false));
        let sealed = seal(&signer(), &l).unwrap();
        assert_eq!(read(&signer().verifier(), &sealed).unwrap(), (l, true));
        // A signature that does not verify is not read as an unsigned line.
        let other = AuditSigner::from_seed(&[8; 32]);
        assert!(read(&other.verifier(), &sealed).is_err());
        // `sig` anywhere else, or an unknown field, is not an entry.
        assert!(read(&signer().verifier(), &text.replacen("{", "{\"sig\":\"00\",", 1)).is_err());
        assert!(read(&signer().verifier(), "{}").is_err());
    }

    proptest! {
        #[test]
        fn round_trips_any_text_fields(caller in "\\PC{0,40}", purpose in proptest::option::of("\\PC{0,40}")) {
            let l = line(&caller, purpose);
            let text = seal(&signer(), &l).unwrap();
            prop_assert_eq!(open(&signer().verifier(), &text).unwrap(), l);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = open(&signer().verifier(), &text);
            let _ = read(&signer().verifier(), &text);
        }

        #[test]
        fn unsigned_round_trips_any_text_fields(caller in "\\PC{0,40}", purpose in proptest::option::of("\\PC{0,40}")) {
            let l = line(&caller, purpose);
            let text = unsigned(&l).unwrap();
            prop_assert_eq!(read(&signer().verifier(), &text).unwrap(), (l, false));
        }
    }
}
