//! Verifying jitgate's access tokens, as a resource server does: signature against the
//! published JWKS, `typ: at+jwt`, the issuer, the audience, `exp` and `nbf` with 5 s leeway.
//!
//! [`Verifier`] checks against a fixed key set (`jitgate token verify`, the server's own
//! introspection). [`ResourceVerifier`] is what a Rust service embeds: it keeps the JWKS,
//! replaces it every few minutes (so a key withdrawn from the JWKS stops verifying) and for an
//! unknown `kid` (rate-limited), refuses every token once it could not for too long, checks
//! scopes, and keeps a deny-list from the server's revocation feed. `examples/protect_route.rs`
//! guards an axum route with it.
//!
//! A crate of its own so that a resource server compiles this and not the jitgate server;
//! [`claims`] and [`jwt`] (the strict JWT checks) are shared with the server, which re-exports
//! this crate as `jitgate::verify`.

pub mod claims;
pub mod dpop;
mod fetch;
pub mod jwt;
mod resource;

pub use claims::{AccessClaims, Audience, JitClaims};
pub use resource::{Clock, ResourceConfig, ResourceVerifier};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::fetch::Http;

use crate::jwt::{Expectations, LEEWAY_SECS};

const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    /// Which check failed: `signature`, `iss`, `aud`, `expired`, `not_yet_valid`,
    /// `issued_in_the_future`, `wrong_typ`, `missing_claim`, `malformed`, …
    #[error("the token is not valid: {0} ({explained})", explained = explain_check(.0))]
    Invalid(&'static str),
    /// Signed with a key the JWKS does not hold (yet).
    #[error("the token is not valid: unknown_kid")]
    UnknownKey,
    #[error("the token is revoked")]
    Revoked,
    /// The revocation feed has not been read for too long to trust any token.
    #[error("the revocation feed is stale: refusing tokens until it is read again")]
    StaleRevocations,
    /// The JWKS has not been read for too long to trust the keys it held (one may have been
    /// withdrawn since).
    #[error("the signing keys are stale: refusing tokens until the JWKS is read again")]
    StaleKeys,
    #[error("the token lacks scope {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
    /// A DPoP-bound token presented as a bearer token (RFC 9449 §7.1).
    #[error("the token is DPoP-bound: present it as `Authorization: DPoP` with a DPoP proof")]
    DpopRequired,
    /// A bearer token presented with the DPoP scheme.
    #[error("the token is not DPoP-bound: present it as `Authorization: Bearer`")]
    NotDpopBound,
    #[error("{0}")]
    InvalidDpopProof(#[from] dpop::ProofError),
    #[error("the DPoP proof is signed by another key than the token is bound to")]
    DpopKeyMismatch,
    #[error("the DPoP proof was used before")]
    DpopReplayed,
}

/// How a request presented its access token.
#[derive(Debug, Clone, Copy)]
pub enum Presentation<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: DPoP <token>`, with the request's `DPoP` proof header, method and URL.
    Dpop {
        proof: &'a str,
        method: &'a str,
        url: &'a str,
    },
}

/// Checks that `token` (with its verified `claims`) was presented as its binding requires
/// (RFC 9449 §7): a DPoP-bound token only with a proof, for this request, by the key it is
/// bound to and carrying the token's hash (`ath`); a bearer token only as Bearer. Returns the
/// proof, whose `jti` the caller must not accept twice.
pub fn check_presentation(
    token: &str,
    claims: &AccessClaims,
    presentation: Presentation<'_>,
    now: u64,
) -> Result<Option<dpop::Proof>, VerifyError> {
    match (&claims.cnf, presentation) {
        (None, Presentation::Bearer) => Ok(None),
        (None, Presentation::Dpop { .. }) => Err(VerifyError::NotDpopBound),
        (Some(_), Presentation::Bearer) => Err(VerifyError::DpopRequired),
        (Some(bound), Presentation::Dpop { proof, method, url }) => {
            let expected = dpop::Expected {
                method,
                url,
                now,
                access_token: Some(token),
            };
            let proof = dpop::check_proof(proof, &expected)?;
            if proof.jkt != bound.jkt {
                return Err(VerifyError::DpopKeyMismatch);
            }
            Ok(Some(proof))
        }
    }
}

/// Fails with the scopes in `required` that `claims` does not carry.
pub fn require_scopes(claims: &AccessClaims, required: &[&str]) -> Result<(), VerifyError> {
    let granted: Vec<&str> = claims.scope.split(' ').collect();
    let missing: Vec<String> = required
        .iter()
        .filter(|scope| !granted.contains(scope))
        .map(|scope| (*scope).to_owned())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::InsufficientScope(missing))
    }
}

/// A check's name in words.
fn explain_check(check: &str) -> &'static str {
    match check {
        "signature" => {
            "its signature does not verify with the key its kid names: forged or altered"
        }
        "iss" => "another issuer made it",
        "aud" => "it is for another audience",
        "expired" => "its exp has passed",
        "not_yet_valid" => "its nbf is still to come",
        "issued_in_the_future" | "iat_in_future" => "its iat is in the future",
        "wrong_typ" => "it is not an access token (typ at+jwt)",
        "missing_claim" => "a required claim (exp, iss, sub) is missing",
        "alg_not_allowed" => "its alg is not one jitgate signs with",
        "unusable_key" => "the JWKS key its kid names cannot verify",
        "no_kid" => "its header names no kid",
        "crit_header" => "its header has a crit extension jitgate does not understand",
        "oversize" => "it is larger than 8 KiB",
        _ => "it is not a well-formed JWT",
    }
}

/// Which check a token failed, by what `jsonwebtoken` found: the signature first, then each
/// claim (a verifier's operator needs to tell a wrong audience from a forgery).
fn failed_check(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::InvalidIssuer => "iss",
        ErrorKind::InvalidAudience => "aud",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::MissingRequiredClaim(_) => "missing_claim",
        _ => "malformed",
    }
}

/// The keys and issuer to verify against.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// `None` skips the issuer check (only when the keys are known to be jitgate's).
    pub issuer: Option<String>,
    pub jwks: JwkSet,
}

impl Verifier {
    /// Reads the issuer and JWKS a jitgate server publishes (RFC 8414 metadata).
    pub async fn from_server(base: &str) -> Result<Self, VerifyError> {
        let (verifier, _) = Self::discover(&Http::new()?, base).await?;
        Ok(verifier)
    }

    /// The verifier for the server at `base`, and where its JWKS is.
    async fn discover(http: &Http, base: &str) -> Result<(Self, String), VerifyError> {
        let base = base.trim_end_matches('/');
        let metadata: Value = http
            .get_json(
                &format!("{base}/.well-known/oauth-authorization-server"),
                None,
            )
            .await?;
        let issuer = metadata
            .get("issuer")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{base}/.well-known/jwks.json"), str::to_owned);
        let jwks = http.get_json(&jwks_uri, None).await?;
        Ok((Self { issuer, jwks }, jwks_uri))
    }

    /// Reads a JWKS from `url`; the issuer is not checked unless set afterwards.
    pub async fn from_jwks_url(url: &str) -> Result<Self, VerifyError> {
        let jwks = Http::new()?.get_json(url, None).await?;
        Ok(Self { issuer: None, jwks })
    }

    /// Verifies `token` at `now` (unix seconds), for `audience` when given.
    pub fn verify(
        &self,
        token: &str,
        audience: Option<&str>,
        now: u64,
    ) -> Result<AccessClaims, VerifyError> {
        let expected = Expectations {
            issuer: self.issuer.as_deref().unwrap_or_default(),
            audience: audience.unwrap_or_default(),
            algorithms: &ALGORITHMS,
            typ: Some("at+jwt"),
        };
        let header = crate::jwt::check_header(token, &expected)
            .map_err(|r| VerifyError::Invalid(r.as_str()))?;
        let jwk = self.jwks.find(&header.kid).ok_or(VerifyError::UnknownKey)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| VerifyError::Invalid("unusable_key"))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| VerifyError::Invalid(failed_check(e.kind())))?
            .claims;
        if claims.exp.saturating_add(LEEWAY_SECS) < now {
            return Err(VerifyError::Invalid("expired"));
        }
        if claims.nbf > now + LEEWAY_SECS {
            return Err(VerifyError::Invalid("not_yet_valid"));
        }
        // jitgate never issues ahead of its clock: a later `iat` is a forgery or a broken clock.
        if claims.iat > now + LEEWAY_SECS {
            return Err(VerifyError::Invalid("issued_in_the_future"));
        }
        Ok(claims)
    }
}
