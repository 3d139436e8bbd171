use serde_json::{Value, json};

use super::*;
use crate::config::Config;

fn request() -> RequestRecord {
    RequestRecord {
        id: "req-1".into(),
        created_at: 1_700_000_000,
        principal: r#"User::"alice""#.into(),
        action: "db:write".into(),
        resource: r#"Database::"orders""#.into(),
        scopes: vec!["db:orders:write".into()],
        duration_secs: 900,
        reason: "INC-1 <https://evil.example|click> & <!channel>".into(),
        source_ip: "10.0.0.1".into(),
        decision: "escalate".into(),
        status: "pending".into(),
        policies: vec!["prod-write-needs-approval".into()],
        policy_version: "v".into(),
        risk_score: 30,
        risk_signals: json!([{"name": "no_mfa", "score": 20}, {"name": "off_hours", "score": 10}]),
        approvals_required: 2,
        expires_at: Some(1_700_003_600),
        context: json!({}),
        lifetime_secs: 900,
        granted_scopes: None,
        audience: None,
        stages: serde_json::Value::Null,
        not_before: None,
        extends: None,
        extended_secs: None,
    }
}

fn notifier(hooks: &str) -> Arc<Notifier> {
    let text = format!("issuer = \"https://jitgate.example\"\n{hooks}");
    let config: Config = toml::from_str(&text).unwrap();
    Notifier::from_config(&config).unwrap()
}

#[test]
fn the_signature_is_an_hmac_of_timestamp_dot_body() {
    // Computed independently: Python's hmac.new(b"topsecret", b"1700000000.<body>", sha256).
    assert_eq!(
        signature(
            b"topsecret",
            "1700000000",
            br#"{"event":"request.pending"}"#
        ),
        "sha256=c52ab70da2d187f069855c0a7a4a3e60313a4d1de7e82948302b39c450e584eb"
    );
    assert_ne!(
        signature(
            b"topsecret",
            "1700000001",
            br#"{"event":"request.pending"}"#
        ),
        signature(
            b"topsecret",
            "1700000000",
            br#"{"event":"request.pending"}"#
        ),
        "the timestamp is covered"
    );
}

#[test]
fn each_hook_gets_the_events_it_asked_for_in_its_format() {
    let notifier = notifier(
        r#"
        [[webhooks]]
        url = "http://127.0.0.1:9/json"
        secret = "s"
        events = ["request.pending"]
        [[webhooks]]
        url = "https://hooks.slack.example/services/T0/B0/secretpath"
        format = "slack"
        "#,
    );
    let pending = notifier.outbox(
        &Event::Pending {
            stage: "default".into(),
        },
        &request(),
        1_700_000_000_123,
    );
    assert_eq!(pending.len(), 2);
    let expired = notifier.outbox(&Event::Expired, &request(), 1_700_000_000_123);
    assert_eq!(expired.len(), 1, "the json hook only wants request.pending");
    let Some(first) = pending.first() else {
        unreachable!()
    };
    assert_eq!(first.event, "request.pending");
    assert_eq!(first.request_id.as_deref(), Some("req-1"));
    assert_ne!(
        pending.first().map(|r| &r.delivery_id),
        pending.get(1).map(|r| &r.delivery_id)
    );
    for record in &pending {
        assert!(!record.hook.contains("secretpath") && record.hook.len() == 16);
    }
}

#[test]
fn the_json_body_names_the_request_and_who_decided() {
    let notifier = notifier("[[webhooks]]\nurl = \"http://127.0.0.1:9/\"\nsecret = \"s\"");
    let event = Event::Denied {
        by: r#"User::"bob""#.into(),
        comment: "not now".into(),
    };
    let records = notifier.outbox(&event, &request(), 1_700_000_100_000);
    let body: Value = serde_json::from_str(&records.first().unwrap().body).unwrap();
    assert_eq!(body["event"], "request.denied");
    assert_eq!(
        body["delivery_id"],
        json!(records.first().unwrap().delivery_id)
    );
    assert_eq!(body["occurred_at"], "2023-11-14T22:15:00Z");
    assert_eq!(body["by"], r#"User::"bob""#);
    assert_eq!(body["comment"], "not now");
    let request = &body["request"];
    assert_eq!(request["id"], "req-1");
    assert_eq!(request["status"], "denied");
    assert_eq!(request["requester"], r#"User::"alice""#);
    assert_eq!(request["risk"]["score"], 30);
    assert_eq!(request["approvals_required"], 2);
    assert_eq!(request["url"], "https://jitgate.example/ui/#request=req-1");
}

#[test]
fn slack_messages_link_to_the_ui_and_show_requester_text_literally() {
    let notifier =
        notifier("[[webhooks]]\nurl = \"https://hooks.slack.example/x\"\nformat = \"slack\"");
    let event = Event::BreakGlass {
        jti: "j".into(),
        expires_at: 1_700_000_900,
    };
    let records = notifier.outbox(&event, &request(), 1_700_000_000_000);
    let body: Value = serde_json::from_str(&records.first().unwrap().body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("BREAK-GLASS"), "{text}");
    assert!(text.contains("no_mfa, off_hours"), "{text}");
    assert!(
        text.contains("<https://jitgate.example/ui/#request=req-1|Open request req-1>"),
        "{text}"
    );
    assert!(
        text.contains("INC-1 &lt;https:/\u{2060}/evil.example|click&gt; &amp; &lt;!channel&gt;"),
        "{text}"
    );
    assert_eq!(body["blocks"].as_array().map(Vec::len), Some(3));
}

#[test]
fn neither_secret_nor_url_path_shows_in_debug_output() {
    let config: Config = toml::from_str(
        "[[webhooks]]\nurl = \"https://hooks.slack.example/services/secretpath\"\nsecret = \"hunter2\"",
    )
    .unwrap();
    let notifier = Notifier::from_config(&config).unwrap();
    for shown in [format!("{config:?}"), format!("{notifier:?}")] {
        assert!(
            !shown.contains("secretpath") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}

#[test]
fn a_missing_secret_file_is_an_error_naming_the_hook() {
    let config: Config = toml::from_str(
        "[[webhooks]]\nurl = \"http://127.0.0.1:9/\"\nsecret_file = \"/nonexistent/secret\"",
    )
    .unwrap();
    let error = Notifier::from_config(&config).unwrap_err().to_string();
    assert!(
        error.starts_with("webhooks[0]: secret_file /nonexistent/secret"),
        "{error}"
    );
}
