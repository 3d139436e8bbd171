//! The core as several replicas on one PostgreSQL database (`JITGATE_TEST_DATABASE_URL`; see
//! `store::postgres::tests`): each replica is a whole application state on its own store and
//! data dir, sharing only the database.

use std::sync::Arc;

use tempfile::TempDir;

use super::ask::{Asked, ask};
use super::keys::{self, KeysError};
use super::mint::{Minted, mint};
use super::revocation::{Revocation, introspect, revoke};
use super::tests::{HERE, asking, user};
use super::{Answer, ApiError, AppState, StartError, approval, build, cluster};
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, SigningAlg};
use crate::store::{Schema, fresh_schema};
use crate::token::{KeyEncryptionKey, SealError};

const KEK: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

/// A replica's configuration: the shipped pack, its own data dir, the shared database.
fn config(schema: &Schema, dir: &TempDir, name: &str, kek: Option<&str>) -> Config {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::quickstart();
    config.policy.dir = repo.join("policies");
    config.policy.schemas = repo.join("schemas");
    config.data_dir = dir.path().join(name);
    config.database_url = schema.url().into();
    config.key_encryption_key = kek.map(|kek| kek.to_owned().into());
    config
}

async fn replica(schema: &Schema, dir: &TempDir, name: &str, clock: &Arc<ManualClock>) -> AppState {
    build(config(schema, dir, name, Some(KEK)), clock.clone())
        .await
        .unwrap()
}

/// The JWKS a replica publishes, as text.
fn jwks(app: &AppState, clock: &ManualClock) -> String {
    serde_json::to_string(&app.tokens.jwks(clock.now())).unwrap()
}

/// Replicas sign with one key kept sealed in the database, serve one JWKS, and take up a
/// rotation made anywhere; without the right key-encryption key a replica does not start.
#[tokio::test]
async fn replicas_share_sealed_keys_and_follow_a_rotation() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let (dir, clock) = (TempDir::new().unwrap(), ManualClock::now());
    let a = replica(&schema, &dir, "a", &clock).await;
    let b = replica(&schema, &dir, "b", &clock).await;
    assert_eq!(a.tokens.kids().len(), 1);
    assert_eq!(a.tokens.kids(), b.tokens.kids());
    assert_eq!(jwks(&a, &clock), jwks(&b, &clock));
    let stored = a.store.signing_keys().await.unwrap();
    let sealed = String::from_utf8_lossy(&stored[0].sealed_private);
    assert!(!sealed.contains("PRIVATE KEY"), "sealed at rest");
    assert!(
        !dir.path().join("a/keys").exists(),
        "no key files beside a database"
    );

    let kek = KeyEncryptionKey::from_base64(KEK).unwrap();
    let rotated = keys::rotate(&b.store, &kek, SigningAlg::Es256, clock.now())
        .await
        .unwrap();
    let newest = rotated.active().unwrap().kid.clone();
    assert!(
        keys::refresh(&a, &kek).await.unwrap(),
        "a takes up b's rotation"
    );
    assert!(keys::refresh(&b, &kek).await.unwrap());
    assert!(
        !keys::refresh(&a, &kek).await.unwrap(),
        "nothing new the second time"
    );
    assert_eq!(a.tokens.kids().last(), Some(&newest));
    assert_eq!(a.tokens.kids(), b.tokens.kids());
    assert_eq!(jwks(&a, &clock), jwks(&b, &clock));
    assert_eq!(
        a.tokens.jwks(clock.now()).keys.len(),
        2,
        "the old key verifies its tokens"
    );

    let alice = user("alice", &["oncall"]);
    let Asked::Issued(issued) = ask(&a, alice, HERE, asking("read")).await.unwrap() else {
        panic!("read is allowed for on-call");
    };
    let header = jsonwebtoken::decode_header(&issued.access_token).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(newest.as_str()),
        "signed with the newest"
    );
    assert!(introspect(&b, &issued.access_token).await.unwrap().active);

    let without = build(config(&schema, &dir, "c", None), clock.clone()).await;
    assert!(
        matches!(
            &without,
            Err(StartError::StoredKeys(KeysError::Seal(SealError::BadKey(
                _
            ))))
        ),
        "{without:?}"
    );
    let other = "A".repeat(43);
    let wrong = build(config(&schema, &dir, "d", Some(&other)), clock.clone()).await;
    assert!(
        matches!(
            &wrong,
            Err(StartError::StoredKeys(KeysError::Seal(
                SealError::Open { .. }
            )))
        ),
        "{wrong:?}"
    );
}

/// Any request can go to any replica: asked on A, approved on B, minted on C; a revocation
/// made on C is honoured by A at once (the database is the only truth, nothing is cached).
#[tokio::test]
async fn a_request_asked_on_one_replica_is_approved_on_another_and_minted_on_a_third() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let (dir, clock) = (TempDir::new().unwrap(), ManualClock::now());
    let a = replica(&schema, &dir, "a", &clock).await;
    let b = replica(&schema, &dir, "b", &clock).await;
    let c = replica(&schema, &dir, "c", &clock).await;
    let alice = user("alice", &["oncall"]);
    let Asked::Pending(pending) = ask(&a, alice.clone(), HERE, asking("write")).await.unwrap()
    else {
        panic!("write escalates");
    };
    let id = pending.request_id;
    let dave = user("dave", &["dba"]);
    let approved = approval::answer(&b, &dave, &id, Answer::Approve, "ok".into())
        .await
        .unwrap();
    assert_eq!(approved.status, "approved");
    let again = approval::answer(&c, &dave, &id, Answer::Approve, "again".into()).await;
    assert!(again.is_err(), "{again:?}");
    let Minted::Issued(issued) = mint(&c, &alice, HERE, &id, None).await.unwrap() else {
        panic!("an approved request mints on any replica");
    };
    assert!(introspect(&a, &issued.access_token).await.unwrap().active);

    let admin = user("sam", &["security"]);
    let revocation = Revocation {
        jti: None,
        request_id: Some(id.clone()),
        subject: None,
        reason: "test".into(),
    };
    revoke(&c, &admin, revocation).await.unwrap();
    assert!(!introspect(&a, &issued.access_token).await.unwrap().active);
    assert!(!introspect(&b, &issued.access_token).await.unwrap().active);
    let report = a.store.verify_audit().await.unwrap().expect("one chain");
    assert!(report.events >= 6, "{report:?}");

    for replica in [&a, &b, &c] {
        cluster::beat(replica).await.unwrap();
    }
    let view = cluster::cluster(&b, &admin).await.unwrap();
    let mut ids: Vec<&str> = view.replicas.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = [&a, &b, &c].map(|r| r.replica.id.as_str());
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let version = a.policies.current().version().to_owned();
    assert!(view.replicas.iter().all(|r| r.policy_version == version));
    let metrics = c.metrics.render(); // c beat last: it saw all three
    let line = format!("jitgate_cluster_replicas{{policy_version=\"{version}\"}} 3");
    assert!(metrics.contains(&line), "{metrics}");
    let refused = cluster::cluster(&a, &alice).await;
    assert!(
        matches!(refused, Err(ApiError::Forbidden(_))),
        "{refused:?}"
    );
}

/// The per-principal limit holds for the cluster: what one replica counted is refused on
/// another once they have exchanged counts (every second in service; here, by hand).
#[tokio::test]
async fn the_rate_limit_holds_across_replicas() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let (dir, clock) = (TempDir::new().unwrap(), ManualClock::now());
    let limited = |name: &str| {
        let mut config = config(&schema, &dir, name, Some(KEK));
        config.rate_limit.per_principal_per_minute = 10;
        build(config, clock.clone())
    };
    let a = limited("a").await.unwrap();
    let b = limited("b").await.unwrap();
    let alice = user("alice", &["oncall"]);
    for _ in 0..6 {
        ask(&a, alice.clone(), HERE, asking("read")).await.unwrap();
    }
    cluster::exchange_rates(&a).await.unwrap();
    cluster::exchange_rates(&b).await.unwrap();
    for _ in 0..4 {
        ask(&b, alice.clone(), HERE, asking("read")).await.unwrap();
    }
    let refused = ask(&b, alice.clone(), HERE, asking("read")).await;
    assert!(
        matches!(refused, Err(ApiError::RateLimited { .. })),
        "{refused:?}"
    );
    cluster::exchange_rates(&b).await.unwrap();
    cluster::exchange_rates(&a).await.unwrap();
    let refused = ask(&a, alice.clone(), HERE, asking("read")).await;
    assert!(
        matches!(refused, Err(ApiError::RateLimited { .. })),
        "{refused:?}"
    );
    // A minute on, every request has left the window, here and there.
    clock.advance(std::time::Duration::from_secs(61));
    cluster::exchange_rates(&a).await.unwrap();
    cluster::exchange_rates(&b).await.unwrap();
    cluster::exchange_rates(&a).await.unwrap();
    ask(&a, alice, HERE, asking("read")).await.unwrap();
}
