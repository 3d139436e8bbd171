//! The tamper-evident audit trail: `jitgate audit verify` on a busy store, then after rows are
//! edited, deleted and swapped with SQL; `jitgate audit export` round-tripping every event;
//! `GET /v1/audit` for administrators.

use std::path::Path;
use std::process::Command;

use jitgate::audit::{AuditEvent, AuditFilter};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::ConnectOptions;

use super::TempPack;
use super::harness::TestServer;

/// Runs `jitgate audit <args>` on the store in `data_dir`: exit code, stdout, stderr.
fn audit(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let config = data_dir.with_file_name("audit-cli.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data_dir.display().to_string()),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Decisions of every kind, approvals, a mint and a revocation, many at once.
async fn busy(server: &TestServer) {
    let alice = server.dev_token("alice", &["oncall"], true);
    let mallory = server.dev_token("mallory", &[], false);
    let mut calls = Vec::new();
    for i in 0..40 {
        let (token, action) = match i % 3 {
            0 => (alice.clone(), "read"),
            1 => (alice.clone(), "write"),
            _ => (mallory.clone(), "read"),
        };
        let http = server.http.clone();
        let url = format!("{}/v1/access-requests", server.base);
        calls.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"action": action, "resource": "Database::\"orders\"", "reason": "INC-7"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for call in calls {
        assert!(call.await.unwrap().as_u16() < 500);
    }
    let dave = server.dev_token("dave", &["dba"], true);
    let pending: Value = server
        .get("/v1/access-requests?status=pending&limit=3", Some(&dave))
        .await
        .json()
        .await
        .unwrap();
    for request in pending["requests"].as_array().unwrap() {
        let id = request["request_id"].as_str().unwrap();
        server
            .post(
                &format!("/v1/access-requests/{id}/approve"),
                Some(&dave),
                json!({}),
            )
            .await;
        server
            .post(
                &format!("/v1/access-requests/{id}/token"),
                Some(&alice),
                json!({}),
            )
            .await;
    }
    let admin = server.dev_token("sam", &["security"], true);
    let (status, _) = server
        .post(
            "/v1/revocations",
            Some(&admin),
            json!({"subject": "mallory", "reason": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn execute(database: &Path, sql: &str) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(database)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn verify_passes_on_a_busy_store_and_names_the_first_tampered_event() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let data_dir = server.config.data_dir.clone();

    // Beside the running server, then on the stopped one.
    let (code, stdout, stderr) = audit(&data_dir, &["verify"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    let (pack, _) = server.stop().await;
    let (code, stdout, stderr) = audit(&data_dir, &["verify"]);
    assert_eq!(code, 0, "{stderr}");
    let events: i64 = stdout
        .strip_prefix("ok: ")
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(events > 50, "{stdout}");
    assert!(
        stdout.contains(&format!("head seq {events} hash ")),
        "{stdout}"
    );

    // Someone with write access to the database, bypassing the append-only triggers.
    let database = data_dir.join("jitgate.db");
    execute(
        &database,
        "DROP TRIGGER audit_events_append_only_update; DROP TRIGGER audit_events_append_only_delete",
    )
    .await;
    // An edited event.
    execute(
        &database,
        "UPDATE audit_events SET data = json_set(data, '$.tampered', 1) WHERE seq = 12",
    )
    .await;
    let (code, _, stderr) = audit(&data_dir, &["verify"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("breaks at seq 12: the event was changed"),
        "{stderr}"
    );
    drop(pack);
}

#[tokio::test]
async fn deletions_and_swaps_break_the_chain_where_they_happen() {
    for tamper in [
        (
            "DELETE FROM audit_events WHERE seq = 20",
            21,
            "deleted or reordered",
        ),
        (
            "UPDATE audit_events SET seq = -seq WHERE seq IN (20, 21); \
             UPDATE audit_events SET seq = 21 WHERE seq = -20; \
             UPDATE audit_events SET seq = 20 WHERE seq = -21",
            20,
            "",
        ),
        (
            "UPDATE audit_events SET hash = (SELECT hash FROM audit_events WHERE seq = 4) WHERE seq = 5",
            5,
            "",
        ),
    ] {
        let server = TestServer::start(TempPack::shipped(), |_| {}).await;
        busy(&server).await;
        let data_dir = server.config.data_dir.clone();
        let (pack, _) = server.stop().await;
        let database = data_dir.join("jitgate.db");
        execute(
            &database,
            &format!(
                "DROP TRIGGER audit_events_append_only_update; \
                 DROP TRIGGER audit_events_append_only_delete; {}",
                tamper.0
            ),
        )
        .await;
        let (code, _, stderr) = audit(&data_dir, &["verify"]);
        assert_eq!(code, 1, "{}: {stderr}", tamper.0);
        assert!(
            stderr.contains(&format!("breaks at seq {}:", tamper.1)) && stderr.contains(tamper.2),
            "{}: {stderr}",
            tamper.0
        );
        drop(pack);
    }
}

#[tokio::test]
async fn export_round_trips_every_event_and_the_api_filters_them() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let data_dir = server.config.data_dir.clone();

    let (code, stdout, stderr) = audit(&data_dir, &["export"]);
    assert_eq!(code, 0, "{stderr}");
    let exported: Vec<AuditEvent> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let stored = server
        .store()
        .await
        .audit_page(&AuditFilter::default(), 0, 100_000)
        .await
        .unwrap();
    assert_eq!(exported, stored);
    assert_eq!(exported[0].kind, "policy.loaded");
    assert!(exported[0].data["policies"].as_array().unwrap().len() > 10);

    let at = exported[exported.len() / 2].at;
    let (_, window, _) = audit(
        &data_dir,
        &[
            "export",
            "--since",
            &at.to_string(),
            "--until",
            &(at + 1).to_string(),
        ],
    );
    let in_window: Vec<AuditEvent> = window
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!in_window.is_empty() && in_window.iter().all(|e| e.at == at));
    let (code, _, stderr) = audit(&data_dir, &["export", "--since", "yesterday"]);
    assert_eq!(code, 2, "{stderr}");

    // The API: administrators only, filters, pages.
    let admin = server.dev_token("sam", &["security"], true);
    let alice = server.dev_token("alice", &["oncall"], true);
    assert_eq!(
        server.get("/v1/audit", Some(&alice)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.get("/v1/audit", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let request_id = exported
        .iter()
        .find(|e| {
            e.kind == "token.issued"
                && e.data["approvers"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        })
        .and_then(|e| e.request_id.clone())
        .unwrap();
    let page: Value = server
        .get(&format!("/v1/audit?request_id={request_id}"), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["decision", "request.approve", "token.issued"]);
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/audit?type=decision&subject=alice&limit=7{cursor}");
        let page: Value = server.get(&path, Some(&admin)).await.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(
            events
                .iter()
                .all(|e| e["type"] == "decision" && e["subject"] == "User::\"alice\"")
        );
        seen += events.len();
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let expected = exported
        .iter()
        .filter(|e| e.kind == "decision" && e.subject.as_deref() == Some("User::\"alice\""))
        .count();
    assert_eq!(seen, expected);
    assert_eq!(
        server
            .get("/v1/audit?since=never", Some(&admin))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}
