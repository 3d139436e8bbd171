//! Who is calling (DESIGN §2): a bearer identity token from a trusted issuer or the dev issuer,
//! or a `jg_…` service API key. The request body never sets the principal.
//!
//! Every failure is the same `invalid_token` to the caller; the precise reason is only logged.

pub use jitgate_verify::jwt;
mod assertion;
pub mod sign_in;
pub mod subject;

pub use assertion::{ASSERTION_TYPE, ClientAssertion};

use std::path::Path;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, SigningAlg, TrustedIssuerConfig};
use crate::decision::EntityRef;
use crate::token::{KeyError, KeyRing, new_jti};
use jwt::{Expectations, Rejection};

/// `iss` of dev tokens.
pub const DEV_ISSUER: &str = "jitgate-dev";
/// `aud` of dev tokens.
pub const DEV_AUDIENCE: &str = "jitgate";
/// `typ` of dev tokens, so no other JWT can pass for one.
pub const DEV_TYP: &str = "jitgate-dev+jwt";
/// API keys start with this.
pub const API_KEY_PREFIX: &str = "jg_";
/// Unknown `kid`s make an issuer's JWKS be read again at most this often.
const JWKS_REFRESH_EVERY: Duration = Duration::from_secs(30);
/// A JWKS is read again after this long even when every `kid` is known, so a key the issuer
/// withdrew stops being trusted.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// A JWKS fetch gives up after this long.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// A verified identity token is believed again without verifying its signature for at most
/// this long (and never past its `exp`), so a withdrawn issuer key stops counting soon.
const VERIFIED_FOR_SECS: u64 = 60;
/// Most verified tokens remembered; the memory is cleared when full.
const MAX_VERIFIED: usize = 16_384;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: EntityRef,
    pub groups: Vec<EntityRef>,
    pub mfa: bool,
    /// Authenticated with an API key (a service), not with a person's identity token.
    pub api_key: bool,
    /// Unix seconds the person signed in: the token's `auth_time`, else its `iat`; `None` for
    /// an API key, which authenticates every request afresh.
    pub auth_time: Option<u64>,
    /// The client the caller used: the API key's name, or the token's `azp`/`client_id`.
    pub client_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    Invalid(Rejection),
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("dev issuer key: {0}")]
    DevKey(#[from] KeyError),
    #[error("identity.issuers[{index}]: {message}")]
    Issuer { index: usize, message: String },
    #[error("identity.api_keys[{index}].jwks: {message}")]
    ClientKeys { index: usize, message: String },
    #[error("HTTP client: {0}")]
    Client(String),
}

/// What is wrong with the client key sets `config`'s API keys name (files that cannot be read,
/// or hold private or symmetric keys), each as `identity.api_keys[i].jwks: …`: what `jitgate
/// check --config` reports before a start would fail on it.
pub fn client_key_errors(config: &Config) -> Vec<String> {
    (config.identity.api_keys.iter().enumerate())
        .filter_map(|(index, key)| Some((index, key.jwks.as_deref()?)))
        .filter_map(|(index, url)| {
            let message = assertion::read_client_keys(url).err()?;
            Some(IdentityError::ClientKeys { index, message }.to_string())
        })
        .collect()
}

/// Verifies callers against the configured identities.
#[derive(Debug)]
pub struct Authenticator {
    dev: Option<DevIssuer>,
    issuers: Vec<TrustedIssuer>,
    api_keys: Vec<ApiKey>,
    verified: VerifiedTokens,
    /// The UI's client at the issuer people sign in with, if one has a `client_id`.
    sign_in: Option<sign_in::SignIn>,
}

/// Identity tokens whose signature and claims were checked, by SHA-256 of the token, with the
/// unix second until which they may be believed without checking again. Verifying a signature
/// costs more than the rest of a request; a caller sends the same token many times.
#[derive(Debug, Default)]
struct VerifiedTokens {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Caller, u64)>>,
}

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32], now: u64) -> Option<Caller> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(digest)
            .filter(|(_, until)| now <= *until)
            .map(|(caller, _)| caller.clone())
    }

    fn insert(&self, digest: [u8; 32], caller: Caller, until: u64) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_VERIFIED {
            map.clear();
        }
        map.insert(digest, (caller, until));
    }

    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[derive(Debug)]
struct ApiKey {
    name: String,
    /// `None` for a client that authenticates with `client_keys` alone.
    hash: Option<[u8; 32]>,
    principal: EntityRef,
    groups: Vec<EntityRef>,
    /// The keys its `private_key_jwt` assertions are signed with.
    client_keys: Option<JwkSet>,
}

impl Authenticator {
    /// Builds the authenticator of `config`, creating the dev issuer key when the dev issuer
    /// is enabled and reading every issuer's JWKS.
    pub async fn from_config(config: &Config, now: u64) -> Result<Self, IdentityError> {
        let dev = if config.identity.dev.enabled {
            Some(DevIssuer::open(&config.data_dir, now)?)
        } else {
            None
        };
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| IdentityError::Client(e.to_string()))?;
        for warning in config.overlapping_issuers() {
            tracing::warn!("{warning}");
        }
        let sign_in = (config.sign_in_issuer())
            .and_then(|(index, issuer)| sign_in::SignIn::new(index, issuer, client.clone()));
        let mut issuers = Vec::with_capacity(config.identity.issuers.len());
        for (index, issuer) in config.identity.issuers.iter().enumerate() {
            issuers.push(
                TrustedIssuer::new(issuer.clone(), client.clone())
                    .await
                    .map_err(|message| IdentityError::Issuer { index, message })?,
            );
        }
        let mut api_keys = Vec::with_capacity(config.identity.api_keys.len());
        for (index, key) in config.identity.api_keys.iter().enumerate() {
            let client_keys = match &key.jwks {
                Some(url) => Some(
                    assertion::read_client_keys(url)
                        .map_err(|message| IdentityError::ClientKeys { index, message })?,
                ),
                None => None,
            };
            let hash = key.hash.as_deref().and_then(|hash| {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(hash.strip_prefix("sha256:")?, &mut bytes).ok()?;
                Some(bytes)
            });
            // Validated with the configuration: a key that does not parse is never used.
            let Ok(principal) = key.principal.parse() else {
                continue;
            };
            api_keys.push(ApiKey {
                name: key.name.clone(),
                hash,
                principal,
                groups: key.groups.iter().filter_map(|g| g.parse().ok()).collect(),
                client_keys,
            });
        }
        Ok(Self {
            dev,
            issuers,
            api_keys,
            verified: VerifiedTokens::default(),
            sign_in,
        })
    }

    /// The UI's sign-in client, when an issuer has a `client_id`.
    pub fn sign_in(&self) -> Option<&sign_in::SignIn> {
        self.sign_in.as_ref()
    }

    /// The person an id_token of the sign-in issuer names, once it is checked like that
    /// issuer's identity tokens, for the UI's client, with this sign-in's `nonce`, and signed
    /// in within the `max_age` asked.
    pub async fn signed_in(
        &self,
        id_token: &str,
        nonce: &str,
        max_age: u64,
        now: u64,
    ) -> Result<Caller, sign_in::SignInError> {
        let invalid = |why: &str| sign_in::SignInError::InvalidIdToken(why.to_owned());
        let sign_in = self
            .sign_in
            .as_ref()
            .ok_or_else(|| invalid("no sign-in issuer"))?;
        let issuer =
            (self.issuers.get(sign_in.index)).ok_or_else(|| invalid("no sign-in issuer"))?;
        if id_token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(invalid(Rejection::Oversize.as_str()));
        }
        let (caller, claims) = issuer
            .verify_for(id_token, &sign_in.client_id, now)
            .await
            .map_err(|reason| invalid(reason.as_str()))?;
        sign_in.check_claims(&claims, nonce, max_age, now)?;
        Ok(caller)
    }

    pub fn dev_enabled(&self) -> bool {
        self.dev.is_some()
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Caller, AuthError> {
        let credential = authorization
            .and_then(|value| {
                let (scheme, credential) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| credential.trim())
            })
            .filter(|c| !c.is_empty())
            .ok_or(AuthError::Missing)?;
        // Before any decoding: a huge header costs nothing but this comparison.
        if credential.len() > jwt::MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(Rejection::Oversize));
        }
        if credential.starts_with(API_KEY_PREFIX) {
            return self
                .api_key(credential)
                .ok_or(AuthError::Invalid(Rejection::UnknownKey));
        }
        let digest: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        if let Some(caller) = self.verified.get(&digest, now) {
            return Ok(caller);
        }
        let issuer =
            jwt::unverified_issuer(credential).ok_or(AuthError::Invalid(Rejection::Malformed))?;
        let (caller, exp) = if issuer == DEV_ISSUER
            && let Some(dev) = &self.dev
        {
            dev.verify(credential, now).map_err(AuthError::Invalid)?
        } else {
            let trusted = self
                .issuers
                .iter()
                .find(|t| t.config.issuer == issuer)
                .ok_or(AuthError::Invalid(Rejection::UnknownIssuer))?;
            trusted
                .verify(credential, now)
                .await
                .map_err(AuthError::Invalid)?
        };
        // Believed as long as the check just made would pass: until `exp` plus the leeway.
        let until = exp
            .saturating_add(jwt::LEEWAY_SECS)
            .min(now.saturating_add(VERIFIED_FOR_SECS));
        self.verified.insert(digest, caller.clone(), until);
        Ok(caller)
    }

    /// How many verified tokens are remembered (for tests).
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }

    /// The service whose API key is named `client_id` and is `secret`: how an OAuth client
    /// authenticates with `client_secret_basic` or `client_secret_post` (DESIGN §9.2). The
    /// secret is compared in constant time, and with every key of that name.
    pub fn client_secret(&self, client_id: &str, secret: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut found = None;
        for candidate in self.api_keys.iter().filter(|key| key.name == client_id) {
            if candidate
                .hash
                .is_some_and(|known| bool::from(known.ct_eq(&hash)))
            {
                found = Some(candidate);
            }
        }
        found.map(ApiKey::caller)
    }

    /// Compares the key's hash with every configured one, in constant time.
    fn api_key(&self, key: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for candidate in &self.api_keys {
            if candidate
                .hash
                .is_some_and(|known| bool::from(known.ct_eq(&hash)))
            {
                found = Some(candidate);
            }
        }
        found.map(ApiKey::caller)
    }
}

impl ApiKey {
    fn caller(&self) -> Caller {
        Caller {
            principal: self.principal.clone(),
            groups: self.groups.clone(),
            mfa: false,
            api_key: true,
            auth_time: None,
            client_id: self.name.clone(),
        }
    }
}

/// `exp` of verified claims (`jwt::verify` insists on it).
fn expiry(claims: &Map<String, Value>) -> Result<u64, Rejection> {
    claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(Rejection::Malformed)
}

/// Which claims say who the caller is (`[[identity.issuers]]`).
struct ClaimMapping<'a> {
    principal: &'a str,
    groups: &'a str,
    mfa_values: &'a [String],
}

/// The caller described by verified identity claims; `None` without the principal claim.
fn caller_from_claims(
    claims: &Map<String, Value>,
    mapping: &ClaimMapping<'_>,
    issuer: &str,
) -> Option<Caller> {
    let Some(id) = claims
        .get(mapping.principal)
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        tracing::warn!(
            issuer,
            claim = mapping.principal,
            "an identity token without its principal claim is refused"
        );
        return None;
    };
    let groups = match claims.get(mapping.groups) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|g| EntityRef::new("Group", g))
            .collect(),
        Some(Value::String(one)) => vec![EntityRef::new("Group", one.as_str())],
        _ => Vec::new(),
    };
    let second_factor = |value: &str| mapping.mfa_values.iter().any(|m| m == value);
    let amr = match claims.get("amr") {
        Some(Value::Array(methods)) => methods.iter().filter_map(Value::as_str).any(second_factor),
        _ => false,
    };
    let acr = claims
        .get("acr")
        .and_then(Value::as_str)
        .is_some_and(second_factor);
    let client_id = ["azp", "client_id"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .unwrap_or(issuer)
        .to_owned();
    Some(Caller {
        principal: EntityRef::new("User", id),
        groups,
        mfa: amr || acr,
        api_key: false,
        auth_time: ["auth_time", "iat"]
            .iter()
            .find_map(|claim| claims.get(*claim).and_then(Value::as_u64)),
        client_id,
    })
}

/// The dev issuer: an ES256 key in `data_dir/dev-issuer/`, trusted while enabled.
#[derive(Debug)]
pub struct DevIssuer {
    ring: KeyRing,
}

impl DevIssuer {
    pub fn open(data_dir: &Path, now: u64) -> Result<Self, KeyError> {
        Ok(Self {
            ring: KeyRing::open(&data_dir.join("dev-issuer"), SigningAlg::Es256, now)?,
        })
    }

    /// A dev identity token.
    pub fn mint(
        &self,
        sub: &str,
        groups: &[String],
        mfa: bool,
        ttl: Duration,
        now: u64,
    ) -> Result<String, KeyError> {
        let key = self.ring.active().ok_or_else(|| KeyError::File {
            path: Default::default(),
            message: "no dev key".into(),
        })?;
        let claims = json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": sub,
            "groups": groups,
            "amr": if mfa { vec!["pwd", "mfa"] } else { vec!["pwd"] },
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "jti": new_jti(),
        });
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(DEV_TYP.into());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| KeyError::File {
            path: key.path.clone().unwrap_or_default(),
            message: e.to_string(),
        })
    }

    /// The caller a dev token names, and its `exp`.
    fn verify(&self, token: &str, now: u64) -> Result<(Caller, u64), Rejection> {
        let expected = Expectations {
            issuer: DEV_ISSUER,
            audience: DEV_AUDIENCE,
            algorithms: &[Algorithm::ES256],
            typ: Some(DEV_TYP),
        };
        let header = jwt::check_header(token, &expected)?;
        let key = self
            .ring
            .keys()
            .iter()
            .find(|k| k.kid == header.kid)
            .ok_or(Rejection::UnknownKey)?;
        let claims = jwt::verify(token, &header, &key.public, &expected, now)?;
        let mfa_values = crate::config::DEFAULT_MFA_VALUES.map(str::to_owned);
        let mapping = ClaimMapping {
            principal: "sub",
            groups: "groups",
            mfa_values: &mfa_values,
        };
        let caller =
            caller_from_claims(&claims, &mapping, DEV_ISSUER).ok_or(Rejection::Malformed)?;
        Ok((caller, expiry(&claims)?))
    }
}

/// An external identity provider, with its JWKS.
#[derive(Debug)]
struct TrustedIssuer {
    config: TrustedIssuerConfig,
    algorithms: Vec<Algorithm>,
    client: reqwest::Client,
    keys: RwLock<JwkSet>,
    /// When the JWKS was last fetched; held across a fetch so only one runs at a time.
    last_fetch: tokio::sync::Mutex<Instant>,
}

impl TrustedIssuer {
    /// A `file://` JWKS must load now; an `https://` one that cannot be fetched yet is retried
    /// when a token needs it (until then that issuer's tokens are refused).
    async fn new(config: TrustedIssuerConfig, client: reqwest::Client) -> Result<Self, String> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| format!("unknown algorithm `{a}`"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = match fetch_jwks(&client, &config.jwks).await {
            Ok(keys) => keys,
            Err(message) if !config.jwks.starts_with("file://") => {
                tracing::warn!(issuer = %config.issuer, error = %message, "JWKS not fetched; retrying when a token needs it");
                JwkSet { keys: Vec::new() }
            }
            Err(message) => return Err(message),
        };
        let long_ago = Instant::now()
            .checked_sub(JWKS_REFRESH_EVERY)
            .unwrap_or_else(Instant::now);
        Ok(Self {
            config,
            algorithms,
            client,
            keys: RwLock::new(keys),
            last_fetch: tokio::sync::Mutex::new(long_ago),
        })
    }

    fn key(&self, kid: &str) -> Option<Jwk> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find(kid)
            .cloned()
    }

    /// Fetches the JWKS again, at most once per [`JWKS_REFRESH_EVERY`], so a stream of tokens
    /// with made-up `kid`s cannot turn into a stream of fetches.
    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() < JWKS_REFRESH_EVERY {
            return;
        }
        *last = Instant::now();
        match fetch_jwks(&self.client, &self.config.jwks).await {
            Ok(keys) => *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys,
            Err(message) => {
                tracing::warn!(issuer = %self.config.issuer, error = %message, "JWKS refresh failed; keeping the keys we had")
            }
        }
    }

    /// The caller a token of this issuer names, and its `exp`.
    async fn verify(&self, token: &str, now: u64) -> Result<(Caller, u64), Rejection> {
        let (caller, claims) = self.verify_for(token, &self.config.audience, now).await?;
        Ok((caller, expiry(&claims)?))
    }

    /// The caller a token of this issuer for `audience` names, and the token's claims.
    async fn verify_for(
        &self,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<(Caller, Map<String, Value>), Rejection> {
        let expected = Expectations {
            issuer: &self.config.issuer,
            audience,
            algorithms: &self.algorithms,
            typ: None,
        };
        let header = jwt::check_header(token, &expected)?;
        if self.last_fetch.lock().await.elapsed() >= JWKS_MAX_AGE {
            self.refresh().await;
        }
        let key = match self.key(&header.kid) {
            Some(key) => key,
            None => {
                self.refresh().await;
                self.key(&header.kid).ok_or(Rejection::UnknownKey)?
            }
        };
        let claims = jwt::verify(token, &header, &key, &expected, now)?;
        let mapping = ClaimMapping {
            principal: &self.config.principal_claim,
            groups: &self.config.groups_claim,
            mfa_values: &self.config.mfa_values,
        };
        let mut caller = caller_from_claims(&claims, &mapping, &self.config.issuer)
            .ok_or(Rejection::Malformed)?;
        // This issuer speaks for its own users and the groups it is trusted with, no others.
        caller.principal.id = format!("{}{}", self.config.principal_prefix, caller.principal.id);
        caller.groups.retain(|g| self.config.allows_group(&g.id));
        Ok((caller, claims))
    }
}

/// The body of a successful answer from `url`, read as it arrives and refused once it passes
/// `limit` bytes (whatever length the answer announces); `what` names it in that refusal.
/// Errors name the URL.
async fn read_bounded(
    response: Result<reqwest::Response, reqwest::Error>,
    url: &str,
    (limit, what): (usize, &str),
) -> Result<Vec<u8>, String> {
    let too_large = || format!("{url}: {what} is larger than {} KiB", limit / 1024);
    let mut response = response
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{url}: {e}"))?;
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(too_large());
        }
    }
    Ok(body)
}

/// Reads a JWKS from `file://…`, `https://…` or `http://` on loopback; symmetric (`oct`) keys are refused: a public
/// JWKS with a shared secret in it would let anyone mint tokens.
async fn fetch_jwks(client: &reqwest::Client, location: &str) -> Result<JwkSet, String> {
    let text = if let Some(path) = location.strip_prefix("file://") {
        tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("{path}: {e}"))?
    } else if crate::config::is_https_or_loopback(location) {
        let response = client.get(location).send().await;
        let bytes = read_bounded(response, location, (MAX_JWKS_BYTES, "the JWKS")).await?;
        String::from_utf8(bytes).map_err(|e| format!("{location}: {e}"))?
    } else {
        return Err(format!(
            "`{location}`: a JWKS is a file:// or https:// URL (http:// only to this machine)"
        ));
    };
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| format!("{location}: {e}"))?;
    if set
        .keys
        .iter()
        .any(|k| matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
    {
        return Err(format!("{location}: symmetric (oct) keys are not accepted"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests;
