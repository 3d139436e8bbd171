//! `jitgate replay`: the recorded requests of a trail decided again under a candidate pack, read
//! from a `jitgate audit export` file as a policy repository's CI would.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// More than a thousand recorded requests of every outcome, exported; the trail's path and its
/// decision events.
async fn recorded_trail(dir: &std::path::Path) -> (std::path::PathBuf, Vec<Value>) {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let shapes: [(&[&str], bool, &str, &str); 5] = [
        (&["oncall"], true, "read", "Database::\"orders\""),
        (&["oncall"], true, "write", "Database::\"orders\""),
        (&["oncall"], false, "read", "Database::\"orders\""),
        (
            &["engineering"],
            false,
            "write",
            "Database::\"orders-staging\"",
        ),
        (&["sre"], true, "sudo", "Host::\"web-1\""),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for person in 0..210 {
        for (groups, mfa, action, resource) in shapes {
            let token = server.dev_token(&format!("user-{person}"), groups, mfa);
            let (status, body) = server
                .post(
                    "/v1/access-requests",
                    Some(&token),
                    json!({"action": action, "resource": resource, "reason": format!("INC-{person}")}),
                )
                .await;
            assert!(
                [
                    StatusCode::CREATED,
                    StatusCode::ACCEPTED,
                    StatusCode::FORBIDDEN
                ]
                .contains(&status),
                "{status}: {body}"
            );
            statuses.insert(status);
        }
    }
    assert_eq!(statuses.len(), 3, "every outcome was recorded");
    let data_dir = server.config.data_dir.clone();
    let (_pack, _config) = server.stop().await;
    let config = dir.join("jitgate.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data_dir.display().to_string()),
    )
    .unwrap();
    let export = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["audit", "export", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let trail = dir.join("trail.jsonl");
    std::fs::write(&trail, &export.stdout).unwrap();
    let decisions = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event["type"] == "decision")
        .collect();
    (trail, decisions)
}

fn replay(trail: &std::path::Path, pack: &TempPack) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .arg("replay")
        .arg("--trail")
        .arg(trail)
        .arg("--policies")
        .arg(pack.policies())
        .arg("--schemas")
        .arg(pack.schemas())
        .args(["--format", "json", "--fail-on-change"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

#[tokio::test]
async fn replaying_the_live_pack_changes_nothing_and_a_candidate_changes_what_it_should() {
    let dir = tempfile::TempDir::new().unwrap();
    let (trail, decisions) = recorded_trail(dir.path()).await;
    assert!(decisions.len() >= 1_000, "{}", decisions.len());

    // The pack that decided them: every recorded decision stands.
    let (code, report) = tokio::task::spawn_blocking({
        let trail = trail.clone();
        move || replay(&trail, &TempPack::shipped())
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["replayed"], decisions.len());
    assert_eq!(report["changed"], json!([]), "{report}");
    let outcomes = report["outcomes"].as_object().unwrap();
    for same in ["allow -> allow", "deny -> deny", "escalate -> escalate"] {
        assert!(
            outcomes.get(same).and_then(Value::as_u64).unwrap_or(0) > 0,
            "{report}"
        );
    }
    assert_eq!(outcomes.len(), 3, "{report}");

    // A candidate without the MFA guard rail changes exactly the decisions it took part in.
    let candidate = TempPack::shipped();
    candidate.remove_policy("policies/guardrails.cedar", "deny-prod-without-mfa");
    let expected: std::collections::BTreeSet<String> = decisions
        .iter()
        .filter(|d| {
            d["data"]["policies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "deny-prod-without-mfa")
        })
        .map(|d| d["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!expected.is_empty());
    let (code, report) = tokio::task::spawn_blocking(move || replay(&trail, &candidate))
        .await
        .unwrap();
    assert_eq!(code, Some(3), "{report}");
    let changed: std::collections::BTreeSet<String> = report["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(changed, expected);
    for change in report["changed"].as_array().unwrap() {
        assert_eq!(change["recorded"], "deny", "{change}");
        assert!(
            change["recorded_policies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "deny-prod-without-mfa"),
            "{change}"
        );
    }
}
