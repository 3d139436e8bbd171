//! Callers of the privileged and state-changing endpoints: counted against the per-principal
//! rate limit, and refused everything privileged (and the approver UI's reads) while a subject
//! block names them — the rules are the core's (`access::refusal`), the extractors apply them
//! before a handler runs.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;

use super::error::ApiError;
use super::extract::Authenticated;
use crate::access::AppState;
use crate::access::refusal::{Attempt, refuse_blocked};
use crate::identity::Caller;

/// An authenticated caller, within the per-principal limit on operations (429 beyond it).
#[derive(Debug)]
pub struct Admitted(pub Caller);

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        state.admit_operation(&caller.principal.to_string())?;
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
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        let attempt = format!("{} {route}", parts.method);
        refuse_blocked(state, &caller, Attempt::Operation(&attempt)).await?;
        Ok(Privileged(caller))
    }
}
