//! Escalated requests: `GET /v1/access-requests?status=pending`, `GET …/{id}`, and
//! `POST …/{id}/approve|deny|cancel|review|token`, handed to the core
//! ([`crate::access::approval`], [`crate::access::mint`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Authenticated, ClientIp, DpopKey, OptionalJsonBody, PathId, QueryParams};
use super::guard::{Admitted, Privileged};
use crate::access::answer::{IssuedAnswer, PendingPage, RequestView};
use crate::access::approval::{self, PendingQuery};
use crate::access::mint::{self, Minted};
use crate::access::{Answer, AppState};

/// Optional body of approve, deny, cancel and review.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    #[serde(default)]
    comment: String,
}

fn comment(body: Option<CommentBody>) -> String {
    body.unwrap_or_default().comment
}

/// Query of `GET /v1/access-requests`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending`: the requests the caller may approve; `needs_review`: break-glass requests
    /// waiting for an administrator's review (empty for anyone else); `mine`: the caller's own
    /// requests, newest first, whatever their status.
    status: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /v1/access-requests?status=pending`: the pending requests the caller may approve;
/// `?status=needs_review`: break-glass requests waiting for review (administrators).
#[utoipa::path(
    get,
    path = "/v1/access-requests",
    operation_id = "list_pending_requests",
    tag = "approvals",
    params(ListQuery),
    responses(ApiError, (status = 200, description = "A page of pending requests.", body = PendingPage)),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<PendingPage>, ApiError> {
    let status = query.status;
    let query = PendingQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let page = match status.as_str() {
        "pending" => approval::pending(&state, &caller, query).await?,
        "needs_review" => approval::awaiting_review(&state, &caller, query).await?,
        "mine" => approval::mine(&state, &caller, query).await?,
        _ => {
            return Err(ApiError::InvalidRequest(
                "status must be `pending`, `needs_review` or `mine`".into(),
            ));
        }
    };
    Ok(Json(page))
}

/// `GET /v1/access-requests/{id}`: for the requester, its approvers and administrators.
#[utoipa::path(
    get,
    path = "/v1/access-requests/{id}",
    tag = "approvals",
    params(("id" = String, Path, description = "The request id")),
    responses(ApiError, (status = 200, description = "The request.", body = RequestView)),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    PathId(id): PathId,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(approval::get(&state, &caller, &id).await?))
}

/// An approver approves a pending request.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/approve",
    tag = "approvals",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = Option<CommentBody>, description = "An optional comment"),
    responses(ApiError, (status = 200, description = "The request after the answer.", body = RequestView)),
    security(("bearer" = [])),
)]
pub async fn approve(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
) -> Result<Json<RequestView>, ApiError> {
    let answer = Answer::Approve;
    Ok(Json(
        approval::answer(&state, &caller, &id, answer, comment(body)).await?,
    ))
}

/// An approver denies a pending request.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/deny",
    tag = "approvals",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = Option<CommentBody>, description = "An optional comment"),
    responses(ApiError, (status = 200, description = "The request after the answer.", body = RequestView)),
    security(("bearer" = [])),
)]
pub async fn deny(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
) -> Result<Json<RequestView>, ApiError> {
    let answer = Answer::Deny;
    Ok(Json(
        approval::answer(&state, &caller, &id, answer, comment(body)).await?,
    ))
}

/// `POST /v1/access-requests/{id}/review`: an administrator closes a break-glass request.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/review",
    tag = "approvals",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = Option<CommentBody>, description = "An optional comment"),
    responses(ApiError, (status = 200, description = "The request after it.", body = RequestView)),
    security(("bearer" = [])),
)]
pub async fn review(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(
        approval::review(&state, &caller, &id, comment(body)).await?,
    ))
}

/// `POST /v1/access-requests/{id}/cancel`: the requester withdraws a pending request.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/cancel",
    tag = "approvals",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = Option<CommentBody>, description = "An optional comment"),
    responses(ApiError, (status = 200, description = "The request after it.", body = RequestView)),
    security(("bearer" = [])),
)]
pub async fn cancel(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    PathId(id): PathId,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(
        approval::cancel(&state, &caller, &id, comment(body)).await?,
    ))
}

/// `POST /v1/access-requests/{id}/token`: after approval, the requester mints; 201 with the
/// token (bound to the key of a `DPoP` proof, if one came), or 403 when the request no longer
/// passes the policies.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/token",
    tag = "approvals",
    params(("id" = String, Path, description = "The request id"), DpopKey),
    responses(
        ApiError,
        (status = 201, description = "The token.", body = IssuedAnswer),
        (status = 403, description = "The request no longer passes the policies (`DeniedAnswer`), or the caller may not mint it (`Error`).", body = ref("#/components/schemas/Refusal")),
    ),
    security(("bearer" = [])),
)]
pub async fn mint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    PathId(id): PathId,
    DpopKey(dpop_jkt): DpopKey,
) -> Result<Response, ApiError> {
    let response = match mint::mint(&state, &caller, ip, &id, dpop_jkt).await? {
        Minted::Issued(issued) => (StatusCode::CREATED, Json(issued)).into_response(),
        Minted::Denied(denied) => (StatusCode::FORBIDDEN, Json(denied)).into_response(),
    };
    Ok(response)
}
