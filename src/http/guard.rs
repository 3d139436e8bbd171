//! Callers of the privileged and state-changing endpoints: counted against the per-principal
//! rate limit, refused everything privileged (and the approver UI's reads) while a subject
//! block names them, and every refusal written to the audit trail (`access.refused`) so
//! attempts leave a trace.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use serde_json::json;

use super::access::admit_operation;
use super::error::ApiError;
use super::extract::Authenticated;
use super::state::AppState;
use crate::identity::Caller;
use crate::store::{AuditRecord, Write};

/// An authenticated caller, within the per-principal limit on operations (429 beyond it).
#[derive(Debug)]
pub struct Admitted(pub Caller);

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        admit_operation(state, &caller.principal.to_string())?;
        Ok(Admitted(caller))
    }
}

/// An [`Admitted`] caller whom no subject block names: a revoked approver or administrator
/// keeps no privilege (approve, deny, review, audit, revocations) and does not even read what
/// the approver UI shows (pending requests, a request), 403 `revoked`.
#[derive(Debug)]
pub struct Privileged(pub Caller);

impl FromRequestParts<AppState> for Privileged {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Admitted(caller) = Admitted::from_request_parts(parts, state).await?;
        refuse_if_revoked(parts, state, &caller).await?;
        Ok(Privileged(caller))
    }
}

/// 403 `revoked`, audited, while a subject block names `caller`.
async fn refuse_if_revoked(
    parts: &Parts,
    state: &AppState,
    caller: &Caller,
) -> Result<(), ApiError> {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
    refuse_blocked(state, caller, &format!("{} {route}", parts.method)).await
}

/// 403 `revoked` for `caller`'s `attempt`, audited, while a subject block names `caller`:
/// for handlers whose privilege depends on what the request concerns (revoking another's token).
pub async fn refuse_blocked(
    state: &AppState,
    caller: &Caller,
    attempt: &str,
) -> Result<(), ApiError> {
    let Some(block) = state
        .store
        .subject_block(&caller.principal.to_string())
        .await?
    else {
        return Ok(());
    };
    let why = format!("subject revoked ({})", block.id);
    record_refusal(state, caller, attempt, None, "revoked", &why).await?;
    Err(ApiError::Revoked(block.reason))
}

/// 403 for `caller`'s `attempt` (e.g. `approve req_…`, on `request_id` if it concerns one)
/// because `why`, recorded in the audit trail first.
pub async fn forbidden(
    state: &AppState,
    caller: &Caller,
    attempt: &str,
    request_id: Option<&str>,
    why: &str,
) -> ApiError {
    match record_refusal(state, caller, attempt, request_id, "forbidden", why).await {
        Ok(()) => ApiError::Forbidden(why.to_owned()),
        Err(e) => e,
    }
}

async fn record_refusal(
    state: &AppState,
    caller: &Caller,
    attempt: &str,
    request_id: Option<&str>,
    code: &str,
    why: &str,
) -> Result<(), ApiError> {
    let principal = caller.principal.to_string();
    tracing::info!(principal = %principal, attempt, code, "refused");
    state
        .store
        .write(vec![Write::Audit(AuditRecord {
            at: i64::try_from(state.now()).unwrap_or(i64::MAX),
            kind: "access.refused".into(),
            request_id: request_id.map(str::to_owned),
            subject: Some(principal.clone()),
            data: json!({"principal": principal, "attempt": attempt, "code": code, "reason": why}),
        })])
        .await?;
    Ok(())
}
