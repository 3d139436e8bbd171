//! `GET /openapi.json`: the document itself, and schemathesis (a property-based API tester
//! nobody here wrote) driving a live server from it.
//!
//! The schemathesis test needs its `st` command, named by `JITGATE_TEST_SCHEMATHESIS` (`.ci/run`
//! installs it in `target/ci-tools/venv`). Without it the test is skipped with a message, unless
//! `JITGATE_TEST_REQUIRE_SCHEMATHESIS=1` (set by `.ci/run`) makes it fail instead. Its output
//! goes to `target/schemathesis.log`, which `.ci/run` prints.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use super::harness::TestServer;
use super::{TempPack, repo};

/// The checks that hold the server to its document: no 5xx, and every status, content type,
/// header and body as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

async fn served_document(server: &TestServer) -> Value {
    let response = server.get("/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_describes_every_operation_with_its_bodies_and_errors() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let document = served_document(&server).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "jitgate");
    assert_eq!(
        document,
        serde_json::to_value(jitgate::http::openapi_document()).unwrap(),
        "the served document is the one the router was built with"
    );

    let paths = document["paths"].as_object().unwrap();
    let operations: Vec<(String, &str, &Value)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .map(move |(method, operation)| (method.to_uppercase(), path.as_str(), operation))
        })
        .collect();
    let listed: Vec<String> = operations
        .iter()
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    for endpoint in [
        "POST /v1/access-requests",
        "GET /v1/access-requests",
        "GET /v1/access-requests/{id}",
        "POST /v1/access-requests/{id}/approve",
        "POST /v1/access-requests/{id}/deny",
        "POST /v1/access-requests/{id}/cancel",
        "POST /v1/access-requests/{id}/review",
        "POST /v1/access-requests/{id}/token",
        "POST /v1/decisions",
        "GET /v1/requestable",
        "GET /v1/me",
        "GET /v1/events",
        "POST /v1/access-requests/{id}/extend",
        "POST /oauth2/token",
        "POST /oauth2/introspect",
        "POST /oauth2/revoke",
        "GET /v1/audit",
        "GET /v1/audit/head",
        "POST /v1/tokens/revoke",
        "POST /v1/tokens/introspect",
        "POST /v1/revocations",
        "GET /v1/revocations",
        "DELETE /v1/revocations/{id}",
        "GET /v1/policies",
        "GET /v1/cluster",
        "GET /.well-known/jwks.json",
        "GET /.well-known/oauth-authorization-server",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ] {
        assert!(
            listed.iter().any(|l| l == endpoint),
            "{endpoint} is missing"
        );
    }

    let mut ids: Vec<&str> = operations
        .iter()
        .map(|(_, _, operation)| operation["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), operations.len(), "operationIds are not unique");

    let schemas = document["components"]["schemas"].as_object().unwrap();
    for (method, path, operation) in &operations {
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} documents no success"
        );
        // Every body refers to a schema the document holds.
        for reference in references(operation) {
            let name = reference.trim_start_matches("#/components/schemas/");
            assert!(
                schemas.contains_key(name),
                "{method} {path} refers to {reference}, which is not in the document"
            );
        }
        // An operation that authenticates says how, and documents the errors it answers with.
        if operation.get("security").is_some() {
            let unauthorized = &responses["401"]["content"]["application/json"]["schema"]["$ref"];
            let expected = if path.starts_with("/oauth2/") {
                "#/components/schemas/OAuthError"
            } else {
                "#/components/schemas/Error"
            };
            assert_eq!(unauthorized, expected, "{method} {path}: 401");
            assert!(
                responses["401"]["headers"]
                    .get("WWW-Authenticate")
                    .is_some(),
                "{method} {path}: 401 without its challenge"
            );
        }
        if (*method == "POST" && !path.ends_with("/token")) || path.starts_with("/oauth2/") {
            assert!(
                operation.get("requestBody").is_some(),
                "{method} {path} documents no request body"
            );
        }
    }
    // The forms of the OAuth endpoints name what the server reads.
    let token_form = &schemas["TokenRequest"]["properties"];
    for parameter in [
        "grant_type",
        "authorization_details",
        "scope",
        "subject_token",
        "subject_token_type",
        "auth_req_id",
        "client_id",
        "client_secret",
        "client_assertion_type",
        "client_assertion",
    ] {
        assert!(
            token_form.get(parameter).is_some(),
            "TokenRequest lacks {parameter}"
        );
    }
    assert_eq!(
        document["paths"]["/oauth2/token"]["post"]["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["application/x-www-form-urlencoded"]
    );
}

/// Every `$ref` in `value`.
fn references(value: &Value) -> Vec<&str> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, v)| match (key.as_str(), v) {
                ("$ref", Value::String(reference)) => vec![reference.as_str()],
                _ => references(v),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

/// The answers the document's schemas describe are the ones the server gives: an inactive and
/// an active introspection, a denial, an escalation, an issued token.
#[tokio::test]
async fn real_answers_match_their_documented_schemas() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let document = served_document(&server).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let schema_of = |path: &str, method: &str, status: &str| {
        document["paths"][path][method]["responses"][status]["content"]["application/json"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/components/schemas/")
            .to_owned()
    };
    let schemas = &document["components"]["schemas"];

    let (status, issued) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            serde_json::json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-1234"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let name = schema_of("/v1/access-requests", "post", "201");
    assert_has_required(&schemas[&name], &issued, &name);

    let (status, introspected) = server
        .post(
            "/v1/tokens/introspect",
            Some(&alice),
            serde_json::json!({"token": issued["access_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let introspection = &schemas["Introspection"];
    assert_has_required(introspection, &introspected, "Introspection");
    for claim in introspected.as_object().unwrap().keys() {
        assert!(
            introspection["properties"].get(claim).is_some(),
            "introspection answers `{claim}`, which Introspection does not describe"
        );
    }

    let (status, denied) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            serde_json::json!({
                "action": "read",
                "resource": "Database::\"orders\"",
                "scopes": ["db:read:orders", "db:write:orders"],
                "reason": "INC-1234",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{denied}");
    assert_has_required(&schemas["DeniedAnswer"], &denied, "DeniedAnswer");
    let error_shape =
        |body: &Value| body["error"]["code"].is_string() && body["error"]["message"].is_string();
    assert!(error_shape(&denied));

    let (status, unauthenticated) = server
        .post("/v1/access-requests", None, serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_has_required(&schemas["Error"], &unauthenticated, "Error");
}

/// `body` has every property `schema` requires.
fn assert_has_required(schema: &Value, body: &Value, name: &str) {
    let required = schema["required"].as_array().unwrap();
    assert!(!required.is_empty(), "{name} requires nothing");
    for property in required {
        let property = property.as_str().unwrap();
        assert!(
            body.get(property).is_some(),
            "the answer lacks `{property}`, which {name} requires: {body}"
        );
    }
}

#[tokio::test]
async fn schemathesis_finds_no_5xx_and_no_answer_outside_the_document() {
    let Some(st) = std::env::var_os("JITGATE_TEST_SCHEMATHESIS") else {
        let why =
            "no schemathesis (set JITGATE_TEST_SCHEMATHESIS to its `st`; .ci/run installs it)";
        assert!(
            std::env::var("JITGATE_TEST_REQUIRE_SCHEMATHESIS").as_deref() != Ok("1"),
            "{why}, and JITGATE_TEST_REQUIRE_SCHEMATHESIS=1"
        );
        super::skipped(
            "schemathesis_finds_no_5xx_and_no_answer_outside_the_document",
            why,
        );
        return;
    };
    // Generous limits, so that the run reaches past the rate limiter; 429 is documented anyway.
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.rate_limit.per_principal_per_minute = 1_000_000;
        c.rate_limit.operations_per_principal_per_minute = 1_000_000;
    })
    .await;
    // An administrator, so that the administrators' endpoints answer more than 403.
    let admin = server.dev_token("sam", &["security"], true);
    let log = repo().join("target/schemathesis.log");
    // From a file, with the base URL: read from the server itself, schemathesis leaves out
    // the operation that served it.
    let dir = tempfile::TempDir::new().unwrap();
    let document = dir.path().join("openapi.json");
    std::fs::write(&document, served_document(&server).await.to_string()).unwrap();
    let mut command = Command::new(st);
    command
        .arg("run")
        .arg(&document)
        .args(["--url", &server.base])
        .args(["--checks", CHECKS])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .args(["--max-examples", "40", "--workers", "2", "--seed", "1"])
        .args(["--phases", "examples,coverage,fuzzing"])
        // An event stream stays open for minutes by design; its test is tests/it/events.rs.
        .args(["--exclude-path", "/v1/events"])
        .env("NO_COLOR", "1")
        // Its cache of crashes goes where it runs: the temp dir, not the checkout.
        .current_dir(dir.path());
    // On a thread of its own: the server answers schemathesis on this test's runtime.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, &report).unwrap();
    assert!(output.status.success(), "{report}");
    let streams = 1;
    let operations = jitgate::http::openapi_document()
        .paths
        .paths
        .values()
        .map(|item| {
            let methods = [&item.get, &item.post, &item.delete];
            methods
                .iter()
                .filter(|operation| operation.is_some())
                .count()
        })
        .sum::<usize>();
    assert!(
        report.contains(&format!("Tested: {}\n", operations - streams)),
        "schemathesis did not test all {operations} operations:\n{report}"
    );
}
