//! `POST /oauth2/token` as OAuth clients (and attackers) send it: forms with every parameter
//! present or not, mostly right, `authorization_details` from the access-request bodies, and
//! mutated or arbitrary bytes; a client authenticated or not, a DPoP header or not. The answer
//! is an RFC 6749 error (`error` and `error_description`) or a token, never a 5xx.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::json;

use super::bodies::{Server, answered, server, structured};
use super::mutation::{self, Edit};
use super::proptest_config;

const TOKENS: &[&str] = &[
    "&",
    "=",
    "%",
    "%00",
    "%zz",
    "+",
    "grant_type=",
    "scope=",
    "authorization_details=",
    "client_id=",
    "client_secret=",
    "subject_token=",
    "auth_req_id=",
    "[",
    "]",
    "{",
    "}",
    "\"type\":\"jitgate_access\"",
    "é",
    "\u{202e}",
];

/// A token request: its form, whether the client authenticates with HTTP Basic, and its DPoP
/// header, if any.
#[derive(Debug, Clone)]
struct TokenRequest {
    form: Vec<u8>,
    basic: Option<(String, String)>,
    dpop: Option<String>,
}

fn grant_type() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:openid:params:grant-type:ciba",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["password", "authorization_code", "", "CLIENT_CREDENTIALS"])
            .prop_map(str::to_owned),
        1 => ".{0,16}",
    ]
}

/// `authorization_details`: one `jitgate_access` entry made of an access-request body, or
/// something else.
fn details() -> BoxedStrategy<String> {
    // Boxed, as the other strategies here: nested strategy types make debug-build stack
    // frames large enough to overflow a test thread.
    prop_oneof![
        6 => structured().boxed().prop_map(|body| {
            let mut entry = body.as_object().cloned().unwrap_or_default();
            entry.insert("type".into(), json!("jitgate_access"));
            json!([entry]).to_string()
        }),
        1 => structured().prop_map(|body| json!([body]).to_string()),
        1 => structured().prop_map(|body| body.to_string()),
        1 => ".{0,40}",
    ]
    .boxed()
}

fn form(bearer: String) -> BoxedStrategy<Vec<(String, String)>> {
    let subject = prop_oneof![
        4 => Just(bearer.trim_start_matches("Bearer ").to_owned()),
        1 => Just("jg_deploy-secret".to_owned()),
        1 => "[A-Za-z0-9._-]{0,40}",
    ];
    (
        proptest::option::weighted(0.95, grant_type()),
        proptest::option::weighted(0.8, details()),
        proptest::option::weighted(0.2, "[a-z:._-]{0,20}( [a-z:._-]{1,20}){0,2}"),
        proptest::option::weighted(0.5, subject),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                4 => Just("urn:ietf:params:oauth:token-type:jwt".to_owned()),
                1 => ".{0,20}",
            ],
        ),
        proptest::option::weighted(0.2, "(req_)?[a-z0-9]{0,24}"),
        proptest::option::weighted(0.1, "[A-Za-z0-9._-]{0,60}"),
    )
        .prop_map(
            |(grant, details, scope, subject, subject_type, auth_req_id, assertion)| {
                let mut form = Vec::new();
                for (name, value) in [
                    ("grant_type", grant),
                    ("authorization_details", details),
                    ("scope", scope),
                    ("subject_token", subject),
                    ("subject_token_type", subject_type),
                    ("auth_req_id", auth_req_id),
                    ("client_assertion", assertion),
                ] {
                    if let Some(value) = value {
                        form.push((name.to_owned(), value));
                    }
                }
                form
            },
        )
        .boxed()
}

/// Requests that reach a decision as they are: the deployer service's client credentials, and
/// alice's identity token exchanged, for what the shipped pack allows, escalates or denies.
fn decidable(bearer: &str) -> BoxedStrategy<TokenRequest> {
    let subject = bearer.trim_start_matches("Bearer ").to_owned();
    let entry = |action: &str, resource: &str| {
        json!([{"type": "jitgate_access", "action": action, "resource": resource, "reason": "INC-1"}])
            .to_string()
    };
    let service = prop::sample::select(vec![
        entry("deploy", "Host::\"web-1\""),
        entry("deploy", "Host::\"web-staging-1\""),
        entry("read", "Database::\"orders\""),
    ])
    .prop_map(|details| TokenRequest {
        form: serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("authorization_details", &details),
        ])
        .unwrap()
        .into_bytes(),
        basic: Some(("deployer".to_owned(), "jg_deploy-secret".to_owned())),
        dpop: None,
    });
    let user = prop::sample::select(vec![
        entry("read", "Database::\"orders\""),
        entry("write", "Database::\"orders\""),
        entry("admin", "Database::\"orders\""),
        entry("ssh", "Host::\"web-1\""),
        entry("sudo", "Host::\"web-1\""),
        entry("deploy", "Host::\"web-1\""),
    ])
    .prop_map(move |details| TokenRequest {
        form: serde_urlencoded::to_string([
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("authorization_details", &details),
        ])
        .unwrap()
        .into_bytes(),
        basic: None,
        dpop: None,
    });
    prop_oneof![service, user].boxed()
}

fn request(bearer: String) -> impl Strategy<Value = TokenRequest> {
    let decided = decidable(&bearer);
    let body = prop_oneof![
        6 => form(bearer.clone()).prop_map(|form| serde_urlencoded::to_string(form).unwrap().into_bytes()),
        3 => (form(bearer), mutation::edits()).prop_map(|(form, edits): (_, Vec<Edit>)| {
            mutation::apply(serde_urlencoded::to_string(form).unwrap().as_bytes(), &edits, TOKENS)
        }),
        1 => mutation::arbitrary_input(),
    ];
    let basic = proptest::option::weighted(
        0.6,
        prop_oneof![
            4 => Just(("deployer".to_owned(), "jg_deploy-secret".to_owned())),
            1 => ("[ -~]{0,12}", "[ -~]{0,12}"),
        ],
    );
    let dpop = proptest::option::weighted(0.1, "[A-Za-z0-9._-]{0,80}");
    let built =
        (body, basic, dpop).prop_map(|(form, basic, dpop)| TokenRequest { form, basic, dpop });
    prop_oneof![9 => built, 1 => decided]
}

/// Posts `request` and checks the answer: an RFC 6749 error, or a token; never a 5xx. Returns
/// whether the request reached a decision (a token, `access_denied`, `authorization_pending`).
async fn post(server: &Server, request: &TokenRequest) -> Result<bool, String> {
    let mut builder = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4711))));
    if let Some((id, secret)) = &request.basic {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        builder = builder.header(header::AUTHORIZATION, format!("Basic {credentials}"));
    }
    if let Some(proof) = &request.dpop {
        builder = builder.header("dpop", proof);
    }
    let request = builder.body(Body::from(request.form.clone())).unwrap();
    let (status, answer) = answered(server, request).await?;
    if status.is_client_error() {
        let error = answer["error"].as_str().unwrap_or_default();
        let description = answer["error_description"].as_str().unwrap_or_default();
        if error.is_empty() || description.trim().is_empty() {
            return Err(format!(
                "{status} without error and error_description: {answer}"
            ));
        }
        return Ok(["access_denied", "authorization_pending"].contains(&error));
    }
    if answer["access_token"].as_str().is_none_or(str::is_empty) {
        return Err(format!("{status} without a token: {answer}"));
    }
    Ok(true)
}

#[test]
fn a_token_request_is_answered_with_an_oauth_error_or_a_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(server());
    let decided = std::cell::Cell::new(0u32);
    let config = proptest_config();
    proptest!(config.clone(), |(request in request(server.bearer.clone()))| {
        let result = runtime.block_on(post(&server, &request));
        prop_assert!(result.is_ok(), "{}", result.as_ref().unwrap_err());
        if result.is_ok_and(|decided| decided) {
            decided.set(decided.get() + 1);
        }
    });
    // Enough generated requests reach a decision, not only the form parser's errors.
    assert!(
        decided.get() >= config.cases / 200,
        "only {} of {} requests were decided",
        decided.get(),
        config.cases
    );
}
