//! Extractors: who is calling, from where, and a JSON body held to jitgate's limits.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::identity::{AuthError, Caller};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated caller.
#[derive(Debug)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.auth.authenticate(authorization, state.now()).await {
            Ok(caller) => Ok(Authenticated(caller)),
            Err(AuthError::Missing) => Err(ApiError::Unauthenticated),
            Err(AuthError::Invalid(reason)) => {
                tracing::info!(auth.rejected = reason.as_str(), "identity token refused");
                Err(ApiError::InvalidToken)
            }
        }
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the nearest
/// untrusted address in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::Internal("no peer address".into()))?;
        let proxies = &state.config.trusted_proxies;
        let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return Ok(ClientIp(peer));
        }
        let forwarded: Vec<IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map_while(|part| part.trim().parse::<IpAddr>().ok())
            .collect();
        // Walk from the nearest hop outwards; the first address not ours is the client.
        let client = forwarded
            .iter()
            .rev()
            .find(|ip| !trusted(ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer);
        Ok(ClientIp(client))
    }
}

/// A JSON body: `Content-Type: application/json` (415 otherwise), at most 64 KiB (413), and
/// well-formed with no unknown fields (400 naming the problem).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, _state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
    }
}
