//! The UI's cookies (DESIGN §9.3): the session and the state of a sign-in under way, named and
//! flagged for the UI's origin (HttpOnly, SameSite=Lax; `__Host-` and Secure on https), and the
//! rule that a state-changing request the session cookie authenticates comes from the UI's own
//! origin. Shared by the sign-in routes (`auth`) and the extractor that authenticates requests.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use crate::access::AppState;
use crate::access::session;

/// The header a state-changing request without an `Origin` carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A cookie's name and attributes: `__Host-` prefixed and Secure when the UI is on https, as
/// `__Host-` requires; plain on http, where a browser would drop a Secure cookie.
#[derive(Debug, Clone, Copy)]
pub enum Cookie {
    Session,
    Login,
}

impl Cookie {
    pub fn name(self, state: &AppState) -> &'static str {
        match (self, secure(state)) {
            (Cookie::Session, true) => "__Host-jitgate_session",
            (Cookie::Session, false) => "jitgate_session",
            (Cookie::Login, true) => "__Host-jitgate_login",
            (Cookie::Login, false) => "jitgate_login",
        }
    }

    /// `Set-Cookie` for `value`, kept `max_age` seconds (0: removes it).
    pub fn set(self, state: &AppState, value: &str, max_age: u64) -> HeaderValue {
        let secure = if secure(state) { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.name(state)
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The value the browser sent, if any.
    pub fn read<'h>(self, state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
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
