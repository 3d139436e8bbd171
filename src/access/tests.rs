//! The core without a server: the shipped pack, a store in a temp dir, a manual clock, and
//! callers made up as the identity layer would hand them over.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use tempfile::TempDir;

use super::answer::Introspection;
use super::ask::{AccessRequest, Asked, ask, dry_run};
use super::mint::{Minted, mint};
use super::revocation::{Revocation, introspect, revoke};
use super::{Answer, ApiError, AppState, RequestStatus, approval, build};
use crate::clock::ManualClock;
use crate::config::Config;
use crate::decision::{EntityRef, Outcome};
use crate::identity::Caller;

struct Core {
    app: AppState,
    clock: Arc<ManualClock>,
    _dir: TempDir,
}

async fn core() -> Core {
    let dir = TempDir::new().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::quickstart();
    config.policy.dir = repo.join("policies");
    config.policy.schemas = repo.join("schemas");
    config.data_dir = dir.path().join("data");
    config.pending_ttl = Duration::from_secs(60);
    let clock = ManualClock::now();
    let app = build(config, clock.clone()).await.unwrap();
    Core {
        app,
        clock,
        _dir: dir,
    }
}

pub(super) fn user(id: &str, groups: &[&str]) -> Caller {
    Caller {
        principal: EntityRef::new("User", id),
        groups: groups.iter().map(|g| EntityRef::new("Group", *g)).collect(),
        mfa: true,
        api_key: false,
        auth_time: None,
        client_id: "tests".into(),
    }
}

pub(super) fn asking(action: &str) -> AccessRequest {
    AccessRequest {
        action: action.into(),
        resource: EntityRef::new("Database", "orders"),
        scopes: Vec::new(),
        duration: None,
        reason: "INC-42".into(),
        context: Map::new(),
        break_glass: false,
        dpop_jkt: None,
        not_before: None,
        extension: None,
    }
}

pub(super) const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn pending_write(core: &Core, alice: &Caller) -> String {
    match ask(&core.app, alice.clone(), HERE, asking("write"))
        .await
        .unwrap()
    {
        Asked::Pending(pending) => {
            assert_eq!(pending.status, RequestStatus::Pending);
            pending.request_id
        }
        other => panic!("expected pending, got {other:?}"),
    }
}

#[tokio::test]
async fn an_allowed_request_is_issued_and_recorded_before_it_is_answered() {
    let core = core().await;
    let alice = user("alice", &["oncall"]);
    let Asked::Issued(issued) = ask(&core.app, alice.clone(), HERE, asking("read"))
        .await
        .unwrap()
    else {
        panic!("read is allowed for on-call");
    };
    assert_eq!(
        (issued.decision, issued.status),
        (Outcome::Allow, RequestStatus::Issued)
    );
    let stored = core.app.store.request(&issued.request_id).await.unwrap();
    assert_eq!(stored.unwrap().record.status, "issued");
    let live = introspect(&core.app, &issued.access_token).await.unwrap();
    assert!(live.active);
    // A token is inactive from its exp on: the clock moves, nothing sleeps.
    core.clock.advance(Duration::from_secs(issued.expires_in));
    let expired = introspect(&core.app, &issued.access_token).await.unwrap();
    assert!(!expired.active);
}

#[tokio::test]
async fn an_escalation_is_approved_by_another_and_minted_with_its_approvers() {
    let core = core().await;
    let alice = user("alice", &["oncall"]);
    let dave = user("dave", &["dba"]);
    let id = pending_write(&core, &alice).await;

    let own = approval::answer(&core.app, &alice, &id, Answer::Approve, String::new()).await;
    assert!(matches!(own, Err(ApiError::Forbidden(_))), "{own:?}");
    let early = mint(&core.app, &alice, HERE, &id, None).await;
    assert!(
        matches!(&early, Err(ApiError::Conflict { status }) if status == "pending"),
        "{early:?}"
    );

    let approved = approval::answer(&core.app, &dave, &id, Answer::Approve, "ok".into())
        .await
        .unwrap();
    assert_eq!(approved.status, "approved");
    let Minted::Issued(issued) = mint(&core.app, &alice, HERE, &id, None).await.unwrap() else {
        panic!("an approved request mints");
    };
    assert_eq!(issued.approvers, Some(vec!["User::\"dave\"".to_owned()]));
    let someone_else = mint(&core.app, &dave, HERE, &id, None).await;
    assert!(matches!(someone_else, Err(ApiError::Forbidden(_))));
}

#[tokio::test]
async fn a_pending_request_expires_when_the_clock_passes_its_window() {
    let core = core().await;
    let alice = user("alice", &["oncall"]);
    let dave = user("dave", &["dba"]);
    let id = pending_write(&core, &alice).await;
    core.clock.advance(Duration::from_secs(61));
    let late = approval::answer(&core.app, &dave, &id, Answer::Approve, String::new()).await;
    assert!(
        matches!(&late, Err(ApiError::Conflict { status }) if status == "expired"),
        "{late:?}"
    );
    let seen = approval::get(&core.app, &alice, &id).await.unwrap();
    assert_eq!(seen.status, "expired");
}

#[tokio::test]
async fn a_dry_run_creates_nothing() {
    let core = core().await;
    let alice = user("alice", &["oncall"]);
    let answer = dry_run(&core.app, alice, HERE, asking("write"), false)
        .await
        .unwrap();
    assert_eq!(answer.decision, Outcome::Escalate);
    assert!(answer.dry_run);
    let page = approval::pending(&core.app, &user("dave", &["dba"]), Default::default())
        .await
        .unwrap();
    assert!(page.requests.is_empty(), "{page:?}");
}

#[tokio::test]
async fn a_revoked_subject_is_refused_and_its_tokens_go_inactive() {
    let core = core().await;
    let alice = user("alice", &["oncall"]);
    let admin = user("sam", &["security"]);
    let Asked::Issued(issued) = ask(&core.app, alice.clone(), HERE, asking("read"))
        .await
        .unwrap()
    else {
        panic!("read is allowed for on-call");
    };
    let block = Revocation {
        jti: None,
        request_id: None,
        subject: Some("User::\"alice\"".into()),
        reason: "left the company".into(),
    };
    let by_alice = revoke(&core.app, &alice, block.clone()).await;
    assert!(matches!(by_alice, Err(ApiError::Forbidden(_))));
    revoke(&core.app, &admin, block).await.unwrap();
    let refused = ask(&core.app, alice, HERE, asking("read")).await;
    assert!(matches!(refused, Err(ApiError::Revoked(_))), "{refused:?}");
    let token = introspect(&core.app, &issued.access_token).await.unwrap();
    assert!(matches!(token, Introspection { active: false, .. }));
}
