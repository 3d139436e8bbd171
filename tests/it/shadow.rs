//! The shadow pack: decided beside the live one on every decision, off the answer path; its
//! disagreements counted, audited and shown in `/v1/policies`; hot reloaded.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// `/v1/policies`' shadow entry once it has evaluated `count` decisions.
async fn shadow_after(server: &TestServer, token: &str, count: u64) -> Value {
    for _ in 0..500 {
        let status = server.policies(token).await;
        if status["shadow"]["evaluated"].as_u64() == Some(count) {
            return status["shadow"].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the shadow pack did not evaluate {count} decisions");
}

#[tokio::test]
async fn a_shadow_pack_disagrees_on_exactly_the_requests_it_should() {
    let pack = TempPack::shipped();
    // The candidate: the shipped pack without the rule that production needs MFA.
    super::copy_dir(&pack.policies(), &pack.dir.path().join("shadow"));
    let guardrails = pack.read("shadow/guardrails.cedar");
    pack.remove_policy("shadow/guardrails.cedar", "deny-prod-without-mfa");
    let shadow_dir = pack.dir.path().join("shadow");
    let server = TestServer::start(pack, |config| {
        config.policy.shadow = Some(jitgate::config::ShadowPackConfig {
            dir: shadow_dir,
            schemas: None,
        });
    })
    .await;
    let sam = server.dev_token("sam", &["security"], true);
    let before = server.policies(&sam).await;
    assert_eq!(before["shadow"]["evaluated"], 0, "{before}");
    assert_ne!(before["shadow"]["version"], before["version"]);

    let ask = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-3"});
    let mut denied_live = Vec::new();
    for (person, mfa) in [
        ("a1", false),
        ("a2", true),
        ("a3", false),
        ("a4", true),
        ("a5", false),
    ] {
        let token = server.dev_token(person, &["oncall"], mfa);
        let (status, body) = server
            .post("/v1/access-requests", Some(&token), ask.clone())
            .await;
        if mfa {
            assert_eq!(status, StatusCode::CREATED, "{body}");
        } else {
            // The live pack answers; the shadow pack's view changes nothing.
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            denied_live.push(body["request_id"].as_str().unwrap().to_owned());
        }
    }
    let shadow = shadow_after(&server, &sam, 5).await;
    assert_eq!(shadow["disagreements"], 3, "{shadow}");
    assert_eq!(shadow["dropped"], 0, "{shadow}");
    let events: Vec<_> = (server.store_events().await.into_iter())
        .filter(|e| e.kind == "shadow.disagreement")
        .collect();
    let mut audited: Vec<String> = events
        .iter()
        .map(|e| e.request_id.clone().unwrap())
        .collect();
    audited.sort();
    denied_live.sort();
    assert_eq!(audited, denied_live);
    for event in &events {
        assert_eq!(event.data["live"]["decision"], "deny");
        assert_eq!(
            event.data["live"]["policies"],
            json!(["deny-prod-without-mfa"])
        );
        assert_eq!(event.data["shadow"]["decision"], "allow");
        assert_eq!(event.data["shadow"]["policies"], json!(["oncall-db-read"]));
    }
    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("jitgate_shadow_decisions_total{live=\"deny\",shadow=\"allow\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jitgate_shadow_decisions_total{live=\"allow\",shadow=\"allow\"} 2"),
        "{metrics}"
    );

    // Hot reloaded: with the rule back, the shadow agrees again.
    let old_version = shadow["version"].clone();
    server.pack().write("shadow/guardrails.cedar", &guardrails);
    for _ in 0..500 {
        if server.policies(&sam).await["shadow"]["version"] != old_version {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = server.dev_token("a6", &["oncall"], false);
    let (status, _) = server.post("/v1/access-requests", Some(&token), ask).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let shadow = shadow_after(&server, &sam, 6).await;
    assert_ne!(shadow["version"], old_version, "{shadow}");
    assert_eq!(shadow["disagreements"], 3, "{shadow}");
}
