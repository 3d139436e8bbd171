//! Extractors: who is calling, from where, and a JSON body held to jitgate's limits.

use std::net::{IpAddr, SocketAddr};
use utoipa::PartialSchema as _;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::cookie;
use super::error::ApiError;
use crate::access::AppState;
use crate::identity::{AuthError, Caller};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated caller: by a bearer token (an identity token or an API key), or by the
/// UI's session cookie.
#[derive(Debug)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // A bearer token wins: a page elsewhere cannot make the browser send one.
        if authorization.is_none()
            && let Some(session) = cookie::Cookie::Session.read(state, &parts.headers)
        {
            cookie::check_same_origin(state, &parts.method, &parts.headers, session)?;
            let caller = crate::access::session::caller(state, session).await?;
            let csrf = cookie::SessionCsrf(crate::access::session::csrf_token(session));
            parts.extensions.insert(csrf);
            return Ok(Authenticated(caller));
        }
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

/// The DPoP key a request's `DPoP` header proves (RFC 9449), checked and used up; `None`
/// without the header.
#[derive(Debug)]
pub struct DpopKey(pub Option<String>);

impl FromRequestParts<AppState> for DpopKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        dpop_key(
            state,
            &parts.headers,
            parts.method.as_str(),
            parts.uri.path(),
        )
        .await
        .map(DpopKey)
    }
}

/// The `DPoP` header in the OpenAPI document.
impl utoipa::IntoParams for DpopKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let header = utoipa::openapi::path::ParameterBuilder::new()
            .name("DPoP")
            .parameter_in(utoipa::openapi::path::ParameterIn::Header)
            .required(utoipa::openapi::Required::False)
            .description(Some(
                "A DPoP proof (RFC 9449) for this method and URL: the token is bound to its key",
            ))
            .schema(Some(String::schema()))
            .build();
        vec![header]
    }
}

/// The key the `DPoP` header of a `method` request to `path` proves, if it has one.
pub async fn dpop_key(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    method: &str,
    path: &str,
) -> Result<Option<String>, ApiError> {
    let mut proofs = headers.get_all("dpop").iter();
    let Some(proof) = proofs.next() else {
        return Ok(None);
    };
    if proofs.next().is_some() {
        return Err(ApiError::InvalidDpopProof("send one DPoP header".into()));
    }
    let proof = proof
        .to_str()
        .map_err(|_| ApiError::InvalidDpopProof("the DPoP header is not text".into()))?;
    crate::access::dpop::proven_key(state, proof, method, path)
        .await
        .map(Some)
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
            .map(|ConnectInfo(addr)| addr.ip().to_canonical())
            .ok_or_else(|| ApiError::Internal("no peer address".into()))?;
        let proxies = &state.config.trusted_proxies;
        let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return Ok(ClientIp(peer));
        }
        let hops: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        Ok(ClientIp(client_from_hops(&hops, peer, trusted)))
    }
}

/// Walks `X-Forwarded-For` from the nearest hop outwards: each trusted proxy vouches for the
/// hop before it, and the first address that is not a trusted proxy is the client. Only the
/// right-hand part is trusted (the client writes the left), so an entry that does not parse
/// ends the walk at the last good hop.
fn client_from_hops(hops: &[&str], peer: IpAddr, trusted: impl Fn(&IpAddr) -> bool) -> IpAddr {
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !trusted(&ip) {
            return ip;
        }
    }
    client
}

/// `10.0.0.1`, `10.0.0.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(hops: &[&str]) -> IpAddr {
        let proxies: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        client_from_hops(hops, peer, |ip| proxies.iter().any(|n| n.contains(ip)))
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        assert_eq!(
            client(&["203.0.113.7"]),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client(&["198.51.100.1", "203.0.113.7", "10.0.0.2"]),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client(&["203.0.113.7:4711"]),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client(&["[2001:db8::1]:443"]),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client(&["::ffff:203.0.113.7"]),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_spoofed_left_part_is_never_believed() {
        // The client wrote `10.1.2.3, x`; the proxy appended the real address.
        assert_eq!(
            client(&["10.1.2.3", "x", "203.0.113.9"]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Garbage nearest the proxy: stop at the last good hop, the peer.
        assert_eq!(
            client(&["10.1.2.3", "garbage"]),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        // Only trusted hops: the farthest one we could vouch for.
        assert_eq!(
            client(&["10.0.0.5", "10.0.0.2"]),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client(&[]), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}

/// The body, at most [`MAX_BODY_BYTES`] (413 beyond), within `http.body_read_timeout` (408
/// beyond: a client trickling a body must not hold a connection and a task).
pub(super) async fn read_body(
    request: Request<Body>,
    state: &AppState,
) -> Result<axum::body::Bytes, ApiError> {
    let read = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES);
    tokio::time::timeout(state.config.http.body_read_timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidRequest(format!("cannot read the body: {e}"))
            }
        })
}

/// A JSON body: `Content-Type: application/json` (415 otherwise), at most 64 KiB (413), and
/// well-formed with no unknown fields (400 naming the problem).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
    }
}

/// Like [`JsonBody`], but an empty body is `None`.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() == b"0")
            || (request.headers().get(header::CONTENT_TYPE).is_none()
                && request.headers().get(header::CONTENT_LENGTH).is_none()
                && request.headers().get(header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(OptionalJsonBody(None));
        }
        JsonBody::from_request(request, state)
            .await
            .map(|JsonBody(value)| OptionalJsonBody(Some(value)))
    }
}

/// Whether `headers` say the body is `application/x-www-form-urlencoded`.
pub(super) fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A body as `application/x-www-form-urlencoded` (what OAuth clients send to RFC 7009 and
/// RFC 7662 endpoints) or as JSON, held to the same limits as [`JsonBody`].
#[derive(Debug)]
pub struct FormOrJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        if !is_form(request.headers()) {
            return JsonBody::from_request(request, state)
                .await
                .map(|JsonBody(value)| FormOrJson(value));
        }
        let bytes = read_body(request, state).await?;
        serde_urlencoded::from_bytes(&bytes)
            .map(FormOrJson)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid form body: {e}")))
    }
}

/// A query string read into `T`, refused as a JSON `invalid_request` naming the problem (axum's
/// own `Query` answers in plain text).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryParams(value))
            .map_err(|e| ApiError::InvalidRequest(e.body_text()))
    }
}

/// The path's `{id}`, refused as a JSON `invalid_request` when it is not UTF-8 once decoded
/// (axum's own `Path` answers in plain text).
#[derive(Debug)]
pub struct PathId(pub String);

impl FromRequestParts<AppState> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| PathId(id))
            .map_err(|e| ApiError::InvalidRequest(e.body_text()))
    }
}
