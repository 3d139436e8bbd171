//! The one error of jitgate's API, whichever entry point calls the core: what went wrong, in
//! terms a caller can act on. `http::error` maps each to a status and a JSON body.

use crate::decision::RequestError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    InvalidRequest(String),
    UnknownAction(String),
    UnknownEntityType(String),
    /// No credentials; `WWW-Authenticate: Bearer` without an error code (RFC 6750 §3.1).
    Unauthenticated,
    /// Bad credentials; the reason is never told.
    InvalidToken,
    NotFound(String),
    /// The caller may not do this (e.g. approve their own request).
    Forbidden(String),
    /// The policies refuse the caller now but would allow a fresh sign-in: sign in again
    /// (the UI does so with `max_age`).
    ReauthenticationRequired(String),
    /// The UI session cookie names a session that has ended.
    SessionEnded,
    /// A sign-in to the UI failed (why, in words for the person signing in).
    SignInFailed(String),
    /// The request is not in a state that allows this; `status` is the state it is in.
    Conflict {
        status: String,
    },
    PayloadTooLarge,
    /// The body did not arrive within `http.body_read_timeout`.
    BodyTimeout,
    UnsupportedMediaType,
    RateLimited {
        retry_after_secs: u64,
    },
    /// The DPoP proof is missing a check RFC 9449 §4.3 asks for (which one).
    InvalidDpopProof(String),
    /// A revocation refuses the caller tokens (its reason).
    Revoked(String),
    /// The store could not record the decision: no token leaves the server.
    Unavailable(String),
    Internal(String),
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        let message = error.to_string();
        match error {
            RequestError::UnknownAction { .. } => ApiError::UnknownAction(message),
            RequestError::UnknownEntityType { .. } => ApiError::UnknownEntityType(message),
            RequestError::UnknownResource(_) => ApiError::NotFound(message),
            RequestError::ReservedContextKey(_)
            | RequestError::ZeroDuration
            | RequestError::Invalid(_) => ApiError::InvalidRequest(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(status) => ApiError::Conflict { status },
            StoreError::Revoked(reason) => ApiError::Revoked(reason),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}
