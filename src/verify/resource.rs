//! [`ResourceVerifier`]: the verifier a resource server keeps for its lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{Verifier, VerifyError, client, get_json};
use crate::token::AccessClaims;

/// How a [`ResourceVerifier`] reaches its jitgate and what it demands of tokens.
#[derive(Clone)]
pub struct ResourceConfig {
    /// The jitgate server, e.g. `https://jitgate.example.com`.
    pub server: String,
    /// This service's audience: tokens for others are refused.
    pub audience: String,
    /// A credential jitgate accepts (an API key or identity token) to read the revocation feed.
    /// `None`: no feed, so revoked tokens pass until they expire.
    pub feed_credential: Option<String>,
    /// How often [`ResourceVerifier::spawn_revocation_poll`] reads the feed.
    pub poll_every: Duration,
    /// With a feed, tokens are refused once it has not been read for this long (fail closed).
    pub stale_after: Duration,
    /// The shortest time between two JWKS fetches caused by unknown `kid`s, so forged tokens
    /// cannot make this service hammer jitgate.
    pub refetch_every: Duration,
}

impl ResourceConfig {
    /// The defaults: poll every 10 s, stale after 60 s, refetch at most every 30 s.
    pub fn new(server: &str, audience: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            feed_credential: None,
            poll_every: Duration::from_secs(10),
            stale_after: Duration::from_secs(60),
            refetch_every: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for ResourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceConfig")
            .field("server", &self.server)
            .field("audience", &self.audience)
            .field(
                "feed_credential",
                &self.feed_credential.as_ref().map(|_| "<redacted>"),
            )
            .field("poll_every", &self.poll_every)
            .field("stale_after", &self.stale_after)
            .field("refetch_every", &self.refetch_every)
            .finish()
    }
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, Deserialize)]
struct FeedEntry {
    id: String,
    kind: String,
    value: String,
    revoked_at: i64,
    expires_at: i64,
}

#[derive(Debug, Deserialize)]
struct FeedPage {
    revocations: Vec<FeedEntry>,
    next: String,
}

/// What the feed has said so far.
#[derive(Debug, Default)]
struct DenyList {
    cursor: String,
    /// By id, so a page read twice changes nothing.
    entries: HashMap<String, FeedEntry>,
    last_read: Option<Instant>,
}

impl DenyList {
    fn covers(&self, claims: &AccessClaims) -> bool {
        let iat = i64::try_from(claims.iat).unwrap_or(i64::MAX);
        self.entries.values().any(|e| match e.kind.as_str() {
            "jti" => e.value == claims.jti,
            "request_id" => e.value == claims.jit.request_id,
            // Tokens issued after the revocation come only after it was lifted.
            "subject" => e.value == claims.sub && iat <= e.revoked_at,
            // A kind this version does not know: refuse rather than guess.
            _ => true,
        })
    }
}

/// Verifies tokens for one audience against a jitgate server, and keeps up with its keys and
/// revocations. Share it (`Arc`) across the service.
#[derive(Debug)]
pub struct ResourceVerifier {
    config: ResourceConfig,
    client: reqwest::Client,
    jwks_uri: String,
    keys: RwLock<Verifier>,
    last_fetch: Mutex<Instant>,
    deny: RwLock<DenyList>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fetch_error(url: &str, message: impl ToString) -> VerifyError {
    VerifyError::Fetch {
        url: url.to_owned(),
        message: message.to_string(),
    }
}

impl ResourceVerifier {
    /// Reads the server's metadata and keys, and the revocation feed when a credential is
    /// given.
    pub async fn connect(config: ResourceConfig) -> Result<Arc<Self>, VerifyError> {
        let client = client()?;
        let (keys, jwks_uri) = Verifier::discover(&client, &config.server).await?;
        let verifier = Arc::new(Self {
            config,
            client,
            jwks_uri,
            keys: RwLock::new(keys),
            last_fetch: Mutex::new(Instant::now()),
            deny: RwLock::new(DenyList::default()),
        });
        if verifier.config.feed_credential.is_some() {
            verifier.poll_revocations().await?;
        }
        Ok(verifier)
    }

    /// Verifies `token` for this service's audience: signature, `typ`, issuer, audience,
    /// `exp`/`nbf`, and that no revocation the feed reported covers it.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let now = unix_now();
        let audience = Some(self.config.audience.as_str());
        let first = self.read_keys()?.verify(token, audience, now);
        let claims = match first {
            Err(VerifyError::UnknownKey) if self.may_refetch() => {
                let jwks = get_json(&self.client, &self.jwks_uri).await?;
                self.keys
                    .write()
                    .map_err(|_| VerifyError::Invalid("verifier_poisoned"))?
                    .jwks = jwks;
                self.read_keys()?.verify(token, audience, now)?
            }
            other => other?,
        };
        let deny = self
            .deny
            .read()
            .map_err(|_| VerifyError::Invalid("verifier_poisoned"))?;
        if self.config.feed_credential.is_some()
            && deny
                .last_read
                .is_none_or(|at| at.elapsed() > self.config.stale_after)
        {
            return Err(VerifyError::StaleRevocations);
        }
        if deny.covers(&claims) {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    fn read_keys(&self) -> Result<Verifier, VerifyError> {
        self.keys
            .read()
            .map(|keys| keys.clone())
            .map_err(|_| VerifyError::Invalid("verifier_poisoned"))
    }

    /// Whether an unknown `kid` may trigger a JWKS fetch now (and, if so, notes that it does).
    fn may_refetch(&self) -> bool {
        let Ok(mut last) = self.last_fetch.lock() else {
            return false;
        };
        if last.elapsed() < self.config.refetch_every {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Reads the revocation feed from where the last read stopped; returns how many new
    /// entries it brought.
    pub async fn poll_revocations(&self) -> Result<usize, VerifyError> {
        let Some(credential) = &self.config.feed_credential else {
            return Ok(0);
        };
        let mut added = 0;
        loop {
            let cursor = self
                .deny
                .read()
                .map(|d| d.cursor.clone())
                .map_err(|_| VerifyError::Invalid("verifier_poisoned"))?;
            let url = format!(
                "{}/v1/revocations?since={}",
                self.config.server,
                if cursor.is_empty() { "0" } else { &cursor }
            );
            let page: FeedPage = self
                .client
                .get(&url)
                .bearer_auth(credential)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| fetch_error(&url, e.without_url()))?
                .json()
                .await
                .map_err(|e| fetch_error(&url, e))?;
            let mut deny = self
                .deny
                .write()
                .map_err(|_| VerifyError::Invalid("verifier_poisoned"))?;
            let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
            let done = page.revocations.is_empty() || page.next == deny.cursor;
            for entry in page.revocations {
                if deny.entries.insert(entry.id.clone(), entry).is_none() {
                    added += 1;
                }
            }
            // An entry past its expiry covers only tokens that have expired too.
            deny.entries.retain(|_, e| e.expires_at > now);
            deny.cursor = page.next;
            deny.last_read = Some(Instant::now());
            if done {
                return Ok(added);
            }
        }
    }

    /// Reads the feed every `poll_every` until the returned task is aborted; failures are
    /// logged, and [`verify`](Self::verify) refuses tokens once the feed is stale.
    pub fn spawn_revocation_poll(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(verifier.config.poll_every);
            loop {
                ticks.tick().await;
                if let Err(e) = verifier.poll_revocations().await {
                    tracing::warn!(error = %e, "cannot read jitgate's revocation feed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Audience, JitClaims};

    fn claims(jti: &str, request_id: &str, sub: &str, iat: u64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: Audience::One("a".into()),
            exp: iat + 300,
            iat,
            nbf: iat,
            jti: jti.into(),
            scope: "db:read:orders".into(),
            client_id: "c".into(),
            jit: JitClaims {
                principal: format!("User::\"{sub}\""),
                request_id: request_id.into(),
                action: "read".into(),
                resource: "Database::\"orders\"".into(),
                policies: vec![],
                policy_version: "v".into(),
                approvers: vec![],
            },
        }
    }

    fn entry(kind: &str, value: &str, revoked_at: i64) -> (String, FeedEntry) {
        let id = format!("{kind}-{value}");
        let entry = FeedEntry {
            id: id.clone(),
            kind: kind.into(),
            value: value.into(),
            revoked_at,
            expires_at: revoked_at + 3600,
        };
        (id, entry)
    }

    #[test]
    fn each_kind_covers_what_it_says() {
        let deny = DenyList {
            entries: [
                entry("jti", "j1", 100),
                entry("request_id", "r2", 100),
                entry("subject", "carol", 100),
            ]
            .into_iter()
            .collect(),
            ..DenyList::default()
        };
        assert!(deny.covers(&claims("j1", "r1", "alice", 50)));
        assert!(deny.covers(&claims("j2", "r2", "alice", 150)));
        assert!(deny.covers(&claims("j3", "r3", "carol", 100)));
        assert!(
            !deny.covers(&claims("j4", "r4", "carol", 101)),
            "issued after the subject's revocation was lifted"
        );
        assert!(!deny.covers(&claims("j5", "r5", "alice", 50)));
        let unknown = DenyList {
            entries: [entry("device", "x", 100)].into_iter().collect(),
            ..DenyList::default()
        };
        assert!(unknown.covers(&claims("j6", "r6", "alice", 50)));
    }

    #[test]
    fn scopes_are_required_one_by_one() {
        let token = claims("j", "r", "alice", 0);
        assert!(super::super::require_scopes(&token, &["db:read:orders"]).is_ok());
        let missing = super::super::require_scopes(&token, &["db:read:orders", "db:write:orders"]);
        assert!(
            matches!(missing, Err(VerifyError::InsufficientScope(m)) if m == ["db:write:orders"])
        );
    }
}
