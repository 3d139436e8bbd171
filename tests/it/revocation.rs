//! Revocation (RFC 7009 and `/v1/revocations`), introspection (RFC 7662) and the revocation
//! feed, over HTTP against the real server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// Alice (on call) reads orders: a token at once.
async fn read_token(server: &TestServer, who: &str, duration: Option<u64>) -> String {
    let token = server.dev_token(who, &["oncall"], true);
    let mut body = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"});
    if let Some(seconds) = duration {
        body["duration"] = json!(seconds);
    }
    let (status, answer) = server.post("/v1/access-requests", Some(&token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

/// POSTs `token=<token>` as a form, the way OAuth clients call RFC 7009 and 7662 endpoints.
async fn form(
    server: &TestServer,
    path: &str,
    caller: Option<&str>,
    token: &str,
) -> (StatusCode, String) {
    let mut request = server
        .http
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("token", token), ("token_type_hint", "access_token")])
                .unwrap(),
        );
    if let Some(caller) = caller {
        request = request.bearer_auth(caller);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn introspect(server: &TestServer, caller: &str, token: &str) -> Value {
    let (status, body) = form(server, "/v1/tokens/introspect", Some(caller), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn inactive() -> Value {
    json!({"active": false})
}

#[tokio::test]
async fn introspection_and_rfc_7009_revocation() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let bob = server.dev_token("bob", &["oncall"], true);
    let token = read_token(&server, "alice", None).await;

    // Introspection: authenticated callers only, RFC 7662 shapes.
    let (status, _) = form(&server, "/v1/tokens/introspect", None, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let live = introspect(&server, &bob, &token).await;
    assert_eq!(live["active"], true);
    assert_eq!(live["sub"], "alice");
    assert_eq!(live["scope"], "db:read:orders");
    assert_eq!(live["aud"], "db-proxy");
    assert_eq!(live["token_type"], "Bearer");
    assert!(live["exp"].as_u64().unwrap() > live["iat"].as_u64().unwrap());
    assert!(
        live["jit"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    let as_json: Value = server
        .post("/v1/tokens/introspect", Some(&bob), json!({"token": token}))
        .await
        .1;
    assert_eq!(as_json, live, "form and JSON give the same answer");
    for garbage in ["", "not.a.token", "eyJhbGciOiJub25lIn0.e30.", &alice] {
        assert_eq!(
            introspect(&server, &bob, garbage).await,
            inactive(),
            "{garbage}"
        );
    }
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(introspect(&server, &bob, &forged).await, inactive());

    // RFC 7009: not the holder, not an administrator: 403; unknown tokens: 200.
    let (status, _) = form(&server, "/v1/tokens/revoke", Some(&bob), &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = form(&server, "/v1/tokens/revoke", None, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = form(&server, "/v1/tokens/revoke", Some(&bob), "garbage").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(introspect(&server, &bob, &token).await["active"], true);

    let (status, body) = form(&server, "/v1/tokens/revoke", Some(&alice), &token).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(introspect(&server, &bob, &token).await, inactive());
    let (status, _) = form(&server, "/v1/tokens/revoke", Some(&alice), &token).await;
    assert_eq!(status, StatusCode::OK, "revoking twice is fine");

    // Expired: inactive, and nothing more said.
    let short = read_token(&server, "alice", Some(1)).await;
    assert_eq!(introspect(&server, &bob, &short).await["active"], true);
    server.clock.advance(Duration::from_millis(7_100));
    assert_eq!(introspect(&server, &bob, &short).await, inactive());

    let audit = server.store_events().await;
    assert!(audit.iter().any(|e| e.kind == "revocation.created"
        && e.data["kind"] == "jti"
        && e.data["reason"] == "revoked by its holder"));
}

/// POSTs `body` to `/v1/revocations` as `caller`.
async fn revoke(server: &TestServer, caller: &str, body: Value) -> (StatusCode, Value) {
    server.post("/v1/revocations", Some(caller), body).await
}

/// Alice asks to write orders and dave approves: the approved request's id.
async fn approved_write(server: &TestServer, reason: &str) -> String {
    let alice = server.dev_token("alice", &["oncall"], true);
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": reason}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    id
}

/// `/metrics` counts exactly one revocation of `kind`.
async fn assert_counted_once(server: &TestServer, kind: &str) {
    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(&format!("jitgate_revocations_total{{kind=\"{kind}\"}} 1")),
        "{metrics}"
    );
}

/// The audit trail holds an event of each of `kinds`.
async fn assert_audited(server: &TestServer, kinds: &[&str]) {
    let stored: Vec<String> = server
        .store_events()
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in kinds {
        assert!(stored.iter().any(|k| k == kind), "{kind}: {stored:?}");
    }
}

#[tokio::test]
async fn only_administrators_revoke_and_only_one_target_with_a_reason() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, _) = revoke(&server, &alice, json!({"subject": "bob", "reason": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"subject": "bob", "jti": "j", "reason": "x"}),
        json!({"reason": "x"}),
        json!({"subject": "bob", "reason": " "}),
        json!({"subject": "bob"}),
    ] {
        let (status, body) = revoke(&server, &admin, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn an_administrator_revoking_a_jti_deactivates_that_token() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let token = read_token(&server, "alice", None).await;
    let jti = introspect(&server, &admin, &token).await["jti"].clone();
    let (status, body) = revoke(
        &server,
        &admin,
        json!({"jti": jti, "reason": "leaked in a log"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "jti");
    assert_eq!(body["revoked_by"], "User::\"sam\"");
    assert_eq!(introspect(&server, &admin, &token).await, inactive());
    assert_counted_once(&server, "jti").await;
    assert_audited(&server, &["revocation.created"]).await;
}

#[tokio::test]
async fn revoking_a_request_deactivates_its_tokens_and_it_mints_no_more() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    let id = approved_write(&server, "INC-9").await;
    let mint = format!("/v1/access-requests/{id}/token");
    let (status, minted) = server.post(&mint, Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let write_token = minted["access_token"].as_str().unwrap().to_owned();
    let (status, body) = revoke(
        &server,
        &admin,
        json!({"request_id": id, "reason": "wrong ticket"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(introspect(&server, &admin, &write_token).await, inactive());
    let (status, body) = server.post(&mint, Some(&alice), json!({})).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::CONFLICT, &json!("revoked"))
    );
    let (status, _) = revoke(
        &server,
        &admin,
        json!({"request_id": "req_nope", "reason": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_counted_once(&server, "request_id").await;
    assert_audited(&server, &["revocation.created"]).await;
}

/// An administrator blocks alice: the revocation.
async fn block_alice(server: &TestServer) -> Value {
    let admin = server.dev_token("sam", &["security"], true);
    let (status, revocation) = revoke(
        server,
        &admin,
        json!({"subject": "alice", "reason": "laptop stolen"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{revocation}");
    revocation
}

#[tokio::test]
async fn a_revoked_subject_loses_its_live_tokens_and_is_refused_new_ones() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    let before = read_token(&server, "alice", None).await;
    let approved = approved_write(&server, "INC-10").await;
    block_alice(&server).await;
    assert_eq!(introspect(&server, &admin, &before).await, inactive());
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "revoked");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("laptop stolen")
    );
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{approved}/token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("revoked")),
        "an approved request mints nothing for a revoked subject"
    );
    let other = read_token(&server, "bob", None).await;
    assert_eq!(introspect(&server, &admin, &other).await["active"], true);
    assert_counted_once(&server, "subject").await;
    assert_audited(&server, &["revocation.created", "request.refused"]).await;
}

#[tokio::test]
async fn only_an_administrator_lifts_a_subject_block_and_lifting_restores_only_new_tokens() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    let before = read_token(&server, "alice", None).await;
    let revocation = block_alice(&server).await;
    let lift = format!("/v1/revocations/{}", revocation["id"].as_str().unwrap());
    let delete = |caller: String| {
        let url = format!("{}{lift}", server.base);
        let http = server.http.clone();
        async move { http.delete(url).bearer_auth(caller).send().await.unwrap() }
    };
    assert_eq!(delete(alice.clone()).await.status(), StatusCode::FORBIDDEN);
    let lifted = delete(admin.clone()).await;
    assert_eq!(lifted.status(), StatusCode::OK);
    assert!(lifted.json::<Value>().await.unwrap()["lifted_at"].is_i64());
    assert_eq!(delete(admin.clone()).await.status(), StatusCode::CONFLICT);
    // A token issued in the second of the revocation would still be covered by it.
    server.clock.advance(Duration::from_millis(1_100));
    let after = read_token(&server, "alice", None).await;
    assert_eq!(introspect(&server, &admin, &after).await["active"], true);
    assert_eq!(introspect(&server, &admin, &before).await, inactive());
    assert_audited(&server, &["revocation.lifted"]).await;
}

#[tokio::test]
async fn the_feed_pages_with_a_cursor_and_drops_what_has_expired() {
    // A short pending_ttl makes housekeeping run every second.
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.pending_ttl = Duration::from_secs(4);
    })
    .await;
    let admin = server.dev_token("sam", &["security"], true);
    let reader = server.dev_token("svc", &[], false);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        tokens.push(read_token(&server, "alice", Some(2)).await);
    }
    for token in &tokens {
        let (status, _) = form(&server, "/v1/tokens/revoke", Some(&admin), token).await;
        assert_eq!(status, StatusCode::OK);
    }
    let unrevoked = read_token(&server, "alice", Some(2)).await;
    let (status, _) = server
        .post(
            "/v1/revocations",
            Some(&admin),
            json!({"subject": "mallory", "reason": "left"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let feed = |since: &str, limit: u32| {
        let path = format!("/v1/revocations?since={since}&limit={limit}");
        let reader = reader.clone();
        let server = &server;
        async move {
            let response = server.get(&path, Some(&reader)).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        server.get("/v1/revocations", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let first = feed("0", 2).await;
    assert_eq!(first["revocations"].as_array().unwrap().len(), 2);
    assert_eq!(first["revocations"][0]["kind"], "jti");
    for field in ["id", "value", "revoked_at", "expires_at"] {
        assert!(!first["revocations"][0][field].is_null(), "{field}");
    }
    let second = feed(first["next"].as_str().unwrap(), 2).await;
    assert_eq!(second["revocations"].as_array().unwrap().len(), 1);
    assert_eq!(second["revocations"][0]["kind"], "subject");
    assert_eq!(second["revocations"][0]["value"], "User::\"mallory\"");
    let empty = feed(second["next"].as_str().unwrap(), 2).await;
    assert_eq!(empty["revocations"], json!([]));
    assert_eq!(empty["next"], second["next"], "the cursor stays put");
    assert_eq!(
        server
            .get("/v1/revocations?since=-1", Some(&reader))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    let kinds = |page: Value| -> Vec<String> {
        page["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    // Verifiers accept a token until exp plus their 5 s leeway: its revocation stays that long
    // (issue 11 finding 5), and jitgate's own introspection says inactive from exp on.
    server.clock.advance(Duration::from_millis(3_100));
    assert_eq!(kinds(feed("0", 100).await), ["jti", "jti", "subject"]);
    assert_eq!(introspect(&server, &reader, &tokens[0]).await, inactive());
    assert_eq!(introspect(&server, &reader, &unrevoked).await, inactive());
    // Once past that, their entries leave the feed (and the store).
    server.clock.advance(Duration::from_millis(5_000));
    assert_eq!(kinds(feed("0", 100).await), ["subject"]);
    let mut remaining = usize::MAX;
    for _ in 0..100 {
        remaining = server
            .stored_revocations()
            .await
            .iter()
            .filter(|r| r.kind == "jti")
            .count();
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "housekeeping deletes expired entries");
}

/// Issue 11 finding 7: one revocation per token, request or subject in force; a repeat
/// answers with it and adds no feed entry and no audit event.
#[tokio::test]
async fn revoking_again_changes_nothing() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    let token = read_token(&server, "alice", None).await;
    for _ in 0..5 {
        let (status, body) = form(&server, "/v1/tokens/revoke", Some(&alice), &token).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    }
    let jti = server.verify(&token, "db-proxy").await.jti;
    let (status, again) = server
        .post(
            "/v1/revocations",
            Some(&admin),
            json!({"jti": jti, "reason": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["reason"], "revoked by its holder", "the one in force");

    let subject = json!({"subject": "bob", "reason": "left"});
    let (status, first) = server
        .post("/v1/revocations", Some(&admin), subject.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = server
        .post("/v1/revocations", Some(&admin), subject.clone())
        .await;
    assert_eq!((status, &second), (StatusCode::OK, &first));

    assert_eq!(server.stored_revocations().await.len(), 2);
    assert_eq!(server.count_events("revocation.created").await, 2);
    let feed: Value = server
        .get("/v1/revocations", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(feed["revocations"].as_array().unwrap().len(), 2, "{feed}");

    // Once lifted, the subject can be blocked again.
    let lifted = server
        .http
        .delete(format!(
            "{}/v1/revocations/{}",
            server.base,
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), StatusCode::OK);
    let (status, third) = server.post("/v1/revocations", Some(&admin), subject).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    assert_ne!(third["id"], first["id"]);
}
