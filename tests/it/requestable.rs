//! `GET /v1/requestable`: what a caller could ask for, decided by the live policies, a page at
//! a time, with nothing recorded.

use reqwest::StatusCode;
use serde_json::Value;

use super::TempPack;
use super::harness::TestServer;

async fn page(server: &TestServer, token: &str, query: &str) -> (StatusCode, Value) {
    let response = server
        .get(&format!("/v1/requestable{query}"), Some(token))
        .await;
    (response.status(), response.json().await.unwrap())
}

/// The entry for `action` on `resource` in `listing`.
fn entry<'a>(listing: &'a [Value], action: &str, resource: &str) -> &'a Value {
    listing
        .iter()
        .find(|e| e["action"] == action && e["resource"] == resource)
        .unwrap_or_else(|| panic!("{action} on {resource} is not listed"))
}

#[tokio::test]
async fn every_action_on_every_resource_is_listed_with_what_would_happen() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    // Decisions only: the audit head is signed on its own schedule meanwhile.
    let decisions = || async {
        let events = server.store_events().await;
        (events.iter())
            .filter(|e| e.kind == "decision" || e.kind == "dry_run")
            .count()
    };
    let decisions_before = decisions().await;

    // Pages of 4, followed to the end, list each pair once.
    let mut listing: Vec<Value> = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let (status, body) = page(&server, &alice, &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let entries = body["requestable"].as_array().unwrap();
        assert!(entries.len() <= 4);
        listing.extend(entries.iter().cloned());
        match body["next"].as_str() {
            Some(next) => query = format!("?limit=4&cursor={next}"),
            None => break,
        }
    }
    // Three database actions on three databases, three host actions on two hosts.
    assert_eq!(listing.len(), 15, "{listing:#?}");
    let mut pairs: Vec<String> = listing
        .iter()
        .map(|e| format!("{} {}", e["action"], e["resource"]))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 15, "a pair is listed twice");

    let read = entry(&listing, "read", "Database::\"orders\"");
    assert_eq!(read["decision"], "allow");
    assert_eq!(read["scopes"], serde_json::json!(["db:read:orders"]));
    let write = entry(&listing, "write", "Database::\"orders\"");
    assert_eq!(write["decision"], "escalate");
    assert_eq!(write["approvals_required"], 1);
    assert_eq!(write["break_glass_allowed"], true);
    // Cardholder data needs a ticket in the context, which a listing does not have.
    let billing = entry(&listing, "read", "Database::\"billing\"");
    assert_eq!(billing["decision"], "deny");
    assert_eq!(
        billing["policies"],
        serde_json::json!(["deny-pci-without-ticket"])
    );
    let deploy = entry(&listing, "deploy", "Host::\"web-1\"");
    assert_eq!(deploy["decision"], "deny");
    assert_eq!(deploy["reasons"][0]["code"], "no_permit");

    // Without MFA the same read is denied: each entry is decided for this caller, now.
    let no_mfa = server.dev_token("alice", &["oncall"], false);
    let (_, body) = page(&server, &no_mfa, "?limit=200").await;
    let read = entry(
        body["requestable"].as_array().unwrap(),
        "read",
        "Database::\"orders\"",
    );
    assert_eq!(read["decision"], "deny");
    assert_eq!(
        read["policies"],
        serde_json::json!(["deny-prod-without-mfa"])
    );

    // Asking what could be asked records nothing.
    assert_eq!(decisions().await, decisions_before);
}

#[tokio::test]
async fn a_bad_cursor_or_no_credential_is_refused() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = page(&server, &alice, "?cursor=later").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, _) = page(&server, &alice, "?limit=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = server.get("/v1/requestable", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
