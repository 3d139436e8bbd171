//! `POST /v1/access-requests`, `POST /v1/decisions` (the dry run) and `GET /v1/requestable`:
//! the body read as DESIGN §3 gives it, handed to the core ([`crate::access::ask`],
//! [`crate::access::requestable`]).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{
    Authenticated, ClientIp, DpopKey, JsonBody, OptionalJsonBody, PathId, QueryParams,
};
use super::guard::Privileged;
use crate::access::AppState;
use crate::access::answer::{DryRunAnswer, IssuedAnswer, PendingAnswer};
use crate::access::ask::{self, AccessRequest, Asked};
use crate::access::extend::{self, ExtendRequest};
use crate::access::requestable::{self, RequestablePage, RequestableQuery};
use crate::decision::EntityRef;

/// The body of an access request (DESIGN §3).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestBody {
    action: String,
    resource: ResourceField,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    duration: Option<DurationField>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    break_glass: bool,
    /// RFC 3339: schedule the window of access to open then (at most `max_schedule_ahead`
    /// ahead); approvals may come before it.
    #[serde(default)]
    not_before: Option<String>,
}

/// `{"type": "Database", "id": "orders"}` or `Database::"orders"`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum ResourceField {
    Cedar(String),
    Object(EntityRef),
}

/// `"15m"` or seconds.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum DurationField {
    Seconds(u64),
    Text(String),
}

impl DurationField {
    fn parse(self) -> Result<Duration, ApiError> {
        match self {
            DurationField::Seconds(secs) => Ok(Duration::from_secs(secs)),
            DurationField::Text(text) => humantime::parse_duration(&text)
                .map_err(|e| ApiError::InvalidRequest(format!("duration `{text}`: {e}"))),
        }
    }
}

impl TryFrom<AccessRequestBody> for AccessRequest {
    type Error = ApiError;

    fn try_from(body: AccessRequestBody) -> Result<Self, ApiError> {
        let resource = match body.resource {
            ResourceField::Object(entity) => entity,
            ResourceField::Cedar(text) => text.parse().map_err(ApiError::InvalidRequest)?,
        };
        let duration = body.duration.map(DurationField::parse).transpose()?;
        let not_before = match body.not_before {
            None => None,
            Some(text) => Some(
                text.parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|at| u64::try_from(at.as_second()).ok())
                    .ok_or_else(|| {
                        ApiError::InvalidRequest(format!(
                            "not_before `{text}` is not an RFC 3339 time such as 2026-12-01T09:00:00Z"
                        ))
                    })?,
            ),
        };
        Ok(AccessRequest {
            action: body.action,
            resource,
            scopes: body.scopes,
            duration,
            reason: body.reason.unwrap_or_default(),
            context: body.context,
            break_glass: body.break_glass,
            dpop_jkt: None,
            not_before,
            extension: None,
        })
    }
}

/// The answer of an access request: 201 issued, 202 pending (or scheduled), 403 denied.
fn answered(asked: Asked) -> Response {
    match asked {
        Asked::Issued(issued) => (StatusCode::CREATED, Json(issued)).into_response(),
        Asked::Pending(pending) => (StatusCode::ACCEPTED, Json(pending)).into_response(),
        Asked::Denied(denied) => (StatusCode::FORBIDDEN, Json(denied)).into_response(),
    }
}

/// 201 with the token (bound to the key of a `DPoP` proof, if one came), 202 pending, 403
/// denied.
#[utoipa::path(
    post,
    path = "/v1/access-requests",
    operation_id = "request_access",
    tag = "access",
    request_body = AccessRequestBody,
    params(DpopKey),
    responses(
        ApiError,
        (status = 201, description = "Allowed (or break-glass): the token.", body = IssuedAnswer),
        (status = 202, description = "Escalated: waiting for approvers.", body = PendingAnswer),
        (status = 403, description = "Denied by the policies (`DeniedAnswer`), or the caller may not ask (`Error`).", body = ref("#/components/schemas/Refusal")),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    DpopKey(dpop_jkt): DpopKey,
    JsonBody(body): JsonBody<AccessRequestBody>,
) -> Result<Response, ApiError> {
    let mut request: AccessRequest = body.try_into()?;
    request.dpop_jkt = dpop_jkt;
    Ok(answered(ask::ask(&state, caller, ip, request).await?))
}

/// Body of `POST /v1/access-requests/{id}/extend`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, `"15m"` or seconds; default: what the policies grant.
    #[serde(default)]
    duration: Option<DurationField>,
    /// Default: the first request's reason.
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/access-requests/{id}/extend`: the requester asks for more time on a live grant,
/// decided as a new request linked to the first (context `extends`, `extended_secs`).
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/extend",
    tag = "access",
    params(("id" = String, Path, description = "The live request to extend"), DpopKey),
    request_body(content = Option<ExtendBody>, description = "Optional duration and reason"),
    responses(
        ApiError,
        (status = 201, description = "Allowed: the new token.", body = IssuedAnswer),
        (status = 202, description = "Escalated: the extension waits for approvers.", body = PendingAnswer),
        (status = 403, description = "Denied by the policies (`DeniedAnswer`), or not the requester (`Error`).", body = ref("#/components/schemas/Refusal")),
    ),
    security(("bearer" = [])),
)]
pub async fn extend(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    PathId(id): PathId,
    DpopKey(dpop_jkt): DpopKey,
    OptionalJsonBody(body): OptionalJsonBody<ExtendBody>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let ask_for = ExtendRequest {
        duration: body.duration.map(DurationField::parse).transpose()?,
        reason: body.reason,
        dpop_jkt,
    };
    Ok(answered(
        extend::extend(&state, caller, ip, &id, ask_for).await?,
    ))
}

/// Query of `POST /v1/decisions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecisionParams {
    /// Also explain the decision policy by policy.
    #[serde(default)]
    explain: bool,
}

/// The dry run: the same decision, audited as such, nothing issued.
#[utoipa::path(
    post,
    path = "/v1/decisions",
    tag = "access",
    params(DecisionParams),
    request_body = AccessRequestBody,
    responses(ApiError, (status = 200, description = "The decision; nothing issued.", body = DryRunAnswer)),
    security(("bearer" = [])),
)]
pub async fn dry_run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    QueryParams(params): QueryParams<DecisionParams>,
    JsonBody(body): JsonBody<AccessRequestBody>,
) -> Result<Json<DryRunAnswer>, ApiError> {
    Ok(Json(
        ask::dry_run(&state, caller, ip, body.try_into()?, params.explain).await?,
    ))
}

/// Query of `GET /v1/requestable`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestableParams {
    /// At most this many (default 50, at most 200).
    #[serde(default)]
    limit: Option<usize>,
    /// `next` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /v1/requestable`: what the caller could ask for now, and what would happen.
#[utoipa::path(
    get,
    path = "/v1/requestable",
    tag = "access",
    params(RequestableParams),
    responses(ApiError, (status = 200, description = "A page of actions on resources, each decided as if asked now (no reason, no client context).", body = RequestablePage)),
    security(("bearer" = [])),
)]
pub async fn requestable(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    ClientIp(ip): ClientIp,
    QueryParams(params): QueryParams<RequestableParams>,
) -> Result<Json<RequestablePage>, ApiError> {
    let query = RequestableQuery {
        limit: params.limit,
        cursor: params.cursor,
    };
    Ok(Json(
        requestable::requestable(&state, &caller, ip, query).await?,
    ))
}
