//! The OAuth endpoints' one error type: the body of RFC 6749 §5.2 (`error`,
//! `error_description`), the status each code is answered with, and the `WWW-Authenticate`
//! challenge of a client that failed to authenticate. Errors of the application core become
//! OAuth errors here, and only here.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;

use crate::access::ApiError;

/// An error answer of `/oauth2/*` (boxed: results carry it on every path).
#[derive(Debug)]
pub struct OAuthError(Box<Details>);

#[derive(Debug)]
struct Details {
    status: StatusCode,
    error: &'static str,
    description: String,
    challenge: Option<&'static str>,
    retry_after_secs: Option<u64>,
    /// The access request the answer is about (denied or pending).
    request_id: Option<String>,
    /// `interval` and `expires_in` of an escalated request the client is to poll.
    polling: Option<(u64, u64)>,
}

/// The `WWW-Authenticate` challenge of a client that used HTTP Basic or sent its secret in
/// the body (RFC 6749 §5.2 asks for the scheme the client tried).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"jitgate\"";
/// The challenge of a client whose bearer token was refused (RFC 6750 §3).
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"jitgate\", error=\"invalid_token\"";

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self(Box::new(Details {
            status,
            error,
            description: description.into(),
            challenge: None,
            retry_after_secs: None,
            request_id: None,
            polling: None,
        }))
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_client` with `challenge` in `WWW-Authenticate`.
    pub fn invalid_client(description: impl Into<String>, challenge: &'static str) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        error.0.challenge = Some(challenge);
        error
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// RFC 9396 §5.
    pub fn invalid_authorization_details(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_authorization_details",
            description,
        )
    }

    /// The policies or an approver refused request `request_id`.
    pub fn access_denied(description: impl Into<String>, request_id: Option<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, "access_denied", description);
        error.0.request_id = request_id;
        error
    }

    /// Request `request_id` waits for approvers: poll every `interval` seconds for at most
    /// `expires_in`.
    pub fn authorization_pending(request_id: String, interval: u64, expires_in: u64) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "the request waits for approval; poll with grant_type=urn:openid:params:grant-type:ciba and auth_req_id",
        );
        error.0.request_id = Some(request_id);
        error.0.polling = Some((interval, expires_in));
        error
    }

    pub fn slow_down(interval: u64) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "slow_down",
            format!("poll at most every {interval} seconds"),
        );
        error.0.polling = Some((interval, 0));
        error
    }

    pub fn expired_token(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "expired_token", description)
    }
}

impl From<ApiError> for OAuthError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidRequest(m) => Self::invalid_request(m),
            ApiError::UnknownAction(m) | ApiError::UnknownEntityType(m) => {
                Self::invalid_authorization_details(m)
            }
            ApiError::Unauthenticated => {
                Self::invalid_client("client authentication is required", BASIC_CHALLENGE)
            }
            ApiError::InvalidToken => {
                Self::invalid_client("the bearer token is not valid", BEARER_CHALLENGE)
            }
            ApiError::InvalidDpopProof(m) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", m)
            }
            ApiError::NotFound(m) => Self::invalid_grant(m),
            ApiError::Forbidden(m) | ApiError::ReauthenticationRequired(m) => {
                Self::access_denied(m, None)
            }
            ApiError::SessionEnded => {
                Self::invalid_client("the sign-in has ended", BEARER_CHALLENGE)
            }
            ApiError::SignInFailed(m) => Self::invalid_request(m),
            ApiError::Revoked(reason) => {
                Self::access_denied(format!("access is revoked: {reason}"), None)
            }
            ApiError::Conflict { status } => {
                Self::invalid_grant(format!("the request is {status}"))
            }
            ApiError::PayloadTooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the body is larger than 64 KiB",
            ),
            ApiError::BodyTimeout => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the body did not arrive in time",
            ),
            ApiError::UnsupportedMediaType => {
                Self::invalid_request("send the parameters as application/x-www-form-urlencoded")
            }
            ApiError::RateLimited { retry_after_secs } => {
                let mut error = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    format!("too many requests; retry in {retry_after_secs}s"),
                );
                error.0.retry_after_secs = Some(retry_after_secs);
                error
            }
            ApiError::Unavailable(cause) => {
                tracing::error!(error = %cause, "unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the request could not be recorded; nothing was issued",
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "internal error",
                )
            }
        }
    }
}

/// The body of every OAuth error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub struct ErrorAnswer<'a> {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type`,
    /// `invalid_scope`, `invalid_authorization_details`, `invalid_dpop_proof`, `access_denied`,
    /// `authorization_pending`, `slow_down`, `expired_token`, `temporarily_unavailable`,
    /// `server_error`.
    error: &'static str,
    error_description: &'a str,
    /// The request to poll (`authorization_pending`), as OpenID CIBA names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_req_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitgate_request_id: Option<&'a str>,
}

/// What each status of an [`OAuthError`] means, for the OpenAPI document (a test holds every
/// error's status to this list).
const DOCUMENTED: [(StatusCode, &str); 7] = [
    (
        StatusCode::BAD_REQUEST,
        "RFC 6749 §5.2, RFC 9396, RFC 9449 and OpenID CIBA error codes; `authorization_pending` \
         names the request to poll.",
    ),
    (
        StatusCode::UNAUTHORIZED,
        "`invalid_client`: client authentication failed or is missing.",
    ),
    (
        StatusCode::REQUEST_TIMEOUT,
        "`invalid_request`: the body did not arrive in time.",
    ),
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "`invalid_request`: the body is larger than 64 KiB.",
    ),
    (
        StatusCode::TOO_MANY_REQUESTS,
        "`temporarily_unavailable`: retry after `Retry-After` seconds.",
    ),
    (StatusCode::INTERNAL_SERVER_ERROR, "`server_error`."),
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "`temporarily_unavailable`: the request could not be recorded; nothing was issued.",
    ),
];

impl utoipa::IntoResponses for OAuthError {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        crate::http::error::error_responses(&ErrorAnswer::name(), &DOCUMENTED)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let OAuthError(details) = self;
        let details = *details;
        let pending = details.error == "authorization_pending";
        let body = ErrorAnswer {
            error: details.error,
            error_description: &details.description,
            auth_req_id: details.request_id.as_deref().filter(|_| pending),
            interval: details.polling.map(|(interval, _)| interval),
            expires_in: details
                .polling
                .map(|(_, expires_in)| expires_in)
                .filter(|s| *s > 0),
            jitgate_request_id: details.request_id.as_deref(),
        };
        let mut response = (details.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = details.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = details.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_the_status_of_every_error() {
        let documented = <OAuthError as utoipa::IntoResponses>::responses();
        let own = [
            OAuthError::invalid_request(""),
            OAuthError::invalid_client("", BASIC_CHALLENGE),
            OAuthError::invalid_grant(""),
            OAuthError::unsupported_grant_type(""),
            OAuthError::invalid_scope(""),
            OAuthError::invalid_authorization_details(""),
            OAuthError::access_denied("", None),
            OAuthError::authorization_pending(String::new(), 5, 0),
            OAuthError::slow_down(5),
            OAuthError::expired_token(""),
        ];
        let converted = crate::http::error::tests::every_error()
            .into_iter()
            .map(OAuthError::from);
        for error in own.into_iter().chain(converted) {
            let described = format!("{error:?}");
            let status = error.into_response().status();
            assert!(
                documented.contains_key(status.as_str()),
                "{described} answers {status}, which the OpenAPI document does not list"
            );
        }
    }
}
