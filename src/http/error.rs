//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` with the status
//! DESIGN §3 gives each code. Internal causes are logged once and answered opaquely.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use crate::access::ApiError;
use crate::access::answer::ErrorBody;

/// Every error answer: the error, and for a conflict the status the request is in.
#[derive(Debug, Serialize)]
struct ErrorAnswer {
    error: ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
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
            ApiError::InvalidDpopProof(m) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof", m),
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
        let body = ErrorAnswer {
            error: ErrorBody { code, message },
            status: current_status,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
