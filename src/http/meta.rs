//! Everything but access requests: keys and metadata for verifiers, the policy status for
//! operators, health, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::Authenticated;
use super::state::AppState;
use crate::clock::rfc3339;

/// `GET /.well-known/jwks.json`: the keys whose tokens may still be live.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let set = state.tokens.jwks(state.now());
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(set)).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = state.tokens.issuer().trim_end_matches('/');
    Json(json!({
        "issuer": state.tokens.issuer(),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": [],
        "grant_types_supported": [],
        "token_endpoint_auth_methods_supported": [],
        "jitgate_access_request_endpoint": format!("{issuer}/v1/access-requests"),
        "jitgate_decision_endpoint": format!("{issuer}/v1/decisions"),
    }))
}

/// `GET /v1/policies`: what is serving, and why the last reload failed if it did.
pub async fn policies(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
) -> Json<Value> {
    let pack = state.policies.current();
    let status = state.policies.status();
    let loaded_at = crate::clock::unix_secs(status.loaded_at);
    let last_error = status.last_error.map(|failure| {
        json!({
            "at": rfc3339(crate::clock::unix_secs(failure.at)),
            "errors": failure.errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    });
    Json(json!({
        "version": pack.version(),
        "loaded_at": rfc3339(loaded_at),
        "files": pack.files(),
        "policies": pack.policies().collect::<Vec<_>>(),
        "warnings": pack.warnings().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "last_error": last_error,
    }))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: policies loaded and the store writable.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .store
        .check_writable()
        .await
        .map_err(|e| ApiError::Unavailable(format!("store not writable: {e}")))?;
    Ok(Json(json!({
        "status": "ready",
        "policy_version": state.policies.current().version(),
    })))
}

/// `GET /metrics`: Prometheus text. The pending gauge and the writer's queue are counted
/// from the store at scrape time, so expiry needs no bookkeeping.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
    match state.store.pending_requests(now).await {
        Ok(pending) => state.metrics.approvals_pending.set(pending),
        Err(e) => tracing::warn!(error = %e, "cannot count pending requests for /metrics"),
    }
    let queued = i64::try_from(state.store.queued_writes()).unwrap_or(i64::MAX);
    state.metrics.store_write_queue.set(queued);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
