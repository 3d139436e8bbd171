//! The store's writer as the server's users meet it: group commit under failing jobs.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::TempPack;
use super::harness::TestServer;

/// The value of the unlabelled metric `name` in `/metrics`.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Repeated `cancel` on a closed request fails in the writer; queued with good writes, it
/// must roll back alone and leave the batch one transaction (one fsync), not split it into a
/// commit per job.
#[tokio::test]
async fn a_failing_job_does_not_split_its_batch() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-42"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cancel = format!(
        "/v1/access-requests/{}/cancel",
        body["request_id"].as_str().unwrap()
    );
    let (status, body) = server.post(&cancel, Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Hold the database's write lock so that the writer blocks on its first job and the
    // others queue behind it.
    let lock = rusqlite::Connection::open(server.config.data_dir.join("jitgate.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let commits_before = metric(&server, "jitgate_store_commits_total").await;
    const EACH: usize = 4;
    let mut calls = Vec::new();
    for i in 0..2 * EACH + 1 {
        let http = server.http.clone();
        let (url, body) = if i % 2 == 0 {
            (
                format!("{}/v1/access-requests", server.base),
                json!({"action": "read", "resource": "Database::\"orders\"", "reason": "look"}),
            )
        } else {
            (format!("{}{cancel}", server.base), json!({}))
        };
        let alice = alice.clone();
        calls.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(alice)
                .json(&body)
                .send()
                .await
                .unwrap();
            response.status()
        }));
        if i == 0 {
            // Give the writer time to take the first job alone and block on the lock, so the
            // others queue behind it; if it has not, all nine queue and commit together.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Well inside the writer's 5 s wait for the lock.
    let mut queued = 0.0;
    for _ in 0..300 {
        queued = metric(&server, "jitgate_store_write_queue").await;
        if queued >= (2 * EACH) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(queued >= (2 * EACH) as f64, "only {queued} jobs queued");
    lock.execute_batch("ROLLBACK").unwrap();

    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (EACH + 1, EACH), "{statuses:?}");
    // The job the writer held, then the queued batch (a housekeeping tick may add one); or,
    // had the writer not taken the first job before the others came, all in one.
    let commits = metric(&server, "jitgate_store_commits_total").await - commits_before;
    assert!(
        (1.0..=3.0).contains(&commits),
        "{commits} commits for {} queued jobs",
        2 * EACH
    );
}
