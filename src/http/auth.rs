//! Signing in to the UI over HTTP (DESIGN §9.3): `GET /auth/login` sends the browser to the
//! identity provider, `GET /auth/callback` brings it back signed in, `POST /auth/logout` signs
//! it out, `GET /auth/methods` tells the UI how people sign in here. The session travels as a
//! cookie (HttpOnly, SameSite=Lax; `__Host-` and Secure on https); a state-changing request it
//! authenticates must come from the UI's own origin (see [`check_same_origin`]).
//!
//! These are browser endpoints, outside the OpenAPI document like the UI itself.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use super::extract::{ClientIp, QueryParams};
use crate::access::AppState;
use crate::access::session;

/// The header a state-changing request without an `Origin` carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
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

/// A cookie's name and attributes: `__Host-` prefixed and Secure when the UI is on https, as
/// `__Host-` requires; plain on http, where a browser would drop a Secure cookie.
#[derive(Debug, Clone, Copy)]
enum Cookie {
    Session,
    Login,
}

impl Cookie {
    fn name(self, state: &AppState) -> &'static str {
        match (self, secure(state)) {
            (Cookie::Session, true) => "__Host-jitgate_session",
            (Cookie::Session, false) => "jitgate_session",
            (Cookie::Login, true) => "__Host-jitgate_login",
            (Cookie::Login, false) => "jitgate_login",
        }
    }

    /// `Set-Cookie` for `value`, kept `max_age` seconds (0: removes it).
    fn set(self, state: &AppState, value: &str, max_age: u64) -> HeaderValue {
        let secure = if secure(state) { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.name(state)
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The value the browser sent, if any.
    fn read<'h>(self, state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.name(state);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }
}

fn secure(state: &AppState) -> bool {
    state.config.ui_origin().starts_with("https://")
}

/// The session cookie of a request, if it has one.
pub fn session_cookie<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    Cookie::Session.read(state, headers)
}

/// Refuses (403) a state-changing request authenticated by the session cookie unless it comes
/// from the UI's own page: its `Origin` is the UI's, or, with no `Origin`, it carries the
/// session's CSRF token. A page elsewhere can make the browser send the cookie, but it can
/// neither forge `Origin` nor read the token.
pub fn check_same_origin(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    session: &str,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let own = state.config.ui_origin();
    let refused = |why: String| {
        tracing::warn!(http.method = %method, "a cross-site request with the session cookie was refused");
        Err(ApiError::Forbidden(why))
    };
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        Some(Ok(origin)) if origin.eq_ignore_ascii_case(&own) => Ok(()),
        Some(origin) => refused(format!(
            "a request signed in with the UI's session must come from the UI ({own}), not from `{}`",
            origin.unwrap_or("?")
        )),
        None => {
            let expected = session::csrf_token(session);
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
                Ok(())
            } else {
                refused(format!(
                    "a request signed in with the UI's session and without an Origin must carry the session's {CSRF_HEADER} header"
                ))
            }
        }
    }
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

/// Counts a sign-in step from the client's address (429 beyond the limit): each starts a
/// stored sign-in or a call to the provider, which no one may ask for without bound.
fn admit_sign_in(state: &AppState, ClientIp(ip): ClientIp) -> Result<(), ApiError> {
    state.admit_sign_in(ip)
}

/// `GET /auth/login?next=…&max_age=…`: off to the identity provider.
async fn login(
    State(state): State<AppState>,
    client: ClientIp,
    QueryParams(params): QueryParams<LoginParams>,
) -> Result<Response, ApiError> {
    admit_sign_in(&state, client)?;
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
    client: ClientIp,
    headers: HeaderMap,
    QueryParams(params): QueryParams<CallbackParams>,
) -> Result<Response, ApiError> {
    admit_sign_in(&state, client)?;
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
    if let Some(earlier) = session_cookie(&state, &headers) {
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
    if let Some(session) = session_cookie(&state, &headers) {
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

/// The CSRF token of the session a request was authenticated with (none for a bearer token):
/// `GET /v1/me` hands it to the UI.
#[derive(Debug, Clone)]
pub struct SessionCsrf(pub String);

/// The session a request carries, if any, for handlers that answer differently to it.
#[derive(Debug)]
pub struct ViaSession(pub Option<SessionCsrf>);

impl FromRequestParts<AppState> for ViaSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(ViaSession(parts.extensions.get::<SessionCsrf>().cloned()))
    }
}
