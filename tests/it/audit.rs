//! The tamper-evident audit trail: `jitgate audit verify` on a busy store, then after rows are
//! edited, deleted and swapped with SQL; `jitgate audit export` round-tripping every event;
//! `GET /v1/audit` for administrators; signed heads (`GET /v1/audit/head`, `audit.head`
//! events, `audit verify --head`) against a chain rebuilt after deletions or cut off its end.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jitgate::audit::{AuditEvent, AuditFilter, HeadClaims, chain_hash};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

/// Runs `sql` on the database file directly, as someone with write access to it can.
async fn execute(database: &Path, sql: &str) {
    rusqlite::Connection::open(database)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
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

/// `jitgate audit export <args>` on the store in `data_dir`, parsed: the events, and the exit
/// code and stderr.
fn export(data_dir: &Path, args: &[&str]) -> (Vec<AuditEvent>, i32, String) {
    let (code, stdout, stderr) = audit(data_dir, &[&["export"], args].concat());
    let events = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (events, code, stderr)
}

#[tokio::test]
async fn export_round_trips_every_event_and_selects_a_time_window() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let data_dir = server.config.data_dir.clone();

    let (exported, code, stderr) = export(&data_dir, &[]);
    assert_eq!(code, 0, "{stderr}");
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
    let (in_window, _, _) = export(
        &data_dir,
        &["--since", &at.to_string(), "--until", &(at + 1).to_string()],
    );
    assert!(!in_window.is_empty() && in_window.iter().all(|e| e.at == at));
    let (_, code, stderr) = export(&data_dir, &["--since", "yesterday"]);
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn the_audit_api_answers_administrators_only_and_filters_by_request() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let (exported, _, _) = export(&server.config.data_dir, &[]);
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
    assert_eq!(
        server
            .get("/v1/audit?since=never", Some(&admin))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_audit_api_pages_through_every_event_a_filter_selects() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let (exported, _, _) = export(&server.config.data_dir, &[]);
    let admin = server.dev_token("sam", &["security"], true);
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
}

/// Deletes the events `delete` selects, bypassing the append-only triggers, then renumbers
/// what is left and rebuilds the plain hash chain over it, as someone with write access to the
/// database file can.
async fn delete_and_rechain(database: &Path, delete: &str) {
    execute(
        database,
        &format!(
            "DROP TRIGGER IF EXISTS audit_events_append_only_update; \
             DROP TRIGGER IF EXISTS audit_events_append_only_delete; {delete}"
        ),
    )
    .await;
    let conn = rusqlite::Connection::open(database).unwrap();
    type Row = (i64, i64, String, Option<String>, Option<String>, String);
    let rows: Vec<Row> = conn
        .prepare("SELECT seq, at, type, request_id, subject, data FROM audit_events ORDER BY seq")
        .unwrap()
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = jitgate::audit::GENESIS.to_owned();
    for (new_seq, (seq, at, kind, request_id, subject, data)) in (1..).zip(rows) {
        let data: Value = serde_json::from_str(&data).unwrap();
        let hash = chain_hash(
            &prev,
            new_seq,
            at,
            &kind,
            request_id.as_deref(),
            subject.as_deref(),
            &data,
        );
        conn.execute(
            "UPDATE audit_events SET seq = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            rusqlite::params![new_seq, prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
}

/// The latest signed head the server serves, as text and claims (signature not checked).
async fn served_head(server: &TestServer) -> (String, HeadClaims) {
    let response = server.get("/v1/audit/head", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let jws = response.text().await.unwrap();
    let payload = jws.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    (jws, claims)
}

#[tokio::test]
async fn the_signed_audit_head_verifies_with_the_published_jwks() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let response = server.get("/v1/audit/head", None).await;
    assert_eq!(response.status(), StatusCode::OK, "no credential needed");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/jwt"
    );
    let jws = response.text().await.unwrap();
    let header = jsonwebtoken::decode_header(&jws).unwrap();
    assert_eq!(header.typ.as_deref(), Some("jitgate-audit-head+jwt"));
    let jwks = server.jwks().await;
    let key = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[&server.config.issuer]);
    let claims: HeadClaims = jsonwebtoken::decode(
        &jws,
        &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    let store = server.store().await;
    assert_eq!(
        store.audit_hash_at(claims.seq).await.unwrap(),
        Some(claims.hash.clone())
    );
    // Kept in the trail too.
    let kept = store
        .audit_page(
            &AuditFilter {
                kind: Some("audit.head".into()),
                ..AuditFilter::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert!(kept.iter().any(|e| e.data["jws"] == jws.as_str()));
}

#[tokio::test]
async fn deleting_events_and_rebuilding_the_chain_fails_on_a_signed_head() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    busy(&server).await;
    let data_dir = server.config.data_dir.clone();
    // Stopping signs the head once more.
    let (pack, _) = server.stop().await;
    let (code, stdout, stderr) = audit(&data_dir, &["verify"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("signed heads: 2 checked"), "{stdout}");

    delete_and_rechain(
        &data_dir.join("jitgate.db"),
        "DELETE FROM audit_events WHERE seq BETWEEN 10 AND 12",
    )
    .await;
    let (code, _, stderr) = audit(&data_dir, &["verify"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("events were deleted or rewritten and the chain rebuilt"),
        "{stderr}"
    );
    drop(pack);
}

// Two threads: the server answers the CLI's fetch while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_kept_outside_shows_events_cut_off_the_end() {
    let server = TestServer::start(TempPack::shipped(), |config| {
        config.audit_head_every = Duration::from_secs(1);
    })
    .await;
    busy(&server).await;
    // The next head, signed after the busy spell.
    let (mut jws, mut claims) = served_head(&server).await;
    for _ in 0..100 {
        if claims.seq > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        (jws, claims) = served_head(&server).await;
    }
    assert!(claims.seq > 20, "a head after the busy spell");
    let kept = server.pack().dir.path().join("head.jws");
    std::fs::write(&kept, &jws).unwrap();
    let data_dir = server.config.data_dir.clone();
    let url = format!("{}/v1/audit/head", server.base);
    let (code, stdout, stderr) = audit(&data_dir, &["verify", "--head", &url]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("still holds the given head"), "{stdout}");
    let (pack, _) = server.stop().await;

    // Cut off the end, from before the kept head: every head in the trail after the cut goes
    // with it, and the rest of the chain is intact.
    delete_and_rechain(
        &data_dir.join("jitgate.db"),
        &format!("DELETE FROM audit_events WHERE seq >= {}", claims.seq - 3),
    )
    .await;
    let (code, stdout, stderr) = audit(&data_dir, &["verify"]);
    assert_eq!(code, 0, "undetectable from the trail alone: {stderr}");
    assert!(stdout.contains("signed heads:"), "{stdout}");
    let (code, _, stderr) = audit(&data_dir, &["verify", "--head", kept.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no such event"), "{stderr}");
    drop(pack);
}

/// The server does not sign over a chain rewritten under it: deleting events (and the heads
/// that cover them) and rebuilding the chain while it runs leaves no head vouching for the
/// rewrite, not even the one it signs on shutdown.
#[tokio::test]
async fn the_server_does_not_sign_over_a_chain_rewritten_under_it() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    // The first head is signed at start.
    for _ in 0..200 {
        if server.count_events("audit.head").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    busy(&server).await;
    let data_dir = server.config.data_dir.clone();
    delete_and_rechain(
        &data_dir.join("jitgate.db"),
        "DELETE FROM audit_events WHERE type = 'audit.head' OR seq = 1",
    )
    .await;
    // Stopping would sign the head once more.
    let (pack, _) = server.stop().await;
    let heads = jitgate::store::Store::open_existing("", &data_dir)
        .await
        .unwrap()
        .audit_events()
        .await
        .unwrap()
        .iter()
        .filter(|event| event.kind == "audit.head")
        .count();
    assert_eq!(heads, 0, "a head was signed over the rewritten chain");
    drop(pack);
}
