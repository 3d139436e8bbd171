//! `jitgate request`, run as a requester runs it, against the real server: the token on stdout,
//! `--wait` through approval, denial and cancellation, and the exit codes.

use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// Starts `jitgate request --server <server> <args>` as `token`'s holder.
fn spawn(server: &TestServer, token: &str, args: &[&str]) -> tokio::task::JoinHandle<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jitgate"));
    command
        .args([
            "request",
            "--server",
            &server.base,
            "--poll-interval",
            "100ms",
        ])
        .args(args)
        .env("JITGATE_TOKEN", token);
    tokio::task::spawn_blocking(move || command.output().unwrap())
}

async fn finished(running: tokio::task::JoinHandle<Output>) -> (i32, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("jitgate request finishes")
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const WRITE: [&str; 6] = [
    "--action",
    "write",
    "--resource",
    "Database::\"orders\"",
    "--reason",
    "INC-42",
];

/// The id of the one request `approver` sees pending, once it is there.
async fn pending_id(server: &TestServer, approver: &str) -> String {
    for _ in 0..200 {
        let list: Value = server
            .get("/v1/access-requests?status=pending", Some(approver))
            .await
            .json()
            .await
            .unwrap();
        if let Some(id) = list["requests"][0]["request_id"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending request appeared");
}

#[tokio::test]
async fn wait_prints_the_token_once_approved() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let dave = server.dev_token("dave", &["dba"], true);
    let running = spawn(&server, &alice, &[&WRITE[..], &["--wait"]].concat());
    let id = pending_id(&server, &dave).await;
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (code, stdout, stderr) = finished(running).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("pending: request {id} needs 1 approval")),
        "{stderr}"
    );
    let claims = server.verify(stdout.trim(), "db-proxy").await;
    assert_eq!(claims.jit.request_id, id);
    assert_eq!(claims.jit.approvers, vec!["User::\"dave\"".to_owned()]);
}

#[tokio::test]
async fn wait_ends_with_2_when_denied_and_3_when_cancelled() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let dave = server.dev_token("dave", &["dba"], true);

    let running = spawn(&server, &alice, &[&WRITE[..], &["--wait"]].concat());
    let id = pending_id(&server, &dave).await;
    server
        .post(
            &format!("/v1/access-requests/{id}/deny"),
            Some(&dave),
            json!({"comment": "use the runbook"}),
        )
        .await;
    let (code, stdout, stderr) = finished(running).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("denied by User::\"dave\": use the runbook"),
        "{stderr}"
    );

    let running = spawn(
        &server,
        &alice,
        &[&WRITE[..], &["--wait", "--json"]].concat(),
    );
    let id = pending_id(&server, &dave).await;
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (code, stdout, stderr) = finished(running).await;
    assert_eq!(code, 3, "{stderr}");
    let shown: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(shown["status"], "cancelled");
}

#[tokio::test]
async fn exit_codes_tell_issued_denied_pending_and_error_apart() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let read = [
        "--action",
        "read",
        "--resource",
        "Database::\"orders\"",
        "--reason",
        "INC-1",
    ];

    let (code, stdout, stderr) =
        finished(spawn(&server, &alice, &[&read[..], &["--json"]].concat())).await;
    assert_eq!(code, 0, "{stderr}");
    let issued: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(issued["status"], "issued");
    assert_eq!(issued["scope"], "db:read:orders");

    // Asking for a scope no policy grants: denied by the policies.
    let (code, stdout, stderr) = finished(spawn(
        &server,
        &alice,
        &[&read[..], &["--scope", "db:admin:orders"]].concat(),
    ))
    .await;
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(
        stderr.contains("scope_not_granted: db:admin:orders"),
        "{stderr}"
    );

    let (code, _, stderr) = finished(spawn(&server, &alice, &WRITE)).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("without asking again): jitgate request --resume "),
        "{stderr}"
    );

    let (code, _, stderr) = finished(spawn(&server, "not-a-token", &read)).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the server refused the token"), "{stderr}");
}

/// The hint after a pending answer resumes waiting on that request, not a new one.
#[tokio::test]
async fn resume_waits_on_the_request_asked_earlier() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let dave = server.dev_token("dave", &["dba"], true);
    let (code, _, stderr) = finished(spawn(&server, &alice, &WRITE)).await;
    assert_eq!(code, 4, "{stderr}");
    let id = pending_id(&server, &dave).await;
    assert!(stderr.contains(&format!("--resume {id}")), "{stderr}");

    let running = spawn(&server, &alice, &["--resume", &id]);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (code, stdout, stderr) = finished(running).await;
    assert_eq!(code, 0, "{stderr}");
    let claims = server.verify(stdout.trim(), "db-proxy").await;
    assert_eq!(claims.jit.request_id, id);
    // One request in all: resuming asked nothing new.
    assert_eq!(server.count_events("decision").await, 1);

    // --resume is only a wait: it takes none of the asking options.
    let (code, _, stderr) = finished(spawn(
        &server,
        &alice,
        &["--resume", &id, "--action", "write"],
    ))
    .await;
    assert_eq!(code, 2, "clap's usage error: {stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

/// `--context` reaches the policies as typed, and `--break-glass` skips the approvals.
#[tokio::test]
async fn context_and_break_glass_reach_the_server() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (code, stdout, stderr) = finished(spawn(
        &server,
        &alice,
        &[
            &WRITE[..],
            &["--context", "ticket=INC-42", "--break-glass", "--json"],
        ]
        .concat(),
    ))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let issued: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(issued["status"], "needs_review");
    assert_eq!(issued["break_glass"], true);
    let id = issued["request_id"].as_str().unwrap();
    let stored = server.store().await.request(id).await.unwrap().unwrap();
    assert_eq!(stored.record.context["ticket"], "INC-42");

    // A context value of the wrong type is the server's 400, named.
    let (code, _, stderr) = finished(spawn(
        &server,
        &alice,
        &[&WRITE[..], &["--context", "ticket:=7"]].concat(),
    ))
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("400 Bad Request: context") && stderr.contains("is not valid"),
        "{stderr}"
    );
    let (code, _, stderr) = finished(spawn(
        &server,
        &alice,
        &[&WRITE[..], &["--context", "no-equals-sign"]].concat(),
    ))
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
}

/// `--not-before` schedules the window; the answer says when it opens and how to mint then.
#[tokio::test]
async fn not_before_schedules_the_window() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let opens =
        jiff::Timestamp::from_second(i64::try_from(super::harness::unix_now() + 120).unwrap())
            .unwrap()
            .to_string();
    let read = [
        "--action",
        "read",
        "--resource",
        "Database::\"orders\"",
        "--reason",
        "INC-1",
        "--not-before",
        &opens,
    ];
    let (code, stdout, stderr) = finished(spawn(&server, &alice, &read)).await;
    assert_eq!((code, stdout.as_str()), (4, ""), "{stderr}");
    assert!(
        stderr.contains(&format!("is allowed; its window opens at {opens}")),
        "{stderr}"
    );
    assert!(stderr.contains("jitgate request --resume req_"), "{stderr}");
}

/// `--extend ID` asks for more time on a live grant and prints the new token.
#[tokio::test]
async fn extend_prints_the_token_of_the_extension() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let read = [
        "--action",
        "read",
        "--resource",
        "Database::\"orders\"",
        "--reason",
        "INC-1",
        "--json",
    ];
    let (code, stdout, stderr) = finished(spawn(&server, &alice, &read)).await;
    assert_eq!(code, 0, "{stderr}");
    let first: Value = serde_json::from_str(stdout.trim()).unwrap();
    let id = first["request_id"].as_str().unwrap();
    let (code, stdout, stderr) = finished(spawn(
        &server,
        &alice,
        &[
            "--extend",
            id,
            "--duration",
            "10m",
            "--reason",
            "still at it",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let claims = server.verify(stdout.trim(), "db-proxy").await;
    assert_ne!(claims.jit.request_id, id);
    let stored = server
        .store()
        .await
        .request(&claims.jit.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.record.extends.as_deref(), Some(id));
    assert_eq!(stored.record.reason, "still at it");
}
