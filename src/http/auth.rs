//! Signing in to the UI over HTTP (DESIGN §9.3): `GET /auth/login` sends the browser to the
//! identity provider, `GET /auth/callback` brings it back signed in, `POST /auth/logout` signs
//! it out, `GET /auth/methods` tells the UI how people sign in here. The session travels as a
//! cookie (see `cookie`).
//!
//! These are browser endpoints, outside the OpenAPI document like the UI itself.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::cookie::{Cookie, check_same_origin};
use super::error::ApiError;
use super::extract::{ClientIp, QueryParams};
use crate::access::AppState;
use crate::access::session;

/// How long the browser keeps the state of a sign-in under way.
const LOGIN_COOKIE_SECS: u64 = 600;

/// The routes under `/auth/`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route(session::CALLBACK_PATH, get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/methods", get(methods))
}

/// `GET /auth/login` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginParams {
    /// Where to go once signed in: a path of this origin.
    next: Option<String>,
    /// Sign in again if the provider's sign-in is older than this many seconds.
    max_age: Option<u64>,
}

/// `GET /auth/login?next=…&max_age=…`: off to the identity provider.
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    QueryParams(params): QueryParams<LoginParams>,
) -> Result<Response, ApiError> {
    state.admit_sign_in(ip)?;
    let start = session::begin(&state, params.next.as_deref(), params.max_age).await?;
    let location = HeaderValue::from_str(&start.authorization_url).map_err(|_| {
        ApiError::Unavailable("the provider's authorization URL is not a header".into())
    })?;
    let cookie = Cookie::Login.set(&state, &start.state, LOGIN_COOKIE_SECS);
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
    )
        .into_response())
}

/// What the identity provider sends the browser back with (RFC 6749 §4.1.2, §4.1.2.1).
#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: the provider's answer; signed in, and on to where the sign-in started.
async fn callback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    QueryParams(params): QueryParams<CallbackParams>,
) -> Result<Response, ApiError> {
    state.admit_sign_in(ip)?;
    if let Some(error) = params.error {
        let description = params.error_description.unwrap_or_default();
        return Err(ApiError::SignInFailed(format!(
            "the identity provider answered `{error}` {description}"
        )));
    }
    let (Some(code), Some(returned_state)) = (params.code, params.state) else {
        return Err(ApiError::SignInFailed(
            "the identity provider sent no code and state".into(),
        ));
    };
    let kept = Cookie::Login.read(&state, &headers);
    let signed_in = session::finish(&state, &returned_state, kept, &code).await?;
    // A browser signing in again leaves no earlier session of its behind.
    if let Some(earlier) = Cookie::Session.read(&state, &headers) {
        session::end(&state, earlier).await?;
    }
    let max = state.config.ui.session_max.as_secs();
    let location = HeaderValue::from_str(&signed_in.next)
        .unwrap_or_else(|_| HeaderValue::from_static(session::DEFAULT_NEXT));
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        Cookie::Session.set(&state, &signed_in.session, max),
    );
    cookies.append(header::SET_COOKIE, Cookie::Login.set(&state, "", 0));
    cookies.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /auth/logout`: ends the session (from the UI's own page only) and forgets the cookie.
async fn logout(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(session) = Cookie::Session.read(&state, &headers) {
        check_same_origin(&state, &method, &headers, session)?;
        session::end(&state, session).await?;
    }
    let forget = Cookie::Session.set(&state, "", 0);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, forget)]).into_response())
}

/// How people sign in to the UI here.
#[derive(Debug, Serialize)]
struct Methods {
    /// `GET /auth/login` signs people in with the identity provider.
    sign_in: bool,
    /// The UI offers to paste a token: only while the dev issuer is on.
    paste_token: bool,
}

/// `GET /auth/methods`.
async fn methods(State(state): State<AppState>) -> Json<Methods> {
    Json(Methods {
        sign_in: state.auth.sign_in().is_some(),
        paste_token: state.auth.dev_enabled(),
    })
}
