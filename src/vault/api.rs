//! The vault HTTP API (`/v1/tokenize`, `/v1/detokenize`, `/v1/mask`, `/v1/ready`, `/v1/openapi.json`, `GET|DELETE
//! /v1/subjects/{id}`): authenticate, parse with limits, call the vault, and map every error to one JSON shape in
//! one place ([`error_response`]).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;

use super::auth::{self, Caller, Callers};
use super::engine::Clock;
use super::seal::{Gate, UnsealError};
use super::wire::{
    ErrorBody, Items, RevealAnswer, RevealRequest, Status, TokenAnswer, TokenizeRequest, UnsealAnswer, UnsealRequest,
};
use super::{ItemResult, Scope, Terms, Vault, VaultError};
use crate::domain::{Class, Op};
use crate::respond::json_response;

/// The API's OpenAPI document, built once.
static OPENAPI: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(super::openapi::document);

/// How long a client may take to send its whole body once the headers are in.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Everything the API handlers share.
pub struct ApiState {
    /// The vault, behind its seal (key provider `shares`).
    pub vault: Arc<Gate>,
    pub callers: Callers,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub clock: Clock,
}

/// Why an API call was refused; [`error_response`] turns it into a status and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint")]
    NoRoute,
    #[error(
        "method not allowed: POST for /v1/tokenize|detokenize|mask, GET for /v1/ready and /v1/openapi.json, GET or \
         DELETE for /v1/subjects/{{id}}"
    )]
    Method,
    #[error("missing or unknown credentials: send `Authorization: Bearer <key>` or a client certificate")]
    Unauthenticated,
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("batch holds {got} items; the limit is {max}")]
    BatchTooLarge { got: usize, max: usize },
    #[error("request body could not be read")]
    BodyRead,
    #[error("request body did not arrive in time")]
    BodyTimeout,
    #[error("request body is not valid JSON for this call: {0}")]
    MalformedJson(String),
    #[error("item {index}: unknown class; expected one of pan, iban, email, phone, name, address, text")]
    UnknownClass { index: usize },
    #[error("{0}")]
    BadField(&'static str),
    #[error("the vault store does not answer")]
    NotReady,
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Every status and code [`ApiError::status_and_code`] answers, in status order — what the OpenAPI document lists
/// (a test checks it against every variant). `body`: the error can only come of a request body.
pub const ERROR_CODES: &[ErrorCode] = &[
    ErrorCode { status: 400, code: "malformed_json", body: true },
    ErrorCode { status: 400, code: "unknown_class", body: true },
    ErrorCode { status: 400, code: "invalid_request", body: false },
    ErrorCode { status: 400, code: "body_unreadable", body: true },
    ErrorCode { status: 400, code: "invalid_share", body: true },
    ErrorCode { status: 401, code: "unauthenticated", body: false },
    ErrorCode { status: 403, code: "forbidden", body: false },
    ErrorCode { status: 404, code: "no_route", body: false },
    ErrorCode { status: 405, code: "method_not_allowed", body: false },
    ErrorCode { status: 408, code: "body_timeout", body: true },
    ErrorCode { status: 413, code: "body_too_large", body: true },
    ErrorCode { status: 413, code: "batch_too_large", body: true },
    ErrorCode { status: 422, code: "invalid_value", body: true },
    ErrorCode { status: 429, code: "budget_exceeded", body: true },
    ErrorCode { status: 429, code: "too_many_attempts", body: true },
    ErrorCode { status: 500, code: "internal", body: false },
    ErrorCode { status: 503, code: "store_unavailable", body: false },
    ErrorCode { status: 503, code: "audit_unavailable", body: false },
    ErrorCode { status: 503, code: "not_ready", body: false },
    ErrorCode { status: 503, code: "vault_unavailable", body: false },
    ErrorCode { status: 503, code: "sealed", body: false },
    ErrorCode { status: 503, code: "unseal_failed", body: true },
];

/// One error answer of the vault API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub status: u16,
    pub code: &'static str,
    pub body: bool,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            ApiError::Method => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            ApiError::BodyRead => (StatusCode::BAD_REQUEST, "body_unreadable"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::UnknownClass { .. } => (StatusCode::BAD_REQUEST, "unknown_class"),
            ApiError::BadField(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Unseal(u) => match u {
                UnsealError::Share(_) | UnsealError::WrongShares => (StatusCode::BAD_REQUEST, "invalid_share"),
                UnsealError::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
                UnsealError::Start(_) => (StatusCode::SERVICE_UNAVAILABLE, "unseal_failed"),
            },
            ApiError::Vault(v) => match v {
                VaultError::Forbidden { .. } | VaultError::ForbiddenOp(_) => (StatusCode::FORBIDDEN, "forbidden"),
                VaultError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
                VaultError::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
                VaultError::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
                VaultError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                VaultError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "vault_unavailable"),
                VaultError::Sealed => (StatusCode::SERVICE_UNAVAILABLE, "sealed"),
                VaultError::OverBudget { .. } => (StatusCode::TOO_MANY_REQUESTS, "budget_exceeded"),
            },
        }
    }
}

/// The one place an error becomes a response: `{"error":{"code","message"}}`, with the refused item's `class`
/// and `index` where the error is about one item (clients of a split deployment name the field from them).
pub fn error_response(err: &ApiError) -> Response<Full<Bytes>> {
    let (status, code) = err.status_and_code();
    let mut body = ErrorBody::new(code, err.to_string());
    match err {
        ApiError::Vault(VaultError::Forbidden { class, .. }) => body.error.class = Some(class.name().to_owned()),
        // A card range's budget is the class's, not the caller's: the class says so to a remote proxy.
        ApiError::Vault(VaultError::OverBudget { scope: Scope::Range, .. }) => {
            body.error.class = Some(Class::Pan.name().to_owned())
        }
        ApiError::Vault(VaultError::Invalid { index, .. }) | ApiError::UnknownClass { index } => {
            body.error.index = Some(*index)
        }
        _ => {}
    }
    let mut resp = json_response(status, &body);
    if let ApiError::Vault(VaultError::OverBudget { retry_after, .. })
    | ApiError::Unseal(UnsealError::TooManyAttempts { retry_after }) = err
    {
        resp.headers_mut().insert(header::RETRY_AFTER, (*retry_after).max(1).into());
    }
    resp
}

#[derive(Clone, Copy)]
enum Endpoint {
    Tokenize,
    Detokenize,
    Mask,
    Ready,
    /// `GET /v1/openapi.json`: the API's description.
    OpenApi,
    /// `GET` (export) or `DELETE` (erase) of `/v1/subjects/{id}`.
    Subject,
    /// `POST /v1/unseal`: one custodian's share.
    Unseal,
}

impl Endpoint {
    fn allows(self, method: &Method) -> bool {
        match self {
            Endpoint::Ready | Endpoint::OpenApi => method == Method::GET,
            Endpoint::Subject => method == Method::GET || method == Method::DELETE,
            _ => method == Method::POST,
        }
    }
}

/// Longest subject id accepted (bytes).
pub const MAX_SUBJECT: usize = 256;

/// The percent-decoded subject id of a `/v1/subjects/{id}` path.
fn subject_id(raw: &str) -> Result<String, ApiError> {
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::BadField("subject id must be UTF-8"))?;
    if id.is_empty() || id.len() > MAX_SUBJECT {
        return Err(ApiError::BadField("subject id must be 1 to 256 characters"));
    }
    Ok(id.into_owned())
}

/// Serves one request from `peer`. `tls_identities` are the verified SANs of the client certificate, if any.
pub async fn handle<B>(
    state: Arc<ApiState>,
    peer: std::net::SocketAddr,
    tls_identities: Arc<Vec<String>>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(match serve(&state, peer, &tls_identities, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    })
}

async fn serve<B>(
    state: &ApiState,
    peer: std::net::SocketAddr,
    tls_identities: &[String],
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let endpoint = match req.uri().path() {
        "/v1/tokenize" => Endpoint::Tokenize,
        "/v1/detokenize" => Endpoint::Detokenize,
        "/v1/mask" => Endpoint::Mask,
        "/v1/ready" => Endpoint::Ready,
        "/v1/openapi.json" => Endpoint::OpenApi,
        "/v1/unseal" => Endpoint::Unseal,
        p => match p.strip_prefix("/v1/subjects/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Endpoint::Subject,
            _ => return Err(ApiError::NoRoute),
        },
    };
    if !endpoint.allows(req.method()) {
        return Err(ApiError::Method);
    }
    if let Endpoint::Unseal = endpoint {
        // The share is the credential (as in HashiCorp Vault): no caller key; wrong shares are rate-limited.
        let body = read_body(req, state.max_body_bytes).await?;
        let mut share: UnsealRequest = json(&body)?;
        let status = state.vault.unseal(&share.share).await;
        zeroize::Zeroize::zeroize(&mut share.share);
        let status = status?;
        let answer = UnsealAnswer { sealed: status.sealed, have: status.have, need: status.need };
        return Ok(json_response(StatusCode::OK, &answer));
    }
    // Sealed: every other call is refused before anything else is looked at.
    let vault = state.vault.get()?;
    let erase = req.method() == Method::DELETE;
    // Two credentials in one request are ambiguous (which one is checked?): refused, whichever would pass.
    let mut authorization = req.headers().get_all(header::AUTHORIZATION).iter();
    let first = authorization.next();
    if authorization.next().is_some() {
        return Err(ApiError::BadField("send one Authorization header"));
    }
    let bearer = first.and_then(|v| v.to_str().ok()).and_then(auth::bearer);
    let Some(caller) = state.callers.authenticate(bearer, tls_identities) else {
        count_unauthenticated(state, endpoint, erase);
        return Err(ApiError::Unauthenticated);
    };
    let identity = (!tls_identities.is_empty()).then(|| tls_identities.join(","));
    let caller = caller.from_origin(auth::Origin { client: Some(peer.to_string()), identity });
    if let Endpoint::Subject = endpoint {
        let id = subject_id(req.uri().path().trim_start_matches("/v1/subjects/"))?;
        let body = match erase {
            true => vault.erase_subject(&caller, &id).await?,
            false => vault.export_subject(&caller, &id).await?,
        };
        return Ok(json_response(StatusCode::OK, &body));
    }
    if let Endpoint::OpenApi = endpoint {
        // Like readiness: for any authenticated caller, not audited.
        return Ok(json_response(StatusCode::OK, &*OPENAPI));
    }
    if let Endpoint::Ready = endpoint {
        // Authenticated (so it tells strangers nothing) but not audited: it reveals and changes nothing.
        return match vault.ready().await {
            true => Ok(json_response(StatusCode::OK, &Status { status: "ready".into() })),
            false => Err(ApiError::NotReady),
        };
    }
    let body = read_body(req, state.max_body_bytes).await?;
    match endpoint {
        Endpoint::Tokenize => tokenize(state, vault, &caller, &body).await,
        _ => reveal(state, vault, &caller, endpoint, &body).await,
    }
}

async fn read_body<B>(req: Request<B>, max: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::BodyTooLarge(max));
    }
    let collect = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::BodyTooLarge(max)),
        Ok(Err(_)) => Err(ApiError::BodyRead),
    }
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages name the offending key or type and a position, never the input text.
        ApiError::MalformedJson(e.to_string())
    })
}

fn classes<'a>(items: impl Iterator<Item = (&'a str, &'a str)>, max: usize) -> Result<Vec<(Class, &'a str)>, ApiError> {
    let items: Vec<_> = items.collect();
    if items.len() > max {
        return Err(ApiError::BatchTooLarge { got: items.len(), max });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, (class, v))| class.parse::<Class>().map(|c| (c, v)).map_err(|_| ApiError::UnknownClass { index }))
        .collect()
}

async fn tokenize(
    state: &ApiState,
    vault: &super::LocalVault,
    caller: &Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let req: TokenizeRequest<'_> = json(body)?;
    if req.subject.as_deref().is_some_and(|s| s.is_empty() || s.len() > 256) {
        return Err(ApiError::BadField("subject must be 1 to 256 characters"));
    }
    let items = classes(req.items.iter().map(|i| (&*i.class, &*i.value)), state.max_batch)?;
    let binds: Vec<(usize, usize)> =
        req.items.iter().enumerate().filter_map(|(i, item)| item.bind.map(|card| (i, card))).collect();
    let terms = Terms { strict: req.terms.is_some_and(|t| t.strict), binds: &binds, client: None };
    let tokens = vault.tokenize_on(caller, &items, req.subject.as_deref(), terms).await?;
    let items =
        tokens.into_iter().zip(&items).map(|(token, (class, value))| card_details(token, *class, value)).collect();
    Ok(json_response(StatusCode::OK, &Items { items }))
}

/// A token as answered: for a card, with its brand and last four (PCI DSS 3.4.1: at most BIN and last four shown).
fn card_details(token: String, class: Class, value: &str) -> TokenAnswer {
    let card = (class == Class::Pan).then(|| crate::token::parse(class, value).ok()).flatten();
    TokenAnswer {
        token,
        brand: card.as_ref().map(|c| crate::token::pan::brand(&c.canonical).to_owned()),
        last4: card.map(|c| c.canonical[c.canonical.len().saturating_sub(4)..].to_owned()),
    }
}

async fn reveal(
    state: &ApiState,
    vault: &super::LocalVault,
    caller: &Caller,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let req: RevealRequest<'_> = json(body)?;
    if let Some(problem) = req.purpose.as_deref().and_then(crate::domain::purpose::problem) {
        return Err(ApiError::BadField(problem));
    }
    let items = classes(req.items.iter().map(|i| (&*i.class, &*i.token)), state.max_batch)?;
    let purpose = req.purpose.as_deref();
    let mask = matches!(endpoint, Endpoint::Mask);
    let op = if mask { Op::Mask } else { Op::Detokenize };
    let results: Vec<ItemResult> = match &req.audience {
        Some(audience) => {
            let audience = classes(audience.iter().map(|i| (&*i.class, &*i.token)), state.max_batch)?;
            vault.reveal_to(caller, op, &items, purpose, &audience).await?
        }
        None if mask => vault.mask(caller, &items, purpose).await?,
        None => vault.detokenize(caller, &items, purpose).await?,
    };
    let items = results
        .into_iter()
        .map(|r| match r {
            Ok(v) if mask => RevealAnswer { masked: Some(v), ..RevealAnswer::default() },
            Ok(v) => RevealAnswer { value: Some(v), ..RevealAnswer::default() },
            Err(m) => {
                RevealAnswer { error: Some(ErrorBody::new(m.code(), m.message()).error), ..RevealAnswer::default() }
            }
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Items { items }))
}

/// Counts a call refused as unauthenticated. Not audited: anyone can send one, and an audit line is a synced
/// write — a lever to fill the disk and slow every audited call. Alert on the rate instead.
fn count_unauthenticated(state: &ApiState, endpoint: Endpoint, erase: bool) {
    let op = match endpoint {
        Endpoint::Tokenize => "tokenize",
        Endpoint::Detokenize => "detokenize",
        Endpoint::Mask => "mask",
        Endpoint::Ready => "ready",
        Endpoint::OpenApi => "openapi",
        Endpoint::Subject if erase => "erase",
        Endpoint::Subject => "export",
        Endpoint::Unseal => "unseal",
    };
    state.vault.metrics().unauthenticated.with_label_values(&[op]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_finishes_times_out() {
        let (_tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
        let req = Request::builder().body(body).unwrap();
        assert!(matches!(read_body(req, 1024).await, Err(ApiError::BodyTimeout)));
    }

    #[test]
    fn a_vault_that_is_not_ready_or_unreachable_answers_503() {
        for (err, code) in
            [(ApiError::NotReady, "not_ready"), (ApiError::Vault(VaultError::Unavailable), "vault_unavailable")]
        {
            let resp = error_response(&err);
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(err.status_and_code().1, code);
        }
    }

    #[tokio::test]
    async fn item_errors_name_their_class_and_index_in_fields() {
        let body = |e: ApiError| async move {
            let bytes = error_response(&e).into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<ErrorBody>(&bytes).unwrap().error
        };
        let forbidden = VaultError::Forbidden { op: crate::domain::Op::Detokenize, class: Class::Iban };
        let e = body(ApiError::Vault(forbidden)).await;
        assert_eq!((e.code.as_str(), e.class.as_deref(), e.index), ("forbidden", Some("iban"), None));
        let invalid = VaultError::Invalid { index: 3, reason: crate::token::Invalid("x") };
        let e = body(ApiError::Vault(invalid)).await;
        assert_eq!((e.code.as_str(), e.class, e.index), ("invalid_value", None, Some(3)));
        let e = body(ApiError::UnknownClass { index: 1 }).await;
        assert_eq!((e.code.as_str(), e.index), ("unknown_class", Some(1)));
        let e = body(ApiError::NotReady).await;
        assert_eq!((e.class, e.index), (None, None));
    }

    /// One of every variant. The match below has no wildcard: a new variant breaks the build here until it has
    /// a sample (and so a checked entry in [`ERROR_CODES`]).
    fn samples() -> Vec<ApiError> {
        let samples = vec![
            ApiError::NoRoute,
            ApiError::Method,
            ApiError::Unauthenticated,
            ApiError::BodyTooLarge(1),
            ApiError::BatchTooLarge { got: 2, max: 1 },
            ApiError::BodyRead,
            ApiError::BodyTimeout,
            ApiError::MalformedJson("x".into()),
            ApiError::UnknownClass { index: 0 },
            ApiError::BadField("x"),
            ApiError::NotReady,
            ApiError::Unseal(UnsealError::WrongShares),
            ApiError::Unseal(UnsealError::Share(crate::crypto::provider::share::ShareError::Malformed)),
            ApiError::Unseal(UnsealError::TooManyAttempts { retry_after: 1 }),
            ApiError::Unseal(UnsealError::Start("x".into())),
            ApiError::Vault(VaultError::Sealed),
            ApiError::Vault(VaultError::Forbidden { op: crate::domain::Op::Mask, class: Class::Pan }),
            ApiError::Vault(VaultError::ForbiddenOp(crate::domain::Op::Erase)),
            ApiError::Vault(VaultError::Invalid { index: 0, reason: crate::token::Invalid("x") }),
            ApiError::Vault(VaultError::StoreUnavailable),
            ApiError::Vault(VaultError::AuditUnavailable),
            ApiError::Vault(VaultError::Internal),
            ApiError::Vault(VaultError::Unavailable),
            ApiError::Vault(VaultError::OverBudget { scope: Scope::Caller, retry_after: 1 }),
        ];
        for e in &samples {
            match e {
                ApiError::NoRoute
                | ApiError::Method
                | ApiError::Unauthenticated
                | ApiError::BodyTooLarge(_)
                | ApiError::BatchTooLarge { .. }
                | ApiError::BodyRead
                | ApiError::BodyTimeout
                | ApiError::MalformedJson(_)
                | ApiError::UnknownClass { .. }
                | ApiError::BadField(_)
                | ApiError::NotReady => {}
                ApiError::Unseal(u) => match u {
                    UnsealError::Share(_)
                    | UnsealError::WrongShares
                    | UnsealError::TooManyAttempts { .. }
                    | UnsealError::Start(_) => {}
                },
                ApiError::Vault(v) => match v {
                    VaultError::Forbidden { .. }
                    | VaultError::ForbiddenOp(_)
                    | VaultError::Invalid { .. }
                    | VaultError::StoreUnavailable
                    | VaultError::AuditUnavailable
                    | VaultError::Internal
                    | VaultError::Unavailable
                    | VaultError::Sealed
                    | VaultError::OverBudget { .. } => {}
                },
            }
        }
        samples
    }

    #[test]
    fn the_listed_error_codes_are_exactly_those_answered() {
        let mut answered: Vec<(u16, &str)> =
            samples().iter().map(|e| e.status_and_code()).map(|(s, c)| (s.as_u16(), c)).collect();
        answered.sort();
        answered.dedup();
        let mut listed: Vec<(u16, &str)> = ERROR_CODES.iter().map(|e| (e.status, e.code)).collect();
        listed.sort();
        assert_eq!(listed, answered);
    }

    #[test]
    fn every_missing_reason_is_listed() {
        for m in crate::vault::engine::Missing::ALL {
            match m {
                crate::vault::engine::Missing::NotFound
                | crate::vault::engine::Missing::Gone
                | crate::vault::engine::Missing::CvcUnavailable
                | crate::vault::engine::Missing::NotLinked => {}
            }
        }
        let mut codes: Vec<_> = crate::vault::engine::Missing::ALL.iter().map(|m| m.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), 4);
    }

    #[test]
    fn every_error_has_a_json_body_with_code_and_message() {
        let resp = error_response(&ApiError::BodyTimeout);
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }
}
