//! The OAuth 2.0 surface (DESIGN §9.2): `POST /oauth2/token` (RFC 8693 token exchange,
//! client credentials, and polling an escalated request as OpenID CIBA does), and RFC 7662
//! introspection and RFC 7009 revocation for authenticated clients. Each hands the access
//! request to the same core as `POST /v1/access-requests`: the same decision, audit and token.

mod client;
mod error;
mod grant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::extract::{ClientIp, DpopKey, dpop_key};
use crate::access::answer::{Introspection, IssuedAnswer};
use crate::access::ask::{self, AccessRequest, Asked};
use crate::access::poll::{POLL_INTERVAL_SECS, Polled, poll};
use crate::access::{AppState, revocation};
use crate::identity::{API_KEY_PREFIX, Caller};
use client::{OAuthForm, client};
use error::BASIC_CHALLENGE;
pub use error::{ErrorAnswer as OAuthErrorAnswer, OAuthError};
use grant::{GrantedAccess, JITGATE_ACCESS, requested_access};

/// Where the token endpoint is served (and what a DPoP proof's `htu` names).
const TOKEN_PATH: &str = "/oauth2/token";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The grant a client polls an escalated request with (OpenID CIBA Core §10.1).
pub const CIBA: &str = "urn:openid:params:grant-type:ciba";
/// The `subject_token_type`s of an identity token (RFC 8693 §3).
pub const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// What a token exchange issues (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The client authentication methods of every OAuth endpoint (RFC 8414 names).
pub const CLIENT_AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];
/// The grants `POST /oauth2/token` takes.
pub const GRANT_TYPES: [&str; 3] = [TOKEN_EXCHANGE, CLIENT_CREDENTIALS, CIBA];
pub use grant::JITGATE_ACCESS as AUTHORIZATION_DETAILS_TYPE;

/// The token answer (RFC 6749 §5.1, RFC 8693 §2.2.1, RFC 9396 §7).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenAnswer {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
    token_type: &'static str,
    expires_in: u64,
    scope: String,
    authorization_details: [GrantedAccess; 1],
    jitgate_request_id: String,
}

impl TokenAnswer {
    fn new(
        issued: IssuedAnswer,
        action: String,
        resource: String,
        issued_token_type: Option<&'static str>,
    ) -> Self {
        let scopes = issued.scope.split_whitespace().map(str::to_owned).collect();
        Self {
            access_token: issued.access_token,
            issued_token_type,
            token_type: issued.token_type,
            expires_in: issued.expires_in,
            scope: issued.scope,
            authorization_details: [GrantedAccess {
                kind: JITGATE_ACCESS,
                action,
                resource,
                scopes,
            }],
            jitgate_request_id: issued.request_id,
        }
    }
}

/// `POST /oauth2/token`; with a `DPoP` proof, the token is bound to its key.
#[utoipa::path(
    post,
    path = "/oauth2/token",
    operation_id = "oauth_token",
    tag = "oauth",
    request_body(content = ref("#/components/schemas/TokenRequest"), content_type = "application/x-www-form-urlencoded"),
    params(DpopKey),
    responses(OAuthError, (status = 200, description = "The token (RFC 6749 §5.1, RFC 8693 §2.2.1).", body = TokenAnswer)),
    security((), ("client_secret_basic" = []), ("bearer" = [])),
)]
pub async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Response, OAuthError> {
    let client = client(&state, &headers, &form, TOKEN_PATH).await?;
    let dpop_jkt = dpop_key(&state, &headers, "POST", TOKEN_PATH).await?;
    let answer = match form.require("grant_type")? {
        CLIENT_CREDENTIALS => {
            let caller = client.ok_or_else(|| {
                OAuthError::invalid_client(
                    "client_credentials needs client authentication",
                    BASIC_CHALLENGE,
                )
            })?;
            exchange(&state, (caller, dpop_jkt), ip, &form, None).await?
        }
        TOKEN_EXCHANGE => {
            let mut caller = subject(&state, &form).await?;
            if let Some(client) = client {
                caller.client_id = client.client_id;
            }
            let issued_type = Some(ACCESS_TOKEN_TYPE);
            exchange(&state, (caller, dpop_jkt), ip, &form, issued_type).await?
        }
        CIBA => {
            let caller = match (client, form.get("subject_token")) {
                (_, Some(_)) => subject(&state, &form).await?,
                (Some(client), None) => client,
                (None, None) => {
                    return Err(OAuthError::invalid_client(
                        "authenticate as the client that asked, or send its subject_token",
                        BASIC_CHALLENGE,
                    ));
                }
            };
            let id = form.require("auth_req_id")?;
            polled(&state, (&caller, dpop_jkt), ip, id).await?
        }
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type `{other}` is not supported; use one of {}",
                GRANT_TYPES.join(", ")
            )));
        }
    };
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// The principal of the token exchange's `subject_token`, an identity token (DESIGN §2).
async fn subject(state: &AppState, form: &OAuthForm) -> Result<Caller, OAuthError> {
    let token = form.require("subject_token")?;
    let token_type = form.require("subject_token_type")?;
    if !SUBJECT_TOKEN_TYPES.contains(&token_type) {
        return Err(OAuthError::invalid_request(format!(
            "subject_token_type `{token_type}` is not supported; use one of {}",
            SUBJECT_TOKEN_TYPES.join(", ")
        )));
    }
    for unsupported in ["actor_token", "audience", "resource"] {
        if form.get(unsupported).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "`{unsupported}` is not supported: the policies choose the token's audience"
            )));
        }
    }
    if form
        .get("requested_token_type")
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type must be {ACCESS_TOKEN_TYPE}"
        )));
    }
    if token.starts_with(API_KEY_PREFIX) {
        return Err(OAuthError::invalid_grant(
            "subject_token must be an identity token; a service authenticates as the client (client_credentials)",
        ));
    }
    state
        .auth
        .authenticate(Some(&format!("Bearer {token}")), state.now())
        .await
        .map_err(|_| OAuthError::invalid_grant("the subject_token is not valid"))
}

/// Asks the core for the access `form` names, on behalf of `caller` (the token bound to DPoP
/// key `dpop_jkt`, if any).
async fn exchange(
    state: &AppState,
    (caller, dpop_jkt): (Caller, Option<String>),
    ip: std::net::IpAddr,
    form: &OAuthForm,
    issued_token_type: Option<&'static str>,
) -> Result<TokenAnswer, OAuthError> {
    let pack = state.policies.current();
    let mut request: AccessRequest = requested_access(form, &pack, &caller.principal.id)?;
    request.dpop_jkt = dpop_jkt;
    let action = request.action.clone();
    let resource = request.resource.to_string();
    match ask::ask(state, caller, ip, request).await? {
        Asked::Issued(issued) => Ok(TokenAnswer::new(
            issued,
            action,
            resource,
            issued_token_type,
        )),
        Asked::Pending(pending) => Err(OAuthError::authorization_pending(
            pending.request_id,
            POLL_INTERVAL_SECS,
            state.config.pending_ttl.as_secs(),
        )),
        Asked::Denied(denied) => Err(OAuthError::access_denied(
            described(&denied.error.message, &denied.advice),
            Some(denied.request_id),
        )),
    }
}

/// The token of escalated request `id`, or why not yet.
async fn polled(
    state: &AppState,
    (caller, dpop_jkt): (&Caller, Option<String>),
    ip: std::net::IpAddr,
    id: &str,
) -> Result<TokenAnswer, OAuthError> {
    match poll(state, caller, ip, id, dpop_jkt).await? {
        Polled::Issued {
            answer,
            action,
            resource,
        } => Ok(TokenAnswer::new(answer, action, resource, None)),
        Polled::Pending => Err(OAuthError::authorization_pending(
            id.to_owned(),
            POLL_INTERVAL_SECS,
            0,
        )),
        Polled::SlowDown => Err(OAuthError::slow_down(POLL_INTERVAL_SECS)),
        Polled::Denied => Err(OAuthError::access_denied(
            "the request was denied, cancelled or revoked",
            Some(id.to_owned()),
        )),
        Polled::Expired => Err(OAuthError::expired_token(
            "the request expired before approval, or its approved window ended",
        )),
        Polled::Refused(denied) => Err(OAuthError::access_denied(
            described(&denied.error.message, &denied.advice),
            Some(denied.request_id),
        )),
    }
}

/// `message`, and the policies' advice after it.
fn described(message: &str, advice: &[String]) -> String {
    if advice.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", advice.join("; "))
    }
}

/// A client authenticated by any method, within its operations limit.
async fn admitted(
    state: &AppState,
    headers: &HeaderMap,
    form: &OAuthForm,
    endpoint: &str,
) -> Result<Caller, OAuthError> {
    let caller = client(state, headers, form, endpoint)
        .await?
        .ok_or_else(|| {
            OAuthError::invalid_client("client authentication is required", BASIC_CHALLENGE)
        })?;
    state.admit_operation(&caller.principal.to_string())?;
    Ok(caller)
}

/// `POST /oauth2/introspect` (RFC 7662).
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    operation_id = "oauth_introspect",
    tag = "oauth",
    request_body(content = ref("#/components/schemas/ClientTokenParameter"), content_type = "application/x-www-form-urlencoded"),
    responses(OAuthError, (status = 200, description = "RFC 7662: `active` and, for a live token, its claims.", body = Introspection)),
    security((), ("client_secret_basic" = []), ("bearer" = [])),
)]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<Introspection>, OAuthError> {
    admitted(&state, &headers, &form, "/oauth2/introspect").await?;
    let token = form.require("token")?;
    Ok(Json(revocation::introspect(&state, token).await?))
}

/// `POST /oauth2/revoke` (RFC 7009): 200 whether or not there was a live token to revoke.
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    operation_id = "oauth_revoke",
    tag = "oauth",
    request_body(content = ref("#/components/schemas/ClientTokenParameter"), content_type = "application/x-www-form-urlencoded"),
    responses(OAuthError, (status = 200, description = "Revoked, or there was no live token to revoke (RFC 7009).")),
    security((), ("client_secret_basic" = []), ("bearer" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<StatusCode, OAuthError> {
    let caller = admitted(&state, &headers, &form, "/oauth2/revoke").await?;
    let token = form.require("token")?;
    revocation::revoke_token(&state, &caller, token).await?;
    Ok(StatusCode::OK)
}
