//! Strict verification of identity JWTs, wrapped around jsonwebtoken, whose defaults are too
//! lax for an access gate: it allows 60 s of clock leeway, checks neither `nbf`, `iat` nor `typ`,
//! and ignores a `crit` header it does not understand.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 5;
/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

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

/// Verifies signature and claims with `key` and returns the claims.
pub fn verify(
    token: &str,
    header: &RawHeader,
    key: &Jwk,
    expected: &Expectations<'_>,
    now: u64,
) -> Result<Map<String, Value>, Rejection> {
    if matches!(key.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err(Rejection::UnknownKey);
    }
    if let Some(key_alg) = key.common.key_algorithm
        && format!("{key_alg:?}") != format!("{:?}", header.alg)
    {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    let decoding = DecodingKey::from_jwk(key).map_err(|_| Rejection::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    // Times are checked below against `now`, which the caller controls (and tests set).
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
        .map_err(|_| Rejection::BadSignatureOrClaims)?;
    let claims = data.claims;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(Rejection::BadSignatureOrClaims)?;
    if exp.saturating_add(LEEWAY_SECS) < now {
        return Err(Rejection::BadSignatureOrClaims);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_u64().ok_or(Rejection::BadSignatureOrClaims)?;
        if nbf > now + LEEWAY_SECS {
            return Err(Rejection::BadSignatureOrClaims);
        }
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(Rejection::NoIssuedAt)?;
    if iat > now + LEEWAY_SECS {
        return Err(Rejection::IssuedInFuture);
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Rejection::BadSignatureOrClaims);
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
