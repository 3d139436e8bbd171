//! Issued tokens: RFC 9068 access-token JWTs (`typ: at+jwt`, `kid` = RFC 7638 thumbprint)
//! signed by the newest key of the [`KeyRing`], and the JWKS that verifies them.

mod keys;
mod seal;

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::Header;
use jsonwebtoken::jwk::JwkSet;
use serde::Serialize;

use crate::config::SigningAlg;
pub use jitgate_verify::claims::{AccessClaims, Audience, JitClaims};
use jitgate_verify::dpop::Confirmation;
pub(crate) use keys::generate_pem;
pub use keys::{KeyError, KeyRing, SigningKey, thumbprint};
pub use seal::{KeyEncryptionKey, SealError};

/// What a grant becomes a token with.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub subject: String,
    pub client_id: String,
    pub audience: Vec<String>,
    pub scopes: Vec<String>,
    pub lifetime: Duration,
    pub jit: JitClaims,
    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`); `None`: a bearer
    /// token.
    pub bound_to: Option<String>,
}

/// A signed token and what the audit trail keeps of it (never the token itself).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    pub kid: String,
    pub alg: SigningAlg,
    pub expires_at: u64,
    pub scope: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no signing key")]
    NoKey,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The keys a [`TokenIssuer`] signs with and publishes.
#[derive(Debug)]
struct Keys {
    ring: KeyRing,
    /// Retired key → latest expiry of a token it signed (fixed once they no longer sign).
    issued_until: HashMap<String, u64>,
}

/// Mints access tokens for one issuer.
#[derive(Debug)]
pub struct TokenIssuer {
    issuer: String,
    /// Swapped whole when the keys kept in a shared database change (a rotation on another
    /// replica); otherwise fixed for the process.
    keys: arc_swap::ArcSwap<Keys>,
    max_ttl: Duration,
}

impl TokenIssuer {
    pub fn new(
        issuer: String,
        ring: KeyRing,
        max_ttl: Duration,
        issued_until: HashMap<String, u64>,
    ) -> Self {
        Self {
            issuer,
            keys: arc_swap::ArcSwap::from_pointee(Keys { ring, issued_until }),
            max_ttl,
        }
    }

    /// Signs with `ring` from now on, and publishes its keys.
    pub fn replace_keys(&self, ring: KeyRing, issued_until: HashMap<String, u64>) {
        self.keys
            .store(std::sync::Arc::new(Keys { ring, issued_until }));
    }

    /// The kids of the keys held, oldest first.
    pub fn kids(&self) -> Vec<String> {
        let keys = self.keys.load();
        keys.ring.keys().iter().map(|k| k.kid.clone()).collect()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn signing_alg(&self) -> Option<SigningAlg> {
        self.keys.load().ring.active().map(|k| k.alg)
    }

    /// Signs `grant` at `now` (unix seconds).
    pub fn mint(&self, grant: &TokenGrant, now: u64) -> Result<IssuedToken, TokenError> {
        let keys = self.keys.load();
        let key = keys.ring.active().ok_or(TokenError::NoKey)?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.subject.clone(),
            aud: Audience::from_list(grant.audience.clone()),
            exp: now + grant.lifetime.as_secs(),
            iat: now,
            nbf: now,
            jti: new_jti(),
            scope: grant.scopes.join(" "),
            client_id: grant.client_id.clone(),
            jit: grant.jit.clone(),
            cnf: grant.bound_to.clone().map(|jkt| Confirmation { jkt }),
        };
        let token = sign(&claims, "at+jwt", key)?;
        Ok(IssuedToken {
            token,
            jti: claims.jti,
            kid: key.kid.clone(),
            alg: key.alg,
            expires_at: claims.exp,
            scope: claims.scope,
        })
    }

    /// `claims` as a JWS of type `typ` signed by the active key (what is not an access token:
    /// e.g. the audit head).
    pub fn sign_claims<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, TokenError> {
        sign(
            claims,
            typ,
            self.keys.load().ring.active().ok_or(TokenError::NoKey)?,
        )
    }

    /// Public keys whose tokens may still be live at `now`.
    pub fn jwks(&self, now: u64) -> JwkSet {
        let keys = self.keys.load();
        JwkSet {
            keys: keys
                .ring
                .verifying_keys(now, self.max_ttl, &keys.issued_until)
                .into_iter()
                .map(|k| k.public.clone())
                .collect(),
        }
    }
}

/// The JWS compact serialization (RFC 7515 §7.1) of `claims` with header `typ`, signed by
/// `key`: what `jsonwebtoken::encode` produces, with the key parsed once (see [`keys::Signer`]).
fn sign<T: Serialize>(claims: &T, typ: &str, key: &SigningKey) -> Result<String, TokenError> {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = Header::new(keys::algorithm(key.alg));
    header.typ = Some(typ.into());
    header.kid = Some(key.kid.clone());
    let encoding = |e: serde_json::Error| TokenError::Sign(e.to_string());
    let message = format!(
        "{}.{}",
        base64.encode(serde_json::to_vec(&header).map_err(encoding)?),
        base64.encode(serde_json::to_vec(claims).map_err(encoding)?)
    );
    let signature = key
        .signer
        .sign(message.as_bytes())
        .map_err(|e| TokenError::Sign(e.to_string()))?;
    Ok(format!("{message}.{}", base64.encode(signature)))
}

/// A new id (token `jti`, request id…): base64url of the time in milliseconds (48 bits) then
/// 128 random bits (DESIGN §5 asks `jti` for at least 128). The random part keeps ids
/// unguessable; the time in front makes ids made close together share a prefix, so the rows a
/// batch inserts land on the same few pages of each index instead of one random page per row
/// (which was most of what a commit wrote).
pub fn new_jti() -> String {
    use base64::Engine as _;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut bytes = [0u8; 22];
    let (time, random) = bytes.split_at_mut(6);
    time.copy_from_slice(millis.to_be_bytes().get(10..).unwrap_or(&[0; 6]));
    fill_unguessable(random);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Fills `bytes` from the system's randomness, for values that must not be guessed (ids,
/// session cookies, sign-in state). AWS-LC's RAND_bytes aborts the process itself when it
/// cannot get entropy, so this never fails; if it did, a predictable value must not go out
/// either.
pub fn fill_unguessable(bytes: &mut [u8]) {
    if aws_lc_rs::rand::fill(bytes).is_err() {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    use super::*;

    fn grant() -> TokenGrant {
        TokenGrant {
            subject: "alice".into(),
            client_id: "cli".into(),
            audience: vec!["db-proxy".into()],
            scopes: vec!["db:read:orders".into(), "db:list".into()],
            lifetime: Duration::from_secs(600),
            jit: JitClaims {
                principal: "User::\"alice\"".into(),
                request_id: "req-1".into(),
                action: "read".into(),
                resource: "Database::\"orders\"".into(),
                policies: vec!["oncall-db-read".into()],
                policy_version: "abc".into(),
                approvers: vec![],
            },
            bound_to: None,
        }
    }

    #[test]
    fn minted_tokens_verify_against_the_jwks_for_every_algorithm() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            let dir = tempfile::TempDir::new().unwrap();
            let now = jsonwebtoken::get_current_timestamp();
            let ring = KeyRing::open(dir.path(), alg, now).unwrap();
            let issuer = TokenIssuer::new(
                "https://jit.example".into(),
                ring,
                Duration::from_secs(3600),
                HashMap::new(),
            );
            let issued = issuer.mint(&grant(), now).unwrap();
            let header = decode_header(&issued.token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(issued.kid.as_str()));
            let jwks = issuer.jwks(now);
            let jwk = jwks.find(&issued.kid).unwrap();
            let mut validation = Validation::new(keys::algorithm(alg));
            validation.set_audience(&["db-proxy"]);
            validation.set_issuer(&["https://jit.example"]);
            let data = decode::<AccessClaims>(
                &issued.token,
                &DecodingKey::from_jwk(jwk).unwrap(),
                &validation,
            )
            .unwrap();
            assert_eq!(data.claims.sub, "alice");
            assert_eq!(data.claims.scope, "db:read:orders db:list");
            assert_eq!(data.claims.exp, now + 600);
            assert_eq!(data.claims.jti, issued.jti);
            assert_eq!(data.claims.aud, Audience::One("db-proxy".into()));
            assert_eq!(data.claims.jit.policies, ["oncall-db-read"]);
        }
    }

    #[test]
    fn audit_heads_verify_only_as_heads_and_only_with_the_issuers_keys() {
        use crate::audit::{HEAD_TYP, HeadClaims, HeadError, check_head};
        let dir = tempfile::TempDir::new().unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let issuer = TokenIssuer::new(
            "https://jit.example".into(),
            KeyRing::open(&dir.path().join("a"), SigningAlg::Es256, now).unwrap(),
            Duration::from_secs(3600),
            HashMap::new(),
        );
        let claims = HeadClaims {
            iss: "https://jit.example".into(),
            iat: now,
            seq: 42,
            hash: "ab".repeat(32),
        };
        let head = issuer.sign_claims(HEAD_TYP, &claims).unwrap();
        assert_eq!(check_head(&head, &issuer.jwks(now)).unwrap(), claims);

        let token = issuer.mint(&grant(), now).unwrap().token;
        assert!(matches!(
            check_head(&token, &issuer.jwks(now)),
            Err(HeadError::Invalid(_))
        ));
        let other = KeyRing::open(&dir.path().join("b"), SigningAlg::Es256, now).unwrap();
        let others = JwkSet {
            keys: other.keys().iter().map(|k| k.public.clone()).collect(),
        };
        assert!(matches!(
            check_head(&head, &others),
            Err(HeadError::UnknownKey(_))
        ));
    }

    #[test]
    fn jtis_are_unique_long_and_start_with_the_time() {
        use base64::Engine as _;
        let decode = |id: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(id)
                .unwrap()
        };
        let before = jsonwebtoken::get_current_timestamp() * 1000;
        let (a, b) = (new_jti(), new_jti());
        assert_eq!(a.len(), 30);
        assert_ne!(a, b);
        let (a, b) = (decode(&a), decode(&b));
        let millis = |bytes: &[u8]| {
            bytes[..6]
                .iter()
                .fold(0u64, |n, byte| (n << 8) | u64::from(*byte))
        };
        assert!((before..before + 2_000).contains(&millis(&a)));
        assert!(millis(&b) >= millis(&a));
        // 128 random bits.
        assert_eq!(a[6..].len(), 16);
        assert_ne!(a[6..], b[6..]);
    }
}
