//! The real server on 127.0.0.1:0 with a temp data dir and a copy of the shipped pack, spoken to
//! over HTTP.

use std::path::Path;
use std::time::Duration;

use jitgate::config::{Config, SigningAlg};
use jitgate::identity::DevIssuer;
use jsonwebtoken::decode_header;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::{TestServer, unix_now};

fn oncall_read() -> Value {
    json!({"action": "read", "resource": {"type": "Database", "id": "orders"}, "reason": "INC-1234"})
}

#[tokio::test]
async fn allow_issues_a_token_that_verifies_for_every_algorithm() {
    for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
        let server = TestServer::start(TempPack::shipped(), |c| c.signing_alg = alg).await;
        let token = server.dev_token("alice", &["oncall"], true);
        let (status, body) = server
            .post("/v1/access-requests", Some(&token), oncall_read())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["decision"], "allow");
        assert_eq!(body["status"], "issued");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "db:read:orders");
        assert_eq!(body["policies"], json!(["oncall-db-read"]));
        assert_eq!(body["risk"], json!({"score": 0, "signals": []}));
        assert_eq!(body["advice"], json!([]));
        assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
        let request_id = body["request_id"].as_str().unwrap();

        let claims = server
            .verify(body["access_token"].as_str().unwrap(), "db-proxy")
            .await;
        let header = decode_header(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg.as_str());
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.scope, "db:read:orders");
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(claims.nbf, claims.iat);
        assert!(claims.jti.len() >= 22);
        assert_eq!(claims.client_id, "jitgate-dev");
        assert_eq!(claims.jit.principal, "User::\"alice\"");
        assert_eq!(claims.jit.request_id, request_id);
        assert_eq!(claims.jit.action, "read");
        assert_eq!(claims.jit.resource, "Database::\"orders\"");
        assert_eq!(claims.jit.policies, ["oncall-db-read"]);
        assert!(claims.jit.approvers.is_empty());
        let policies = server.get("/v1/policies", Some(&token)).await;
        let policies: Value = policies.json().await.unwrap();
        assert_eq!(
            claims.jit.policy_version,
            policies["version"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn escalate_deny_and_dry_run_have_their_shapes() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);

    // Business hours are a guard rail for prod writes, but on-call engineers are exempt.
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "duration": 600, "reason": "INC-9"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["decision"], "escalate");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["approvals_required"], 1);
    assert_eq!(body["policies"], json!(["oncall-db-write-approval"]));
    assert!(body["advice"][0].as_str().unwrap().contains("one approval"));
    assert!(body.get("access_token").is_none());

    let no_mfa = server.dev_token("alice", &["oncall"], false);
    let (status, body) = server
        .post("/v1/access-requests", Some(&no_mfa), oncall_read())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["status"], "denied");
    assert_eq!(body["reasons"], json!([{"code": "forbidden"}]));
    assert_eq!(body["policies"], json!(["deny-prod-without-mfa"]));
    assert_eq!(
        body["advice"],
        json!(["Production access needs a sign-in with MFA."])
    );
    assert_eq!(body["error"]["code"], "denied");
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));

    let (status, body) = server
        .post("/v1/decisions", Some(&alice), oncall_read())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["scope"], "db:read:orders");
    assert!(body.get("access_token").is_none());

    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("jitgate_approvals_pending 1"), "{metrics}");

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
        // Signed audit heads come at start and on shutdown.
        .filter(|kind| kind != "audit.head")
        .collect();
    assert_eq!(kinds, ["policy.loaded", "decision", "decision", "dry_run"]);
    // Read from the file directly: no store method counts every request.
    let requests: i64 = rusqlite::Connection::open(config.data_dir.join("jitgate.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM access_requests", [], |row| row.get(0))
        .unwrap();
    assert_eq!(requests, 2, "the dry run creates no request");
    drop(pack);
}

/// Each access request body of `cases` is refused with its status, its error code and a
/// message that contains its needle.
async fn assert_refused_bodies(cases: &[(Value, u16, &str, &str)]) {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    for (body, status, code, needle) in cases {
        let (got, answer) = server
            .post("/v1/access-requests", Some(&token), body.clone())
            .await;
        assert_eq!(got.as_u16(), *status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
}

#[tokio::test]
async fn unknown_actions_types_and_resources_are_4xx_errors_that_list_what_exists() {
    assert_refused_bodies(&[
        (
            json!({"action": "drop", "resource": "Database::\"orders\""}),
            400,
            "unknown_action",
            "valid actions: admin, deploy, read, ssh, sudo, write",
        ),
        (
            json!({"action": "approve", "resource": "Database::\"orders\""}),
            400,
            "unknown_action",
            "valid actions: admin, deploy",
        ),
        (
            json!({"action": "read", "resource": "Table::\"orders\""}),
            400,
            "unknown_entity_type",
            "valid types: Database, Environment",
        ),
        (
            json!({"action": "read", "resource": "Database::\"nope\""}),
            404,
            "not_found",
            "unknown resource `Database::\"nope\"`",
        ),
    ])
    .await;
}

#[tokio::test]
async fn malformed_request_fields_are_400_invalid_request_naming_the_field() {
    assert_refused_bodies(&[
        (
            json!({"action": "read", "resource": "Database::\"orders\"", "colour": "red"}),
            400,
            "invalid_request",
            "unknown field `colour`",
        ),
        (
            json!({"action": "read", "resource": "Database::\"orders\"", "context": {"risk_score": 0}}),
            400,
            "invalid_request",
            "`risk_score` is set by the server",
        ),
        (
            json!({"action": "read", "resource": "Database::\"orders\"", "context": {"ticket": 5}}),
            400,
            "invalid_request",
            "context",
        ),
        (
            json!({"action": "read", "resource": "Database::\"orders\"", "duration": "soon"}),
            400,
            "invalid_request",
            "duration `soon`",
        ),
        (
            json!({"action": "read", "resource": "Database::\"orders\"", "duration": 0}),
            400,
            "invalid_request",
            "at least one second",
        ),
        (
            json!({"action": "read", "resource": "orders"}),
            400,
            "invalid_request",
            "not an entity reference",
        ),
        (
            json!({"resource": "Database::\"orders\""}),
            400,
            "invalid_request",
            "missing field `action`",
        ),
    ])
    .await;
}

#[tokio::test]
async fn non_json_oversized_and_misrouted_requests_are_4xx() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    let response = server
        .http
        .post(format!("{}/v1/access-requests", server.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let huge = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "x".repeat(70 * 1024)});
    let (status, body) = server.post("/v1/access-requests", Some(&token), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let response = server.get("/v1/nothing-here", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_request_without_a_token_is_401_with_a_bare_challenge() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let response = server
        .http
        .post(format!("{}/v1/access-requests", server.base))
        .json(&oncall_read())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"jitgate\""
    );
}

/// The server answers an access request with `token` by 401, with the challenge and the body
/// every invalid token gets: nothing says what was wrong with it.
async fn assert_invalid_token(server: &TestServer, token: &str) {
    let response = server
        .http
        .post(format!("{}/v1/access-requests", server.base))
        .bearer_auth(token)
        .json(&oncall_read())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"jitgate\", error=\"invalid_token\""
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "unauthenticated", "message": "the bearer token is not valid"}})
    );
}

#[tokio::test]
async fn garbage_expired_and_foreign_tokens_are_401_with_no_hint() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let expired = DevIssuer::open(&server.config.data_dir, 0)
        .unwrap()
        .mint(
            "alice",
            &["oncall".into()],
            true,
            Duration::from_secs(60),
            unix_now() - 3600,
        )
        .unwrap();
    let foreign_dir = tempfile::TempDir::new().unwrap();
    let foreign = DevIssuer::open(foreign_dir.path(), 0)
        .unwrap()
        .mint(
            "alice",
            &["oncall".into()],
            true,
            Duration::from_secs(60),
            unix_now(),
        )
        .unwrap();
    for token in [
        "garbage".to_owned(),
        expired,
        foreign,
        "jg_not-a-key".to_owned(),
        "x".repeat(9000),
    ] {
        assert_invalid_token(&server, &token).await;
    }
}

/// `value` with `key` set to `patch`.
fn with(mut value: Value, key: &str, patch: Value) -> Value {
    value[key] = patch;
    value
}

/// Forges tokens with the server's own dev key, from its file in the data dir, starting from
/// a header and claims that the server accepts.
struct Forger {
    key: jsonwebtoken::EncodingKey,
    header: Value,
    claims: Value,
}

impl Forger {
    /// A forger for `server`, once it has checked that its unchanged token is accepted.
    async fn checked(server: &TestServer) -> Self {
        let key_dir = server.config.data_dir.join("dev-issuer");
        let key_file = std::fs::read_dir(&key_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let pem = std::fs::read(&key_file).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
        let kid = decode_header(server.dev_token("x", &[], true))
            .unwrap()
            .kid
            .unwrap();
        let now = unix_now();
        let claims = json!({"iss": "jitgate-dev", "aud": "jitgate", "sub": "alice", "groups": ["oncall"], "amr": ["mfa"], "iat": now, "exp": now + 60});
        let header = json!({"alg": "ES256", "typ": "jitgate-dev+jwt", "kid": kid});
        let forger = Self {
            key,
            header,
            claims,
        };
        let valid = forge(&forger.header, &forger.claims, &forger.key);
        let (status, _) = server
            .post("/v1/access-requests", Some(&valid), oncall_read())
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "the forging helper makes valid tokens"
        );
        forger
    }

    /// A token whose header has `key` set to `patch`.
    fn header_with(&self, key: &str, patch: Value) -> String {
        forge(
            &with(self.header.clone(), key, patch),
            &self.claims,
            &self.key,
        )
    }

    /// A token whose claims have `key` set to `patch`.
    fn claims_with(&self, key: &str, patch: Value) -> String {
        forge(
            &self.header,
            &with(self.claims.clone(), key, patch),
            &self.key,
        )
    }
}

#[tokio::test]
async fn tokens_signed_with_the_dev_key_but_a_wrong_claim_or_header_are_401_with_no_hint() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let forger = Forger::checked(&server).await;
    for token in [
        forger.claims_with("iss", json!("https://evil.test")),
        forger.claims_with("aud", json!("someone-else")),
        forger.header_with("kid", json!("unknown")),
        forger.header_with("crit", json!(["exp"])),
        forger.header_with("typ", json!("JWT")),
        forger.claims_with("padding", json!("p".repeat(9000))),
    ] {
        assert_invalid_token(&server, &token).await;
    }
}

#[tokio::test]
async fn unsigned_tokens_and_hs256_keyed_with_the_public_jwks_are_401_with_no_hint() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let forger = Forger::checked(&server).await;
    let (header, claims) = (&forger.header, &forger.claims);
    let none = format!(
        "{}.{}.",
        b64(&with(header.clone(), "alg", json!("none"))),
        b64(claims)
    );
    let public_jwk = serde_json::to_string(&server.jwks().await).unwrap();
    let hs256 = {
        let message = format!(
            "{}.{}",
            b64(&with(header.clone(), "alg", json!("HS256"))),
            b64(claims)
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    };
    for token in [none, hs256] {
        assert_invalid_token(&server, &token).await;
    }
}

#[tokio::test]
async fn api_keys_authenticate_services() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some("jg_deploy-secret"),
            json!({"action": "deploy", "resource": "Host::\"web-1\"", "duration": "10m"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], "deploy:web-1 deployer:deployer");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "deploy-api")
        .await;
    assert_eq!(claims.sub, "deployer");
    assert_eq!(claims.client_id, "deployer");
    assert_eq!(claims.exp - claims.iat, 600);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.rate_limit.per_principal_per_minute = 2;
    })
    .await;
    let token = server.dev_token("alice", &["oncall"], true);
    for _ in 0..2 {
        let (status, _) = server
            .post("/v1/access-requests", Some(&token), oncall_read())
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let response = server
        .http
        .post(format!("{}/v1/access-requests", server.base))
        .bearer_auth(&token)
        .json(&oncall_read())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Another principal is not affected.
    let bob = server.dev_token("bob", &["oncall"], true);
    let (status, _) = server
        .post("/v1/access-requests", Some(&bob), oncall_read())
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn risk_signals_fire_and_are_returned() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.risk.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.risk.outside_network = Some(30);
        c.risk.new_source_ip = Some(10);
    })
    .await;
    let token = server.dev_token("alice", &["oncall"], true);
    let (_, first) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    assert_eq!(
        first["risk"],
        json!({"score": 40, "signals": [{"name": "outside_network", "score": 30}, {"name": "new_source_ip", "score": 10}]})
    );
    let (_, second) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    assert_eq!(second["risk"]["score"], 30, "127.0.0.1 is known now");
}

/// A dry run that would be denied is a denial too: probing `POST /v1/decisions` for what is
/// refused raises the caller's risk as asking would.
#[tokio::test]
async fn denied_dry_runs_count_as_recent_denials() {
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.risk.recent_denials = Some(jitgate::config::RecentDenialsConfig {
            window: Duration::from_secs(3600),
            each: 10,
            max: 50,
        });
    })
    .await;
    let mallory = server.dev_token("mallory", &[], true);
    for _ in 0..2 {
        let (status, body) = server
            .post("/v1/decisions", Some(&mallory), oncall_read())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decision"], "deny", "{body}");
    }
    let (_, third) = server
        .post("/v1/decisions", Some(&mallory), oncall_read())
        .await;
    assert_eq!(
        third["risk"],
        json!({"score": 20, "signals": [{"name": "recent_denials", "score": 20}]})
    );
    let (_, asked) = server
        .post("/v1/access-requests", Some(&mallory), oncall_read())
        .await;
    assert_eq!(asked["risk"]["score"], 30, "{asked}");
    // Another principal's record is its own.
    let alice = server.dev_token("alice", &["oncall"], true);
    let (_, body) = server
        .post("/v1/decisions", Some(&alice), oncall_read())
        .await;
    assert_eq!(body["risk"]["score"], 0, "{body}");
}

#[tokio::test]
async fn keys_persist_across_restarts_and_rotation_keeps_old_tokens_verifiable() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    let (_, body) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = decode_header(&old_token).unwrap().kid.unwrap();
    let (pack, config) = server.stop().await;

    let server = TestServer::start_with(pack, config.clone()).await;
    let (_, body) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    let same_kid = decode_header(body["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(same_kid, old_kid, "the key survived the restart");
    let (pack, config) = server.stop().await;

    let mut ring =
        jitgate::token::KeyRing::open(&config.data_dir.join("keys"), SigningAlg::Es256, unix_now())
            .unwrap();
    let new_kid = ring
        .rotate(SigningAlg::Es256, unix_now())
        .unwrap()
        .kid
        .clone();
    let server = TestServer::start_with(pack, config).await;
    let jwks = server.jwks().await;
    let kids: Vec<&str> = jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.as_deref())
        .collect();
    assert_eq!(kids, [old_kid.as_str(), new_kid.as_str()]);
    let (_, body) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    let fresh = body["access_token"].as_str().unwrap();
    assert_eq!(decode_header(fresh).unwrap().kid.unwrap(), new_kid);
    server.verify(fresh, "db-proxy").await;
    // A token signed before the rotation still verifies.
    let claims = server.verify(&old_token, "db-proxy").await;
    assert_eq!(claims.sub, "alice");
}

#[tokio::test]
async fn hot_reload_is_visible_over_http() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    let before = server.policies(&token).await;
    assert_eq!(before["last_error"], Value::Null);
    assert_eq!(before["policies"].as_array().unwrap().len(), 17);

    server
        .pack()
        .edit("policies/databases.cedar", "@ttl(\"15m\")", "@ttl(\"10m\")");
    let mut after = Value::Null;
    for _ in 0..100 {
        after = server.policies(&token).await;
        if after["version"] != before["version"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(after["version"], before["version"], "reload not seen");
    let (_, body) = server
        .post(
            "/v1/access-requests",
            Some(&token),
            json!({"action": "read", "resource": "Database::\"orders\"", "duration": "1h"}),
        )
        .await;
    assert_eq!(body["expires_in"], 600, "the new @ttl decides");

    server.pack().edit(
        "policies/databases.cedar",
        "@ttl(\"10m\")",
        "@ttl(\"10 minutes please\")",
    );
    let mut broken = Value::Null;
    for _ in 0..100 {
        broken = server.policies(&token).await;
        if broken["last_error"] != Value::Null {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        broken["version"], after["version"],
        "the last good pack serves"
    );
    let error = broken["last_error"]["errors"][0].as_str().unwrap();
    assert!(error.contains("databases.cedar:17:1"), "{error}");

    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("jitgate_policy_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jitgate_policy_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_count_decisions_tokens_and_routes() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    let response = server.get("/metrics", None).await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = response.text().await.unwrap();
    for line in [
        "jitgate_decisions_total{action=\"read\",decision=\"allow\"} 2",
        "jitgate_tokens_issued_total{alg=\"ES256\"} 2",
        "jitgate_policy_matches_total{policy=\"oncall-db-read\"} 2",
        "jitgate_http_requests_total{route=\"/v1/access-requests\",status=\"201\"} 2",
        "jitgate_policies_loaded 17",
        "jitgate_approvals_pending 0",
        "jitgate_decision_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    assert!(!metrics.contains("alice"), "no principal in labels");
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_503_and_issues_nothing() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    let database = server.config.data_dir.join("jitgate.db");
    fail_audit_writes(&database).await;
    let (status, body) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body.get("access_token").is_none());
    assert!(!body.to_string().contains("eyJ"), "no token in {body}");
    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        !metrics.contains("jitgate_tokens_issued_total{"),
        "{metrics}"
    );
}

fn b64(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A compact JWS with exactly this header and these claims, signed with ES256.
fn forge(header: &Value, claims: &Value, key: &jsonwebtoken::EncodingKey) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key, jsonwebtoken::Algorithm::ES256)
            .unwrap();
    format!("{message}.{signature}")
}

/// Makes every insert into the audit trail fail, as a full or failing disk would (a trigger
/// added to the database file directly).
async fn fail_audit_writes(database: &Path) {
    rusqlite::Connection::open(database)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
        )
        .unwrap();
}

#[tokio::test]
async fn request_ids_are_echoed_and_operations_endpoints_answer() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let response = server
        .http
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-123");
    let response = server.get("/readyz", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers()["x-request-id"].is_empty());
    let jwks = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    let metadata: Value = server
        .get("/.well-known/oauth-authorization-server", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], server.base);
    assert_eq!(
        metadata["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.base)
    );
    assert_eq!(
        server.get("/v1/policies", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// `promtool check metrics` on a live `/metrics`. Needs promtool: `JITGATE_TEST_PROMTOOL`
/// names it, or it is found on PATH; `.ci/run` installs it and sets
/// `JITGATE_TEST_REQUIRE_PROMTOOL=1` so CI cannot skip this.
#[tokio::test]
async fn metrics_pass_promtool() {
    let promtool = std::env::var("JITGATE_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let found = std::process::Command::new(&promtool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("JITGATE_TEST_REQUIRE_PROMTOOL").is_err(),
            "promtool is required here but `{promtool}` does not run"
        );
        super::skipped(
            "metrics_pass_promtool",
            "promtool not found (set JITGATE_TEST_PROMTOOL)",
        );
        return;
    }
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    let text = server.get("/metrics", None).await.text().await.unwrap();
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn jitgate_token_verify_checks_a_token_against_the_server() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    let (_, body) = server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let run = |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = server.base.clone();
    let args = move |extra: &[&str], token: &str| -> Vec<String> {
        let mut args: Vec<String> = ["token", "verify", "--server", &base]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push(token.to_owned());
        args
    };
    let verify = tokio::task::spawn_blocking({
        let access = access.clone();
        let token = token.clone();
        move || {
            let ok = run(args(&["--audience", "db-proxy"], &access));
            let wrong_audience = run(args(&["--audience", "ssh-ca"], &access));
            let mut tampered = access.clone();
            tampered.pop();
            tampered.push(if access.ends_with('A') { 'B' } else { 'A' });
            let tampered = run(args(&[], &tampered));
            let identity_token = run(args(&[], &token));
            (ok, wrong_audience, tampered, identity_token)
        }
    })
    .await
    .unwrap();
    let (ok, wrong_audience, tampered, identity_token) = verify;
    assert_eq!(ok.0, 0, "{ok:?}");
    let claims: Value = serde_json::from_str(&ok.1).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "db:read:orders");
    assert_eq!(wrong_audience.0, 1);
    assert!(wrong_audience.2.contains("not valid"), "{wrong_audience:?}");
    assert_eq!(tampered.0, 1);
    assert_eq!(
        identity_token.0, 1,
        "an identity token is not an access token"
    );
    assert!(identity_token.2.contains("wrong_typ"), "{identity_token:?}");
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let risky = |c: &mut Config| {
        c.risk.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.risk.outside_network = Some(30);
    };
    let ask = |server: &TestServer, token: String, forwarded: &'static str| {
        server
            .http
            .post(format!("{}/v1/access-requests", server.base))
            .bearer_auth(token)
            .header("x-forwarded-for", forwarded)
            .json(&oncall_read())
            .send()
    };
    // The peer (127.0.0.1) is no proxy of ours: the header is ignored.
    let direct = TestServer::start(TempPack::shipped(), risky).await;
    let token = direct.dev_token("alice", &["oncall"], true);
    let body: Value = ask(&direct, token, "10.1.2.3")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["risk"]["score"], 30, "spoofed header believed: {body}");

    // Behind a trusted proxy, the nearest untrusted hop is the client.
    let proxied = TestServer::start(TempPack::shipped(), |c| {
        risky(c);
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let token = proxied.dev_token("alice", &["oncall"], true);
    let body: Value = ask(&proxied, token.clone(), "10.1.2.3")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["risk"]["score"], 0, "{body}");
    let body: Value = ask(&proxied, token, "10.9.9.9, 203.0.113.7")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["risk"]["score"], 30,
        "the client is the last untrusted hop: {body}"
    );
}

/// A `jitgate serve` process, killed when dropped.
struct ServeProcess(std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `jitgate serve` as a process with only the `JITGATE_…` variables `vars` (logs as JSON),
/// and what it logged up to "jitgate serving" (or to its exit).
fn serve_process(vars: &[(String, String)]) -> (ServeProcess, Vec<Value>) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .arg("serve")
        .env_clear()
        .env("JITGATE_LOG_FORMAT", "json")
        .envs(vars.iter().map(|(name, value)| (name, value)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut logged = Vec::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line: Value = serde_json::from_str(&line.unwrap()).unwrap_or(Value::Null);
        let serving = line["message"] == "jitgate serving";
        logged.push(line);
        if serving {
            break;
        }
    }
    // The rest of the log, read so that the server never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (ServeProcess(child), logged)
}

/// Configured through the environment alone, the server is a deployment: the quickstart's
/// dev issuer stays off unless enabled by name (issue 11 finding 11).
#[tokio::test]
async fn environment_only_configuration_does_not_trust_dev_tokens() {
    let pack = TempPack::shipped();
    let data_dir = pack.dir.path().join("data");
    let (policies, schemas) = (pack.policies(), pack.schemas());
    let vars: Vec<(String, String)> = [
        ("JITGATE_LISTEN", "127.0.0.1:0"),
        ("JITGATE_DATA_DIR", data_dir.to_str().unwrap()),
        ("JITGATE_POLICY__DIR", policies.to_str().unwrap()),
        ("JITGATE_POLICY__SCHEMAS", schemas.to_str().unwrap()),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    let (server, logged) = tokio::task::spawn_blocking(move || serve_process(&vars))
        .await
        .unwrap();
    let serving = logged.last().unwrap().clone();
    let base = format!("http://{}", serving["listen"].as_str().unwrap());
    let dev_token = DevIssuer::open(&data_dir, unix_now())
        .unwrap()
        .mint(
            "alice",
            &["oncall".into()],
            true,
            Duration::from_secs(600),
            unix_now(),
        )
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/access-requests"))
        .bearer_auth(dev_token)
        .json(&oncall_read())
        .send()
        .await
        .unwrap();
    drop(server);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        logged
            .iter()
            .all(|line| !line["message"].to_string().contains("DEV ISSUER")),
        "{logged:?}"
    );
}

/// `/readyz` answers from a probe at most a second old (on the server's clock) instead of
/// taking the write lock on every call (issue 11 finding 14): with the lock held elsewhere it
/// still answers at once; once the probe is a second old, the next call probes again, waiting
/// for the lock.
#[tokio::test]
async fn readyz_does_not_take_the_write_lock_on_every_call() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let lock = rusqlite::Connection::open(server.config.data_dir.join("jitgate.db")).unwrap();
    let readyz = |within_ms| {
        server
            .http
            .get(format!("{}/readyz", server.base))
            .timeout(Duration::from_millis(within_ms))
            .send()
    };
    assert_eq!(readyz(5_000).await.unwrap().status(), StatusCode::OK);
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let answer = readyz(4_000).await;
    assert_eq!(
        answer.unwrap().status(),
        StatusCode::OK,
        "the last probe's answer"
    );
    server.clock.advance(Duration::from_millis(1_000));
    let probing = readyz(300).await;
    assert!(
        probing.unwrap_err().is_timeout(),
        "a new probe waits for the lock"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(readyz(5_000).await.unwrap().status(), StatusCode::OK);
}

/// The database, its WAL and its shared-memory file are the owner's alone (finding 14).
#[tokio::test]
async fn the_database_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let token = server.dev_token("alice", &["oncall"], true);
    server
        .post("/v1/access-requests", Some(&token), oncall_read())
        .await;
    for name in ["jitgate.db", "jitgate.db-wal", "jitgate.db-shm"] {
        let path = server.config.data_dir.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
    }
}

/// A keys dir that group or others can write is refused at start, by name (finding 14).
#[tokio::test]
async fn a_keys_dir_others_can_write_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let pack = TempPack::shipped();
    let keys = pack.dir.path().join("data/keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o770)).unwrap();
    let mut config = Config::quickstart();
    config.policy.dir = pack.policies();
    config.policy.schemas = pack.schemas();
    config.data_dir = pack.dir.path().join("data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = jitgate::http::run(config, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&keys.display().to_string()) && err.contains("writable by group or others"),
        "{err}"
    );
}

#[tokio::test]
async fn me_names_the_caller_as_jitgate_sees_it() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    // Dev tokens are issued at the server's time.
    let before = jitgate::clock::Clock::now(&*server.clock);
    let alice = server.dev_token("alice", &["oncall"], true);
    let me: Value = server
        .get("/v1/me", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["principal"], "User::\"alice\"");
    assert_eq!(me["groups"], json!(["Group::\"oncall\""]));
    assert_eq!(me["mfa"], true);
    assert_eq!(me["via"], "bearer");
    assert!(me["auth_time"].as_u64().unwrap() >= before, "{me}");
    let service: Value = server
        .get("/v1/me", Some("jg_deploy-secret"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(service["principal"], "Service::\"deployer\"");
    assert_eq!(service["auth_time"], Value::Null);
    assert_eq!(service["client_id"], "deployer");
    assert_eq!(
        server.get("/v1/me", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
