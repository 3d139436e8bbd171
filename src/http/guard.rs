//! Callers of the privileged and state-changing endpoints: counted against the per-principal
//! rate limit, refused everything privileged while a subject block names them, and every
//! refusal written to the audit trail (`access.refused`) so attempts leave a trace.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use serde_json::json;

use super::access::admit;
use super::error::ApiError;
use super::extract::Authenticated;
use super::state::AppState;
use crate::identity::Caller;
use crate::store::{AuditRecord, Write};

/// An authenticated caller, within the per-principal rate limit (429 beyond it).
#[derive(Debug)]
pub struct Admitted(pub Caller);

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        admit(state, &caller.principal.to_string())?;
        Ok(Admitted(caller))
    }
}

/// An [`Admitted`] caller whom no subject block names: a revoked approver or administrator
/// keeps no privilege (approve, deny, review, audit, revocations), 403 `revoked`.
#[derive(Debug)]
pub struct Privileged(pub Caller);

impl FromRequestParts<AppState> for Privileged {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Admitted(caller) = Admitted::from_request_parts(parts, state).await?;
        let Some(block) = state
            .store
            .subject_block(&caller.principal.to_string())
            .await?
        else {
            return Ok(Privileged(caller));
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        let attempt = format!("{} {route}", parts.method);
        let why = format!("subject revoked ({})", block.id);
        Err(
            match record_refusal(state, &caller, &attempt, None, "revoked", &why).await {
                Ok(()) => ApiError::Revoked(block.reason),
                Err(e) => e,
            },
        )
    }
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
