//! Escalated requests over HTTP (issue 4): approvers decided by Cedar, quorum, deny, cancel,
//! expiry, re-evaluation at mint, break-glass, and what survives a restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// Alice (on call) asks to write to production orders: one DBA approval needed.
async fn escalated_write(server: &TestServer) -> (String, String) {
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-42"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    (body["request_id"].as_str().unwrap().to_owned(), alice)
}

#[tokio::test]
async fn an_approved_request_is_minted_with_its_approvers() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let (id, alice) = escalated_write(&server).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let sam = server.dev_token("sam", &["sre"], true);
    let path = |action: &str| format!("/v1/access-requests/{id}/{action}");

    let (status, body) = server.post(&path("approve"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "self-approval: {body}");
    let (status, body) = server.post(&path("approve"), Some(&sam), json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "not an approver by policy: {body}"
    );
    let (status, body) = server.post(&path("token"), Some(&alice), json!({})).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::CONFLICT, json!("pending"))
    );

    let (status, body) = server
        .post(
            &path("approve"),
            Some(&dave),
            json!({"comment": "ok for INC-42"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["approvals"][0]["approver"], "User::\"dave\"");
    let (status, body) = server.post(&path("approve"), Some(&dave), json!({})).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::CONFLICT, json!("approved"))
    );

    let (status, body) = server.post(&path("token"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert_eq!(claims.jit.approvers, ["User::\"dave\""]);
    assert_eq!(claims.jit.request_id, id);
    assert_eq!(claims.scope, "db:write:orders");
    // Minting again inside the approved window is allowed and audited.
    let (status, _) = server.post(&path("token"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server.post(&path("token"), Some(&dave), json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only the requester mints: {body}"
    );

    let seen: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "issued");
    let stranger = server.dev_token("mallory", &[], true);
    let hidden = server
        .get(&format!("/v1/access-requests/{id}"), Some(&stranger))
        .await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let (pack, config) = server.stop().await;
    let store = jitgate::store::Store::open("", &config.data_dir)
        .await
        .unwrap();
    let issued = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "token.issued")
        .count();
    assert_eq!(issued, 2, "each mint is audited");
    drop(pack);
}

#[tokio::test]
async fn one_deny_ends_and_the_requester_may_cancel() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let (id, alice) = escalated_write(&server).await;
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/deny"),
            Some(&dave),
            json!({"comment": "use the replica"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("denied"))
    );
    for action in ["approve", "deny"] {
        let erin = server.dev_token("erin", &["dba"], true);
        let (status, body) = server
            .post(
                &format!("/v1/access-requests/{id}/{action}"),
                Some(&erin),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, body["status"].clone()),
            (StatusCode::CONFLICT, json!("denied"))
        );
    }
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (id, alice) = escalated_write(&server).await;
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/cancel"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the requester cancels");
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::CONFLICT, json!("cancelled"))
    );
}

#[tokio::test]
async fn a_quorum_of_two_needs_two_distinct_approvers() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    // On call as well as DBA, so the business-hours guard rail does not apply.
    let carol = server.dev_token("carol", &["oncall", "dba"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&carol),
            json!({"action": "admin", "resource": "Database::\"orders\"", "reason": "migration"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["approvals_required"], 2);
    let id = body["request_id"].as_str().unwrap();
    let path = format!("/v1/access-requests/{id}/approve");
    let erin = server.dev_token("erin", &["dba"], true);
    let frank = server.dev_token("frank", &["dba"], true);
    let (_, body) = server.post(&path, Some(&erin), json!({})).await;
    assert_eq!(body["status"], "pending");
    let (status, _) = server.post(&path, Some(&erin), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "each approver counts once");
    let (_, body) = server.post(&path, Some(&frank), json!({})).await;
    assert_eq!(body["status"], "approved");
}

#[tokio::test]
async fn concurrent_approvals_move_the_request_once() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let (id, _) = escalated_write(&server).await;
    let path = format!("/v1/access-requests/{id}/approve");
    let dave = server.dev_token("dave", &["dba"], true);
    let erin = server.dev_token("erin", &["dba"], true);
    let (a, b) = tokio::join!(
        server.post(&path, Some(&dave), json!({})),
        server.post(&path, Some(&erin), json!({})),
    );
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let loser = if a.0 == StatusCode::CONFLICT {
        a.1
    } else {
        b.1
    };
    assert_eq!(loser["status"], "approved");
}

#[tokio::test]
async fn an_expired_request_cannot_be_approved() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.pending_ttl = Duration::from_secs(1);
    })
    .await;
    let (id, alice) = escalated_write(&server).await;
    // Wait out the one-second pending window; nothing has marked the request expired yet.
    server.clock.advance(Duration::from_millis(2100));
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::CONFLICT, json!("expired"))
    );
    let seen: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "expired");
}

#[tokio::test]
async fn minting_re_evaluates_the_request() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let (id, alice) = escalated_write(&server).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let (_, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(body["status"], "approved");
    // A change freeze lands between approval and mint.
    server.pack().write(
        "policies/freeze.cedar",
        "@id(\"change-freeze\")\n@advice(\"Production is frozen for the release.\")\nforbid (principal, action == Action::\"write\", resource);\n",
    );
    let token = server.dev_token("x", &[], true);
    for _ in 0..100 {
        let policies = server.policies(&token).await;
        if policies["policies"].as_array().unwrap().len() == 18 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["policies"], json!(["change-freeze"]));
    assert_eq!(
        body["advice"],
        json!(["Production is frozen for the release."])
    );
    assert!(body.get("access_token").is_none());
}

#[tokio::test]
async fn the_pending_list_shows_what_the_caller_may_approve_oldest_first() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(escalated_write(&server).await.0);
    }
    let dave = server.dev_token("dave", &["dba"], true);
    let list = |token: String, query: String| {
        let server = &server;
        async move {
            server
                .get(
                    &format!("/v1/access-requests?status=pending{query}"),
                    Some(&token),
                )
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = list(dave.clone(), "&limit=2".into()).await;
    let page: Vec<&str> = first["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str(), ids[1].as_str()]);
    let next = first["next"].as_str().unwrap().to_owned();
    let second = list(dave.clone(), format!("&limit=2&cursor={next}")).await;
    assert_eq!(second["requests"][0]["request_id"], ids[2].as_str());
    assert_eq!(second["next"], Value::Null);
    // An SRE may approve host requests only; alice may not approve her own.
    let sam = server.dev_token("sam", &["sre"], true);
    assert_eq!(list(sam, String::new()).await["requests"], json!([]));
    let alice = server.dev_token("alice", &["oncall", "dba"], true);
    assert_eq!(list(alice, String::new()).await["requests"], json!([]));
}

#[tokio::test]
async fn expired_requests_are_written_down_and_audited() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.pending_ttl = Duration::from_secs(1);
    })
    .await;
    let (id, _) = escalated_write(&server).await;
    server.clock.advance(Duration::from_secs(2));
    let store = server.store().await;
    let mut status = String::new();
    for _ in 0..100 {
        status = store.request(&id).await.unwrap().unwrap().record.status;
        if status == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "expired");
    let (pack, config) = server.stop().await;
    let store = jitgate::store::Store::open("", &config.data_dir)
        .await
        .unwrap();
    let kinds: Vec<String> = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"request.expired".to_owned()), "{kinds:?}");
    drop(pack);
}

#[tokio::test]
async fn break_glass_issues_at_once_and_waits_for_review() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "SEV1 outage", "break_glass": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "needs_review");
    assert_eq!(body["break_glass"], true);
    assert_eq!(body["decision"], "escalate");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert!(claims.jit.approvers.is_empty());
    let id = body["request_id"].as_str().unwrap().to_owned();
    // The audit trail and the metrics say what happened as the answer does.
    let events = server.store_events().await;
    let decided = events
        .iter()
        .find(|e| e.kind == "decision" && e.request_id.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(decided.data["decision"], "escalate");
    assert_eq!(decided.data["status"], "needs_review");
    assert_eq!(decided.data["break_glass"], true);
    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("jitgate_break_glass_total{action=\"write\"} 1\n"),
        "{metrics}"
    );

    // Asked where a policy does not allow it (two approvals, no break-glass): nothing changes.
    let carol = server.dev_token("carol", &["oncall", "dba"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&carol),
            json!({"action": "admin", "resource": "Database::\"orders\"", "break_glass": true}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::ACCEPTED, json!("pending"))
    );

    let review = format!("/v1/access-requests/{id}/review");
    let (status, _) = server
        .post(&review, Some(&carol), json!({"comment": "fine"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only administrators review");
    let sid = server.dev_token("sid", &["security"], true);
    let (status, _) = server.post(&review, Some(&sid), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a review needs a comment");
    let (status, body) = server
        .post(
            &review,
            Some(&sid),
            json!({"comment": "checked the SEV1 timeline"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("reviewed"))
    );
    let (status, body) = server
        .post(&review, Some(&sid), json!({"comment": "again"}))
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::CONFLICT, json!("reviewed"))
    );
    let (pack, config) = server.stop().await;
    let store = jitgate::store::Store::open("", &config.data_dir)
        .await
        .unwrap();
    let kinds: Vec<String> = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&"break_glass".to_owned()) && kinds.contains(&"request.reviewed".to_owned()),
        "{kinds:?}"
    );
    drop(pack);
}

#[tokio::test]
async fn pending_requests_survive_a_restart() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let (id, alice) = escalated_write(&server).await;
    let (pack, config) = server.stop().await;
    let server = TestServer::start_with(pack, config).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("approved"))
    );
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Replaces `from` by `to` in `databases.cedar` and waits until the server has loaded it.
async fn change_databases_policy(server: &TestServer, from: &str, to: &str) {
    let token = server.dev_token("x", &[], true);
    let before = server.policies(&token).await["version"].clone();
    server.pack().edit("policies/databases.cedar", from, to);
    for _ in 0..200 {
        if server.policies(&token).await["version"] != before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the edited policy was not loaded");
}

/// Alice's production write, approved by dave: the request id.
async fn approved_write(server: &TestServer) -> String {
    let (id, _) = escalated_write(server).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("approved"))
    );
    assert_eq!(body["granted_scopes"], json!(["db:write:orders"]));
    id
}

async fn mint(server: &TestServer, id: &str, groups: &[&str]) -> (StatusCode, Value) {
    let alice = server.dev_token("alice", groups, true);
    server
        .post(
            &format!("/v1/access-requests/{id}/token"),
            Some(&alice),
            json!({}),
        )
        .await
}

#[tokio::test]
async fn minting_needs_the_approvals_the_policies_now_require() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let id = approved_write(&server).await;
    change_databases_policy(
        &server,
        "@approval(\"1\")\n@break_glass(\"true\")\n@advice(\"Production writes",
        "@approval(\"2\")\n@break_glass(\"true\")\n@advice(\"Production writes",
    )
    .await;
    let (status, body) = mint(&server, &id, &["oncall"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("require 2 approvals in stage `default` and 1 were given"),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
}

#[tokio::test]
async fn a_widened_scope_is_not_minted_under_an_older_approval() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let id = approved_write(&server).await;
    change_databases_policy(
        &server,
        "@scope(\"db:write:{resource.id}\")",
        "@scope(\"db:read:{resource.id} db:write:{resource.id} db:admin:{resource.id}\")",
    )
    .await;
    let (status, body) = mint(&server, &id, &["oncall"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], "db:write:orders");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert_eq!(claims.scope, "db:write:orders");
}

#[tokio::test]
async fn groups_gained_since_asking_add_no_scopes() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let id = approved_write(&server).await;
    // Alice joined the DBAs since: `dba-db-write` now grants her read and write outright.
    let (status, body) = mint(&server, &id, &["oncall", "dba"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], "db:write:orders");
}

#[tokio::test]
async fn a_grant_with_nothing_approved_in_it_is_refused() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let id = approved_write(&server).await;
    change_databases_policy(
        &server,
        "@scope(\"db:write:{resource.id}\")",
        "@scope(\"db:dump:{resource.id}\")",
    )
    .await;
    let (status, body) = mint(&server, &id, &["oncall"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none of the scopes"),
        "{body}"
    );
}

#[tokio::test]
async fn a_request_approved_before_grants_were_recorded_is_not_minted() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let id = approved_write(&server).await;
    // As a row written before migration 0007 reads (the file edited directly).
    rusqlite::Connection::open(server.config.data_dir.join("jitgate.db"))
        .unwrap()
        .execute(
            "UPDATE access_requests SET granted_scopes = NULL, audience = NULL WHERE id = ?",
            [&id],
        )
        .unwrap();
    let (status, body) = mint(&server, &id, &["oncall"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.get("access_token").is_none());
}

#[tokio::test]
async fn answers_that_carry_a_token_are_never_cached() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let id = approved_write(&server).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let answered = |path: String, body: Value| {
        let request = server
            .http
            .post(format!("{}{path}", server.base))
            .bearer_auth(&alice)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let issued = answered(
        "/v1/access-requests".into(),
        json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-42"}),
    )
    .await;
    let minted = answered(format!("/v1/access-requests/{id}/token"), json!({})).await;
    for response in [issued, minted] {
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            response
                .headers()
                .get(reqwest::header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{}",
            response.url()
        );
    }
}

/// The ids of a page of the pending list, and its `next`.
async fn pending_page(
    server: &TestServer,
    token: &str,
    cursor: Option<&str>,
) -> (Vec<String>, Value) {
    let query = cursor.map_or_else(String::new, |c| format!("&cursor={c}"));
    let response = server
        .get(
            &format!("/v1/access-requests?status=pending{query}"),
            Some(token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let ids = body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["next"].clone())
}

#[tokio::test]
async fn the_pending_list_checks_a_bounded_number_of_rows_per_call() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.rate_limit.pending_list_scan = 3;
    })
    .await;
    // Five requests for root on a production host: SREs approve them, DBAs do not.
    let sam = server.dev_token("sam", &["sre", "oncall"], true);
    for _ in 0..5 {
        let (status, body) = server
            .post(
                "/v1/access-requests",
                Some(&sam),
                json!({"action": "sudo", "resource": "Host::\"web-1\"", "reason": "INC-7"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (id, _) = escalated_write(&server).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let (first, next) = pending_page(&server, &dave, None).await;
    assert!(first.is_empty(), "{first:?}");
    let mut cursor = next
        .as_str()
        .expect("a cursor past the rows checked")
        .to_owned();
    let mut found = Vec::new();
    for _ in 0..5 {
        let (ids, next) = pending_page(&server, &dave, Some(&cursor)).await;
        found.extend(ids);
        match next.as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(found, [id]);
}

#[tokio::test]
async fn the_pending_list_is_rate_limited() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.rate_limit.operations_per_principal_per_minute = 5;
    })
    .await;
    let dave = server.dev_token("dave", &["dba"], true);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = server
            .get("/v1/access-requests?status=pending", Some(&dave))
            .await;
        statuses.push(response.status());
    }
    assert_eq!(statuses[..5], [StatusCode::OK; 5]);
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 3]);
}

/// The pending list shows each request as its own page does: the approvals given so far, and
/// what approving grants (scopes, token lifetime) beside what was asked.
#[tokio::test]
async fn the_pending_list_shows_approvals_so_far_and_what_approving_grants() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    // DBAs change production in business hours only.
    server.move_to_business_hours();
    let dora = server.dev_token("dora", &["dba"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&dora),
            json!({"action": "admin", "resource": "Database::\"orders\"", "duration": "10m", "reason": "migration"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"].as_str().unwrap();
    let erin = server.dev_token("erin", &["dba"], true);
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&erin),
            json!({"comment": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let frank = server.dev_token("frank", &["dba"], true);
    let listed: Value = server
        .get("/v1/access-requests?status=pending", Some(&frank))
        .await
        .json()
        .await
        .unwrap();
    let listed = &listed["requests"][0];
    let single: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&frank))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, &single, "the list and the request page disagree");
    assert_eq!(listed["approvals"][0]["approver"], "User::\"erin\"");
    assert_eq!(listed["approvals_required"], 2);
    assert_eq!(listed["granted_scopes"], json!(["db:admin:orders"]));
    assert_eq!(listed["duration_secs"], 600);
    assert_eq!(listed["lifetime_secs"], 600);
}

/// Administrators list break-glass requests waiting for review; nobody else may.
#[tokio::test]
async fn administrators_list_break_glass_requests_awaiting_review() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = server
            .post(
                "/v1/access-requests",
                Some(&alice),
                json!({"action": "write", "resource": "Database::\"orders\"", "reason": "SEV1 outage", "break_glass": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    let listed = |token: String, query: &'static str| {
        let server = &server;
        async move {
            let response = server
                .get(
                    &format!("/v1/access-requests?status=needs_review{query}"),
                    Some(&token),
                )
                .await;
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // Like the pending list, it holds what the caller may act on: nothing, for others.
    let nothing = (StatusCode::OK, json!({"requests": [], "next": null}));
    assert_eq!(listed(alice.clone(), "").await, nothing);
    let dave = server.dev_token("dave", &["dba"], true);
    assert_eq!(listed(dave, "").await, nothing);

    let sam = server.dev_token("sam", &["security"], true);
    let (status, first) = listed(sam.clone(), "&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let page: Vec<&str> = first["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(first["requests"][0]["status"], "needs_review");
    let next = first["next"].as_str().unwrap().to_owned();
    let second = server
        .get(
            &format!("/v1/access-requests?status=needs_review&limit=2&cursor={next}"),
            Some(&sam),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(second["requests"][0]["request_id"], ids[2].as_str());
    assert_eq!(second["next"], Value::Null);

    // Reviewed, it leaves the list.
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{}/review", ids[0]),
            Some(&sam),
            json!({"comment": "outage confirmed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = listed(sam, "").await;
    assert_eq!(after["requests"].as_array().unwrap().len(), 2);
    assert_eq!(listed(alice, "").await, nothing);
}

/// A pack where on-call engineers may change a production schema after a DBA, then security,
/// approves; security approves only in its own stage.
pub(super) fn staged_pack() -> TempPack {
    let pack = TempPack::shipped();
    pack.write(
        "policies/stages.cedar",
        r#"
@id("oncall-db-admin-in-stages")
@scope("db:admin:{resource.id}")
@ttl("20m")
@audience("db-proxy")
@stages("dba:1, security:1")
permit (principal in Group::"oncall", action == Action::"admin", resource in Environment::"prod");

@id("security-approves-its-stage")
permit (principal in Group::"security", action == Action::"approve", resource is Database)
when { context.stage == "security" };

@id("only-security-in-the-security-stage")
forbid (principal, action == Action::"approve", resource)
when { context.stage == "security" }
unless { principal in Group::"security" };
"#,
    );
    pack
}

#[tokio::test]
async fn stages_are_approved_in_order_each_by_its_own_approvers() {
    let server = TestServer::start(staged_pack(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let ask =
        json!({"action": "admin", "resource": "Database::\"orders\"", "reason": "migration 42"});
    let (status, body) = server
        .post("/v1/decisions", Some(&alice), ask.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = json!([{"name": "dba", "required": 1}, {"name": "security", "required": 1}]);
    assert_eq!(body["stages"], plan);
    let (status, body) = server
        .post("/v1/access-requests", Some(&alice), ask.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["stages"], plan);
    assert_eq!(body["approvals_required"], 2);
    let id = body["request_id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/access-requests/{id}/approve");

    // Security may not act before the DBA stage is done.
    let sam = server.dev_token("sam", &["security"], true);
    let (status, body) = server.post(&approve, Some(&sam), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stage `dba`"),
        "{body}"
    );
    let erin = server.dev_token("erin", &["dba"], true);
    let (status, body) = server
        .post(&approve, Some(&erin), json!({"comment": "schema reviewed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["approvals"][0]["stage"], "dba");
    assert_eq!(
        body["stages"],
        json!([
            {"name": "dba", "required": 1, "approvals": 1, "status": "approved"},
            {"name": "security", "required": 1, "approvals": 0, "status": "open"},
        ])
    );
    // No DBA may approve in the security stage.
    let frank = server.dev_token("frank", &["dba"], true);
    let (status, _) = server.post(&approve, Some(&frank), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The security stage is listed to security now, and its approval approves.
    let listed: Value = server
        .get("/v1/access-requests?status=pending", Some(&sam))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["requests"][0]["request_id"], id.as_str());
    let (status, body) = server.post(&approve, Some(&sam), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["approvals"][1]["stage"], "security");
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert_eq!(
        claims.jit.approvers,
        ["User::\"erin\"".to_owned(), "User::\"sam\"".to_owned()]
    );
    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    for stage in ["dba", "security"] {
        assert!(
            metrics.contains(&format!(
                "jitgate_approval_wait_seconds_count{{stage=\"{stage}\"}} 1\n"
            )),
            "{metrics}"
        );
    }

    // One approver acts in one stage only, even one the policies allow in both; a deny in
    // the last stage ends a request.
    let (_, body) = server.post("/v1/access-requests", Some(&alice), ask).await;
    let second = body["request_id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/access-requests/{second}/approve");
    let mia = server.dev_token("mia", &["dba", "security"], true);
    let (status, _) = server.post(&approve, Some(&mia), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.post(&approve, Some(&mia), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{second}/deny"),
            Some(&sam),
            json!({"comment": "not during the freeze"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "denied");
    assert_eq!(body["approvals"][1]["stage"], "security");
}

/// A policy may ask for a fresh sign-in before an approval: `auth_age_secs` is how long ago
/// the approver signed in.
#[tokio::test]
async fn a_policy_may_require_a_fresh_sign_in_to_approve() {
    let pack = TempPack::shipped();
    pack.write(
        "policies/fresh.cedar",
        r#"@id("approve-after-a-fresh-sign-in")
@advice("Sign in again (within 5 minutes) to approve.")
forbid (principal, action == Action::"approve", resource)
when { context.auth_age_secs > 300 };
"#,
    );
    let server = TestServer::start(pack, |_| {}).await;
    let (id, _) = escalated_write(&server).await;
    // Dave signed in 10 minutes ago; his token is still valid for two more.
    let signed_in = super::harness::unix_now() - 600;
    let stale = jitgate::identity::DevIssuer::open(&server.config.data_dir, signed_in)
        .unwrap()
        .mint(
            "dave",
            &["dba".to_owned()],
            true,
            Duration::from_secs(720),
            signed_in,
        )
        .unwrap();
    let approve = format!("/v1/access-requests/{id}/approve");
    let (status, body) = server.post(&approve, Some(&stale), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let fresh = server.dev_token("dave", &["dba"], true);
    let (status, body) = server.post(&approve, Some(&fresh), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
}

/// `?status=mine`: the caller's own requests, newest first, and nobody else's.
#[tokio::test]
async fn each_caller_lists_its_own_requests_newest_first() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(escalated_write(&server).await.0);
    }
    let alice = server.dev_token("alice", &["oncall"], true);
    let page = |token: String, query: String| {
        let server = &server;
        async move {
            server
                .get(
                    &format!("/v1/access-requests?status=mine{query}"),
                    Some(&token),
                )
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = page(alice.clone(), "&limit=2".into()).await;
    let listed: Vec<&str> = first["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let next = first["next"].as_str().unwrap().to_owned();
    let second = page(alice, format!("&limit=2&cursor={next}")).await;
    assert_eq!(second["requests"][0]["request_id"], ids[0].as_str());
    assert_eq!(second["next"], Value::Null);
    let bob = server.dev_token("bob", &["oncall"], true);
    assert_eq!(page(bob, String::new()).await["requests"], json!([]));
}
