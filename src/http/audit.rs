//! `GET /v1/audit` (the trail, for administrators) and `GET /v1/audit/head` (the latest signed
//! head, for anyone), handed to the core ([`crate::access::trail`]).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::QueryParams;
use super::guard::Privileged;
use crate::access::AppState;
use crate::access::answer::AuditPage;
use crate::access::trail::{self, TrailQuery};

/// Every field narrows; times are RFC 3339 or unix seconds.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    request_id: Option<String>,
    subject: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "read_audit_trail",
    tag = "audit",
    params(AuditQuery),
    responses(ApiError, (status = 200, description = "A page of the trail (administrators).", body = AuditPage)),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let query = TrailQuery {
        request_id: query.request_id,
        subject: query.subject,
        kind: query.kind,
        since: query.since,
        until: query.until,
        limit: query.limit,
        cursor: query.cursor,
    };
    Ok(Json(trail::page(&state, &caller, query).await?))
}

/// A compact JWS (`typ: jitgate-audit-head+jwt`) anyone verifies with the JWKS.
#[utoipa::path(
    get,
    path = "/v1/audit/head",
    tag = "audit",
    responses(
        ApiError,
        (status = 200, description = "The latest signed head: a compact JWS.", content(("application/jwt"))),
    ),
)]
pub async fn head(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jws = trail::latest_head(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/jwt")], jws).into_response())
}
