//! Everything that stops a proxied request, and the one function that turns it into the spec's JSON error.

use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::ProxyBody;
use crate::rewrite::RewriteError;

/// Why a request was not forwarded (fail closed) or the upstream failed. Never holds a value.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request rejected: {0}")]
    BadRequest(&'static str),
    #[error("request body could not be processed: {0}")]
    Malformed(RewriteError),
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("request body did not arrive in time")]
    BodyTimeout,
    #[error("content type {0} cannot be inspected for this route's fields")]
    UnsupportedMediaType(String),
    #[error("content encoding {0} cannot be inspected; send the body unencoded")]
    UnsupportedEncoding(String),
    #[error("field {field} holds a value that is not a valid {class}")]
    InvalidValue { field: String, class: &'static str },
    #[error("field {0} is not accepted on this route")]
    Rejected(String),
    #[error("field {0} holds a card verification code, and the request no card for it")]
    CvcWithoutCard(String),
    #[error("the request holds more than {0} values to protect")]
    TooManyValues(usize),
    #[error("no route serves this request")]
    NoRoute,
    #[error("{0}; send the path in plain, canonical form")]
    BadPath(#[from] crate::domain::path::PathRefusal),
    #[error("this route's caller may not reveal class {0}")]
    Forbidden(&'static str),
    #[error("field {field} holds a token the vault cannot give back ({reason})")]
    TokenUnavailable { field: String, reason: &'static str },
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(&'static str),
    #[error("the upstream's response was withheld: {0}")]
    UpstreamResponse(&'static str),
    #[error("the vault is unavailable; the request was not forwarded")]
    VaultUnavailable,
    #[error("too many connections; try again")]
    Overloaded,
    #[error("the upstream application is unavailable")]
    UpstreamUnavailable,
    #[error("the upstream application did not answer in time")]
    UpstreamTimeout,
    #[error("internal proxy error")]
    Internal,
    #[error("this request would add more new card, IBAN or phone values than the {scope}'s budget has left; retry in {retry_after} s")]
    OverBudget { scope: crate::vault::Scope, retry_after: u64 },
}

impl ProxyError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // A rewriter that cannot pair its edits with its values broke an invariant: nothing is forwarded.
            ProxyError::Malformed(RewriteError::EditCount) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ProxyError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            ProxyError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ProxyError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ProxyError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ProxyError::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
            ProxyError::InvalidValue { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
            ProxyError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "field_rejected"),
            ProxyError::TooManyValues(_) => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_values"),
            ProxyError::CvcWithoutCard(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            ProxyError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ProxyError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ProxyError::TokenUnavailable { reason: "cvc_unavailable", .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "cvc_unavailable")
            }
            ProxyError::TokenUnavailable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_token"),
            ProxyError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ProxyError::UpstreamResponse(_) => (StatusCode::BAD_GATEWAY, "upstream_response_withheld"),
            ProxyError::VaultUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "vault_unavailable"),
            ProxyError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ProxyError::UpstreamUnavailable => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
            ProxyError::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            ProxyError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ProxyError::OverBudget { .. } => (StatusCode::TOO_MANY_REQUESTS, "budget_exceeded"),
        }
    }

    /// The `kind` label of `veil_upstream_errors_total`, for upstream failures.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::UpstreamUnavailable => Some("unavailable"),
            ProxyError::UpstreamTimeout => Some("timeout"),
            ProxyError::UpstreamResponse(_) => Some("response_withheld"),
            _ => None,
        }
    }
}

/// The one place a proxy error becomes a response: `{"error":{"code","message"}}`.
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    let (status, code) = err.status_and_code();
    let mut resp = crate::respond::error_response(status, code, err.to_string());
    if let ProxyError::OverBudget { retry_after, .. } = err {
        resp.headers_mut().insert(http::header::RETRY_AFTER, (*retry_after).max(1).into());
    }
    resp.map(|b| b.map_err(|never| match never {}).boxed())
}
