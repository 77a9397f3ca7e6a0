//! The admin listener: `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz` (vault and store answer).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::metrics::Metrics;
use crate::respond::{error_response, json_response};
use crate::vault::Vault;

pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub vault: Arc<dyn Vault>,
}

/// Whether the vault answers within two seconds.
async fn ready(state: &AdminState) -> bool {
    tokio::time::timeout(std::time::Duration::from_secs(2), state.vault.ready()).await.unwrap_or(false)
}

pub async fn handle<B>(state: Arc<AdminState>, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => {
            // Alerts need readiness as a series: Prometheus scrapes /metrics, not /readyz.
            state.metrics.vault_ready.set(i64::from(ready(&state).await));
            let mut resp = Response::new(Full::new(Bytes::from(state.metrics.render())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        "/readyz" => {
            if ready(&state).await {
                json_response(StatusCode::OK, &json!({"status": "ready"}))
            } else {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the vault store does not answer")
            }
        }
        _ => error_response(StatusCode::NOT_FOUND, "no_route", "no such endpoint"),
    })
}
