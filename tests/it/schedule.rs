//! Scheduled access (`not_before`): approvals may come before the window, the token is minted
//! only inside it; time moves on the server's clock, not by sleeping.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::{TestServer, unix_now};

fn at(unix: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(unix).unwrap())
        .unwrap()
        .to_string()
}

async fn mint(server: &TestServer, token: &str, id: &str) -> (StatusCode, Value) {
    server
        .post(
            &format!("/v1/access-requests/{id}/token"),
            Some(token),
            json!({}),
        )
        .await
}

#[tokio::test]
async fn an_allowed_request_is_minted_only_inside_its_scheduled_window() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let opens = unix_now() + 120;
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-9",
                   "not_before": at(opens)}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["not_before"], at(opens));
    assert!(body.get("access_token").is_none());
    let id = body["request_id"].as_str().unwrap().to_owned();

    let (status, body) = mint(&server, &alice, &id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("scheduled: its window opens at {}", at(opens))),
        "{body}"
    );
    let seen: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["not_before"], at(opens));

    server.clock.advance(Duration::from_secs(125));
    let (status, body) = mint(&server, &alice, &id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], "db:read:orders");
    // The token lives no longer than the window: it opened at `opens`, for 15 minutes.
    let expires: jiff::Timestamp = body["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        expires.as_second() <= i64::try_from(opens + 15 * 60).unwrap(),
        "{body}"
    );
}

#[tokio::test]
async fn approvals_may_come_before_the_window_opens() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let opens = unix_now() + 120;
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "CHG-7",
                   "not_before": at(opens)}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "pending");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(mint(&server, &alice, &id).await.0, StatusCode::CONFLICT);
    server.clock.advance(Duration::from_secs(125));
    let (status, body) = mint(&server, &alice, &id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_window_in_the_past_too_far_ahead_or_with_break_glass_is_refused() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let now = unix_now();
    for (not_before, break_glass, needle) in [
        (at(now - 3600), false, "is in the past"),
        (
            at(now + 8 * 24 * 3600),
            false,
            "more than max_schedule_ahead (7days) ahead",
        ),
        (at(now + 600), true, "break_glass is for access now"),
        ("next tuesday".to_owned(), false, "is not an RFC 3339 time"),
    ] {
        let (status, body) = server
            .post(
                "/v1/access-requests",
                Some(&alice),
                json!({"action": "write", "resource": "Database::\"orders\"", "reason": "CHG-7",
                       "not_before": not_before, "break_glass": break_glass}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    // None of them was recorded.
    assert_eq!(server.count_events("decision").await, 0);
}
