//! [`ResourceVerifier`]: the verifier a resource server keeps for its lifetime.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::claims::AccessClaims;
use crate::fetch::Http;
use crate::jwt::LEEWAY_SECS;
use crate::{Presentation, Verifier, VerifyError, check_presentation};

/// Where a [`ResourceVerifier`] reads the time: the system clock, or one a test moves.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(SystemTime::now))
    }

    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

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
    /// The shortest time between two JWKS fetches caused by unknown `kid`s (or retrying a
    /// failed refresh), so forged tokens cannot make this service hammer jitgate.
    pub refetch_every: Duration,
    /// The JWKS is read again, and replaces the keys held, once it is this old: a key
    /// withdrawn from it (after a compromise) stops verifying.
    pub keys_refresh_every: Duration,
    /// Tokens are refused ([`VerifyError::StaleKeys`]) once the JWKS could not be read for
    /// this long (fail closed).
    pub keys_stale_after: Duration,
    pub clock: Clock,
}

impl ResourceConfig {
    /// The defaults: poll every 10 s, stale after 60 s, refetch at most every 30 s, keys
    /// refreshed every 5 min and stale after 1 h, the system clock.
    pub fn new(server: &str, audience: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            feed_credential: None,
            poll_every: Duration::from_secs(10),
            stale_after: Duration::from_secs(60),
            refetch_every: Duration::from_secs(30),
            keys_refresh_every: Duration::from_secs(5 * 60),
            keys_stale_after: Duration::from_secs(60 * 60),
            clock: Clock::system(),
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
            .field("keys_refresh_every", &self.keys_refresh_every)
            .field("keys_stale_after", &self.keys_stale_after)
            .field("clock", &self.clock)
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

impl FeedEntry {
    fn revokes(&self) -> Revoked {
        match self.kind.as_str() {
            "jti" => Revoked::Jti(self.value.clone()),
            "request_id" => Revoked::Request(self.value.clone()),
            "subject" => Revoked::Subject(self.value.clone()),
            _ => Revoked::Unknown,
        }
    }
}

/// What a feed entry revokes: the key the deny-list looks it up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Revoked {
    Jti(String),
    Request(String),
    Subject(String),
    /// A kind this version does not know: it covers every token (refuse rather than guess).
    Unknown,
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
    /// The ids of `entries` by what they revoke (never an empty set): a check is a few hash
    /// lookups however long the list grows.
    index: HashMap<Revoked, HashSet<String>>,
    last_read: Option<SystemTime>,
}

impl DenyList {
    /// Adds `entry`; false when it was already there.
    fn insert(&mut self, entry: FeedEntry) -> bool {
        if self.entries.contains_key(&entry.id) {
            return false;
        }
        self.index
            .entry(entry.revokes())
            .or_default()
            .insert(entry.id.clone());
        self.entries.insert(entry.id.clone(), entry);
        true
    }

    /// Drops the entries that can no longer cover a token verifying at `now`: kept until
    /// `expires_at` plus the leeway [`Verifier::verify`] gives `exp`.
    fn prune(&mut self, now: i64) {
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(i64::MAX);
        let expired: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.expires_at.saturating_add(leeway) < now)
            .map(|e| e.id.clone())
            .collect();
        for id in expired {
            let Some(entry) = self.entries.remove(&id) else {
                continue;
            };
            let key = entry.revokes();
            if let Some(ids) = self.index.get_mut(&key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
    }

    fn covers(&self, claims: &AccessClaims) -> bool {
        let iat = i64::try_from(claims.iat).unwrap_or(i64::MAX);
        // Tokens issued after a subject's revocation come only after it was lifted.
        let subject_revoked = |subject: &str| {
            self.index
                .get(&Revoked::Subject(subject.to_owned()))
                .is_some_and(|ids| {
                    ids.iter()
                        .filter_map(|id| self.entries.get(id))
                        .any(|e| iat <= e.revoked_at)
                })
        };
        self.index.contains_key(&Revoked::Unknown)
            || self.index.contains_key(&Revoked::Jti(claims.jti.clone()))
            || self
                .index
                .contains_key(&Revoked::Request(claims.jit.request_id.clone()))
            // The full principal; and `sub`, which is what servers that predate
            // `jit.principal` put in a subject revocation.
            || subject_revoked(&claims.jit.principal)
            || subject_revoked(&claims.sub)
    }
}

/// The JWKS held, and when it was read.
#[derive(Debug, Clone)]
struct HeldKeys {
    verifier: Verifier,
    fetched_at: SystemTime,
}

/// Verifies tokens for one audience against a jitgate server, and keeps up with its keys and
/// revocations. Share it (`Arc`) across the service.
#[derive(Debug)]
pub struct ResourceVerifier {
    config: ResourceConfig,
    http: Http,
    jwks_uri: String,
    keys: RwLock<HeldKeys>,
    /// When the JWKS was last fetched or tried.
    last_fetch: Mutex<SystemTime>,
    deny: RwLock<DenyList>,
    /// The DPoP proofs seen lately, refused a second time.
    proofs: SeenProofs,
}

/// The `jti`s of DPoP proofs accepted within the proof window, by key. Per verifier: a
/// service with several instances accepts a proof once per instance, which RFC 9449 §11.1
/// allows for; the proof is bound to one method and URL and lives a minute.
#[derive(Debug, Default)]
struct SeenProofs {
    seen: Mutex<HashMap<(String, String), u64>>,
}

/// Most proofs remembered; beyond it, every proof is refused until old ones age out (never
/// forgetting one that could still be replayed).
const MAX_SEEN_PROOFS: usize = 100_000;

impl SeenProofs {
    fn remember(&self, proof: crate::dpop::Proof, now: u64) -> Result<(), VerifyError> {
        let mut seen = self.seen.lock().map_err(poisoned)?;
        let window = crate::dpop::PROOF_WINDOW_SECS + LEEWAY_SECS;
        let fresh = |iat: u64| iat.saturating_add(window) >= now;
        // Aged-out proofs are swept only when the memory is full, not on every request; one
        // met before then counts as absent.
        if seen.len() >= MAX_SEEN_PROOFS {
            seen.retain(|_, iat| fresh(*iat));
            if seen.len() >= MAX_SEEN_PROOFS {
                return Err(VerifyError::DpopReplayed);
            }
        }
        match seen.entry((proof.jkt, proof.jti)) {
            Entry::Occupied(slot) if fresh(*slot.get()) => Err(VerifyError::DpopReplayed),
            Entry::Occupied(mut slot) => {
                slot.insert(proof.iat);
                Ok(())
            }
            Entry::Vacant(slot) => {
                slot.insert(proof.iat);
                Ok(())
            }
        }
    }
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How long before `now` `then` was (zero when the clock went back).
fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

fn poisoned<T>(_: T) -> VerifyError {
    VerifyError::Invalid("verifier_poisoned")
}

impl ResourceVerifier {
    /// Reads the server's metadata and keys, and the revocation feed when a credential is
    /// given.
    pub async fn connect(config: ResourceConfig) -> Result<Arc<Self>, VerifyError> {
        let http = Http::new()?;
        let (verifier, jwks_uri) = Verifier::discover(&http, &config.server).await?;
        let now = config.clock.now();
        let verifier = Arc::new(Self {
            config,
            http,
            jwks_uri,
            keys: RwLock::new(HeldKeys {
                verifier,
                fetched_at: now,
            }),
            last_fetch: Mutex::new(now),
            deny: RwLock::new(DenyList::default()),
            proofs: SeenProofs::default(),
        });
        if verifier.config.feed_credential.is_some() {
            verifier.poll_revocations().await?;
        }
        Ok(verifier)
    }

    /// Verifies `token`, presented as a bearer token, for this service's audience: signature
    /// against a JWKS read within `keys_stale_after`, `typ`, issuer, audience,
    /// `exp`/`nbf`/`iat`, that no revocation the feed reported covers it, and that it is not
    /// DPoP-bound (such a token needs [`ResourceVerifier::verify_dpop`]).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let now = self.config.clock.now();
        let claims = self.verify_token(token, now).await?;
        check_presentation(token, &claims, Presentation::Bearer, unix(now))?;
        Ok(claims)
    }

    /// Verifies a DPoP-bound `token` presented as `Authorization: DPoP` with `proof` (the
    /// request's `DPoP` header) on a `method` request to `url` (without query): everything
    /// [`ResourceVerifier::verify`] checks, and the proof (RFC 9449 §4.3, §7): its key is the
    /// one the token is bound to, `ath` is the token's hash, and its `jti` was not seen by
    /// this verifier within the proof window.
    pub async fn verify_dpop(
        &self,
        token: &str,
        proof: &str,
        (method, url): (&str, &str),
    ) -> Result<AccessClaims, VerifyError> {
        let now = self.config.clock.now();
        let claims = self.verify_token(token, now).await?;
        let presentation = Presentation::Dpop { proof, method, url };
        if let Some(proof) = check_presentation(token, &claims, presentation, unix(now))? {
            self.proofs.remember(proof, unix(now))?;
        }
        Ok(claims)
    }

    /// The signature, claims and revocation checks of a token however it was presented.
    async fn verify_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<AccessClaims, VerifyError> {
        let audience = Some(self.config.audience.as_str());
        self.refresh_keys_if_due(now).await;
        let first = self.fresh_keys(now)?.verify(token, audience, unix(now));
        let claims = match first {
            Err(VerifyError::UnknownKey) if self.may_fetch(now) => {
                self.fetch_keys(now).await?;
                self.fresh_keys(now)?.verify(token, audience, unix(now))?
            }
            other => other?,
        };
        let deny = self.deny.read().map_err(poisoned)?;
        if self.config.feed_credential.is_some()
            && deny
                .last_read
                .is_none_or(|at| age(now, at) > self.config.stale_after)
        {
            return Err(VerifyError::StaleRevocations);
        }
        if deny.covers(&claims) {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    /// The keys held, unless they are older than `keys_stale_after`.
    fn fresh_keys(&self, now: SystemTime) -> Result<Verifier, VerifyError> {
        let held = self.keys.read().map_err(poisoned)?;
        if age(now, held.fetched_at) > self.config.keys_stale_after {
            return Err(VerifyError::StaleKeys);
        }
        Ok(held.verifier.clone())
    }

    /// Replaces the keys when they are `keys_refresh_every` old; a failure is logged and
    /// retried no sooner than `refetch_every`, the old keys serving until they are stale.
    async fn refresh_keys_if_due(&self, now: SystemTime) {
        let fetched_at = match self.keys.read() {
            Ok(held) => held.fetched_at,
            Err(_) => return,
        };
        if age(now, fetched_at) < self.config.keys_refresh_every || !self.may_fetch(now) {
            return;
        }
        if let Err(e) = self.fetch_keys(now).await {
            tracing::warn!(error = %e, "cannot refresh jitgate's JWKS");
        }
    }

    /// Reads the JWKS and replaces the keys held with it (never merged: a key the JWKS no
    /// longer lists is dropped).
    async fn fetch_keys(&self, now: SystemTime) -> Result<(), VerifyError> {
        let jwks = self.http.get_json(&self.jwks_uri, None).await?;
        let mut held = self.keys.write().map_err(poisoned)?;
        held.verifier.jwks = jwks;
        held.fetched_at = now;
        Ok(())
    }

    /// Whether the JWKS may be fetched now, at most once per `refetch_every` (and, if so,
    /// notes that it is).
    fn may_fetch(&self, now: SystemTime) -> bool {
        let Ok(mut last) = self.last_fetch.lock() else {
            return false;
        };
        if age(now, *last) < self.config.refetch_every {
            return false;
        }
        *last = now;
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
                .map_err(poisoned)?;
            let url = format!(
                "{}/v1/revocations?since={}",
                self.config.server,
                if cursor.is_empty() { "0" } else { &cursor }
            );
            let page: FeedPage = self.http.get_json(&url, Some(credential)).await?;
            let mut deny = self.deny.write().map_err(poisoned)?;
            let now = self.config.clock.now();
            let done = page.revocations.is_empty() || page.next == deny.cursor;
            for entry in page.revocations {
                if deny.insert(entry) {
                    added += 1;
                }
            }
            deny.prune(i64::try_from(unix(now)).unwrap_or(i64::MAX));
            deny.cursor = page.next;
            deny.last_read = Some(now);
            if done {
                return Ok(added);
            }
        }
    }

    /// Every `poll_every` until the returned task is aborted: reads the feed, and the JWKS
    /// when it is due. Failures are logged, and [`verify`](Self::verify) refuses tokens once
    /// the feed or the keys are stale.
    pub fn spawn_revocation_poll(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(verifier.config.poll_every);
            loop {
                ticks.tick().await;
                verifier
                    .refresh_keys_if_due(verifier.config.clock.now())
                    .await;
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
    use crate::claims::{Audience, JitClaims};

    fn claims(jti: &str, request_id: &str, sub: &str, iat: u64) -> AccessClaims {
        AccessClaims {
            cnf: None,
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

    fn entry(kind: &str, value: &str, revoked_at: i64) -> FeedEntry {
        FeedEntry {
            id: format!("{kind}-{value}"),
            kind: kind.into(),
            value: value.into(),
            revoked_at,
            expires_at: revoked_at + 3600,
        }
    }

    fn deny_list(entries: impl IntoIterator<Item = FeedEntry>) -> DenyList {
        let mut deny = DenyList::default();
        for entry in entries {
            deny.insert(entry);
        }
        deny
    }

    #[test]
    fn each_kind_covers_what_it_says() {
        let deny = deny_list([
            entry("jti", "j1", 100),
            entry("request_id", "r2", 100),
            entry("subject", "carol", 100),
            entry("subject", "Service::\"deployer\"", 100),
        ]);
        assert!(deny.covers(&claims("j1", "r1", "alice", 50)));
        assert!(deny.covers(&claims("j2", "r2", "alice", 150)));
        assert!(deny.covers(&claims("j3", "r3", "carol", 100)));
        assert!(
            !deny.covers(&claims("j4", "r4", "carol", 101)),
            "issued after the subject's revocation was lifted"
        );
        assert!(!deny.covers(&claims("j5", "r5", "alice", 50)));
        let mut service = claims("j7", "r7", "deployer", 50);
        assert!(!deny.covers(&service), "User::\"deployer\" is not revoked");
        service.jit.principal = "Service::\"deployer\"".into();
        assert!(deny.covers(&service));
        let unknown = deny_list([entry("device", "x", 100)]);
        assert!(unknown.covers(&claims("j6", "r6", "alice", 50)));
    }

    #[test]
    fn entries_are_kept_through_the_leeway_after_they_expire() {
        let mut deny = deny_list([entry("jti", "j1", 100), entry("jti", "j2", 200)]);
        let leeway = i64::try_from(LEEWAY_SECS).unwrap();
        deny.prune(3700 + leeway);
        assert!(deny.covers(&claims("j1", "r1", "alice", 50)));
        deny.prune(3701 + leeway);
        assert!(!deny.covers(&claims("j1", "r1", "alice", 50)));
        assert!(deny.covers(&claims("j2", "r2", "alice", 50)));
        assert_eq!(deny.entries.len(), 1);
        assert_eq!(deny.index.len(), 1);
    }

    #[test]
    fn scopes_are_required_one_by_one() {
        let token = claims("j", "r", "alice", 0);
        assert!(crate::require_scopes(&token, &["db:read:orders"]).is_ok());
        let missing = crate::require_scopes(&token, &["db:read:orders", "db:write:orders"]);
        assert!(
            matches!(missing, Err(VerifyError::InsufficientScope(m)) if m == ["db:write:orders"])
        );
    }
}
