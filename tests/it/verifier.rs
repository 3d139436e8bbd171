//! `jitgate::verify::ResourceVerifier`, embedded as a resource server embeds it, against a
//! running jitgate: valid tokens, wrong audience, scopes, revocation through the feed, a stale
//! feed, a key rotated while the verifier runs, a key withdrawn from the JWKS, a JWKS that
//! cannot be read, a revocation through the leeway, and `iat` in the future.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jitgate::token::{AccessClaims, KeyRing};
use jitgate::verify::{Clock, ResourceConfig, ResourceVerifier, VerifyError, require_scopes};
use reqwest::StatusCode;
use serde_json::json;

use super::TempPack;
use super::harness::{TestServer, unix_now};

async fn read_token(server: &TestServer) -> String {
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn config(server: &TestServer, audience: &str) -> ResourceConfig {
    let mut config = ResourceConfig::new(&server.base, audience);
    // The test server's API key for Service::"deployer".
    config.feed_credential = Some("jg_deploy-secret".into());
    config.refetch_every = Duration::ZERO;
    config
}

#[tokio::test]
async fn the_verifier_checks_audience_scopes_and_the_revocation_feed() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let verifier = ResourceVerifier::connect(config(&server, "db-proxy"))
        .await
        .unwrap();
    let token = read_token(&server).await;
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.sub, "alice");
    require_scopes(&claims, &["db:read:orders"]).unwrap();
    assert!(matches!(
        require_scopes(&claims, &["db:write:orders"]),
        Err(VerifyError::InsufficientScope(_))
    ));

    let elsewhere = ResourceVerifier::connect(config(&server, "billing"))
        .await
        .unwrap();
    assert!(elsewhere.verify(&token).await.is_err(), "wrong audience");
    let mut tampered = token.clone();
    tampered.insert(token.len() / 2, 'x');
    assert!(verifier.verify(&tampered).await.is_err());

    // Revoked at jitgate: refused once the feed has been read.
    let admin = server.dev_token("sam", &["security"], true);
    let (status, body) = server
        .post(
            "/v1/revocations",
            Some(&admin),
            json!({"jti": claims.jti, "reason": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(verifier.poll_revocations().await.unwrap(), 1);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::Revoked)
    ));
    assert_eq!(verifier.poll_revocations().await.unwrap(), 0, "nothing new");
    let other = read_token(&server).await;
    verifier.verify(&other).await.unwrap();

    // A subject revocation covers the subject's earlier tokens.
    let (status, _) = server
        .post(
            "/v1/revocations",
            Some(&admin),
            json!({"subject": "alice", "reason": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    verifier.poll_revocations().await.unwrap();
    assert!(matches!(
        verifier.verify(&other).await,
        Err(VerifyError::Revoked)
    ));

    // A feed not read within stale_after: every token is refused (fail closed) until the
    // poll task reads it again.
    let mut stale = config(&server, "db-proxy");
    stale.stale_after = Duration::from_millis(300);
    stale.poll_every = Duration::from_millis(50);
    let stale = ResourceVerifier::connect(stale).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        stale.verify(&token).await,
        Err(VerifyError::StaleRevocations)
    ));
    let polling = stale.spawn_revocation_poll();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        matches!(stale.verify(&token).await, Err(VerifyError::Revoked)),
        "the poll task keeps the feed fresh"
    );
    polling.abort();
}

#[tokio::test]
async fn a_key_rotated_while_the_verifier_runs_is_fetched_on_first_sight() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let mut slow = config(&server, "db-proxy");
    slow.refetch_every = Duration::from_secs(3600);
    let slow = ResourceVerifier::connect(slow).await.unwrap();
    let verifier = ResourceVerifier::connect(config(&server, "db-proxy"))
        .await
        .unwrap();
    let old = read_token(&server).await;
    verifier.verify(&old).await.unwrap();

    // Rotate as an operator does: `jitgate keys rotate`, then restart (same address).
    let (pack, config_used) = server.stop().await;
    let keys = config_used.data_dir.join("keys");
    KeyRing::open(&keys, config_used.signing_alg, unix_now())
        .unwrap()
        .rotate(config_used.signing_alg, unix_now())
        .unwrap();
    let server = TestServer::start_with(pack, config_used).await;
    let new = read_token(&server).await;
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    assert_ne!(kid(&new), kid(&old));

    verifier.verify(&new).await.unwrap();
    verifier.verify(&old).await.unwrap();
    assert!(
        matches!(slow.verify(&new).await, Err(VerifyError::UnknownKey)),
        "refetches are rate-limited"
    );
}

/// A clock the test moves forward instead of sleeping.
#[derive(Clone, Default)]
struct TestClock(Arc<Mutex<Duration>>);

impl TestClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn clock(&self) -> Clock {
        let ahead = Arc::clone(&self.0);
        Clock::from_fn(move || SystemTime::now() + *ahead.lock().unwrap())
    }
}

/// A verifier without the feed, keys refreshed every minute and stale after two.
fn keys_config(server: &TestServer, clock: &TestClock) -> ResourceConfig {
    let mut config = config(server, "db-proxy");
    config.feed_credential = None;
    config.keys_refresh_every = Duration::from_secs(60);
    config.keys_stale_after = Duration::from_secs(120);
    config.clock = clock.clock();
    config
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_stops_verifying_at_the_next_refresh() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let clock = TestClock::default();
    let verifier = ResourceVerifier::connect(keys_config(&server, &clock))
        .await
        .unwrap();
    let old = read_token(&server).await;
    verifier.verify(&old).await.unwrap();

    // After a compromise the operator rotates and deletes the old key, so the JWKS no longer
    // lists it.
    let (pack, config_used) = server.stop().await;
    let keys = config_used.data_dir.join("keys");
    let mut ring = KeyRing::open(&keys, config_used.signing_alg, unix_now()).unwrap();
    let withdrawn = ring.active().unwrap().path.clone().unwrap();
    ring.rotate(config_used.signing_alg, unix_now()).unwrap();
    std::fs::remove_file(withdrawn).unwrap();
    let server = TestServer::start_with(pack, config_used).await;
    let jwks = server.jwks().await;
    assert!(jwks.find(&kid(&old)).is_none(), "withdrawn from the JWKS");

    verifier.verify(&old).await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert!(
        matches!(verifier.verify(&old).await, Err(VerifyError::UnknownKey)),
        "the refreshed key set replaces the old one"
    );
    let new = read_token(&server).await;
    verifier.verify(&new).await.unwrap();
}

#[tokio::test]
async fn keys_that_cannot_be_refreshed_go_stale_and_every_token_is_refused() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let clock = TestClock::default();
    let verifier = ResourceVerifier::connect(keys_config(&server, &clock))
        .await
        .unwrap();
    let token = read_token(&server).await;
    let (pack, config_used) = server.stop().await;

    // Due for a refresh that fails: the keys held still serve...
    clock.advance(Duration::from_secs(61));
    verifier.verify(&token).await.unwrap();
    // ...until they are older than keys_stale_after (fail closed).
    clock.advance(Duration::from_secs(60));
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::StaleKeys)
    ));

    // Back once the JWKS can be read again.
    let _server = TestServer::start_with(pack, config_used).await;
    verifier.verify(&token).await.unwrap();
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let clock = TestClock::default();
    let verifier = ResourceVerifier::connect(keys_config(&server, &clock))
        .await
        .unwrap();
    let token = read_token(&server).await;
    let mut claims: AccessClaims = verifier.verify(&token).await.unwrap();

    // Signed with the server's own key: valid now (`nbf`), but dated a minute ahead.
    claims.iat += 60;
    let keys = server.config.data_dir.join("keys");
    let ring = KeyRing::open(&keys, server.config.signing_alg, unix_now()).unwrap();
    let key = ring.active().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    let pem = std::fs::read(key.path.as_ref().unwrap()).unwrap();
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(VerifyError::Invalid("issued_in_the_future"))
    ));
    claims.iat -= 60;
    let honest = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap();
    verifier.verify(&honest).await.unwrap();
}

#[tokio::test]
async fn a_revoked_token_stays_refused_through_the_leeway_after_it_expires() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let clock = TestClock::default();
    let mut with_feed = config(&server, "db-proxy");
    with_feed.clock = clock.clock();
    let verifier = ResourceVerifier::connect(with_feed).await.unwrap();
    let token = read_token(&server).await;
    let claims = verifier.verify(&token).await.unwrap();
    let admin = server.dev_token("sam", &["security"], true);
    let (status, body) = server
        .post(
            "/v1/revocations",
            Some(&admin),
            json!({"jti": claims.jti, "reason": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    verifier.poll_revocations().await.unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::Revoked)
    ));

    // Past `exp` but inside the leeway the token itself still verifies: the revocation must
    // outlive it.
    let expires = Duration::from_secs(claims.exp - unix_now());
    clock.advance(expires + Duration::from_secs(3));
    verifier.poll_revocations().await.unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::Revoked)
    ));
    clock.advance(Duration::from_secs(3));
    verifier.poll_revocations().await.unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::Invalid("expired"))
    ));
}

/// A DPoP key: its signing half and public JWK.
fn dpop_key(
    dir: &std::path::Path,
    name: &str,
) -> (jsonwebtoken::EncodingKey, jsonwebtoken::jwk::Jwk) {
    let ring = KeyRing::open(
        &dir.join(name),
        jitgate::config::SigningAlg::Es256,
        unix_now(),
    )
    .unwrap();
    let key = ring.active().unwrap();
    let pem = std::fs::read(key.path.as_ref().unwrap()).unwrap();
    (
        jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        key.public.clone(),
    )
}

/// A proof by `key` with `claims` (`htm`, `htu`, `iat`, `jti`, maybe `ath`).
fn proof(
    key: &(jsonwebtoken::EncodingKey, jsonwebtoken::jwk::Jwk),
    claims: &serde_json::Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(key.1.clone());
    jsonwebtoken::encode(&header, claims, &key.0).unwrap()
}

#[tokio::test]
async fn a_dpop_bound_token_passes_only_with_a_fresh_proof_of_its_key() {
    let keys = tempfile::TempDir::new().unwrap();
    let holder = dpop_key(keys.path(), "holder");
    let thief = dpop_key(keys.path(), "thief");
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let now = unix_now();
    let url = format!("{}/v1/access-requests", server.base);
    let alice = server.dev_token("alice", &["oncall"], true);
    let issue_proof = proof(
        &holder,
        &json!({"jti": "i-1", "htm": "POST", "htu": url, "iat": now}),
    );
    let response = server
        .http
        .post(&url)
        .bearer_auth(&alice)
        .header("dpop", issue_proof)
        .json(&json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let verifier = ResourceVerifier::connect(config(&server, "db-proxy"))
        .await
        .unwrap();

    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::DpopRequired)
    ));
    let resource = ("GET", "https://db-proxy.example/orders");
    let ath = jitgate::verify::dpop::access_token_hash(&token);
    let claims = |jti: &str, ath: &str| json!({"jti": jti, "htm": "GET", "htu": "https://db-proxy.example/orders?x=1", "iat": now, "ath": ath});
    let good = proof(&holder, &claims("r-1", &ath));
    let verified = verifier.verify_dpop(&token, &good, resource).await.unwrap();
    assert_eq!(verified.sub, "alice");
    assert!(matches!(
        verifier.verify_dpop(&token, &good, resource).await,
        Err(VerifyError::DpopReplayed)
    ));
    let stolen = proof(&thief, &claims("r-2", &ath));
    assert!(matches!(
        verifier.verify_dpop(&token, &stolen, resource).await,
        Err(VerifyError::DpopKeyMismatch)
    ));
    let other_token = proof(&holder, &claims("r-3", "not-the-hash"));
    assert!(matches!(
        verifier.verify_dpop(&token, &other_token, resource).await,
        Err(VerifyError::InvalidDpopProof(
            jitgate::verify::dpop::ProofError::AccessTokenHash
        ))
    ));
    let elsewhere = proof(&holder, &claims("r-4", &ath));
    assert!(matches!(
        verifier
            .verify_dpop(
                &token,
                &elsewhere,
                ("GET", "https://db-proxy.example/admin")
            )
            .await,
        Err(VerifyError::InvalidDpopProof(
            jitgate::verify::dpop::ProofError::Url
        ))
    ));
    // A bearer token is not presented with DPoP.
    let bearer = read_token(&server).await;
    let ath = jitgate::verify::dpop::access_token_hash(&bearer);
    let for_bearer = proof(&holder, &claims("r-5", &ath));
    assert!(matches!(
        verifier.verify_dpop(&bearer, &for_bearer, resource).await,
        Err(VerifyError::NotDpopBound)
    ));

    // `jitgate token verify` holds the same line.
    let jitgate = env!("CARGO_BIN_EXE_jitgate");
    let cli = |extra: &[&str]| {
        let mut command = std::process::Command::new(jitgate);
        command
            .args(["token", "verify", "--server", &server.base])
            .args(extra)
            .arg(&token);
        command
    };
    let mut bearer_way = cli(&[]);
    let mut dpop_way = cli(&[
        "--dpop-proof",
        &proof(
            &holder,
            &claims("r-6", &jitgate::verify::dpop::access_token_hash(&token)),
        ),
        "--method",
        "GET",
        "--url",
        "https://db-proxy.example/orders",
    ]);
    let (bearer_way, dpop_way) = tokio::task::spawn_blocking(move || {
        (bearer_way.output().unwrap(), dpop_way.output().unwrap())
    })
    .await
    .unwrap();
    assert!(!bearer_way.status.success());
    assert!(String::from_utf8_lossy(&bearer_way.stderr).contains("DPoP-bound"));
    assert!(
        dpop_way.status.success(),
        "{}",
        String::from_utf8_lossy(&dpop_way.stderr)
    );
    assert!(String::from_utf8_lossy(&dpop_way.stdout).contains("\"jkt\""));
}

/// `jitgate token verify` says which check a token failed, and reads it from standard input
/// with `-` (so it stays out of the shell's history).
#[tokio::test]
async fn token_verify_names_the_failed_check_and_reads_the_token_from_stdin() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = read_token(&server).await;
    let (head, signature) = token.rsplit_once('.').unwrap();
    // Another signature of the right length: what a forger can produce without the key.
    let forged = format!("{head}.{}", "A".repeat(signature.len()));
    let base = server.base.clone();
    let verify = move |audience: &str, token: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args([
                "token",
                "verify",
                "--server",
                &base,
                "--audience",
                audience,
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{token}\n").as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let outcomes = tokio::task::spawn_blocking(move || {
        [
            verify("db-proxy", &token),
            verify("billing", &token),
            verify("db-proxy", &forged),
        ]
    })
    .await
    .unwrap();
    let [good, wrong_audience, forgery] = outcomes;
    assert!(good.0, "{}", good.1);
    assert!(!wrong_audience.0);
    assert!(
        wrong_audience
            .1
            .contains("not valid: aud (it is for another audience)"),
        "{}",
        wrong_audience.1
    );
    assert!(!forgery.0);
    assert!(forgery.1.contains("not valid: signature"), "{}", forgery.1);
}
