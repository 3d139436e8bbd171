//! The OAuth 2.0 surface over HTTP: `POST /oauth2/token` (client credentials, token exchange,
//! polling an escalated request), client authentication on the token, introspection and
//! revocation endpoints, and the RFC 8414 metadata that announces them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const CIBA: &str = "urn:openid:params:grant-type:ciba";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const SECRET: &str = "jg_deploy-secret";

/// How a test client authenticates.
#[derive(Clone, Copy)]
enum Client<'a> {
    None,
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Bearer(&'a str),
}

/// Posts `form` to `path` as `client`: the status, the JSON body and the response headers.
async fn post_form(
    server: &TestServer,
    path: &str,
    client: Client<'_>,
    form: &[(&str, &str)],
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut request = server.http.post(format!("{}{path}", server.base));
    match client {
        Client::None => {}
        Client::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
        Client::Post(id, secret) => form.extend([("client_id", id), ("client_secret", secret)]),
        Client::Bearer(token) => request = request.bearer_auth(token),
    }
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body, headers)
}

async fn token(
    server: &TestServer,
    client: Client<'_>,
    form: &[(&str, &str)],
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    post_form(server, "/oauth2/token", client, form).await
}

fn deploy_web_1() -> String {
    json!([{"type": "jitgate_access", "action": "deploy", "resource": "Host::\"web-1\"", "duration": "10m"}])
        .to_string()
}

fn assert_error(status: StatusCode, body: &Value, expected: (StatusCode, &str)) {
    assert_eq!(
        (status, body["error"].as_str()),
        (expected.0, Some(expected.1)),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn client_credentials_issue_the_token_an_access_request_would() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let details = deploy_web_1();
    for client in [
        Client::Basic("deployer", SECRET),
        Client::Post("deployer", SECRET),
    ] {
        let (status, body, headers) = token(
            &server,
            client,
            &[
                ("grant_type", "client_credentials"),
                ("authorization_details", &details),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 600);
        assert_eq!(body["scope"], "deploy:web-1 deployer:deployer");
        assert!(body.get("issued_token_type").is_none(), "{body}");
        assert_eq!(
            body["authorization_details"],
            json!([{"type": "jitgate_access", "action": "deploy", "resource": "Host::\"web-1\"",
                    "scopes": ["deploy:web-1", "deployer:deployer"]}])
        );
        let claims = server
            .verify(body["access_token"].as_str().unwrap(), "deploy-api")
            .await;
        assert_eq!(
            (claims.sub.as_str(), claims.client_id.as_str()),
            ("deployer", "deployer")
        );
        // Recorded as any access request is: its decision in the audit trail.
        let request_id = body["jitgate_request_id"].as_str().unwrap();
        let events = server.store_events().await;
        assert!(
            events
                .iter()
                .any(|e| e.kind == "decision" && e.request_id.as_deref() == Some(request_id)),
            "no decision event for {request_id}"
        );
    }
}

#[tokio::test]
async fn a_client_that_fails_to_authenticate_is_invalid_client_with_a_challenge() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let details = deploy_web_1();
    let form = [
        ("grant_type", "client_credentials"),
        ("authorization_details", details.as_str()),
    ];
    for client in [
        Client::Basic("deployer", "jg_wrong"),
        Client::Basic("nobody", SECRET),
        Client::Post("deployer", "jg_wrong"),
        Client::Bearer("not-a-token"),
        Client::None,
    ] {
        let (status, body, headers) = token(&server, client, &form).await;
        assert_error(status, &body, (StatusCode::UNAUTHORIZED, "invalid_client"));
        let challenge = headers["www-authenticate"].to_str().unwrap();
        let expected = if matches!(client, Client::Bearer(_)) {
            "Bearer"
        } else {
            "Basic"
        };
        assert!(challenge.starts_with(expected), "{challenge}");
    }
    // Two methods at once (RFC 6749 §2.3).
    let response = server
        .http
        .post(format!("{}/oauth2/token", server.base))
        .basic_auth("deployer", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=deployer&client_secret=jg_deploy-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn token_exchange_trades_an_identity_token_for_a_scoped_one() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let details = json!([{"type": "jitgate_access", "action": "read",
        "resource": "Database::\"orders\"", "reason": "INC-7"}])
    .to_string();
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", alice.as_str()),
        ("subject_token_type", JWT_TYPE),
        ("authorization_details", details.as_str()),
    ];
    // A public client, then a gateway authenticating as the `deployer` client.
    for (client, client_id) in [
        (Client::None, "jitgate-dev"),
        (Client::Basic("deployer", SECRET), "deployer"),
    ] {
        let (status, body, _) = token(&server, client, &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["issued_token_type"],
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert_eq!(body["scope"], "db:read:orders");
        let claims = server
            .verify(body["access_token"].as_str().unwrap(), "db-proxy")
            .await;
        assert_eq!(claims.sub, "alice");
        if client_id == "deployer" {
            assert_eq!(claims.client_id, "deployer");
        }
    }
    // The subject token is what is checked: forged, an API key, an unknown type.
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    for (subject, kind, error) in [
        (forged.as_str(), JWT_TYPE, "invalid_grant"),
        (SECRET, JWT_TYPE, "invalid_grant"),
        (
            alice.as_str(),
            "urn:ietf:params:oauth:token-type:saml2",
            "invalid_request",
        ),
    ] {
        let (status, body, _) = token(
            &server,
            Client::None,
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", subject),
                ("subject_token_type", kind),
                ("authorization_details", details.as_str()),
            ],
        )
        .await;
        assert_error(status, &body, (StatusCode::BAD_REQUEST, error));
    }
}

#[tokio::test]
async fn a_denied_exchange_is_access_denied_with_its_request_id() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let eve = server.dev_token("eve", &["engineering"], true);
    let details = json!([{"type": "jitgate_access", "action": "write",
        "resource": "Database::\"orders\"", "reason": "x"}])
    .to_string();
    let (status, body, _) = token(
        &server,
        Client::None,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &eve),
            ("subject_token_type", JWT_TYPE),
            ("authorization_details", &details),
        ],
    )
    .await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "access_denied"));
    let id = body["jitgate_request_id"].as_str().unwrap();
    let request: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&eve))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(request["status"], "denied", "{request}");
}

/// Asks for a production write as on-call `who`: escalated, its request id.
async fn escalated(server: &TestServer, who: &str) -> (String, Vec<(&'static str, String)>) {
    let subject = server.dev_token(who, &["oncall"], true);
    let details = json!([{"type": "jitgate_access", "action": "write",
        "resource": "Database::\"orders\"", "reason": "INC-9"}])
    .to_string();
    let (status, body, _) = token(
        server,
        Client::None,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &subject),
            ("subject_token_type", JWT_TYPE),
            ("authorization_details", &details),
        ],
    )
    .await;
    assert_error(
        status,
        &body,
        (StatusCode::BAD_REQUEST, "authorization_pending"),
    );
    assert_eq!(body["interval"], 5);
    assert_eq!(body["expires_in"], server.config.pending_ttl.as_secs());
    let id = body["auth_req_id"].as_str().unwrap().to_owned();
    assert_eq!(body["jitgate_request_id"], id.as_str());
    let poll = vec![
        ("grant_type", CIBA.to_owned()),
        ("auth_req_id", id.clone()),
        ("subject_token", subject),
        ("subject_token_type", JWT_TYPE.to_owned()),
    ];
    (id, poll)
}

async fn poll(server: &TestServer, form: &[(&'static str, String)]) -> (StatusCode, Value) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body, _) = token(server, Client::None, &form).await;
    (status, body)
}

#[tokio::test]
async fn an_escalated_request_is_polled_to_its_token_after_approval() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let (id, form) = escalated(&server, "alice").await;
    let (status, body) = poll(&server, &form).await;
    assert_error(
        status,
        &body,
        (StatusCode::BAD_REQUEST, "authorization_pending"),
    );
    let (status, body) = poll(&server, &form).await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "slow_down"));
    server.clock.advance(Duration::from_secs(5));
    let (status, body) = poll(&server, &form).await;
    assert_error(
        status,
        &body,
        (StatusCode::BAD_REQUEST, "authorization_pending"),
    );

    // Someone else cannot poll alice's request.
    let mut mallory = form.clone();
    mallory[2].1 = server.dev_token("mallory", &["oncall"], true);
    let (status, body) = poll(&server, &mallory).await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "invalid_grant"));

    let dba = server.dev_token("dora", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dba),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = poll(&server, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "db:write:orders");
    assert_eq!(body["authorization_details"][0]["action"], "write");
    assert_eq!(body["jitgate_request_id"], id.as_str());
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert_eq!(claims.sub, "alice");
}

#[tokio::test]
async fn a_polled_request_ends_denied_or_expired() {
    // Short enough for the dev identity tokens (10 minutes) to outlive it.
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.pending_ttl = Duration::from_secs(60);
    })
    .await;
    let (id, form) = escalated(&server, "alice").await;
    let dba = server.dev_token("dora", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/deny"),
            Some(&dba),
            json!({"comment": "no"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = poll(&server, &form).await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "access_denied"));

    let (_, form) = escalated(&server, "bob").await;
    server.clock.advance(Duration::from_secs(61));
    let (status, body) = poll(&server, &form).await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "expired_token"));

    let unknown = [
        ("grant_type", CIBA.to_owned()),
        ("auth_req_id", "no-such-request".to_owned()),
        form[2].clone(),
        form[3].clone(),
    ];
    let (status, body) = poll(&server, &unknown).await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn malformed_token_requests_get_the_rfc_error_code() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let basic = Client::Basic("deployer", SECRET);
    let grant = ("grant_type", "client_credentials");
    let details = |value: Value| value.to_string();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("grant_type", "password".into())],
            "unsupported_grant_type",
        ),
        (vec![("scope", "x".into())], "invalid_request"),
        (vec![(grant.0, grant.1.into())], "invalid_request"),
        (
            vec![
                (grant.0, grant.1.into()),
                ("authorization_details", "not json".into()),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                ("authorization_details", details(json!([]))),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                (
                    "authorization_details",
                    details(json!([
                {"type": "jitgate_access", "action": "deploy", "resource": "Host::\"web-1\""},
                {"type": "jitgate_access", "action": "deploy", "resource": "Host::\"web-2\""}])),
                ),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                (
                    "authorization_details",
                    details(json!([
                {"type": "payment_initiation", "action": "deploy", "resource": "Host::\"web-1\""}])),
                ),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                (
                    "authorization_details",
                    details(json!([
                {"type": "jitgate_access", "action": "deploy", "resource": "Host::\"web-1\"", "colour": "red"}])),
                ),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                (
                    "authorization_details",
                    details(json!([
                {"type": "jitgate_access", "action": "deploy", "resource": "Host:web-1"}])),
                ),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                (
                    "authorization_details",
                    details(json!([
                {"type": "jitgate_access", "action": "fly", "resource": "Host::\"web-1\""}])),
                ),
            ],
            "invalid_authorization_details",
        ),
        (
            vec![
                (grant.0, grant.1.into()),
                ("scope", "deploy:web-1".into()),
                ("authorization_details", deploy_web_1()),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", TOKEN_EXCHANGE.into()),
                ("authorization_details", deploy_web_1()),
            ],
            "invalid_request",
        ),
        (vec![("grant_type", CIBA.into())], "invalid_request"),
    ];
    for (form, error) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, _) = token(&server, basic, &form).await;
        assert_error(status, &body, (StatusCode::BAD_REQUEST, error));
    }
    // Parameters are a form, each once (RFC 6749 §3.2).
    let url = format!("{}/oauth2/token", server.base);
    let json_body = server
        .http
        .post(&url)
        .basic_auth("deployer", Some(SECRET))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST);
    let twice = server
        .http
        .post(&url)
        .basic_auth("deployer", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=password")
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let body: Value = twice.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn scope_alone_names_the_one_target_that_grants_it() {
    let pack = TempPack::shipped();
    pack.write(
        "policies/oauth.cedar",
        r#"
@id("deployer-read-orders")
@scope("orders:read")
@ttl("5m")
@audience("db-proxy")
permit (
  principal is Service in Group::"deployers",
  action == Action::"read",
  resource == Database::"orders"
);

@id("deployer-read-billing")
@scope("billing:read shared:read")
@ttl("5m")
@audience("db-proxy")
permit (
  principal is Service in Group::"deployers",
  action == Action::"read",
  resource == Database::"billing"
);

@id("deployer-read-staging")
@scope("shared:read")
@ttl("5m")
@audience("db-proxy")
permit (
  principal is Service in Group::"deployers",
  action == Action::"read",
  resource == Database::"orders-staging"
);
"#,
    );
    let server = TestServer::start(pack, |_| {}).await;
    let basic = Client::Basic("deployer", SECRET);
    let (status, body, _) = token(
        &server,
        basic,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(
        body["authorization_details"][0]["resource"],
        "Database::\"orders\""
    );
    for (scope, names) in [
        ("nothing:grants-this", "no policy"),
        ("shared:read", "orders-staging"),
    ] {
        let (status, body, _) = token(
            &server,
            basic,
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
        assert_error(status, &body, (StatusCode::BAD_REQUEST, "invalid_scope"));
        assert!(
            body["error_description"].as_str().unwrap().contains(names),
            "{body}"
        );
    }
}

#[tokio::test]
async fn introspection_and_revocation_take_every_client_authentication() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let details = deploy_web_1();
    let (_, body, _) = token(
        &server,
        Client::Basic("deployer", SECRET),
        &[
            ("grant_type", "client_credentials"),
            ("authorization_details", &details),
        ],
    )
    .await;
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    let alice = server.dev_token("alice", &["oncall"], true);
    for client in [
        Client::Basic("deployer", SECRET),
        Client::Post("deployer", SECRET),
        Client::Bearer(&alice),
    ] {
        let (status, body, _) = post_form(
            &server,
            "/oauth2/introspect",
            client,
            &[("token", &access_token)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["active"], true, "{body}");
        assert_eq!(body["scope"], "deploy:web-1 deployer:deployer");
    }
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        for client in [Client::None, Client::Basic("deployer", "jg_wrong")] {
            let (status, body, headers) =
                post_form(&server, path, client, &[("token", &access_token)]).await;
            assert_error(status, &body, (StatusCode::UNAUTHORIZED, "invalid_client"));
            assert!(headers.contains_key("www-authenticate"));
        }
    }
    let (status, _, _) = post_form(
        &server,
        "/oauth2/revoke",
        Client::Post("deployer", SECRET),
        &[
            ("token", &access_token),
            ("token_type_hint", "access_token"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body, _) = post_form(
        &server,
        "/oauth2/introspect",
        Client::Basic("deployer", SECRET),
        &[("token", &access_token)],
    )
    .await;
    assert_eq!(body, json!({"active": false}));
}

#[tokio::test]
async fn the_metadata_announces_the_oauth_endpoints() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let metadata: Value = server
        .get("/.well-known/oauth-authorization-server", None)
        .await
        .json()
        .await
        .unwrap();
    let base = &server.base;
    assert_eq!(metadata["token_endpoint"], format!("{base}/oauth2/token"));
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{base}/oauth2/introspect")
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{base}/oauth2/revoke")
    );
    assert_eq!(
        metadata["grant_types_supported"],
        json!([TOKEN_EXCHANGE, "client_credentials", CIBA])
    );
    for key in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert_eq!(
            metadata[key],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ]),
            "{key}"
        );
    }
    assert_eq!(
        metadata["authorization_details_types_supported"],
        json!(["jitgate_access"])
    );
    assert_eq!(metadata["response_types_supported"], json!([]));
    let algorithms = metadata["token_endpoint_auth_signing_alg_values_supported"].to_string();
    assert!(
        algorithms.contains("\"ES256\"") && !algorithms.contains("HS"),
        "{algorithms}"
    );
}

/// A client's key pair, made in a temp dir: what signs its assertions, and its public JWK set.
pub(super) struct ClientKey {
    pub signing: jsonwebtoken::EncodingKey,
    pub kid: String,
    /// The private key (PEM, PKCS#8).
    pub pem: std::path::PathBuf,
    /// `{"keys": [public]}`.
    pub jwks: std::path::PathBuf,
}

impl ClientKey {
    pub(super) fn new(dir: &std::path::Path, name: &str) -> Self {
        let now = super::harness::unix_now();
        let ring =
            jitgate::token::KeyRing::open(&dir.join(name), jitgate::config::SigningAlg::Es256, now)
                .unwrap();
        let key = ring.active().unwrap();
        let pem = key.path.clone().unwrap();
        let jwks = dir.join(format!("{name}.jwks.json"));
        std::fs::write(&jwks, json!({"keys": [key.public]}).to_string()).unwrap();
        Self {
            signing: jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&pem).unwrap()).unwrap(),
            kid: key.kid.clone(),
            pem,
            jwks,
        }
    }

    /// The API key entry of client `signer` (a deployer service) that authenticates with this
    /// key alone.
    pub(super) fn signer(&self) -> jitgate::config::ApiKeyConfig {
        jitgate::config::ApiKeyConfig {
            name: "signer".into(),
            hash: None,
            principal: "Service::\"signer\"".into(),
            groups: vec!["Group::\"deployers\"".into()],
            jwks: Some(format!("file://{}", self.jwks.display())),
        }
    }
}

fn assertion(key: &jsonwebtoken::EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn private_key_jwt_authenticates_a_client_once_per_assertion() {
    let keys = tempfile::TempDir::new().unwrap();
    let signer = ClientKey::new(keys.path(), "signer");
    let stranger = ClientKey::new(keys.path(), "stranger");
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.identity.api_keys.push(signer.signer());
    })
    .await;
    let (signing, kid) = (&signer.signing, signer.kid.as_str());
    let (stranger, stranger_kid) = (&stranger.signing, stranger.kid.as_str());
    let now = super::harness::unix_now();
    let token_endpoint = format!("{}/oauth2/token", server.base);
    let claims = |aud: &str, exp: u64, jti: &str| json!({"iss": "signer", "sub": "signer", "aud": aud, "iat": now, "exp": exp, "jti": jti});
    let details = deploy_web_1();
    let ask = |assertion: String| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("authorization_details", details.clone()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion", assertion),
        ]
    };
    let send = |form: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body, _) = token(server, Client::None, &form).await;
            (status, body)
        }
    };
    let good = assertion(signing, kid, &claims(&token_endpoint, now + 60, "a-1"));
    let (status, body) = send(ask(good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "deploy:web-1 deployer:signer");

    let refused = [
        ("replayed", good),
        (
            "expired",
            assertion(signing, kid, &claims(&token_endpoint, now - 60, "a-2")),
        ),
        (
            "another audience",
            assertion(
                signing,
                kid,
                &claims("https://elsewhere.example", now + 60, "a-3"),
            ),
        ),
        (
            "living two hours",
            assertion(signing, kid, &claims(&token_endpoint, now + 7200, "a-4")),
        ),
        (
            "signed by a stranger",
            assertion(
                stranger,
                stranger_kid,
                &claims(&token_endpoint, now + 60, "a-5"),
            ),
        ),
        (
            "no jti",
            assertion(
                signing,
                kid,
                &json!({"iss": "signer", "sub": "signer", "aud": token_endpoint, "exp": now + 60}),
            ),
        ),
    ];
    for (case, assertion) in refused {
        let (status, body) = send(ask(assertion)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{case}: {body}"
        );
    }

    // The introspection endpoint is an audience too.
    let (_, issued) = send(ask(assertion(
        signing,
        kid,
        &claims(&token_endpoint, now + 60, "a-6"),
    )))
    .await;
    let introspect = format!("{}/oauth2/introspect", server.base);
    let form = [
        ("token", issued["access_token"].as_str().unwrap().to_owned()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        (
            "client_assertion",
            assertion(signing, kid, &claims(&introspect, now + 60, "a-7")),
        ),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body, _) = post_form(&server, "/oauth2/introspect", Client::None, &form).await;
    assert_eq!(
        (status, body["active"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
}

/// A DPoP proof by `key` (whose public JWK is `public`) for a `method` request to `url`.
fn dpop_proof(
    key: &jsonwebtoken::EncodingKey,
    public: &jsonwebtoken::jwk::Jwk,
    (method, url): (&str, &str),
    iat: u64,
    jti: &str,
) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(public.clone());
    let claims = json!({"jti": jti, "htm": method, "htu": url, "iat": iat});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// A DPoP key: signing half, public JWK, RFC 7638 thumbprint.
fn dpop_key(dir: &std::path::Path) -> (jsonwebtoken::EncodingKey, jsonwebtoken::jwk::Jwk, String) {
    let ring = jitgate::token::KeyRing::open(
        &dir.join("dpop"),
        jitgate::config::SigningAlg::Es256,
        super::harness::unix_now(),
    )
    .unwrap();
    let key = ring.active().unwrap();
    let pem = std::fs::read(key.path.as_ref().unwrap()).unwrap();
    let jkt = jitgate::token::thumbprint(&key.public).unwrap();
    (
        jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        key.public.clone(),
        jkt,
    )
}

#[tokio::test]
async fn a_dpop_proof_binds_the_token_to_its_key_once() {
    let keys = tempfile::TempDir::new().unwrap();
    let (signing, public, jkt) = dpop_key(keys.path());
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let now = super::harness::unix_now();
    let token_url = format!("{}/oauth2/token", server.base);
    let details = deploy_web_1();
    let form = [
        ("grant_type", "client_credentials"),
        ("authorization_details", details.as_str()),
    ];
    let with_proof = |proof: String| {
        let request = server
            .http
            .post(&token_url)
            .basic_auth("deployer", Some(SECRET))
            .header("dpop", proof)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let proof = dpop_proof(&signing, &public, ("POST", &token_url), now, "p-1");
    let (status, body) = with_proof(proof.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    let claims = server.verify(&access_token, "deploy-api").await;
    assert_eq!(claims.cnf.map(|c| c.jkt), Some(jkt.clone()));

    // Introspection tells a resource server what the token is bound to.
    let (_, answer, _) = post_form(
        &server,
        "/oauth2/introspect",
        Client::Basic("deployer", SECRET),
        &[("token", &access_token)],
    )
    .await;
    assert_eq!(
        (answer["token_type"].as_str(), answer["cnf"]["jkt"].as_str()),
        (Some("DPoP"), Some(jkt.as_str()))
    );

    let access_url = format!("{}/v1/access-requests", server.base);
    let mut plain = public.clone();
    plain.common.key_id = None;
    let mut typ_jwt = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    typ_jwt.jwk = Some(public.clone());
    for (case, proof) in [
        ("replayed", proof),
        (
            "for another URL",
            dpop_proof(&signing, &public, ("POST", &access_url), now, "p-2"),
        ),
        (
            "for another method",
            dpop_proof(&signing, &public, ("GET", &token_url), now, "p-3"),
        ),
        (
            "two minutes old",
            dpop_proof(&signing, &public, ("POST", &token_url), now - 120, "p-4"),
        ),
        (
            "without typ dpop+jwt",
            jsonwebtoken::encode(
                &typ_jwt,
                &json!({"jti": "p-5", "htm": "POST", "htu": token_url, "iat": now}),
                &signing,
            )
            .unwrap(),
        ),
        ("garbage", "not.a.proof".to_owned()),
    ] {
        let (status, body) = with_proof(proof).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "{case}: {body}"
        );
    }

    // The access-request endpoint binds too, and says what was wrong the same way.
    let alice = server.dev_token("alice", &["oncall"], true);
    let ask = |proof: String| {
        let request = server
            .http
            .post(&access_url)
            .bearer_auth(&alice)
            .header("dpop", proof)
            .json(
                &json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-3"}),
            );
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ask(dpop_proof(
        &signing,
        &public,
        ("POST", &access_url),
        now,
        "p-6",
    ))
    .await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (StatusCode::CREATED, Some("DPoP")),
        "{body}"
    );
    let (status, body) = ask(dpop_proof(
        &signing,
        &public,
        ("POST", &token_url),
        now,
        "p-7",
    ))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "{body}"
    );
}

#[tokio::test]
async fn a_policy_can_require_a_dpop_bound_token() {
    let pack = TempPack::shipped();
    pack.write(
        "policies/dpop.cedar",
        r#"
@id("deploy-needs-dpop")
@advice("Deploy tokens are DPoP-bound: send a DPoP proof.")
forbid (principal, action == Action::"deploy", resource)
unless { context.dpop_bound };
"#,
    );
    let server = TestServer::start(pack, |_| {}).await;
    let keys = tempfile::TempDir::new().unwrap();
    let (signing, public, _) = dpop_key(keys.path());
    let details = deploy_web_1();
    let form = [
        ("grant_type", "client_credentials"),
        ("authorization_details", details.as_str()),
    ];
    let (status, body, _) = token(&server, Client::Basic("deployer", SECRET), &form).await;
    assert_error(status, &body, (StatusCode::BAD_REQUEST, "access_denied"));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("DPoP-bound"),
        "{body}"
    );
    let token_url = format!("{}/oauth2/token", server.base);
    let proof = dpop_proof(
        &signing,
        &public,
        ("POST", &token_url),
        super::harness::unix_now(),
        "q-1",
    );
    let response = server
        .http
        .post(&token_url)
        .basic_auth("deployer", Some(SECRET))
        .header("dpop", proof)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn check_config_reports_a_client_key_file_jitgate_cannot_use() {
    let dir = tempfile::TempDir::new().unwrap();
    let private = dir.path().join("private.jwks.json");
    std::fs::write(
        &private,
        r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}"#,
    )
    .unwrap();
    let good = ClientKey::new(dir.path(), "good");
    let check = |jwks: &std::path::Path| {
        let config = dir.path().join("jitgate.toml");
        std::fs::write(
            &config,
            format!(
                "[policy]\ndir = {:?}\nschemas = {:?}\n[[identity.api_keys]]\nname = \"signer\"\n\
                 principal = 'Service::\"signer\"'\njwks = \"file://{}\"\n",
                super::repo().join("policies"),
                super::repo().join("schemas"),
                jwks.display()
            ),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["check", "--config", config.to_str().unwrap()])
            .env_remove("JITGATE_CONFIG")
            .output()
            .unwrap()
    };
    let out = check(&good.jwks);
    assert!(out.status.success(), "{out:?}");
    for (jwks, says) in [
        (private.as_path(), "holds a private key"),
        (dir.path().join("missing.json").as_path(), "cannot read"),
    ] {
        let out = check(jwks);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("identity.api_keys[0].jwks") && stderr.contains(says),
            "{stderr}"
        );
    }
}
