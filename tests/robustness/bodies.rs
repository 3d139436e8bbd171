//! The bodies of `POST /v1/access-requests` and `POST /v1/decisions`, through the router as a
//! client sends them: a 4xx with an error code and message, never a 5xx.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use jitgate::config::Config;
use jitgate::identity::DevIssuer;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::Digest as _;
use tempfile::TempDir;
use tower::ServiceExt as _;

use super::mutation::{self, Edit};
use super::tokens::json_value;
use super::{proptest_config, repo};

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "-0",
    "1e999",
    "18446744073709551616",
    "\"action\":",
    "\"resource\":",
    "\"scopes\":",
    "\"duration\":",
    "\"reason\":",
    "\"context\":",
    "\"break_glass\":",
    "\"Database::\\\"orders\\\"\"",
    "\"Host::\\\"web-1\\\"\"",
    "\"read\"",
    "\"write\"",
    "\"approve\"",
    "\"15m\"",
    "é",
    "\u{202e}",
];

/// A body close to what clients send: every field present or not, mostly right, sometimes
/// wrong (each wrong field alone, often enough, to reach the checks after the others).
pub(super) fn structured() -> impl Strategy<Value = Value> {
    let action = prop_oneof![
        8 => prop::sample::select(vec![
            "read", "write", "admin", "ssh", "sudo", "deploy", "approve", "administer",
            "requestable", "", "READ",
        ])
        .prop_map(|s| json!(s)),
        1 => json_value(),
    ];
    let resource = prop_oneof![
        8 => prop::sample::select(vec![
            "Database::\"orders\"", "Database::\"billing\"", "Database::\"orders-staging\"",
            "Host::\"web-1\"", "Host::\"web-staging-1\"",
            "Database::\"nope\"", "Jitgate::\"jitgate\"", "Database::orders", "Database::\"\"",
            "::\"x\"", "User::\"alice\"", "Environment::\"prod\"",
        ])
        .prop_map(|s| json!(s)),
        1 => (".{0,12}", ".{0,12}").prop_map(|(t, id)| json!({"type": t, "id": id})),
        1 => json_value(),
    ];
    let fields = (
        proptest::option::weighted(0.9, action),
        proptest::option::weighted(0.9, resource),
        proptest::option::weighted(
            0.2,
            prop_oneof![
                prop::collection::vec(".{0,20}", 0..4).prop_map(|s| json!(s)),
                json_value()
            ],
        ),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                4 => prop::sample::select(vec!["15m", "1h", "90s", "2h"]).prop_map(|s| json!(s)),
                1 => prop::sample::select(vec!["0s", "-1s", "99999999999h", "1 fortnight", ""])
                    .prop_map(|s| json!(s)),
                3 => (0u64..7200).prop_map(|n| json!(n)),
                1 => any::<u64>().prop_map(|n| json!(n)),
                1 => json_value(),
            ],
        ),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                4 => "[ -~]{0,64}".prop_map(|s| json!(s)),
                1 => ".{0,64}".prop_map(|s| json!(s)),
                1 => json_value(),
            ],
        ),
        proptest::option::weighted(0.2, json_value()),
        proptest::option::weighted(
            0.2,
            prop_oneof![4 => any::<bool>().prop_map(Value::Bool), 1 => json_value()],
        ),
        proptest::option::weighted(0.1, (".{0,8}", json_value())),
    );
    fields.prop_map(
        |(action, resource, scopes, duration, reason, context, break_glass, extra)| {
            let mut body = serde_json::Map::new();
            for (name, value) in [
                ("action", action),
                ("resource", resource),
                ("scopes", scopes),
                ("duration", duration),
                ("reason", reason),
                ("context", context),
                ("break_glass", break_glass),
            ] {
                if let Some(value) = value {
                    body.insert(name.to_owned(), value);
                }
            }
            body.extend(extra);
            Value::Object(body)
        },
    )
}

#[derive(Debug, Clone)]
enum Input {
    Structured(Value),
    Mutated(Value, Vec<Edit>),
    Arbitrary(Vec<u8>),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        5 => structured().prop_map(Input::Structured),
        3 => (structured(), mutation::edits()).prop_map(|(body, edits)| Input::Mutated(body, edits)),
        1 => mutation::arbitrary_input().prop_map(Input::Arbitrary),
        1 => json_value().prop_map(Input::Structured),
    ]
}

pub(super) struct Server {
    _dir: TempDir,
    pub(super) router: Router,
    pub(super) bearer: String,
}

pub(super) async fn server() -> Server {
    let dir = TempDir::new().unwrap();
    let mut config = Config::quickstart();
    config.policy.dir = repo().join("policies");
    config.policy.schemas = repo().join("schemas");
    config.data_dir = dir.path().join("data");
    config.rate_limit.per_principal_per_minute = u32::MAX;
    config.rate_limit.operations_per_principal_per_minute = u32::MAX;
    // The OAuth client of the token endpoint's cases (`deployer:jg_deploy-secret`).
    config
        .identity
        .api_keys
        .push(jitgate::config::ApiKeyConfig {
            name: "deployer".into(),
            hash: Some(format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(b"jg_deploy-secret"))
            )),
            principal: "Service::\"deployer\"".into(),
            groups: vec!["Group::\"deployers\"".into()],
            jwks: None,
        });
    let state = jitgate::access::build(config, jitgate::clock::SystemClock::shared())
        .await
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let groups = ["oncall", "dba", "sre", "engineering"].map(str::to_owned);
    let token = DevIssuer::open(&dir.path().join("data"), now)
        .unwrap()
        .mint("alice", &groups, true, Duration::from_secs(3600), now)
        .unwrap();
    Server {
        _dir: dir,
        router: jitgate::http::router(state),
        bearer: format!("Bearer {token}"),
    }
}

/// Sends `request` through the router: the status and the JSON answer, or what is wrong with
/// them (not JSON, a 5xx).
pub(super) async fn answered(
    server: &Server,
    request: Request<Body>,
) -> Result<(StatusCode, Value), String> {
    let response = server.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    if status.is_server_error() {
        return Err(format!("{status}: {answer}"));
    }
    Ok((status, answer))
}

/// Posts `body` and checks the answer: a 4xx says what was wrong, a 2xx is JSON, no 5xx.
async fn post(server: &Server, path: &str, body: Vec<u8>) -> Result<StatusCode, String> {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, &server.bearer)
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4711))))
        .body(Body::from(body))
        .unwrap();
    let (status, answer) = answered(server, request).await?;
    if status.is_client_error() {
        let code = answer["error"]["code"].as_str().unwrap_or_default();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        if code.is_empty() || message.trim().is_empty() {
            return Err(format!("{status} without a code and message: {answer}"));
        }
    }
    Ok(status)
}

fn bytes_of(input: &Input) -> Vec<u8> {
    match input {
        Input::Structured(body) => body.to_string().into_bytes(),
        Input::Mutated(body, edits) => mutation::apply(body.to_string().as_bytes(), edits, TOKENS),
        Input::Arbitrary(bytes) => bytes.clone(),
    }
}

fn check_endpoint(path: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(server());
    let decided = std::cell::Cell::new(0u32);
    let config = proptest_config();
    proptest!(config.clone(), |(input in input())| {
        let result = runtime.block_on(post(&server, path, bytes_of(&input)));
        prop_assert!(result.is_ok(), "{}", result.as_ref().unwrap_err());
        if result.is_ok_and(|status| status.is_success() || status == StatusCode::FORBIDDEN) {
            decided.set(decided.get() + 1);
        }
    });
    // Enough generated bodies reach a decision (allowed, escalated or denied), not only the
    // JSON parser.
    assert!(
        decided.get() >= config.cases / 200,
        "only {} of {} bodies were decided",
        decided.get(),
        config.cases
    );
}

#[test]
fn an_access_request_body_is_answered_with_a_clear_error() {
    check_endpoint("/v1/access-requests");
}

#[test]
fn a_dry_run_body_is_answered_with_a_clear_error() {
    check_endpoint("/v1/decisions");
}
