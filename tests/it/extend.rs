//! Extending a live grant (`POST /v1/access-requests/{id}/extend`): a new request linked to the
//! first, decided by the policies with `extends` and `extended_secs`, so a pack can cap it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

async fn extend(server: &TestServer, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
    server
        .post(
            &format!("/v1/access-requests/{id}/extend"),
            Some(token),
            body,
        )
        .await
}

#[tokio::test]
async fn a_live_grant_is_extended_until_the_policies_cap_it() {
    // A pack whose reads last an hour, so that a few extensions reach the 4-hour cap.
    let pack = TempPack::shipped();
    let databases = pack
        .read("policies/databases.cedar")
        .replace("@ttl(\"15m\")", "@ttl(\"1h\")");
    pack.write("policies/databases.cedar", &databases);
    let server = TestServer::start(pack, |c| c.default_ttl = Duration::from_secs(3600)).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, first) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-5"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["request_id"].as_str().unwrap().to_owned();

    // Each extension is a new request of its own, its token issued at once.
    let mut live = first_id.clone();
    for hours_so_far in 1..=3 {
        let (status, body) =
            extend(&server, &alice, &live, json!({"reason": "still on INC-5"})).await;
        assert_eq!(status, StatusCode::CREATED, "after {hours_so_far}h: {body}");
        assert_ne!(body["request_id"], live.as_str());
        live = body["request_id"].as_str().unwrap().to_owned();
        let decided = server
            .store_events()
            .await
            .into_iter()
            .find(|e| e.kind == "decision" && e.request_id.as_deref() == Some(live.as_str()))
            .unwrap();
        assert_eq!(decided.data["reason"], "still on INC-5");
        let stored = server.store().await.request(&live).await.unwrap().unwrap();
        assert_eq!(stored.record.extends.as_deref(), Some(first_id.as_str()));
        assert_eq!(stored.record.extended_secs, Some(hours_so_far * 3600));
    }
    // Four hours so far: the guard rail says no.
    let (status, body) = extend(&server, &alice, &live, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["policies"], json!(["deny-extensions-past-4h"]));
}

#[tokio::test]
async fn only_the_requester_extends_and_only_a_live_grant() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let read = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-5"});
    let (status, first) = server.post("/v1/access-requests", Some(&alice), read).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let id = first["request_id"].as_str().unwrap().to_owned();

    let bob = server.dev_token("bob", &["oncall"], true);
    let (status, _) = extend(&server, &bob, &id, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A pending request has no grant to extend.
    let (status, pending) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-5"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let pending = pending["request_id"].as_str().unwrap();
    let (status, body) = extend(&server, &alice, pending, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], "pending");

    // Once its window has passed, neither has the first.
    server.clock.advance(Duration::from_secs(301));
    let (status, body) = extend(&server, &alice, &id, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer live"),
        "{body}"
    );
    // A client cannot pass for an extension.
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-5",
                   "context": {"extended_secs": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// After the first decision: a revoked request is not extended, and a revoked subject extends
/// nothing, not even a request still live.
#[tokio::test]
async fn revocation_ends_every_extension() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let sam = server.dev_token("sam", &["security"], true);
    let read = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-5"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = server
            .post("/v1/access-requests", Some(&alice), read.clone())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    let (status, _) = server
        .post(
            "/v1/revocations",
            Some(&sam),
            json!({"request_id": ids[0], "reason": "leaked"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = extend(&server, &alice, &ids[0], json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], "revoked");

    let (status, _) = server
        .post(
            "/v1/revocations",
            Some(&sam),
            json!({"subject": "User::\"alice\"", "reason": "offboarded"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = extend(&server, &alice, &ids[1], json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("revoked")),
        "{body}"
    );
}
