//! Explanations (DESIGN §9.4): `POST /v1/decisions?explain=true` and `jitgate explain` show,
//! for each policy of the action, whether its principal and resource matched and whether its
//! condition held, was false or failed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::TestServer;
use super::{TempPack, repo};

/// A forbid whose condition fails to evaluate (an overflow) once the risk score is above 1.
const OVERFLOW_POLICY: &str = r#"@id("overflows-on-risk")
forbid (principal, action == Action::"write", resource)
when { context.risk_score * 9223372036854775807 > 0 };
"#;

/// The trace of policy `id` in an explanation.
fn trace<'a>(explanation: &'a Value, id: &str) -> &'a Value {
    explanation
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no `{id}` in {explanation}"))
}

#[tokio::test]
async fn a_dry_run_explains_each_policy_on_request() {
    let pack = TempPack::shipped();
    // A condition that fails to evaluate for a risky request (an overflow): shown as an error.
    pack.write("policies/overflow.cedar", OVERFLOW_POLICY);
    let server = TestServer::start(pack, |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let ask = json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-5"});

    let (status, plain) = server
        .post("/v1/decisions", Some(&alice), ask.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert!(plain.get("explanation").is_none(), "{plain}");

    let (status, answer) = server
        .post("/v1/decisions?explain=true", Some(&alice), ask)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "escalate");
    let explanation = &answer["explanation"];
    let deciding = trace(explanation, "oncall-db-write-approval");
    assert_eq!(deciding["effect"], "permit");
    assert_eq!(deciding["principal_matched"], true);
    assert_eq!(deciding["resource_matched"], true);
    assert_eq!(deciding["condition"], "true");
    assert!(
        deciding["location"]
            .as_str()
            .unwrap()
            .contains("databases.cedar:"),
        "{deciding}"
    );
    let for_dbas = trace(explanation, "dba-db-write");
    assert_eq!(for_dbas["principal_matched"], false);
    assert_eq!(for_dbas["condition"], "not_evaluated");
    assert_eq!(
        trace(explanation, "deny-prod-without-mfa")["condition"],
        "false"
    );
    // Only policies of the action: nothing about `read` or hosts.
    assert!(
        explanation
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != "oncall-db-read"),
        "{explanation}"
    );
    // A risk score of 0 multiplies to 0: false. The signals decide it, not the caller.
    assert_eq!(
        trace(explanation, "overflows-on-risk")["condition"],
        "false"
    );

    let (status, error) = server
        .post(
            "/v1/decisions?explain=yes",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
}

#[test]
fn jitgate_explain_prints_a_table_and_json() {
    let jitgate = env!("CARGO_BIN_EXE_jitgate");
    let pack = TempPack::shipped();
    pack.write("policies/overflow.cedar", OVERFLOW_POLICY);
    let run = |format: &str| {
        std::process::Command::new(jitgate)
            .args(["explain", "--policies"])
            .arg(pack.policies())
            .arg("--schemas")
            .arg(pack.schemas())
            .args([
                "--principal",
                "User::\"alice\"",
                "--group",
                "Group::\"oncall\"",
                "--action",
                "write",
                "--resource",
                "Database::\"orders\"",
                "--context",
                "risk_score:=40",
                "--context",
                "mfa:=true",
                "--format",
                format,
            ])
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let table = run("table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    // The overflow is an evaluation error; a failed forbid counts as matching (fail closed).
    assert_eq!(
        lines[0], "deny by overflows-on-risk (forbid_error)",
        "{text}"
    );
    assert!(
        lines[2].starts_with("policy") && lines[2].contains("condition"),
        "{text}"
    );
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(id))
            .copied()
            .unwrap_or_default()
    };
    assert!(
        row("oncall-db-write-approval").ends_with("yes        yes       true"),
        "{text}"
    );
    assert!(row("overflows-on-risk").contains("error: "), "{text}");
    assert!(row("overflows-on-risk").contains("overflow"), "{text}");

    let json_out = run("json");
    let answer: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(answer["decision"], "deny");
    assert_eq!(
        trace(&answer["explanation"], "overflows-on-risk")["condition"],
        "error"
    );
}
