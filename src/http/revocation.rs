//! Revocation (`POST /v1/tokens/revoke`, RFC 7009; `POST|DELETE /v1/revocations`), the feed
//! (`GET /v1/revocations`) and introspection (`POST /v1/tokens/introspect`, RFC 7662), handed
//! to the core ([`crate::access::revocation`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Authenticated, FormOrJson, JsonBody, PathId, QueryParams};
use super::guard::{Admitted, Privileged};
use crate::access::AppState;
use crate::access::answer::{FeedPage, Introspection, Revoked};
use crate::access::revocation::{self, Revocation};
use crate::store::RevocationRecord;

/// The `token` parameter of RFC 7009 and RFC 7662.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenParameter {
    token: String,
    /// Accepted and ignored: jitgate issues one kind of token.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "RFC 7009 lets clients send it; it changes nothing here"
    )]
    token_type_hint: Option<String>,
}

/// `POST /v1/tokens/revoke`: 200 whether or not there was a live token to revoke.
#[utoipa::path(
    post,
    path = "/v1/tokens/revoke",
    tag = "tokens",
    request_body(content(
        (TokenParameter = "application/x-www-form-urlencoded"),
        (TokenParameter = "application/json"),
    )),
    responses(ApiError, (status = 200, description = "Revoked, or there was no live token to revoke.")),
    security(("bearer" = [])),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    FormOrJson(parameter): FormOrJson<TokenParameter>,
) -> Result<StatusCode, ApiError> {
    revocation::revoke_token(&state, &caller, &parameter.token).await?;
    Ok(StatusCode::OK)
}

/// Body of `POST /v1/revocations`: one of `jti`, `request_id`, `subject`, and a reason.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    reason: String,
}

/// `POST /v1/revocations`: 201 with the revocation made, 200 with the one already in force.
#[utoipa::path(
    post,
    path = "/v1/revocations",
    operation_id = "create_revocation",
    tag = "tokens",
    request_body = RevocationBody,
    responses(
        ApiError,
        (status = 201, description = "The revocation made.", body = RevocationRecord),
        (status = 200, description = "The revocation already in force.", body = RevocationRecord),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    JsonBody(body): JsonBody<RevocationBody>,
) -> Result<(StatusCode, Json<RevocationRecord>), ApiError> {
    let command = Revocation {
        jti: body.jti,
        request_id: body.request_id,
        subject: body.subject,
        reason: body.reason,
    };
    Ok(match revocation::revoke(&state, &caller, command).await? {
        Revoked::Created(revocation) => (StatusCode::CREATED, Json(revocation)),
        Revoked::Existing(revocation) => (StatusCode::OK, Json(revocation)),
    })
}

/// `DELETE /v1/revocations/{id}`: an administrator lifts a revocation.
#[utoipa::path(
    delete,
    path = "/v1/revocations/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The revocation id")),
    responses(ApiError, (status = 200, description = "The revocation, lifted.", body = RevocationRecord)),
    security(("bearer" = [])),
)]
pub async fn lift(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    PathId(id): PathId,
) -> Result<Json<RevocationRecord>, ApiError> {
    Ok(Json(revocation::lift(&state, &caller, &id).await?))
}

/// Query of the feed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// `next` of the previous page; absent for the start.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /v1/revocations?since=<cursor>&limit=N`, for verifiers to keep a deny-list.
#[utoipa::path(
    get,
    path = "/v1/revocations",
    tag = "tokens",
    params(FeedQuery),
    responses(ApiError, (status = 200, description = "A page of the revocation feed.", body = FeedPage)),
    security(("bearer" = [])),
)]
pub async fn feed(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    let page = revocation::feed(&state, query.since.as_deref(), query.limit).await?;
    Ok(Json(page))
}

/// `POST /v1/tokens/introspect`, for authenticated callers.
#[utoipa::path(
    post,
    path = "/v1/tokens/introspect",
    operation_id = "introspect_token",
    tag = "tokens",
    request_body(content(
        (TokenParameter = "application/x-www-form-urlencoded"),
        (TokenParameter = "application/json"),
    )),
    responses(ApiError, (status = 200, description = "RFC 7662: `active` and, for a live token, its claims.", body = Introspection)),
    security(("bearer" = [])),
)]
pub async fn introspect(
    State(state): State<AppState>,
    Admitted(_caller): Admitted,
    FormOrJson(parameter): FormOrJson<TokenParameter>,
) -> Result<Json<Introspection>, ApiError> {
    Ok(Json(
        revocation::introspect(&state, &parameter.token).await?,
    ))
}
