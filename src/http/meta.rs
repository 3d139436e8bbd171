//! Everything but access requests: keys and metadata for verifiers, the policy status for
//! operators, health, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::cookie::ViaSession;
use super::error::ApiError;
use super::extract::Authenticated;
use super::guard::{Admitted, Privileged};
use super::oauth;
use crate::access::AppState;
use crate::access::answer::{ClusterView, PolicyStatus};

/// `GET /.well-known/jwks.json`: the keys whose tokens may still be live.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "keys",
    responses((status = 200, description = "The public keys (RFC 7517).", body = ref("#/components/schemas/JwkSet"))),
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let set = state.tokens.jwks(state.now());
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(set)).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "keys",
    responses((status = 200, description = "RFC 8414 metadata.", body = ServerMetadata)),
)]
pub async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    let issuer = state.tokens.issuer().trim_end_matches('/');
    let auth_methods = oauth::CLIENT_AUTH_METHODS.map(str::to_owned).to_vec();
    let asymmetric: Vec<String> = (crate::identity::jwt::ASYMMETRIC_ALGORITHMS.iter())
        .map(|alg| format!("{alg:?}"))
        .collect();
    Json(ServerMetadata {
        issuer: state.tokens.issuer().to_owned(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        token_endpoint: format!("{issuer}/oauth2/token"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        revocation_endpoint: format!("{issuer}/oauth2/revoke"),
        response_types_supported: Vec::new(),
        grant_types_supported: oauth::GRANT_TYPES.map(str::to_owned).to_vec(),
        token_endpoint_auth_methods_supported: auth_methods.clone(),
        introspection_endpoint_auth_methods_supported: auth_methods.clone(),
        revocation_endpoint_auth_methods_supported: auth_methods,
        token_endpoint_auth_signing_alg_values_supported: asymmetric.clone(),
        dpop_signing_alg_values_supported: asymmetric,
        authorization_details_types_supported: vec![oauth::AUTHORIZATION_DETAILS_TYPE.to_owned()],
        jitgate_access_request_endpoint: format!("{issuer}/v1/access-requests"),
        jitgate_decision_endpoint: format!("{issuer}/v1/decisions"),
    })
}

/// RFC 8414 metadata, with jitgate's own endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    response_types_supported: Vec<String>,
    grant_types_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    dpop_signing_alg_values_supported: Vec<String>,
    authorization_details_types_supported: Vec<String>,
    jitgate_access_request_endpoint: String,
    jitgate_decision_endpoint: String,
}

/// Who the caller is, as jitgate sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// Cedar form, e.g. `User::"alice"`.
    principal: String,
    groups: Vec<String>,
    mfa: bool,
    /// Unix seconds the caller signed in (`auth_time`, else the token's `iat`); null for an API
    /// key.
    auth_time: Option<u64>,
    /// How the caller authenticated: `bearer` (an identity token or an API key) or `session`
    /// (signed in to the UI).
    via: &'static str,
    /// The API key's name, or the token's `azp`/`client_id`.
    client_id: String,
    /// For a session: the token a state-changing request without an `Origin` header carries
    /// in `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// `GET /v1/me`: the caller's principal, groups and sign-in, for clients and the UI.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "access",
    responses(ApiError, (status = 200, description = "The caller.", body = Me)),
    security(("bearer" = [])),
)]
pub async fn me(Admitted(caller): Admitted, ViaSession(session): ViaSession) -> Json<Me> {
    Json(Me {
        principal: caller.principal.to_string(),
        groups: caller.groups.iter().map(ToString::to_string).collect(),
        mfa: caller.mfa,
        auth_time: caller.auth_time,
        via: if session.is_some() {
            "session"
        } else {
            "bearer"
        },
        client_id: caller.client_id,
        csrf_token: session.map(|csrf| csrf.0),
    })
}

/// `GET /v1/policies`: what is serving, and why the last reload failed if it did.
#[utoipa::path(
    get,
    path = "/v1/policies",
    tag = "operations",
    responses(ApiError, (status = 200, description = "The pack serving, and the last reload failure.", body = PolicyStatus)),
    security(("bearer" = [])),
)]
pub async fn policies(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
) -> Json<PolicyStatus> {
    Json(PolicyStatus::of(&state))
}

/// `GET /v1/cluster`: the replicas seen lately (administrators).
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "operations",
    responses(ApiError, (status = 200, description = "The replicas seen lately (administrators).", body = ClusterView)),
    security(("bearer" = [])),
)]
pub async fn cluster(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
) -> Result<Json<ClusterView>, ApiError> {
    Ok(Json(
        crate::access::cluster::cluster(&state, &caller).await?,
    ))
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process answers.", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        policy_version: None,
    })
}

/// `GET /readyz`: policies loaded and the store writable.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(ApiError, (status = 200, description = "Ready to decide and record.", body = Health)),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let policy_version = state.readiness().await?;
    Ok(Json(Health {
        status: "ready",
        policy_version: Some(policy_version),
    }))
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_version: Option<String>,
}

/// `GET /metrics`: Prometheus text. The pending gauge and the writer's queue are counted
/// from the store at scrape time, so expiry needs no bookkeeping.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.pending_requests(state.now_stored()).await {
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
