//! `GET /v1/cluster` on the embedded store: one replica, which says it is alive and which
//! policy version it serves; administrators only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::TempPack;
use super::harness::TestServer;

#[tokio::test]
async fn the_cluster_lists_this_replica_to_administrators_only() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let admin = server.dev_token("sam", &["security"], true);
    let mut replicas = Value::Null;
    for _ in 0..100 {
        let answer = server.get("/v1/cluster", Some(&admin)).await;
        assert_eq!(answer.status(), StatusCode::OK);
        replicas = answer.json::<Value>().await.unwrap()["replicas"].clone();
        if replicas.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replicas = replicas.as_array().expect("a list of replicas");
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    let policies: Value = server
        .get("/v1/policies", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replicas[0]["policy_version"], policies["version"]);
    assert_eq!(replicas[0]["version"], env!("CARGO_PKG_VERSION"));
    for field in ["id", "started_at", "last_seen"] {
        assert!(replicas[0][field].is_string(), "{field}: {replicas:?}");
    }
    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("jitgate_cluster_replicas{policy_version="),
        "{metrics}"
    );

    let alice = server.dev_token("alice", &["oncall"], true);
    let refused = server.get("/v1/cluster", Some(&alice)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        server.get("/v1/cluster", None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A revoked administrator sees nothing either.
    let sue = server.dev_token("sue", &["security"], true);
    let (status, body) = server
        .post(
            "/v1/revocations",
            Some(&sue),
            serde_json::json!({"subject": "User::\"sam\"", "reason": "left"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let revoked = server.get("/v1/cluster", Some(&admin)).await;
    assert_eq!(revoked.status(), StatusCode::FORBIDDEN);
}
