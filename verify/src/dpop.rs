//! DPoP (RFC 9449): the proof a client sends to show it holds the key a token is bound to.
//! The server checks a proof before it binds a token to the proof's key (`cnf.jkt`); a
//! resource server checks one on every request with a bound token, and its `ath` too.

use base64::Engine as _;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jwt::{ASYMMETRIC_ALGORITHMS, MAX_TOKEN_BYTES, verify_signature};

/// The `typ` of a DPoP proof.
pub const PROOF_TYPE: &str = "dpop+jwt";
/// How far a proof's `iat` may be from now, either way.
pub const PROOF_WINDOW_SECS: u64 = 60;
/// Longest `jti` accepted.
const MAX_JTI_BYTES: usize = 256;

/// A token's confirmation claim (RFC 7800 §3.1, RFC 9449 §6): the thumbprint of the key it is
/// bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Confirmation {
    pub jkt: String,
}

/// What a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method (`POST`).
    pub method: &'a str,
    /// The request's URL, without query or fragment.
    pub url: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// The access token the request carries (a resource server's check): the proof's `ath`
    /// must be its hash.
    pub access_token: Option<&'a str>,
}

/// A checked proof: the thumbprint of its key, and its `jti` and `iat` (a replay cache keeps
/// the `jti` until `iat` is out of the window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
    pub jti: String,
    pub iat: u64,
}

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the DPoP proof is not a compact JWS with a JSON header and claims")]
    Malformed,
    #[error("the DPoP proof's typ is not dpop+jwt")]
    Type,
    #[error("the DPoP proof's alg is not an asymmetric algorithm jitgate accepts")]
    Algorithm,
    #[error("the DPoP proof's jwk is missing, private, symmetric or not a key")]
    Key,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    #[error("the DPoP proof's htm is not this request's method")]
    Method,
    #[error("the DPoP proof's htu is not this request's URL")]
    Url,
    #[error("the DPoP proof's iat is more than 60 s from now")]
    Time,
    #[error("the DPoP proof has no usable jti")]
    Jti,
    #[error("the DPoP proof's ath is not the hash of the access token")]
    AccessTokenHash,
}

/// RFC 7638 SHA-256 thumbprint. jsonwebtoken computes it for EC and RSA keys but not for OKP
/// (Ed25519) ones, whose required members are `crv`, `kty`, `x`.
pub fn thumbprint(jwk: &Jwk) -> Result<String, String> {
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(okp) => {
            let crv = serde_json::to_string(&okp.curve).map_err(|e| e.to_string())?;
            let canonical = format!(r#"{{"crv":{crv},"kty":"OKP","x":"{}"}}"#, okp.x);
            Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(canonical.as_bytes())))
        }
        _ => jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string()),
    }
}

/// The `ath` of `access_token`: base64url of its SHA-256.
pub fn access_token_hash(access_token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Checks `proof` against `expected` (RFC 9449 §4.3), all but the replay: the caller keeps
/// the returned `jti` and refuses it a second time.
pub fn check_proof(proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    if proof.len() > MAX_TOKEN_BYTES {
        return Err(ProofError::Malformed);
    }
    let header = proof.split('.').next().ok_or(ProofError::Malformed)?;
    let header: Map<String, Value> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(ProofError::Malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some(PROOF_TYPE) {
        return Err(ProofError::Type);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|alg| alg.parse::<Algorithm>().ok())
        .filter(|alg| ASYMMETRIC_ALGORITHMS.contains(alg))
        .ok_or(ProofError::Algorithm)?;
    let jwk = header.get("jwk").ok_or(ProofError::Key)?;
    if jwk.get("d").is_some() || jwk.get("k").is_some() {
        return Err(ProofError::Key);
    }
    let jwk: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| ProofError::Key)?;
    let payload = verify_signature(proof, &jwk, &[alg]).map_err(|_| ProofError::Signature)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| ProofError::Malformed)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(expected.method) {
        return Err(ProofError::Method);
    }
    if text("htu").map(without_query) != Some(without_query(expected.url)) {
        return Err(ProofError::Url);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(ProofError::Time)?;
    if iat.abs_diff(expected.now) > PROOF_WINDOW_SECS {
        return Err(ProofError::Time);
    }
    let jti = text("jti")
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES)
        .ok_or(ProofError::Jti)?;
    if let Some(token) = expected.access_token
        && text("ath") != Some(access_token_hash(token).as_str())
    {
        return Err(ProofError::AccessTokenHash);
    }
    let jkt = thumbprint(&jwk).map_err(|_| ProofError::Key)?;
    Ok(Proof {
        jkt,
        jti: jti.to_owned(),
        iat,
    })
}

/// `url` without its query and fragment (RFC 9449 §4.2: `htu` has neither).
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
