//! `private_key_jwt` (RFC 7523 §2.2, §3): a client proves who it is with a short JWT it signed
//! with a private key whose public part its API key entry names (`jwks = "file://…"`). The
//! assertion's `jti` is returned so that the caller records it and refuses a replay.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use serde_json::{Map, Value};

use super::jwt::{self, ASYMMETRIC_ALGORITHMS, LEEWAY_SECS, MAX_TOKEN_BYTES, Rejection};
use super::{ApiKey, Authenticator, Caller};

/// `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest an assertion may live: its `jti` is remembered until it expires. An hour is what
/// common client libraries sign for by default (authlib does).
const MAX_LIFETIME_SECS: u64 = 3600;
/// Longest `jti` accepted.
const MAX_JTI_BYTES: usize = 256;

/// A verified client assertion.
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    pub caller: Caller,
    pub jti: String,
    /// Its `exp`: how long its `jti` must be remembered.
    pub expires_at: u64,
}

/// The public keys of a client, from `file://` `url`: a JWK set of public, asymmetric keys.
pub(super) fn read_client_keys(url: &str) -> Result<JwkSet, String> {
    let path = url
        .strip_prefix("file://")
        .ok_or("must be a file:// URL of a JWK set")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    let raw: Value =
        serde_json::from_str(&text).map_err(|e| format!("`{path}` is not JSON: {e}"))?;
    let private = raw
        .get("keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| keys.iter().any(|key| key.get("d").is_some()));
    if private {
        return Err(format!(
            "`{path}` holds a private key; give jitgate the public keys only"
        ));
    }
    let set: JwkSet =
        serde_json::from_value(raw).map_err(|e| format!("`{path}` is not a JWK set: {e}"))?;
    if set.keys.is_empty() {
        return Err(format!("`{path}` holds no key"));
    }
    if (set.keys.iter()).any(|key| matches!(key.algorithm, AlgorithmParameters::OctetKey(_))) {
        return Err(format!(
            "`{path}` holds a shared secret; private_key_jwt takes public keys"
        ));
    }
    Ok(set)
}

impl Authenticator {
    /// Verifies `assertion` at `now`: signed by a key of the client its `iss` names (and
    /// `client_id`, when the client sent one), `iss` and `sub` that client, an `aud` among
    /// `audiences`, unexpired and living at most an hour, and a `jti`.
    pub fn client_assertion(
        &self,
        assertion: &str,
        client_id: Option<&str>,
        audiences: &[String],
        now: u64,
    ) -> Result<ClientAssertion, Rejection> {
        if assertion.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Oversize);
        }
        let issuer = jwt::unverified_issuer(assertion).ok_or(Rejection::Malformed)?;
        if client_id.is_some_and(|id| id != issuer) {
            return Err(Rejection::UnknownIssuer);
        }
        let kid = jsonwebtoken::decode_header(assertion)
            .map_err(|_| Rejection::Malformed)?
            .kid;
        let mut refused = Rejection::UnknownIssuer;
        for client in self.api_keys.iter().filter(|key| key.name == issuer) {
            let keys = client.client_keys.iter().flat_map(|set| &set.keys);
            for key in keys.filter(|key| kid.is_none() || key.common.key_id == kid) {
                match jwt::verify_signature(assertion, key, &ASYMMETRIC_ALGORITHMS) {
                    Ok(payload) => return checked(&payload, client, audiences, now),
                    Err(rejection) => refused = rejection,
                }
            }
            if refused == Rejection::UnknownIssuer {
                refused = Rejection::UnknownKey;
            }
        }
        Err(refused)
    }
}

/// The claims of an assertion whose signature `client`'s key verified.
fn checked(
    payload: &[u8],
    client: &ApiKey,
    audiences: &[String],
    now: u64,
) -> Result<ClientAssertion, Rejection> {
    let bad = Rejection::BadSignatureOrClaims;
    let claims: Map<String, Value> = serde_json::from_slice(payload).map_err(|_| bad)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client.name.as_str()) || text("sub") != Some(client.name.as_str()) {
        return Err(bad);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.iter().any(|a| a == aud)),
        _ => false,
    };
    if !audience_ok {
        return Err(bad);
    }
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or(bad)?;
    if exp.saturating_add(LEEWAY_SECS) < now || exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(bad);
    }
    for name in ["nbf", "iat"] {
        if let Some(at) = claims.get(name)
            && at.as_u64().ok_or(bad)? > now + LEEWAY_SECS
        {
            return Err(Rejection::IssuedInFuture);
        }
    }
    let jti = text("jti")
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES)
        .ok_or(bad)?;
    Ok(ClientAssertion {
        caller: client.caller(),
        jti: jti.to_owned(),
        expires_at: exp,
    })
}
