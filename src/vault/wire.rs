//! The vault API's wire contract: the JSON bodies of `/v1/tokenize`, `/v1/detokenize`, `/v1/mask` and
//! `/v1/ready`, used by both ends — the server (`api.rs`) and the client of a split deployment (`remote.rs`) —
//! so neither can drift from the other, and the answers of `GET|DELETE /v1/subjects/{id}`. Errors use
//! [`crate::respond::ErrorBody`], whose `class` and `index` fields carry what a client needs to name the refused
//! item; nothing is recovered from message text. The OpenAPI document (`openapi.rs`) is derived from these types.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::respond::{ErrorBody, ErrorDetail};

/// `POST /v1/tokenize`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest<'a> {
    #[serde(borrow)]
    pub items: Vec<TokenizeItem<'a>>,
    /// The data subject the values belong to (links them for export and erasure).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Cow<'a, str>>,
    /// The terms a proxy tokenises its clients' values under (absent for other callers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<WireTerms>,
}

/// [`crate::vault::Terms`] on the wire: `strict`, the values come from the public side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireTerms {
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeItem<'a> {
    #[serde(borrow)]
    pub class: Cow<'a, str>,
    #[serde(borrow)]
    pub value: Cow<'a, str>,
    /// A `cvc` item: the index of the `pan` item of the same call whose token it is kept for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<usize>,
}

/// `POST /v1/detokenize` and `POST /v1/mask`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest<'a> {
    #[serde(borrow)]
    pub items: Vec<RevealItem<'a>>,
    /// Why the values are revealed: a short label, recorded in the audit log.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Cow<'a, str>>,
    /// Tokens of whom the answer goes to (a mail's recipients): each item is answered only where it is linked to
    /// a subject of every one of them, else with the item error `not_linked`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Vec<RevealItem<'a>>>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealItem<'a> {
    #[serde(borrow)]
    pub class: Cow<'a, str>,
    #[serde(borrow)]
    pub token: Cow<'a, str>,
}

/// Every batch answer: one item per request item, in order.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "{T}Items")]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One tokenised item.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TokenAnswer {
    pub token: String,
    /// A `pan` item's card brand (`visa`, `mastercard`, …, `unknown`), from the card's IIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// A `pan` item's last four digits (PCI DSS allows them shown with the BIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
}

/// One revealed item: `value` (detokenize) or `masked` (mask), or the per-item `error` (`not_found`, `gone`).
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct RevealAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `GET /v1/ready` (and the admin listener's `/healthz`, `/readyz`).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    pub status: Cow<'static, str>,
}

/// `GET /v1/subjects/{id}`: everything held for a data subject that the caller may export.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubjectExport {
    /// The keyed fingerprint of the subject id (hex); the id itself is never stored.
    pub subject_fp: String,
    /// `false` when records of classes the caller may not export were withheld.
    pub complete: bool,
    pub withheld_records: usize,
    pub items: Vec<ExportItem>,
    /// Every reveal (detokenize, mask) of the subject's tokens found in the audit log, oldest first.
    pub reveals: Vec<SubjectReveal>,
}

/// One token held for a subject.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ExportItem {
    pub class: String,
    pub token: String,
    pub state: TokenState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the last time the value was tokenised.
    pub last_used_at: i64,
    /// Unix seconds: when the record was erased or purged (state `gone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<i64>,
    /// The value, when the caller may also `detokenize` the class and the token is not gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Whether a token's value is still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Active,
    Gone,
}

/// One reveal of a subject's token, from the audit log.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubjectReveal {
    /// Unix seconds.
    pub at: i64,
    pub caller: String,
    /// `detokenize` or `mask`.
    pub op: String,
    pub class: String,
    pub token: String,
    /// `ok`, or the per-item code (`not_found`, `gone`, `cvc_unavailable`).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// `DELETE /v1/subjects/{id}`: the erasure receipt and its signatures over the compact JSON of `receipt`:
/// `signature`, hex(HMAC-SHA256(receipt key)), checked by the key holder; `public_signature`, Ed25519 under the
/// audit key, checked by anyone with its public key (`veil receipt verify`).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_signature: Option<PublicSignature>,
}

/// An Ed25519 signature (hex) under the audit key whose id (`veil audit verify` prints it) is `key_id`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicSignature {
    pub key_id: String,
    pub signature: String,
}

/// What an erasure did.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Always `veil-erasure-receipt`.
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    /// The master key version whose receipt key made `signature` (and whose subject key made `subject_fp`);
    /// absent from receipts made before keys could be retired (the oldest version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    pub subject_fp: String,
    /// Unix seconds.
    pub erased_at: i64,
    pub caller: String,
    /// The tokens now tombstoned.
    pub erased: Vec<ErasedToken>,
    /// The tokens another subject holds too, so kept.
    pub kept_shared: Vec<ErasedToken>,
}

/// A token of an erasure, by its keyed fingerprint (as in the audit log).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasedToken {
    pub class: String,
    pub token_fp: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_borrow() {
        let body =
            br#"{"items":[{"class":"pan","value":"4111111111111111"}],"subject":"cust-42","terms":{"strict":true}}"#;
        let req: TokenizeRequest<'_> = serde_json::from_slice(body).unwrap();
        assert!(matches!(req.items[0].value, Cow::Borrowed(_)));
        assert_eq!(serde_json::to_vec(&req).unwrap(), body.to_vec());
        let reveal = RevealRequest {
            items: vec![RevealItem { class: "pan".into(), token: "4111118304731111".into() }],
            purpose: None,
            audience: None,
        };
        assert_eq!(
            serde_json::to_string(&reveal).unwrap(),
            r#"{"items":[{"class":"pan","token":"4111118304731111"}]}"#
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_slice::<TokenizeRequest<'_>>(br#"{"items":[],"extra":1}"#).is_err());
        assert!(
            serde_json::from_slice::<RevealRequest<'_>>(br#"{"items":[{"class":"pan","token":"x","v":1}]}"#).is_err()
        );
    }

    #[test]
    fn answers_have_one_shape() {
        let ok = RevealAnswer { value: Some("v".into()), ..RevealAnswer::default() };
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"value":"v"}"#);
        let gone = RevealAnswer { error: Some(ErrorBody::new("gone", "erased").error), ..RevealAnswer::default() };
        assert_eq!(serde_json::to_string(&gone).unwrap(), r#"{"error":{"code":"gone","message":"erased"}}"#);
    }
}

/// `POST /v1/unseal`: one custodian's share (the share file's text; the share is the credential).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    pub share: String,
}

/// The answer of `POST /v1/unseal`: whether the vault is still sealed, and shares given toward unsealing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealAnswer {
    pub sealed: bool,
    pub have: usize,
    pub need: usize,
}
