//! The vault API's wire contract: the JSON bodies of `/v1/tokenize`, `/v1/detokenize`, `/v1/mask` and
//! `/v1/ready`, used by both ends — the server (`api.rs`) and the client of a split deployment (`remote.rs`) —
//! so neither can drift from the other. Errors use [`crate::respond::ErrorBody`], whose `class` and `index`
//! fields carry what a client needs to name the refused item; nothing is recovered from message text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use crate::respond::{ErrorBody, ErrorDetail};

/// `POST /v1/tokenize`.
#[derive(Debug, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTerms {
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, Serialize, Deserialize)]
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
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest<'a> {
    #[serde(borrow)]
    pub items: Vec<RevealItem<'a>>,
    /// Why the values are revealed: a short label, recorded in the audit log.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealItem<'a> {
    #[serde(borrow)]
    pub class: Cow<'a, str>,
    #[serde(borrow)]
    pub token: Cow<'a, str>,
}

/// Every batch answer: one item per request item, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One tokenised item.
#[derive(Debug, Serialize, Deserialize)]
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
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RevealAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `GET /v1/ready` (and the admin listener's `/healthz`, `/readyz`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub status: Cow<'static, str>,
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
