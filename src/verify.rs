//! Verifying jitgate's access tokens, as a resource server does: signature against the
//! published JWKS, `typ: at+jwt`, the issuer, the audience, `exp` and `nbf` with 5 s leeway.
//! `jitgate token verify` uses it; the full verifier for resource servers (caching, revocation
//! feed) builds on it.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::identity::jwt::{self, Expectations, LEEWAY_SECS};
use crate::token::AccessClaims;

const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
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
        let client = client()?;
        let base = base.trim_end_matches('/');
        let metadata: Value = get_json(
            &client,
            &format!("{base}/.well-known/oauth-authorization-server"),
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
        let jwks = get_json(&client, &jwks_uri).await?;
        Ok(Self { issuer, jwks })
    }

    /// Reads a JWKS from `url`; the issuer is not checked unless set afterwards.
    pub async fn from_jwks_url(url: &str) -> Result<Self, VerifyError> {
        let jwks = get_json(&client()?, url).await?;
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
        let header =
            jwt::check_header(token, &expected).map_err(|r| VerifyError::Invalid(r.as_str()))?;
        let jwk = self
            .jwks
            .find(&header.kid)
            .ok_or(VerifyError::Invalid("unknown_kid"))?;
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
            .map_err(|_| VerifyError::Invalid("signature_or_claims"))?
            .claims;
        if claims.exp.saturating_add(LEEWAY_SECS) < now {
            return Err(VerifyError::Invalid("expired"));
        }
        if claims.nbf > now + LEEWAY_SECS {
            return Err(VerifyError::Invalid("not_yet_valid"));
        }
        Ok(claims)
    }
}

fn client() -> Result<reqwest::Client, VerifyError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| VerifyError::Fetch {
            url: String::new(),
            message: e.to_string(),
        })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, VerifyError> {
    let fail = |message: String| VerifyError::Fetch {
        url: url.to_owned(),
        message,
    };
    client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?
        .json()
        .await
        .map_err(|e| fail(e.to_string()))
}
