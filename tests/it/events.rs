//! `GET /v1/events`: Server-Sent Events of the caller's own requests and the pending requests
//! it may approve, and of nothing else.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// An open event stream.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(server: &TestServer, token: &str) -> Self {
        let response = server
            .http
            .get(format!("{}/v1/events", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The `data` of the next event, waiting up to 15 s.
    async fn next(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            // Events end with a blank line; keep-alive comments carry no `data`.
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within 15 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn each_caller_hears_its_own_requests_and_those_it_may_approve() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let dave = server.dev_token("dave", &["dba"], true);
    let bob = server.dev_token("bob", &["oncall"], true);
    let mut alices = Stream::open(&server, &alice).await;
    let mut daves = Stream::open(&server, &dave).await;
    let mut bobs = Stream::open(&server, &bob).await;

    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-3"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let heard = alices.next().await;
    assert_eq!(
        (
            heard["type"].as_str(),
            heard["request_id"].as_str(),
            heard["status"].as_str()
        ),
        (Some("decision"), Some(id.as_str()), Some("pending"))
    );
    // Dave may approve it: he hears of it too, and approves.
    let heard = daves.next().await;
    assert_eq!(heard["request_id"], id.as_str());
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Alice sees it approved without asking.
    let mut heard = alices.next().await;
    while heard["status"] != "approved" {
        heard = alices.next().await;
    }
    assert_eq!(heard["request_id"], id.as_str());

    // Bob may neither approve nor see Alice's request: the first thing he hears is his own.
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&bob),
            json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-4"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let heard = bobs.next().await;
    assert_eq!(heard["request_id"], body["request_id"]);

    // Resuming after an event replays what followed it.
    let resumed = server
        .http
        .get(format!("{}/v1/events", server.base))
        .bearer_auth(&alice)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let mut resumed = Stream {
        response: resumed,
        buffer: String::new(),
    };
    assert_eq!(resumed.next().await["request_id"], id.as_str());

    let refused = server
        .http
        .get(format!("{}/v1/events", server.base))
        .bearer_auth(&alice)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_revoked_subject_opens_no_stream() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let sam = server.dev_token("sam", &["security"], true);
    let (status, _) = server
        .post(
            "/v1/revocations",
            Some(&sam),
            json!({"subject": "User::\"alice\"", "reason": "offboarded"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let refused = server.get("/v1/events", Some(&alice)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "revoked");
}
