//! Webhook notifications end to end: a real receiver on 127.0.0.1 that checks the HMAC, the
//! outbox across a receiver outage and a jitgate restart, and every event reaching its hook.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use hmac::{Hmac, KeyInit, Mac};
use jitgate::config::WebhookConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;

use super::TempPack;
use jitgate::clock::Clock as _;

use super::harness::TestServer;

const SECRET: &str = "webhook-test-secret";

/// One POST the receiver accepted.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) path: String,
    headers: HeaderMap,
    pub(super) body: String,
}

impl Received {
    pub(super) fn event(&self) -> String {
        let body: Value = serde_json::from_str(&self.body).unwrap();
        match self.path.as_str() {
            "/json" => body["event"].as_str().unwrap().to_owned(),
            _ => body["text"].as_str().unwrap().to_owned(),
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

pub(super) type Inbox = Arc<Mutex<Vec<Received>>>;

/// A webhook receiver on `addr`; stops when `stop` fires.
pub(super) struct Receiver {
    pub(super) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(super) async fn start(addr: &str, inbox: Inbox) -> Self {
        async fn receive(
            State(inbox): State<Inbox>,
            uri: Uri,
            headers: HeaderMap,
            body: String,
        ) -> AxumStatus {
            inbox.lock().unwrap().push(Received {
                path: uri.path().to_owned(),
                headers,
                body,
            });
            AxumStatus::NO_CONTENT
        }
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(inbox);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { addr, stop, task }
    }

    pub(super) async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        self.addr
    }
}

fn hooks(receiver: SocketAddr) -> Vec<WebhookConfig> {
    let config: jitgate::config::Config = toml::from_str(&format!(
        r#"
        [[webhooks]]
        url = "http://{receiver}/json"
        secret = "{SECRET}"
        [[webhooks]]
        url = "http://{receiver}/slack"
        format = "slack"
        "#
    ))
    .unwrap();
    config.webhooks
}

/// Checks the signature headers of a `json` delivery from `server` as a receiver should (its
/// clock the server's).
fn assert_signed(server: &TestServer, delivery: &Received) {
    let timestamp = delivery.header("x-jitgate-timestamp");
    let age = server
        .clock
        .now()
        .abs_diff(timestamp.parse::<u64>().unwrap());
    assert!(age < 60, "timestamp {timestamp} is {age} s off");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", delivery.body).as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(delivery.header("x-jitgate-signature"), expected);
    let body: Value = serde_json::from_str(&delivery.body).unwrap();
    assert_eq!(delivery.header("x-jitgate-delivery"), body["delivery_id"]);
    assert_eq!(delivery.header("x-jitgate-event"), body["event"]);
}

/// Waits until `inbox` holds `count` deliveries matching `wanted`, for up to 20 s.
async fn wait_for(inbox: &Inbox, count: usize, wanted: impl Fn(&Received) -> bool) {
    for _ in 0..400 {
        if inbox.lock().unwrap().iter().filter(|d| wanted(d)).count() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {count} deliveries, got {:#?}",
        inbox.lock().unwrap()
    );
}

async fn metric(server: &TestServer, line_start: &str) -> f64 {
    let text = server.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// A receiver on a free port and a server with both hooks pointing at it.
async fn start_with_hooks(inbox: &Inbox) -> (Receiver, TestServer) {
    let receiver = Receiver::start("127.0.0.1:0", inbox.clone()).await;
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.webhooks = hooks(receiver.addr);
    })
    .await;
    (receiver, server)
}

/// Alice asks to write orders for `reason`: the pending request's id.
async fn ask_to_write(server: &TestServer, reason: &str) -> String {
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": reason}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["request_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_pending_request_reaches_the_json_hook_signed_and_slack_escaped() {
    let inbox = Inbox::default();
    let (receiver, server) = start_with_hooks(&inbox).await;
    let id = ask_to_write(&server, "INC-42 <@here>").await;

    wait_for(&inbox, 2, |_| true).await;
    {
        let received = inbox.lock().unwrap();
        let json_hook = received.iter().find(|d| d.path == "/json").unwrap();
        assert_signed(&server, json_hook);
        let body: Value = serde_json::from_str(&json_hook.body).unwrap();
        assert_eq!(body["event"], "request.pending");
        assert_eq!(body["request"]["id"], json!(id));
        assert_eq!(body["request"]["requester"], "User::\"alice\"");
        assert_eq!(body["request"]["reason"], "INC-42 <@here>");
        assert_eq!(
            body["request"]["url"],
            json!(format!("{}/ui/#request={id}", server.config.issuer))
        );
        let slack = received.iter().find(|d| d.path == "/slack").unwrap();
        assert!(slack.headers.get("x-jitgate-signature").is_none());
        let text = slack.event();
        assert!(text.contains("Approval needed"), "{text}");
        assert!(text.contains("INC-42 &lt;@here&gt;"), "{text}");
    }
    receiver.stop().await;
}

/// The receiver goes away; the approval of `id` is answered at once and its notification
/// waits, retried. The receiver's address, to bring it back on.
async fn approve_while_the_receiver_is_down(
    server: &TestServer,
    receiver: Receiver,
    id: &str,
) -> SocketAddr {
    let addr = receiver.stop().await;
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, body) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({"comment": "go"}),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("approved"))
    );
    for _ in 0..200 {
        if metric(server, "jitgate_webhook_deliveries_total{result=\"retry\"}").await >= 2.0 {
            break;
        }
        // Backoff is on the server's clock: move it past the next retry.
        server.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(server, "jitgate_webhook_deliveries_total{result=\"retry\"}").await >= 2.0);
    addr
}

/// Waits until the store has no notification left to send, and fails if it still has one.
async fn assert_all_recorded_as_delivered(server: &TestServer) {
    let store = server.store().await;
    let mut waiting = Some(0);
    for _ in 0..200 {
        waiting = store.next_delivery_ms().await.unwrap();
        if waiting.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(waiting, None, "every notification is recorded as delivered");
}

#[tokio::test]
async fn notifications_survive_an_outage_and_a_restart_and_arrive_once() {
    let inbox = Inbox::default();
    let (receiver, server) = start_with_hooks(&inbox).await;
    let id = ask_to_write(&server, "INC-42 <@here>").await;
    wait_for(&inbox, 2, |_| true).await;
    let addr = approve_while_the_receiver_is_down(&server, receiver, &id).await;

    // jitgate restarts while the receiver is still down, then the receiver comes back.
    let (pack, config) = server.stop().await;
    let server = TestServer::start_with(pack, config).await;
    // The restarted server's clock starts at the real time; the retries the first one
    // scheduled on its moved clock fall due an hour later.
    server.clock.advance(Duration::from_secs(3_600));
    let receiver = Receiver::start(&addr.to_string(), inbox.clone()).await;
    let approved =
        |d: &Received| d.event().contains("request.approved") || d.event().contains("Approved");
    wait_for(&inbox, 2, approved).await;
    // No duplicate can come: once both are recorded as delivered, nothing is left to send.
    assert_all_recorded_as_delivered(&server).await;
    let received = inbox.lock().unwrap().clone();
    assert_eq!(received.len(), 4, "{received:#?}");
    for path in ["/json", "/slack"] {
        let approvals: Vec<&Received> = received
            .iter()
            .filter(|d| d.path == path && approved(d))
            .collect();
        assert_eq!(approvals.len(), 1, "{path}: {received:#?}");
    }
    let json_approval = received
        .iter()
        .find(|d| d.path == "/json" && approved(d))
        .unwrap();
    assert_signed(&server, json_approval);
    let body: Value = serde_json::from_str(&json_approval.body).unwrap();
    assert_eq!(body["by"], "User::\"dave\"");
    assert_eq!(body["comment"], "go");
    assert_eq!(body["request"]["status"], "approved");
    assert_eq!(
        metric(
            &server,
            "jitgate_webhook_deliveries_total{result=\"delivered\"}"
        )
        .await,
        2.0
    );
    receiver.stop().await;
}

#[tokio::test]
async fn every_event_reaches_the_hooks_that_want_it() {
    let inbox = Inbox::default();
    let receiver = Receiver::start("127.0.0.1:0", inbox.clone()).await;
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.pending_ttl = Duration::from_secs(3);
        c.webhooks = hooks(receiver.addr);
        // The Slack hook only hears break-glass.
        if let Some(slack) = c.webhooks.get_mut(1) {
            slack.events = vec!["break_glass".into()];
        }
    })
    .await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let write = json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-7"});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = server
            .post("/v1/access-requests", Some(&alice), write.clone())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{}/deny", ids[0]),
            Some(&dave),
            json!({"comment": "use the runbook"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{}/cancel", ids[2]),
            Some(&alice),
            json!({"comment": "fixed by a restart"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut glass = write.clone();
    glass["break_glass"] = json!(true);
    let (status, body) = server
        .post("/v1/access-requests", Some(&alice), glass)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let glass_id = body["request_id"].as_str().unwrap().to_owned();

    // ids[1] is left to expire: its pending window passes on the server's clock.
    server.clock.advance(Duration::from_secs(4));
    let json_events = |inbox: &Inbox| -> Vec<(String, String)> {
        inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.path == "/json")
            .map(|d| {
                let body: Value = serde_json::from_str(&d.body).unwrap();
                (
                    body["event"].as_str().unwrap().to_owned(),
                    body["request"]["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    wait_for(&inbox, 8, |_| true).await;
    let mut events = json_events(&inbox);
    events.sort();
    let mut expected = vec![
        ("request.pending".to_owned(), ids[0].clone()),
        ("request.pending".to_owned(), ids[1].clone()),
        ("request.denied".to_owned(), ids[0].clone()),
        ("request.expired".to_owned(), ids[1].clone()),
        ("request.pending".to_owned(), ids[2].clone()),
        ("request.cancelled".to_owned(), ids[2].clone()),
        ("break_glass".to_owned(), glass_id.clone()),
    ];
    expected.sort();
    assert_eq!(events, expected);
    let received = inbox.lock().unwrap().clone();
    for delivery in received.iter().filter(|d| d.path == "/json") {
        assert_signed(&server, delivery);
    }
    let slack: Vec<String> = received
        .iter()
        .filter(|d| d.path == "/slack")
        .map(Received::event)
        .collect();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(slack[0].contains("BREAK-GLASS"), "{slack:?}");
    let glass = received
        .iter()
        .find(|d| d.path == "/json" && d.body.contains("\"break_glass\""))
        .unwrap();
    let body: Value = serde_json::from_str(&glass.body).unwrap();
    assert_eq!(body["request"]["status"], "needs_review");
    assert!(body["token"]["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let cancelled = received
        .iter()
        .find(|d| d.path == "/json" && d.body.contains("\"request.cancelled\""))
        .unwrap();
    let body: Value = serde_json::from_str(&cancelled.body).unwrap();
    assert_eq!(body["request"]["status"], "cancelled");
    assert_eq!(body["by"], "User::\"alice\"");
    assert_eq!(body["comment"], "fixed by a restart");
    receiver.stop().await;
}

#[tokio::test]
async fn a_requesters_text_cannot_add_lines_formatting_or_links_to_slack() {
    let inbox = Inbox::default();
    let receiver = Receiver::start("127.0.0.1:0", inbox.clone()).await;
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.webhooks = hooks(receiver.addr);
        c.webhooks.retain(|hook| hook.format == "slack");
    })
    .await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let reason = "INC-9 `x` *urgent*\n\n:white_check_mark: *Approved* by User::\"security\"\r\n\
                  <https://evil.example/login|Open request> https://evil.example &amp; <!channel>\u{2028}done";
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": reason}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    wait_for(&inbox, 1, |d| d.path == "/slack").await;
    let delivery = inbox.lock().unwrap().first().unwrap().clone();
    let body: Value = serde_json::from_str(&delivery.body).unwrap();
    let quoted = "`INC-9 ˋxˋ *urgent* :white_check_mark: *Approved* by User::\"security\" \
                  &lt;https:/\u{2060}/evil.example/login|Open request&gt; https:/\u{2060}/evil.example \
                  &amp;amp; &lt;!channel&gt; done`";
    let details = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(
        details.lines().next(),
        Some(format!("*Reason:* {quoted}").as_str()),
        "{details}"
    );
    let text = body["text"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "headline, reason, risk, link: {text}");
    assert!(
        lines[0].starts_with(":hourglass: *Approval needed*"),
        "{text}"
    );
    assert_eq!(lines[1], format!("*Reason:* {quoted}"));
    // The only link is jitgate's own, to its UI.
    assert_eq!(text.matches('<').count(), 1, "{text}");
    assert_eq!(
        text.matches("://").count(),
        1,
        "no bare URL but jitgate's own: {text}"
    );
    assert!(lines[3].starts_with(&format!("<{}/ui/#request=", server.config.issuer)));
    assert_eq!(body["unfurl_links"], false);
    receiver.stop().await;
}

/// Behind a proxy, notifications link to the address people open the UI at.
#[tokio::test]
async fn notifications_link_to_the_public_ui_address() {
    let inbox = Inbox::default();
    let receiver = Receiver::start("127.0.0.1:0", inbox.clone()).await;
    let server = TestServer::start(TempPack::shipped(), |c| {
        c.webhooks = hooks(receiver.addr);
        c.ui.public_url = Some("https://jitgate.example.com/approvals/".into());
    })
    .await;
    let id = ask_to_write(&server, "INC-42").await;
    wait_for(&inbox, 2, |_| true).await;
    let received = inbox.lock().unwrap().clone();
    let page = format!("https://jitgate.example.com/approvals/#request={id}");
    let json_hook = received.iter().find(|d| d.path == "/json").unwrap();
    let body: Value = serde_json::from_str(&json_hook.body).unwrap();
    assert_eq!(body["request"]["url"], json!(page));
    let slack = received.iter().find(|d| d.path == "/slack").unwrap();
    assert!(slack.body.contains(&format!("<{page}|")), "{}", slack.body);
    receiver.stop().await;
}

/// When a stage closes, the approvers of the next one are told it is theirs.
#[tokio::test]
async fn each_stage_is_announced_when_it_opens() {
    let inbox = Inbox::default();
    let receiver = Receiver::start("127.0.0.1:0", inbox.clone()).await;
    let server = TestServer::start(super::approvals::staged_pack(), |c| {
        c.webhooks = hooks(receiver.addr);
        c.webhooks.truncate(1);
    })
    .await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "admin", "resource": "Database::\"orders\"", "reason": "migration 42"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let erin = server.dev_token("erin", &["dba"], true);
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&erin),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for(&inbox, 2, |_| true).await;
    let mut announced: Vec<(String, String)> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_str(&d.body).unwrap();
            assert_eq!(body["request"]["stages"][1]["name"], "security");
            (
                body["event"].as_str().unwrap().to_owned(),
                body["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    announced.sort();
    assert_eq!(
        announced,
        [
            ("request.pending".to_owned(), "dba".to_owned()),
            ("request.pending".to_owned(), "security".to_owned()),
        ]
    );
    receiver.stop().await;
}
