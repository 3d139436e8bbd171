//! The real server on 127.0.0.1:0 with a temp data dir and a copy of a pack, for the tests
//! that talk HTTP to it.

use std::sync::Arc;
use std::time::Duration;

use jitgate::clock::{ManualClock, SharedClock};

use jitgate::config::{ApiKeyConfig, Config};
use jitgate::identity::DevIssuer;
use jitgate::token::AccessClaims;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::TempPack;

/// A running server; stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub pack: Option<TempPack>,
    pub config: Config,
    pub http: reqwest::Client,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    /// The server's clock: it stands still until a test moves it.
    pub clock: Arc<ManualClock>,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestServer {
    pub async fn start(pack: TempPack, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::quickstart();
        config.policy.dir = pack.policies();
        config.policy.schemas = pack.schemas();
        config.data_dir = pack.dir.path().join("data");
        config.identity.api_keys.push(ApiKeyConfig {
            name: "deployer".into(),
            hash: Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(b"jg_deploy-secret"))
            )),
            principal: "Service::\"deployer\"".into(),
            groups: vec!["Group::\"deployers\"".into()],
            jwks: None,
        });
        configure(&mut config);
        Self::start_with(pack, config).await
    }

    pub async fn start_with(pack: TempPack, mut config: Config) -> Self {
        // A restart comes back on the port it had, as a deployment keeps its address.
        let listen = if config.listen == Config::default().listen {
            "127.0.0.1:0".parse().unwrap()
        } else {
            config.listen
        };
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        config.listen = listener.local_addr().unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // A restart keeps the issuer of the first start, as a deployment keeps its URL.
        if config.issuer == Config::default().issuer {
            config.issuer = base.clone();
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let run_config = config.clone();
        let clock = ManualClock::now();
        let server_clock: SharedClock = clock.clone();
        let task = tokio::spawn(async move {
            jitgate::http::run_with_clock(run_config, server_clock, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let http = reqwest::Client::new();
        // Ready once /readyz answers.
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            base,
            pack: Some(pack),
            config,
            http,
            stop: Some(stop),
            task: Some(task),
            clock,
        }
    }

    /// Stops the server and hands back its pack dir (data included) for a restart.
    pub async fn stop(mut self) -> (TempPack, Config) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        let pack = self.pack.take().expect("a running server has its pack");
        (pack, self.config.clone())
    }

    /// The store, opened beside the running server (SQLite readers do not block it).
    pub async fn store(&self) -> jitgate::store::Store {
        jitgate::store::Store::open("", &self.config.data_dir)
            .await
            .unwrap()
    }

    /// The audit trail as stored.
    pub async fn store_events(&self) -> Vec<jitgate::store::AuditRecord> {
        self.store().await.audit_events().await.unwrap()
    }

    /// How many events of `kind` the audit trail holds.
    pub async fn count_events(&self, kind: &str) -> usize {
        self.store_events()
            .await
            .iter()
            .filter(|event| event.kind == kind)
            .count()
    }

    /// Every revocation stored, expired or not.
    pub async fn stored_revocations(&self) -> Vec<jitgate::store::RevocationRecord> {
        let store = self.store().await;
        let all = store.revocations_after(0, i64::MIN, 10_000).await.unwrap();
        all.into_iter().map(|(_, revocation)| revocation).collect()
    }

    pub async fn policies(&self, token: &str) -> Value {
        self.get("/v1/policies", Some(token))
            .await
            .json()
            .await
            .unwrap()
    }

    pub fn pack(&self) -> &TempPack {
        self.pack.as_ref().expect("a running server has its pack")
    }

    /// Keeps the server's clock at the system's time until the returned task is aborted: for a
    /// test that drives a client stamping its messages with the real time (authlib's client
    /// assertions and DPoP proofs), which a clock standing still would find ahead of it.
    pub fn follow_real_time(&self) -> tokio::task::JoinHandle<()> {
        let clock = Arc::clone(&self.clock);
        tokio::spawn(async move {
            loop {
                catch_up(&clock, jitgate::clock::unix_now_ms());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Moves the server's clock forward to `unix_ms`, if it is behind.
    pub fn catch_up_to(&self, unix_ms: i64) {
        catch_up(&self.clock, unix_ms);
    }

    /// Moves the server's clock forward to the next Tuesday, 10:00 UTC: inside the shipped
    /// pack's business hours, whenever the test runs.
    pub fn move_to_business_hours(&self) {
        const DAY: u64 = 86_400;
        let now = jitgate::clock::Clock::now(&*self.clock);
        // 1970-01-01 was a Thursday: day 5 of the week is a Tuesday.
        let days = now / DAY;
        let until_tuesday = (5 + 7 - days % 7) % 7;
        let mut target = (days + until_tuesday) * DAY + 10 * 3600;
        if target <= now {
            target += 7 * DAY;
        }
        self.clock.advance(Duration::from_secs(target - now));
    }

    /// A dev identity token issued at the server's time (which stands still until a test
    /// moves it), so that it is valid however long the test has run.
    pub fn dev_token(&self, sub: &str, groups: &[&str], mfa: bool) -> String {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let now = jitgate::clock::Clock::now(&*self.clock);
        DevIssuer::open(&self.config.data_dir, now)
            .unwrap()
            .mint(sub, &groups, mfa, Duration::from_secs(600), now)
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn jwks(&self) -> JwkSet {
        self.get("/.well-known/jwks.json", None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Verifies an issued token against the served JWKS.
    pub async fn verify(&self, token: &str, audience: &str) -> AccessClaims {
        let header = decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwks = self.jwks().await;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid in the JWKS");
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[audience]);
        decode::<AccessClaims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    }
}

/// Moves `clock` forward to `unix_ms`, if it is behind (a clock never goes back).
fn catch_up(clock: &ManualClock, unix_ms: i64) {
    let behind = unix_ms - jitgate::clock::Clock::now_ms(clock);
    if behind > 0 {
        clock.advance(Duration::from_millis(behind.unsigned_abs()));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
