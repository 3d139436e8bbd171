//! Signing people in to the UI (DESIGN §9.3): the OpenID Connect authorization code flow with
//! PKCE against the one `[[identity.issuers]]` entry that has a `client_id`. The provider's
//! endpoints come from its discovery document; the id_token it returns is checked like any
//! identity token of that issuer (signature, `iss`, `exp`), for this client (`aud`, `azp`), and
//! for this sign-in (`nonce`, and `auth_time` when a fresh sign-in was asked for).

use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::{Secret, TrustedIssuerConfig};

/// The discovery document is read again after this long.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest discovery document or token response read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// A sign-in asked to be fresh (`max_age`) may be this much older than asked: the person
/// needs a moment between the provider's login form and the redirect back.
pub const MAX_AGE_SLACK_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider's id_token is not acceptable: {0}")]
    InvalidIdToken(String),
}

/// The provider endpoints the flow uses (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// What a sign-in sends the browser to the provider with.
#[derive(Debug)]
pub struct Authorization<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    /// `BASE64URL(SHA-256(code_verifier))` (RFC 7636 `S256`).
    pub code_challenge: &'a str,
    /// How long ago, at most, the provider signed the person in (every sign-in sends one, so
    /// that the provider must say when: `auth_time`).
    pub max_age: u64,
}

/// The UI's client at its identity provider.
#[derive(Debug)]
pub struct SignIn {
    /// Which `[[identity.issuers]]` entry.
    pub(super) index: usize,
    issuer: String,
    pub(super) client_id: String,
    client_secret: Option<Secret>,
    http: reqwest::Client,
    endpoints: tokio::sync::Mutex<Option<(Endpoints, Instant)>>,
}

impl SignIn {
    pub(super) fn new(
        index: usize,
        config: &TrustedIssuerConfig,
        http: reqwest::Client,
    ) -> Option<Self> {
        Some(Self {
            index,
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone()?,
            client_secret: config.client_secret.clone(),
            http,
            endpoints: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider's endpoints, from its discovery document (read at most once an hour; a
    /// document for another issuer is refused, OpenID Connect Discovery §4.3).
    async fn endpoints(&self) -> Result<Endpoints, SignInError> {
        let mut cached = self.endpoints.lock().await;
        if let Some((endpoints, read)) = cached.as_ref()
            && read.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok(endpoints.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let response = self.http.get(&url).send().await;
        let body = read_limited(response, &url).await?;
        let endpoints: Endpoints = serde_json::from_slice(&body)
            .map_err(|e| SignInError::Unreachable(format!("{url}: {e}")))?;
        if endpoints.issuer != self.issuer {
            return Err(SignInError::Unreachable(format!(
                "{url} describes the issuer `{}`, not `{}`",
                endpoints.issuer, self.issuer
            )));
        }
        for endpoint in [&endpoints.authorization_endpoint, &endpoints.token_endpoint] {
            if !crate::config::is_https_or_loopback(endpoint) {
                return Err(SignInError::Unreachable(format!(
                    "{url} names the endpoint `{endpoint}`, which is not https://"
                )));
            }
        }
        *cached = Some((endpoints.clone(), Instant::now()));
        Ok(endpoints)
    }

    /// Where to send the browser to sign in.
    pub async fn authorization_url(&self, ask: &Authorization<'_>) -> Result<String, SignInError> {
        let endpoints = self.endpoints().await?;
        let mut url = Url::parse(&endpoints.authorization_endpoint)
            .map_err(|e| SignInError::Unreachable(format!("authorization_endpoint: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", ask.redirect_uri)
                .append_pair("scope", "openid")
                .append_pair("state", ask.state)
                .append_pair("nonce", ask.nonce)
                .append_pair("code_challenge", ask.code_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("max_age", &ask.max_age.to_string());
        }
        Ok(url.into())
    }

    /// The id_token the provider gives for `code` (RFC 6749 §4.1.3, with the PKCE verifier).
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, SignInError> {
        let endpoints = self.endpoints().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(&endpoints.token_endpoint);
        match &self.client_secret {
            // RFC 6749 §2.3.1: both form-encoded, then HTTP Basic.
            Some(secret) => {
                request = request.basic_auth(
                    form_encode(&self.client_id),
                    Some(form_encode(secret.expose())),
                );
            }
            None => form.push(("client_id", &self.client_id)),
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| SignInError::Refused(format!("cannot encode the token request: {e}")))?;
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await;
        let url = &endpoints.token_endpoint;
        let answer = match response {
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let body = read_limited(Ok(response), url).await.unwrap_or_default();
                let error: TokenError = serde_json::from_slice(&body).unwrap_or_default();
                return Err(SignInError::Refused(format!(
                    "its token endpoint answered {status}: {} {}",
                    error.error, error.error_description
                )));
            }
            response => read_limited(response, url).await?,
        };
        let answer: TokenAnswer = serde_json::from_slice(&answer)
            .map_err(|e| SignInError::Refused(format!("its token endpoint answered: {e}")))?;
        Ok(answer.id_token)
    }

    /// Whether the verified id_token `claims` belong to this sign-in: for this client, with
    /// this `nonce`, and signed in within the `max_age` asked at `now`.
    pub(super) fn check_claims(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        nonce: &str,
        max_age: u64,
        now: u64,
    ) -> Result<(), SignInError> {
        let invalid = |why: &str| Err(SignInError::InvalidIdToken(why.to_owned()));
        let sent = claims
            .get("nonce")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())) {
            return invalid("its nonce is not this sign-in's");
        }
        // OpenID Connect Core §3.1.3.7: with several audiences `azp` names this client, and
        // an `azp` there is must.
        let several = matches!(claims.get("aud"), Some(serde_json::Value::Array(a)) if a.len() > 1);
        let azp = claims.get("azp").and_then(|a| a.as_str());
        if (several || azp.is_some()) && azp != Some(self.client_id.as_str()) {
            return invalid("its azp is not this client");
        }
        let Some(auth_time) = claims.get("auth_time").and_then(|a| a.as_u64()) else {
            return invalid("a max_age was asked for and it has no auth_time");
        };
        if now.saturating_sub(auth_time) > max_age.saturating_add(MAX_AGE_SLACK_SECS) {
            return invalid(
                "a fresh sign-in was asked for and the provider did not sign the person in again",
            );
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: String,
}

#[derive(Debug, Default, Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// What `application/x-www-form-urlencoded` leaves as it is.
const FORM_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

/// One value, form-encoded.
fn form_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, FORM_SAFE).to_string()
}

/// The body of a successful answer, at most [`MAX_RESPONSE_BYTES`].
async fn read_limited(
    response: Result<reqwest::Response, reqwest::Error>,
    url: &str,
) -> Result<Vec<u8>, SignInError> {
    super::read_bounded(response, url, (MAX_RESPONSE_BYTES, "the answer"))
        .await
        .map_err(SignInError::Unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn client() -> SignIn {
        let config: TrustedIssuerConfig = serde_json::from_value(json!({
            "issuer": "https://idp.test", "audience": "ui", "jwks": "file:///x",
            "algorithms": ["RS256"], "client_id": "ui",
        }))
        .unwrap();
        SignIn::new(0, &config, reqwest::Client::new()).unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn an_id_token_belongs_to_its_sign_in_and_client() {
        let client = client();
        let now = 10_000;
        let good = claims(json!({"nonce": "n1", "aud": "ui", "auth_time": now - 30}));
        // A sign-in's default: no older than a session may last.
        let lenient = 8 * 3600;
        assert!(client.check_claims(&good, "n1", lenient, now).is_ok());
        assert!(client.check_claims(&good, "n1", 0, now).is_ok());
        let cases = [
            (json!({"nonce": "n2", "aud": "ui"}), lenient, "nonce"),
            (json!({"aud": "ui"}), lenient, "nonce"),
            (
                json!({"nonce": "n1", "aud": ["ui", "other"]}),
                lenient,
                "azp",
            ),
            (
                json!({"nonce": "n1", "aud": "ui", "azp": "other"}),
                lenient,
                "azp",
            ),
            (json!({"nonce": "n1", "aud": "ui"}), 0, "no auth_time"),
            (json!({"nonce": "n1", "aud": "ui"}), lenient, "no auth_time"),
            (
                json!({"nonce": "n1", "aud": "ui", "auth_time": now - 3600}),
                300,
                "did not sign the person in again",
            ),
        ];
        for (token, max_age, why) in cases {
            let error = client
                .check_claims(&claims(token.clone()), "n1", max_age, now)
                .unwrap_err()
                .to_string();
            assert!(error.contains(why), "{token}: {error}");
        }
        let several =
            json!({"nonce": "n1", "aud": ["ui", "other"], "azp": "ui", "auth_time": now - 30});
        assert!(
            client
                .check_claims(&claims(several), "n1", lenient, now)
                .is_ok()
        );
    }

    #[test]
    fn client_credentials_are_form_encoded_before_basic() {
        assert_eq!(form_encode("a b:c/é"), "a%20b%3Ac%2F%C3%A9");
        assert_eq!(form_encode("ui-client_1.x*"), "ui-client_1.x*");
    }
}
