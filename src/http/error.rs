//! The one place errors become HTTP responses: `{"error": {"code", "message"}}` with the status
//! DESIGN §3 gives each code. Internal causes are logged once and answered opaquely.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::header::Header;
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

pub use crate::access::ApiError;
use crate::access::answer::ErrorBody;

/// Every error answer: the error, and for a conflict the status the request is in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorAnswer {
    error: ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

/// What each status of an [`ApiError`] means, for the OpenAPI document (a test holds every
/// variant's status to this list).
const DOCUMENTED: [(StatusCode, &str); 11] = [
    (
        StatusCode::BAD_REQUEST,
        "`invalid_request`, `unknown_action`, `unknown_entity_type` or `invalid_dpop_proof`.",
    ),
    (
        StatusCode::UNAUTHORIZED,
        "`unauthenticated`: no bearer token, or not a valid one.",
    ),
    (
        StatusCode::FORBIDDEN,
        "`forbidden` (the caller may not), or `revoked`.",
    ),
    (StatusCode::NOT_FOUND, "`not_found`."),
    (
        StatusCode::REQUEST_TIMEOUT,
        "`request_timeout`: the body did not arrive in time.",
    ),
    (
        StatusCode::CONFLICT,
        "`conflict`: the request is not in a state that allows this; `status` says which it is in.",
    ),
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "`payload_too_large`: the body is larger than 64 KiB.",
    ),
    (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "`unsupported_media_type`: the body is not JSON.",
    ),
    (
        StatusCode::TOO_MANY_REQUESTS,
        "`rate_limited`: retry after `Retry-After` seconds.",
    ),
    (StatusCode::INTERNAL_SERVER_ERROR, "`internal`."),
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "`unavailable`: the request could not be recorded; nothing was issued.",
    ),
];

/// The responses of an error type: each of its `documented` statuses with the body
/// `schema` names; `WWW-Authenticate` on a 401 and `Retry-After` on a 429.
pub(super) fn error_responses(
    schema: &str,
    documented: &[(StatusCode, &str)],
) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let body = Ref::from_schema_name(schema);
    documented
        .iter()
        .map(|&(status, description)| {
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(body.clone())));
            if status == StatusCode::UNAUTHORIZED {
                response = response.header("WWW-Authenticate", Header::new(String::schema()));
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                response = response.header("Retry-After", Header::new(u64::schema()));
            }
            (status.as_str().to_owned(), response.build().into())
        })
        .collect()
}

impl utoipa::IntoResponses for ApiError {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&ErrorAnswer::name(), &DOCUMENTED)
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
            ApiError::InvalidDpopProof(m) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::ReauthenticationRequired(m) => {
                (StatusCode::FORBIDDEN, "reauthentication_required", m)
            }
            ApiError::SessionEnded => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the sign-in has ended: sign in again".to_owned(),
            ),
            ApiError::SignInFailed(m) => (StatusCode::BAD_REQUEST, "sign_in_failed", m),
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Every variant, so that a new one does not compile until it is listed here too.
    pub(in crate::http) fn every_error() -> Vec<ApiError> {
        let all = vec![
            ApiError::InvalidRequest(String::new()),
            ApiError::UnknownAction(String::new()),
            ApiError::UnknownEntityType(String::new()),
            ApiError::Unauthenticated,
            ApiError::InvalidToken,
            ApiError::InvalidDpopProof(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::Forbidden(String::new()),
            ApiError::ReauthenticationRequired(String::new()),
            ApiError::SessionEnded,
            ApiError::SignInFailed(String::new()),
            ApiError::Revoked(String::new()),
            ApiError::Conflict {
                status: String::new(),
            },
            ApiError::PayloadTooLarge,
            ApiError::BodyTimeout,
            ApiError::UnsupportedMediaType,
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Unavailable(String::new()),
            ApiError::Internal(String::new()),
        ];
        for error in &all {
            match error {
                ApiError::InvalidRequest(_)
                | ApiError::UnknownAction(_)
                | ApiError::UnknownEntityType(_)
                | ApiError::Unauthenticated
                | ApiError::InvalidToken
                | ApiError::InvalidDpopProof(_)
                | ApiError::NotFound(_)
                | ApiError::Forbidden(_)
                | ApiError::ReauthenticationRequired(_)
                | ApiError::SessionEnded
                | ApiError::SignInFailed(_)
                | ApiError::Revoked(_)
                | ApiError::Conflict { .. }
                | ApiError::PayloadTooLarge
                | ApiError::BodyTimeout
                | ApiError::UnsupportedMediaType
                | ApiError::RateLimited { .. }
                | ApiError::Unavailable(_)
                | ApiError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn the_document_lists_the_status_of_every_error() {
        let documented = <ApiError as utoipa::IntoResponses>::responses();
        for error in every_error() {
            let described = format!("{error:?}");
            let status = error.into_response().status();
            assert!(
                documented.contains_key(status.as_str()),
                "{described} answers {status}, which the OpenAPI document does not list"
            );
        }
    }
}
