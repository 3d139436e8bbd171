//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` with the status
//! DESIGN §3 gives each code. Internal causes are logged once and answered opaquely.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut extra: Option<(header::HeaderName, HeaderValue)> = None;
        let mut current_status: Option<String> = None;
        let (status, code, message) = match self {
            ApiError::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m),
            ApiError::UnknownAction(m) => (StatusCode::BAD_REQUEST, "unknown_action", m),
            ApiError::UnknownEntityType(m) => (StatusCode::BAD_REQUEST, "unknown_entity_type", m),
            ApiError::Unauthenticated => {
                extra = Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"jitgate\""),
                ));
                (
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "a bearer token is required".to_owned(),
                )
            }
            ApiError::InvalidToken => {
                extra = Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"jitgate\", error=\"invalid_token\""),
                ));
                (
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the bearer token is not valid".to_owned(),
                )
            }
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::Revoked(reason) => (
                StatusCode::FORBIDDEN,
                "revoked",
                format!("access is revoked: {reason}"),
            ),
            ApiError::Conflict { status } => {
                let message = format!("the request is {status}");
                current_status = Some(status);
                (StatusCode::CONFLICT, "conflict", message)
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than 64 KiB".to_owned(),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive in time".to_owned(),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json".to_owned(),
            ),
            ApiError::RateLimited { retry_after_secs } => {
                extra = Some((header::RETRY_AFTER, HeaderValue::from(retry_after_secs)));
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests; retry in {retry_after_secs}s"),
                )
            }
            ApiError::Unavailable(cause) => {
                tracing::error!(error = %cause, "unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the request could not be recorded; nothing was issued".to_owned(),
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                )
            }
        };
        let body = match current_status {
            Some(current) => {
                json!({"error": {"code": code, "message": message}, "status": current})
            }
            None => json!({"error": {"code": code, "message": message}}),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
