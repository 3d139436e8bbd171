//! Strict verification of JWTs. jsonwebtoken does the cryptography; its claim validation is too
//! lax for an access gate (60 s of clock leeway, no `nbf`, `iat` or `typ` checks, a `crit` header
//! it does not understand ignored), so the header and the claims are checked here.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 5;
/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The asymmetric JWS algorithms a client may sign with (a client assertion, a DPoP proof).
pub const ASYMMETRIC_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a token was refused. Logged for operators; callers only ever see `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Oversize,
    Malformed,
    CritHeader,
    WrongType,
    AlgorithmNotAllowed,
    NoKeyId,
    UnknownKey,
    BadSignatureOrClaims,
    IssuedInFuture,
    NoIssuedAt,
    UnknownIssuer,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Oversize => "oversize",
            Rejection::Malformed => "malformed",
            Rejection::CritHeader => "crit_header",
            Rejection::WrongType => "wrong_typ",
            Rejection::AlgorithmNotAllowed => "alg_not_allowed",
            Rejection::NoKeyId => "no_kid",
            Rejection::UnknownKey => "unknown_kid",
            Rejection::BadSignatureOrClaims => "signature_or_claims",
            Rejection::IssuedInFuture => "iat_in_future",
            Rejection::NoIssuedAt => "no_iat",
            Rejection::UnknownIssuer => "unknown_issuer",
        }
    }
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub algorithms: &'a [Algorithm],
    /// The `typ` header the token must carry (compared case-insensitively), if any.
    pub typ: Option<&'a str>,
}

/// The parsed header fields jitgate looks at, read from the raw JSON so nothing is dropped.
#[derive(Debug)]
pub struct RawHeader {
    pub alg: Algorithm,
    pub kid: String,
}

/// Checks the header before any key is looked up.
pub fn check_header(token: &str, expected: &Expectations<'_>) -> Result<RawHeader, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Oversize);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Rejection::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| Rejection::Malformed)?;
    // RFC 7515 §4.1.11: a recipient must reject a `crit` it does not understand; jitgate
    // understands no extension.
    if header.contains_key("crit") {
        return Err(Rejection::CritHeader);
    }
    if let Some(typ) = expected.typ {
        let given = header
            .get("typ")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !given.eq_ignore_ascii_case(typ) {
            return Err(Rejection::WrongType);
        }
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|alg| expected.algorithms.contains(alg))
        .ok_or(Rejection::AlgorithmNotAllowed)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(Rejection::NoKeyId)?
        .to_owned();
    Ok(RawHeader { alg, kid })
}

/// Checks a compact JWS's signature with `key`, and the header and key rules that go with it:
/// exactly three base64url parts, no `crit`, an allowed `alg` that matches the key's, a key
/// meant for signatures (`use`, `key_ops`) and not a shared secret. Returns the payload.
pub fn verify_signature(
    token: &str,
    key: &Jwk,
    algorithms: &[Algorithm],
) -> Result<Vec<u8>, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Oversize);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Map<String, Value> = b64
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(Rejection::Malformed)?;
    if header.contains_key("crit") {
        return Err(Rejection::CritHeader);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|alg| algorithms.contains(alg))
        .ok_or(Rejection::AlgorithmNotAllowed)?;
    if matches!(key.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err(Rejection::UnknownKey);
    }
    if let Some(key_alg) = key.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    if key
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
        || key
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err(Rejection::UnknownKey);
    }
    // Strict base64url: padding or stray characters in any part are not the signed bytes.
    let signature_bytes = b64.decode(signature).map_err(|_| Rejection::Malformed)?;
    let payload = b64.decode(payload).map_err(|_| Rejection::Malformed)?;
    if signature_bytes.is_empty() {
        return Err(Rejection::BadSignatureOrClaims);
    }
    let decoding = DecodingKey::from_jwk(key).map_err(|_| Rejection::UnknownKey)?;
    let message_len = token.len() - signature.len() - 1;
    let message = token.get(..message_len).ok_or(Rejection::Malformed)?;
    let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, alg)
        .map_err(|_| Rejection::BadSignatureOrClaims)?;
    if !valid {
        return Err(Rejection::BadSignatureOrClaims);
    }
    Ok(payload)
}

/// Verifies signature and claims with `key` and returns the claims: `iss` and `aud` as
/// expected, a `sub`, `exp` not passed and `nbf` and `iat` not in the future, each within
/// [`LEEWAY_SECS`] of `now`.
pub fn verify(
    token: &str,
    header: &RawHeader,
    key: &Jwk,
    expected: &Expectations<'_>,
    now: u64,
) -> Result<Map<String, Value>, Rejection> {
    let payload = verify_signature(token, key, &[header.alg])?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| Rejection::BadSignatureOrClaims)?;
    let bad = Rejection::BadSignatureOrClaims;
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(bad);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == expected.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(bad);
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad);
    }
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or(bad)?;
    if exp.saturating_add(LEEWAY_SECS) < now {
        return Err(bad);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_u64().ok_or(bad)?;
        if nbf > now + LEEWAY_SECS {
            return Err(bad);
        }
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(Rejection::NoIssuedAt)?;
    if iat > now + LEEWAY_SECS {
        return Err(Rejection::IssuedInFuture);
    }
    Ok(claims)
}

/// The unverified `iss` claim, only to choose which issuer's keys to verify with.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}
