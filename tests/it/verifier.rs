//! `jitgate::verify::ResourceVerifier`, embedded as a resource server embeds it, against a
//! running jitgate: valid tokens, wrong audience, scopes, revocation through the feed, a stale
//! feed, and a key rotated while the verifier runs.

use std::time::Duration;

use jitgate::token::KeyRing;
use jitgate::verify::{ResourceConfig, ResourceVerifier, VerifyError, require_scopes};
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
