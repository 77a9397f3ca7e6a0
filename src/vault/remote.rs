//! `RemoteVault`: the [`Vault`] trait over the vault HTTP API of another process (`veil proxy` -> `veil vault`),
//! with a pooled HTTPS client (mTLS, h2 or keep-alive HTTP/1.1), timeouts, batches split to the configured size,
//! and every answer mapped back to the same results and errors the in-process vault gives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;

use super::auth::{Caller, PROXY_CALLER};
use super::engine::Missing;
use super::wire::{
    ErrorBody, Items, RevealAnswer, RevealItem, RevealRequest, TokenAnswer, TokenizeItem, TokenizeRequest,
    UnsealAnswer, UnsealRequest, WireTerms,
};
use super::{ItemResult, Scope, Terms, Vault, VaultError};
use crate::crypto::Secret;
use crate::domain::permission::Op;
use crate::domain::Class;
use crate::token::Invalid;

/// How to reach a remote vault: the validated `[vault_client]` section.
#[derive(Debug, Clone)]
pub struct VaultClientConfig {
    /// `https://host:port` (or `http://` on loopback), no path.
    pub url: Uri,
    /// The proxy's client certificate chain and private key (PEM), for mTLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The CA that signed the vault's server certificate; without it the system roots are used.
    pub ca: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Larger batches are split into several calls of at most this many items.
    pub max_batch: usize,
    /// Files holding the bearer key of a named caller; calls made for that caller send it.
    pub api_keys: BTreeMap<String, PathBuf>,
    /// The proxy's encrypt-only key file, for the `encrypt` action (vaultless blobs) it performs itself; none
    /// when no route encrypts. Never the vault's master keyring.
    pub encrypt_key_file: Option<PathBuf>,
}

/// Largest answer read from the vault (a full batch of long values fits many times over).
const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// The reason given for an item the remote vault refused: its own sentence stays on the vault's side.
const REMOTE_INVALID: Invalid = Invalid("the vault refused this value for its class");

/// Why a `RemoteVault` could not be built. Names files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSetupError {
    #[error("vault_client: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("vault_client.api_keys.{name}: {path}: {reason}")]
    ApiKey { name: String, path: String, reason: &'static str },
}

/// A vault reached over HTTP(S).
pub struct RemoteVault {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: Uri,
    request_timeout: Duration,
    max_batch: usize,
    api_keys: BTreeMap<String, Secret<String>>,
}

impl RemoteVault {
    /// Reads the client certificate, CA and key files, and builds the pooled client (no connection yet).
    pub fn new(cfg: &VaultClientConfig) -> Result<RemoteVault, RemoteSetupError> {
        let roots = match &cfg.ca {
            Some(ca) => crate::tls::load_roots(ca)?,
            None => crate::tls::system_roots(),
        };
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let tls = match &cfg.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(crate::tls::load_certs(cert)?, crate::tls::load_key(key)?)
                .map_err(|e| crate::tls::TlsError::Config(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let mut api_keys = BTreeMap::new();
        for (name, path) in &cfg.api_keys {
            api_keys.insert(name.clone(), read_key(name, path)?);
        }
        Ok(RemoteVault {
            client,
            base: cfg.url.clone(),
            request_timeout: cfg.request_timeout,
            max_batch: cfg.max_batch,
            api_keys,
        })
    }

    /// One call; answers the status and body, or `Unavailable` for network errors and timeouts.
    async fn call(
        &self,
        caller: &str,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), VaultError> {
        let uri = Uri::builder()
            .scheme(self.base.scheme_str().unwrap_or("https"))
            .authority(self.base.authority().map(|a| a.as_str()).unwrap_or_default())
            .path_and_query(path)
            .build()
            .map_err(|_| VaultError::Internal)?;
        let mut auth = None;
        if let Some(key) = self.api_keys.get(caller) {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| VaultError::Internal)?;
            value.set_sensitive(true);
            auth = Some(value);
        }
        let build = || {
            let mut req = Request::builder().method(method.clone()).uri(uri.clone());
            if !body.is_empty() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            if let Some(value) = &auth {
                req = req.header(header::AUTHORIZATION, value.clone());
            }
            req.body(Full::new(body.clone())).map_err(|_| VaultError::Internal)
        };
        let exchange = async {
            // A pooled connection the vault closed (it restarted) fails without a connect error: retry once on a
            // fresh connection. Safe: tokenising is idempotent and reveals only read (each attempt is audited).
            let mut retried = false;
            let resp = loop {
                match self.client.request(build()?).await {
                    Ok(resp) => break resp,
                    Err(e) if !retried && !e.is_connect() => {
                        tracing::debug!(error = %e, "pooled vault connection failed; retrying on a new one");
                        retried = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, connect = e.is_connect(), "vault request failed");
                        return Err(VaultError::Unavailable);
                    }
                }
            };
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES).collect().await.map_err(|_| {
                tracing::warn!("vault answer could not be read");
                VaultError::Unavailable
            })?;
            Ok((status, bytes.to_bytes()))
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("vault did not answer in time");
                Err(VaultError::Unavailable)
            }
        }
    }

    /// `POST /v1/unseal` with one custodian's share (`veil unseal`): the vault's progress, or its refusal as a
    /// sentence (status, code, message; never the share).
    pub async fn unseal(&self, share: &Secret<String>) -> Result<UnsealAnswer, String> {
        let body = serde_json::to_vec(&UnsealRequest { share: share.expose().clone() }).map_err(|e| e.to_string())?;
        let (status, answer) =
            self.call("", Method::POST, "/v1/unseal", body.into()).await.map_err(|e| format!("{e} ({})", self.base))?;
        if status == StatusCode::OK {
            return serde_json::from_slice(&answer).map_err(|_| "the vault's answer has an unexpected shape".into());
        }
        match serde_json::from_slice::<ErrorBody>(&answer) {
            Ok(e) => Err(format!("{} {}: {}", status.as_u16(), e.error.code, e.error.message)),
            Err(_) => Err(format!("the vault answered {}", status.as_u16())),
        }
    }

    /// Calls `path` once per chunk of at most `max_batch` items; results are concatenated in order.
    async fn batched<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        body: impl Fn(&[(Class, &str)]) -> serde_json::Result<Vec<u8>>,
    ) -> Result<Vec<T>, VaultError> {
        self.batched_by(caller, op, items, self.max_batch, body).await
    }

    /// Like [`RemoteVault::batched`], in chunks of `per_call` items.
    async fn batched_by<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        per_call: usize,
        body: impl Fn(&[(Class, &str)]) -> serde_json::Result<Vec<u8>>,
    ) -> Result<Vec<T>, VaultError> {
        let path = match op {
            Op::Tokenize => "/v1/tokenize",
            Op::Mask => "/v1/mask",
            _ => "/v1/detokenize",
        };
        let mut out = Vec::with_capacity(items.len());
        for (n, chunk) in items.chunks(per_call.max(1)).enumerate() {
            let bytes = body(chunk).map_err(|_| VaultError::Internal)?;
            let (status, answer) = self.call(&caller.name, Method::POST, path, bytes.into()).await?;
            if status != StatusCode::OK {
                return Err(error_from(status, &answer, op, chunk, n * per_call.max(1)));
            }
            let parsed: Items<T> = serde_json::from_slice(&answer).map_err(|_| {
                tracing::error!(op = op.name(), "the vault's answer has an unexpected shape");
                VaultError::Internal
            })?;
            if parsed.items.len() != chunk.len() {
                tracing::error!(op = op.name(), "the vault answered a different number of items");
                return Err(VaultError::Internal);
            }
            out.extend(parsed.items);
        }
        Ok(out)
    }

    async fn reveal(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        purpose: Option<&str>,
        audience: Option<&[(Class, &str)]>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        let body = |chunk: &[(Class, &str)]| {
            serde_json::to_vec(&RevealRequest {
                items: wire_items(chunk),
                purpose: purpose.map(Into::into),
                audience: audience.map(wire_items),
            })
        };
        let answers: Vec<RevealAnswer> = self.batched(caller, op, items, body).await?;
        answers
            .into_iter()
            .map(|a| match (a.value.or(a.masked), a.error) {
                (Some(v), None) => Ok(Ok(v)),
                // Erased or purged tokens keep their meaning; any other per-item code means no value here.
                (None, Some(e)) if e.code == "gone" => Ok(Err(Missing::Gone)),
                (None, Some(e)) if e.code == "cvc_unavailable" => Ok(Err(Missing::CvcUnavailable)),
                (None, Some(e)) if e.code == "not_linked" => Ok(Err(Missing::NotLinked)),
                (None, Some(_)) => Ok(Err(Missing::NotFound)),
                _ => {
                    tracing::error!(op = op.name(), "the vault's item answer has an unexpected shape");
                    Err(VaultError::Internal)
                }
            })
            .collect()
    }
}

/// A key file's first line, trimmed; refused when empty.
fn read_key(name: &str, path: &std::path::Path) -> Result<Secret<String>, RemoteSetupError> {
    let err = |reason| RemoteSetupError::ApiKey { name: name.to_owned(), path: path.display().to_string(), reason };
    let text = Secret::new(std::fs::read_to_string(path).map_err(|_| err("cannot read the key file"))?);
    let key = text.expose().lines().next().unwrap_or_default().trim();
    if key.is_empty() {
        return Err(err("the key file is empty"));
    }
    if HeaderValue::from_str(key).is_err() {
        return Err(err("the key holds characters a header cannot carry"));
    }
    Ok(Secret::new(key.to_owned()))
}

/// Maps a refused call back to the error the in-process vault would have given. `offset` is the index of the
/// chunk's first item in the whole batch.
fn error_from(status: StatusCode, body: &[u8], op: Op, chunk: &[(Class, &str)], offset: usize) -> VaultError {
    let detail = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
    let code = detail.as_ref().map(|d| d.code.as_str()).unwrap_or("-");
    let index = detail.as_ref().and_then(|d| d.index);
    match (status, code) {
        (StatusCode::FORBIDDEN, _) => {
            let named = detail.as_ref().and_then(|d| d.class.as_deref()).and_then(|c| c.parse::<Class>().ok());
            // A vault that names no class refused the whole chunk: name its first item's.
            match named.or_else(|| chunk.first().map(|(c, _)| *c)) {
                Some(class) => VaultError::Forbidden { op, class },
                None => VaultError::ForbiddenOp(op),
            }
        }
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value") => match index.filter(|i| *i < chunk.len()) {
            Some(index) => VaultError::Invalid { index: offset + index, reason: REMOTE_INVALID },
            None => {
                tracing::error!(op = op.name(), "the vault refused a value without naming a valid item");
                VaultError::Internal
            }
        },
        // A card range's budget (the answer names the class), else this proxy's own caller budget at the vault.
        (StatusCode::TOO_MANY_REQUESTS, "budget_exceeded") => {
            let range = detail.as_ref().is_some_and(|d| d.class.is_some());
            VaultError::OverBudget { scope: if range { Scope::Range } else { Scope::Caller }, retry_after: 60 }
        }
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable") => VaultError::StoreUnavailable,
        (StatusCode::SERVICE_UNAVAILABLE, "sealed") => VaultError::Sealed,
        (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable") => VaultError::AuditUnavailable,
        (StatusCode::UNAUTHORIZED, _) => {
            tracing::error!(op = op.name(), "the vault did not accept this proxy's credentials");
            VaultError::Unavailable
        }
        (s, _) if s.is_server_error() => {
            tracing::warn!(op = op.name(), status = s.as_u16(), code, "the vault failed the call");
            VaultError::Unavailable
        }
        (s, _) => {
            tracing::error!(op = op.name(), status = s.as_u16(), code, "the vault refused the call");
            VaultError::Internal
        }
    }
}

#[async_trait]
impl Vault for RemoteVault {
    async fn tokenize_on(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        subject: Option<&str>,
        terms: Terms<'_>,
    ) -> Result<Vec<String>, VaultError> {
        let strict = terms.strict.then_some(WireTerms { strict: true });
        // `binds` index the items of one call: each card with its CVCs goes in a call of its own (card first),
        // everything else in chunks of the vault's batch size.
        fn body<'b>(
            binds: &'b [(usize, usize)],
            subject: Option<&'b str>,
            terms: Option<WireTerms>,
        ) -> impl Fn(&[(Class, &str)]) -> serde_json::Result<Vec<u8>> + 'b {
            move |chunk| {
                let items = chunk.iter().enumerate().map(|(i, &(c, v))| {
                    let bind = binds.iter().find(|(cvc, _)| *cvc == i).map(|(_, card)| *card);
                    TokenizeItem { class: c.name().into(), value: v.into(), bind }
                });
                serde_json::to_vec(&TokenizeRequest { items: items.collect(), subject: subject.map(Into::into), terms })
            }
        }
        let bound: Vec<usize> = terms.binds.iter().flat_map(|&(cvc, card)| [cvc, card]).collect();
        let rest: Vec<usize> = (0..items.len()).filter(|i| !bound.contains(i)).collect();
        let mut out = vec![String::new(); items.len()];
        let chunk: Vec<(Class, &str)> = rest.iter().map(|&i| items[i]).collect();
        let tokens: Vec<TokenAnswer> = self.batched(caller, Op::Tokenize, &chunk, body(&[], subject, strict)).await?;
        for (i, t) in rest.iter().zip(tokens) {
            out[*i] = t.token;
        }
        let mut cards: Vec<usize> = terms.binds.iter().map(|&(_, card)| card).collect();
        cards.sort_unstable();
        cards.dedup();
        for card in cards {
            let group: Vec<usize> =
                std::iter::once(card).chain(terms.binds.iter().filter(|b| b.1 == card).map(|b| b.0)).collect();
            let chunk: Vec<(Class, &str)> = group.iter().map(|&i| items[i]).collect();
            let binds: Vec<(usize, usize)> = (1..group.len()).map(|k| (k, 0)).collect();
            let per_call = group.len();
            let tokens: Vec<TokenAnswer> =
                self.batched_by(caller, Op::Tokenize, &chunk, per_call, body(&binds, subject, strict)).await?;
            for (i, t) in group.iter().zip(tokens) {
                out[*i] = t.token;
            }
        }
        Ok(out)
    }

    async fn detokenize(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.reveal(caller, Op::Detokenize, items, purpose, None).await
    }

    async fn mask(
        &self,
        caller: &Caller,
        items: &[(Class, &str)],
        purpose: Option<&str>,
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.reveal(caller, Op::Mask, items, purpose, None).await
    }

    async fn reveal_to(
        &self,
        caller: &Caller,
        op: Op,
        items: &[(Class, &str)],
        purpose: Option<&str>,
        audience: &[(Class, &str)],
    ) -> Result<Vec<ItemResult>, VaultError> {
        self.reveal(caller, op, items, purpose, Some(audience)).await
    }

    /// The vault answers `GET /v1/ready` with 200 (authenticated as the proxy).
    async fn ready(&self) -> bool {
        matches!(self.call(PROXY_CALLER, Method::GET, "/v1/ready", Bytes::new()).await, Ok((StatusCode::OK, _)))
    }
}

/// Items as the API reads them.
fn wire_items<'a>(list: &[(Class, &'a str)]) -> Vec<RevealItem<'a>> {
    list.iter().map(|&(c, t)| RevealItem { class: c.name().into(), token: t.into() }).collect()
}

#[cfg(test)]
mod tests;
