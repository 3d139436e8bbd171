//! What happens after the first decision (issue 11): subjects are full principals, a revoked
//! subject keeps no privilege, nobody reviews their own break-glass access, refused privileged
//! attempts are audited, and state-changing endpoints are rate-limited per principal.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

const SERVICE_KEY: &str = "jg_deploy-secret";

async fn read_orders(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server
        .post(
            "/v1/access-requests",
            Some(token),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1"}),
        )
        .await
}

async fn revoke_subject(server: &TestServer, admin: &str, subject: &str) -> (StatusCode, Value) {
    server
        .post(
            "/v1/revocations",
            Some(admin),
            json!({"subject": subject, "reason": "offboarded"}),
        )
        .await
}

async fn get(server: &TestServer, caller: &str, path: &str) -> (StatusCode, Value) {
    let response = server.get(path, Some(caller)).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn audit(server: &TestServer, caller: &str, query: &str) -> (StatusCode, Value) {
    get(server, caller, &format!("/v1/audit?{query}")).await
}

/// The `access.refused` events of the trail, as `(subject, attempt, code)`.
async fn refusals(server: &TestServer) -> Vec<(String, String, String)> {
    server
        .store_events()
        .await
        .into_iter()
        .filter(|e| e.kind == "access.refused")
        .map(|e| {
            (
                e.subject.unwrap_or_default(),
                e.data["attempt"].as_str().unwrap_or_default().to_owned(),
                e.data["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Finding 13: the form jitgate prints blocks the principal; what could never match is 400.
#[tokio::test]
async fn a_subject_block_in_the_printed_form_blocks_the_principal() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let sue = server.dev_token("sue", &["oncall"], true);
    let (status, _) = read_orders(&server, &sue).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, revocation) = revoke_subject(&server, &admin, "User::\"sue\"").await;
    assert_eq!(status, StatusCode::CREATED, "{revocation}");
    assert_eq!(revocation["value"], "User::\"sue\"");
    let (status, body) = read_orders(&server, &sue).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("revoked")),
        "{body}"
    );

    // A bare id means the one principal that can have it.
    let (status, revocation) = revoke_subject(&server, &admin, "tom").await;
    assert_eq!(status, StatusCode::CREATED, "{revocation}");
    assert_eq!(revocation["value"], "User::\"tom\"");

    // Never a silent 201 for a value that could never match.
    for never in [
        "Group::\"oncall\"",
        "Service::\"nobody\"",
        "User::\"sue",
        "User::sue",
        "deployer", // User::"deployer" or the API key's Service::"deployer"
        " ",
    ] {
        let (status, body) = revoke_subject(&server, &admin, never).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{never}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    // The audit filter parses and matches the same way.
    let (status, page) = audit(&server, &admin, "subject=User::%22sue%22&type=decision").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["subject"], "User::\"sue\"");
    let (status, bare) = audit(&server, &admin, "subject=sue&type=decision").await;
    assert_eq!((status, &bare["events"]), (StatusCode::OK, &page["events"]));
    let (status, _) = audit(&server, &admin, "subject=Group::%22oncall%22").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Finding 9: `User::"deployer"` neither holds nor is blocked with `Service::"deployer"`.
#[tokio::test]
async fn subjects_and_holders_compare_full_principals() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let namesake = server.dev_token("deployer", &[], true);
    let deploy = json!({"action": "deploy", "resource": "Host::\"web-1\"", "reason": "v1.2"});
    let (status, body) = server
        .post("/v1/access-requests", Some(SERVICE_KEY), deploy.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    let (status, body) = server
        .post(
            "/v1/tokens/revoke",
            Some(&namesake),
            json!({"token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, live) = server
        .post(
            "/v1/tokens/introspect",
            Some(&admin),
            json!({"token": token}),
        )
        .await;
    assert_eq!(live["active"], true);

    // Blocking the User leaves the Service and its token alone; blocking the Service does not.
    let (status, _) = revoke_subject(&server, &admin, "User::\"deployer\"").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .post("/v1/access-requests", Some(SERVICE_KEY), deploy.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, live) = server
        .post(
            "/v1/tokens/introspect",
            Some(&admin),
            json!({"token": token}),
        )
        .await;
    assert_eq!(live["active"], true);
    let (status, _) = revoke_subject(&server, &admin, "Service::\"deployer\"").await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, dead) = server
        .post(
            "/v1/tokens/introspect",
            Some(&admin),
            json!({"token": token}),
        )
        .await;
    assert_eq!(dead, json!({"active": false}));
    let (status, body) = server
        .post("/v1/access-requests", Some(SERVICE_KEY), deploy)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("revoked"))
    );

    // The holder itself still revokes its token.
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&server.dev_token("alice", &["oncall"], true)),
            json!({"action": "read", "resource": "Database::\"orders\""}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alice_token = body["access_token"].as_str().unwrap().to_owned();
    let alice = server.dev_token("alice", &[], false);
    let (status, _) = server
        .post(
            "/v1/tokens/revoke",
            Some(&alice),
            json!({"token": alice_token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Alice asks to write orders: the pending request's id.
async fn pending_write(server: &TestServer) -> String {
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-9"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["request_id"].as_str().unwrap().to_owned()
}

/// Sam (an administrator) blocks `subject`: the revocation's id.
async fn sam_blocks(server: &TestServer, subject: &str) -> String {
    let sam = server.dev_token("sam", &["security"], true);
    let (status, revocation) = revoke_subject(server, &sam, subject).await;
    assert_eq!(status, StatusCode::CREATED, "{revocation}");
    revocation["id"].as_str().unwrap().to_owned()
}

/// The answer is 403 `revoked`.
fn assert_revoked((status, body): (StatusCode, Value)) {
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("revoked")),
        "{body}"
    );
}

/// `DELETE /v1/revocations/{revocation}` as `caller`.
async fn lift(server: &TestServer, caller: &str, revocation: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .delete(format!("{}/v1/revocations/{revocation}", server.base))
        .bearer_auth(caller)
        .send()
        .await
        .unwrap();
    (response.status(), response.json::<Value>().await.unwrap())
}

/// The trail holds an `access.refused` event with code `revoked` for each of `expected`,
/// written `"<subject> <attempt>"`; one ending in a space matches any attempt it starts.
async fn assert_refused_as_revoked(server: &TestServer, expected: &[&str]) {
    let attempts: Vec<String> = refusals(server)
        .await
        .into_iter()
        .filter(|(_, _, code)| code == "revoked")
        .map(|(subject, attempt, _)| format!("{subject} {attempt}"))
        .collect();
    for expected in expected {
        assert!(
            attempts
                .iter()
                .any(|a| a == expected || (expected.ends_with(' ') && a.starts_with(expected))),
            "{expected}: {attempts:?}"
        );
    }
}

/// Finding 2: a revoked approver neither decides a request nor sees what the approver UI shows.
#[tokio::test]
async fn a_revoked_approver_can_neither_decide_nor_see_requests() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let dave = server.dev_token("dave", &["dba"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    let id = pending_write(&server).await;
    sam_blocks(&server, "User::\"dave\"").await;
    for verb in ["approve", "deny"] {
        assert_revoked(
            server
                .post(
                    &format!("/v1/access-requests/{id}/{verb}"),
                    Some(&dave),
                    json!({}),
                )
                .await,
        );
    }
    // Nor what the approver UI shows.
    assert_revoked(get(&server, &dave, "/v1/access-requests?status=pending").await);
    assert_revoked(get(&server, &dave, &format!("/v1/access-requests/{id}")).await);

    // The request is still pending.
    let response = server
        .get(&format!("/v1/access-requests/{id}"), Some(&alice))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "pending");
    assert_refused_as_revoked(
        &server,
        &[
            "User::\"dave\" POST /v1/access-requests/{id}/approve",
            "User::\"dave\" POST /v1/access-requests/{id}/deny",
        ],
    )
    .await;
}

/// Finding 2: a revoked administrator neither reads the audit trail nor revokes anything.
#[tokio::test]
async fn a_revoked_administrator_can_neither_read_the_audit_trail_nor_revoke() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let mia = server.dev_token("mia", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    sam_blocks(&server, "User::\"mia\"").await;
    assert_revoked(audit(&server, &mia, "type=decision").await);
    assert_revoked(revoke_subject(&server, &mia, "User::\"sam\"").await);
    // Revoking another's token is administration too.
    let (status, issued) = read_orders(&server, &alice).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_revoked(
        server
            .post(
                "/v1/tokens/revoke",
                Some(&mia),
                json!({"token": issued["access_token"]}),
            )
            .await,
    );
    assert_refused_as_revoked(
        &server,
        &[
            "User::\"mia\" GET /v1/audit",
            "User::\"mia\" POST /v1/revocations",
            "User::\"mia\" revoke token ",
        ],
    )
    .await;
}

/// Finding 2: nobody lifts their own block; another administrator does.
#[tokio::test]
async fn nobody_lifts_their_own_block() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let sam = server.dev_token("sam", &["security"], true);
    let mia = server.dev_token("mia", &["security"], true);
    let mia_block = sam_blocks(&server, "User::\"mia\"").await;
    assert_revoked(lift(&server, &mia, &mia_block).await);
    let (status, _) = lift(&server, &sam, &mia_block).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = audit(&server, &mia, "type=decision").await;
    assert_eq!(status, StatusCode::OK, "lifted: {page}");
    assert_refused_as_revoked(&server, &["User::\"mia\" DELETE /v1/revocations/{id}"]).await;
}

/// Finding 3: an administrator does not review their own break-glass access.
#[tokio::test]
async fn nobody_reviews_their_own_break_glass() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let ana = server.dev_token("ana", &["oncall", "security"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&ana),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "SEV1", "break_glass": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "needs_review");
    let review = format!(
        "/v1/access-requests/{}/review",
        body["request_id"].as_str().unwrap()
    );
    let (status, body) = server
        .post(&review, Some(&ana), json!({"comment": "all fine, says me"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let sid = server.dev_token("sid", &["security"], true);
    let (status, body) = server
        .post(&review, Some(&sid), json!({"comment": "checked"}))
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("reviewed"))
    );
}

/// Finding 14: refused privileged attempts are audit events (who, what, why).
#[tokio::test]
async fn refused_privileged_attempts_are_audited() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-9"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let bob = server.dev_token("bob", &["oncall"], true);

    for (caller, path) in [
        (&alice, format!("/v1/access-requests/{id}/approve")),
        (&bob, format!("/v1/access-requests/{id}/approve")),
        (&bob, format!("/v1/access-requests/{id}/review")),
    ] {
        let (status, body) = server
            .post(&path, Some(caller), json!({"comment": "x"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, _) = revoke_subject(&server, &bob, "alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = audit(&server, &bob, "type=decision").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let refused = refusals(&server).await;
    let alice_p = "User::\"alice\"".to_owned();
    let bob_p = "User::\"bob\"".to_owned();
    for expected in [
        (alice_p, format!("approve {id}")),
        (bob_p.clone(), format!("approve {id}")),
        (bob_p.clone(), format!("review {id}")),
        (bob_p.clone(), "create a revocation".to_owned()),
        (bob_p, "read the audit trail".to_owned()),
    ] {
        assert!(
            refused.iter().any(
                |(who, what, code)| (who, what) == (&expected.0, &expected.1)
                    && code == "forbidden"
            ),
            "{expected:?}: {refused:?}"
        );
    }
    let events = server.store_events().await;
    let self_approval = events
        .iter()
        .find(|e| e.kind == "access.refused" && e.subject.as_deref() == Some("User::\"alice\""))
        .unwrap();
    assert_eq!(self_approval.request_id.as_deref(), Some(id.as_str()));
    assert!(
        self_approval.data["reason"]
            .as_str()
            .unwrap()
            .contains("their own request")
    );
}

/// Finding 7: revoke, introspect and the state-changing endpoints count against the
/// per-principal rate limit.
#[tokio::test]
async fn state_changing_endpoints_are_rate_limited_per_principal() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.rate_limit.operations_per_principal_per_minute = 3;
    })
    .await;
    let bob = server.dev_token("bob", &[], false);
    for round in 0..3 {
        let (status, body) = server
            .post("/v1/tokens/introspect", Some(&bob), json!({"token": "x"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{round}: {body}");
    }
    let response = server
        .http
        .post(format!("{}/v1/tokens/revoke", server.base))
        .bearer_auth(&bob)
        .json(&json!({"token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    for path in [
        "/v1/tokens/introspect",
        "/v1/access-requests/req_x/approve",
        "/v1/access-requests/req_x/deny",
        "/v1/access-requests/req_x/cancel",
        "/v1/access-requests/req_x/review",
        "/v1/revocations",
    ] {
        let (status, body) = server.post(path, Some(&bob), json!({"token": "x"})).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {body}");
    }
    // Per principal: others are not slowed down.
    let carol = server.dev_token("carol", &[], false);
    let (status, _) = server
        .post("/v1/tokens/introspect", Some(&carol), json!({"token": "x"}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Operations are counted apart from access requests: a caller that introspects a lot keeps its
/// access-request budget, and its request-rate risk signal does not fire.
#[tokio::test]
async fn operations_do_not_eat_the_access_request_budget() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.rate_limit.per_principal_per_minute = 2;
        c.risk.request_rate = Some(jitgate::config::RequestRateConfig {
            per_minute: 1,
            weight: 25,
        });
    })
    .await;
    let alice = server.dev_token("alice", &["oncall"], true);
    for _ in 0..5 {
        let (status, body) = server
            .post("/v1/tokens/introspect", Some(&alice), json!({"token": "x"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let read = json!({"action": "read", "resource": {"type": "Database", "id": "orders"}, "reason": "INC-1"});
    let (status, body) = server.post("/v1/access-requests", Some(&alice), read).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["risk"]["score"], 0, "{body}");
}
