//! What an OAuth client sends: its parameters as a form (RFC 6749 §3.2), and who it is
//! (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523),
//! or a bearer token as on the rest of the API. A client is a service API key: `client_id` is
//! the key's `name`, the secret is the key, the assertion keys are its `jwks`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use base64::Engine as _;

use super::error::{BASIC_CHALLENGE, BEARER_CHALLENGE, OAuthError};
use crate::access::AppState;
use crate::http::extract::{is_form, read_body};
use crate::identity::{ASSERTION_TYPE, AuthError, Caller};
use crate::store::{StoreError, Write};

/// The kind under which assertion `jti`s are remembered ([`Write::UseOnce`]).
const USED_ASSERTION: &str = "client assertion";

/// The parameters of an OAuth request, each at most once.
#[derive(Debug)]
pub struct OAuthForm(pub HashMap<String, String>);

impl OAuthForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is required")))
    }
}

impl FromRequest<AppState> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request<Body>, state: &AppState) -> Result<Self, OAuthError> {
        if !is_form(request.headers()) {
            return Err(OAuthError::invalid_request(
                "send the parameters as application/x-www-form-urlencoded",
            ));
        }
        let bytes = read_body(request, state).await?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| OAuthError::invalid_request(format!("invalid form body: {e}")))?;
        let mut form = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if form.contains_key(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "`{name}` is sent more than once"
                )));
            }
            form.insert(name, value);
        }
        Ok(OAuthForm(form))
    }
}

/// Who the client is, if it authenticated; `invalid_client` if it tried and failed, or
/// `invalid_request` if it used more than one method (RFC 6749 §2.3). `endpoint` is the path
/// called, one of the audiences a client assertion may name.
pub async fn client(
    state: &AppState,
    headers: &HeaderMap,
    form: &OAuthForm,
    endpoint: &str,
) -> Result<Option<Caller>, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().trim());
    let scheme = authorization.map(|v| v.split_once(' ').map_or(v, |(scheme, _)| scheme));
    let basic = scheme.is_some_and(|s| s.eq_ignore_ascii_case("basic"));
    let post = form.get("client_secret").is_some();
    let assertion =
        form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some();
    let methods = usize::from(authorization.is_some()) + usize::from(post) + usize::from(assertion);
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use one client authentication method (RFC 6749 §2.3)",
        ));
    }
    if assertion {
        return with_assertion(state, form, endpoint).await.map(Some);
    }
    if basic {
        let (client_id, secret) = authorization.and_then(basic_credentials).ok_or_else(|| {
            OAuthError::invalid_client("malformed HTTP Basic credentials", BASIC_CHALLENGE)
        })?;
        if form.get("client_id").is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_request(
                "`client_id` differs from the HTTP Basic user",
            ));
        }
        return with_secret(state, &client_id, &secret).map(Some);
    }
    if post {
        let client_id = form.require("client_id")?;
        let secret = form.require("client_secret")?;
        return with_secret(state, client_id, secret).map(Some);
    }
    if authorization.is_none() {
        return Ok(None);
    }
    match state.auth.authenticate(authorization, state.now()).await {
        Ok(caller) => Ok(Some(caller)),
        Err(AuthError::Missing) => Err(OAuthError::invalid_client(
            "the Authorization header is neither Basic nor Bearer",
            BASIC_CHALLENGE,
        )),
        Err(AuthError::Invalid(reason)) => {
            tracing::info!(
                auth.rejected = reason.as_str(),
                "client bearer token refused"
            );
            Err(OAuthError::invalid_client(
                "the bearer token is not valid",
                BEARER_CHALLENGE,
            ))
        }
    }
}

/// The client whose `private_key_jwt` assertion the form carries, its `jti` recorded so that
/// the assertion is refused if it comes again (on any replica).
async fn with_assertion(
    state: &AppState,
    form: &OAuthForm,
    endpoint: &str,
) -> Result<Caller, OAuthError> {
    let kind = form.require("client_assertion_type")?;
    if kind != ASSERTION_TYPE {
        return Err(OAuthError::invalid_request(format!(
            "client_assertion_type must be {ASSERTION_TYPE}"
        )));
    }
    let assertion = form.require("client_assertion")?;
    let issuer = state.tokens.issuer().trim_end_matches('/');
    let audiences = [
        issuer.to_owned(),
        format!("{issuer}/oauth2/token"),
        format!("{issuer}{endpoint}"),
    ];
    let now = state.now();
    let verified = state
        .auth
        .client_assertion(assertion, form.get("client_id"), &audiences, now)
        .map_err(|reason| {
            tracing::info!(auth.rejected = reason.as_str(), "client assertion refused");
            OAuthError::invalid_client("the client assertion is not valid", BASIC_CHALLENGE)
        })?;
    let remember = Write::UseOnce {
        kind: USED_ASSERTION.to_owned(),
        id: format!("{}:{}", verified.caller.client_id, verified.jti),
        expires_at: crate::clock::stored_secs(
            verified.expires_at + crate::identity::jwt::LEEWAY_SECS,
        ),
    };
    match state.store.write(vec![remember]).await {
        Ok(()) => Ok(verified.caller),
        Err(StoreError::Conflict(_)) => {
            tracing::info!(oauth.client_id = %verified.caller.client_id, "client assertion replayed");
            Err(OAuthError::invalid_client(
                "the client assertion was used before",
                BASIC_CHALLENGE,
            ))
        }
        Err(other) => Err(crate::access::ApiError::from(other).into()),
    }
}

/// The service API key `client_id` with `secret`, or `invalid_client`.
fn with_secret(state: &AppState, client_id: &str, secret: &str) -> Result<Caller, OAuthError> {
    state.auth.client_secret(client_id, secret).ok_or_else(|| {
        tracing::info!(oauth.client_id = client_id, "client secret refused");
        OAuthError::invalid_client("unknown client or wrong secret", BASIC_CHALLENGE)
    })
}

/// `client_id` and secret of `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749
/// §2.3.1 form-encodes both before joining them).
fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (_, encoded) = authorization.split_once(' ')?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |part: &str| -> Option<String> {
        let spaced = part.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .ok()?;
        Some(decoded.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

#[cfg(test)]
mod tests {
    use super::basic_credentials;

    fn basic(text: &str) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(
            basic_credentials(&basic("deployer:jg_abc")),
            Some(("deployer".into(), "jg_abc".into()))
        );
        assert_eq!(
            basic_credentials(&basic("my%20client:a%3Ab+c%26d")),
            Some(("my client".into(), "a:b c&d".into()))
        );
        assert_eq!(
            basic_credentials(&basic("id:with:colons")),
            Some(("id".into(), "with:colons".into()))
        );
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials(&basic("no-colon")), None);
    }
}
