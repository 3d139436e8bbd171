//! The approver UI: served from the binary with a strict CSP, and driven end to end in headless
//! Chromium through ChromeDriver (W3C WebDriver, spoken over HTTP with reqwest).
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the browser test is skipped
//! with a message, unless `JITGATE_TEST_REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs
//! them) makes it fail instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TempPack;
use super::harness::TestServer;

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session through a ChromeDriver of its own.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    endpoint: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn tool(variable: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

impl Browser {
    /// A browser, or `None` (with the reason printed) when Chromium is not installed and the
    /// test is not required.
    async fn launch() -> Option<Self> {
        let chromium = tool("JITGATE_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("JITGATE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            let why = "Chromium or ChromeDriver not found (apt-get install chromium chromium-driver, or set JITGATE_TEST_CHROMIUM and JITGATE_TEST_CHROMEDRIVER)";
            assert!(
                std::env::var("JITGATE_TEST_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
                "{why}, and JITGATE_TEST_REQUIRE_CHROMIUM=1"
            );
            super::skipped("an_approver_signs_in_and_approves_in_chromium", why);
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{endpoint}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::TempDir::new().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{endpoint}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Some(Self {
            driver,
            http,
            endpoint,
            session,
            _profile: profile,
        })
    }

    /// One WebDriver command; its `value`, or `Err` with WebDriver's error.
    async fn command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.endpoint, self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request.send().await.unwrap();
        let ok = response.status().is_success();
        let answer: Value = response.json().await.unwrap();
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url}))
            .await
            .unwrap();
    }

    /// The element `css` selects, waiting up to 15 s for it to be there and shown.
    async fn find(&self, css: &str) -> String {
        for _ in 0..300 {
            let found = self
                .command(
                    "POST",
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            if let Ok(element) = found {
                let id = element[ELEMENT].as_str().unwrap().to_owned();
                let shown = self
                    .command("GET", &format!("/element/{id}/displayed"), Value::Null)
                    .await;
                if shown == Ok(json!(true)) {
                    return id;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // What the page said, if anything, tells why.
        let said = self
            .command(
                "POST",
                "/execute/sync",
                json!({"script": "return document.getElementById('message')?.textContent", "args": []}),
            )
            .await;
        panic!("no visible element `{css}` on the page; it says {said:?}");
    }

    /// The text of `css`; empty when the element was replaced while being read (the page
    /// re-renders its lists as events arrive), so that a caller waiting for a text tries again.
    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        match self
            .command("GET", &format!("/element/{id}/text"), Value::Null)
            .await
        {
            Ok(text) => text.as_str().unwrap_or_default().to_owned(),
            Err(_) => String::new(),
        }
    }

    /// Saves the page as `<name>.png` in the directory `JITGATE_TEST_SCREENSHOTS` names, if
    /// set (the README's pictures in `docs/ui/` come from such a run).
    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let Some(dir) = std::env::var_os("JITGATE_TEST_SCREENSHOTS") else {
            return;
        };
        let shot = self
            .command("GET", "/screenshot", Value::Null)
            .await
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }

    /// Waits up to 15 s for `script` to return a non-empty string; returns it.
    async fn wait_script_value(&self, script: &str) -> String {
        for _ in 0..150 {
            if let Some(value) = self.script(script).await.as_str().filter(|v| !v.is_empty()) {
                return value.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{script}` stayed empty");
    }

    /// Waits up to 15 s for the text of `css` to satisfy `wanted`; returns it.
    async fn wait_text(&self, css: &str, wanted: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        for _ in 0..150 {
            text = self.text(css).await;
            if wanted(&text) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` still shows {text:?}");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await
        .unwrap();
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.command("POST", &format!("/element/{id}/click"), json!({}))
            .await
            .unwrap();
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
        .unwrap()
    }

    async fn quit(mut self) {
        let _ = self.command("DELETE", "", Value::Null).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

#[tokio::test]
async fn the_ui_is_served_from_the_binary_with_a_strict_policy() {
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let page = server.get("/ui/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<script src=\"app.js\"")
    );
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let asset = server.get(path, None).await;
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(
            asset.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/ui", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/ui/");
}

#[tokio::test]
async fn an_approver_signs_in_and_approves_in_chromium() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    // Markup in a reason must show as text and never run.
    let reason = "INC-42 <img src=x onerror=\"document.title='pwned'\">";
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": reason}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();

    browser.goto(&format!("{}/ui", server.base)).await;
    browser
        .type_into("#token", &server.dev_token("dave", &["dba"], true))
        .await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#who").await, "signed in as User::\"dave\"");
    let row = format!("tr[data-request-id=\"{id}\"]");
    let shown = browser.text(&row).await;
    for part in [
        "User::\"alice\"",
        "write",
        "Database::\"orders\"",
        reason,
        "db:write:orders for 5 min",
        "0 / 1",
    ] {
        assert!(shown.contains(part), "row {shown:?} lacks {part:?}");
    }

    browser.click(&format!("{row} button.open")).await;
    browser
        .wait_text("#detail-status", |s| s == "pending")
        .await;
    let history = browser.text("#detail-history").await;
    assert!(
        history.contains("requested by User::\"alice\""),
        "{history}"
    );
    // What approving grants, before the approver decides.
    let fields = browser.text("#detail-fields").await;
    browser.screenshot("approver-request").await;
    for part in [
        "Scopes granted\ndb:write:orders",
        "Duration asked\n(the policies' default)",
        "Token lifetime\n5 min",
    ] {
        assert!(fields.contains(part), "{fields:?} lacks {part:?}");
    }
    browser.type_into("#comment", "approved from the UI").await;
    browser.click("#approve").await;
    browser
        .wait_text("#detail-status", |s| s == "approved")
        .await;
    let message = browser.text("#message").await;
    assert!(message.contains(&format!("Approved {id}")), "{message}");
    let history = browser.text("#detail-history").await;
    assert!(
        history.contains("approved by User::\"dave\": approved from the UI"),
        "{history}"
    );
    browser
        .wait_text("#pending-empty", |s| s == "Nothing is waiting for you.")
        .await;
    assert_eq!(
        browser.script("return document.title").await,
        "jitgate approvals"
    );

    let seen: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "approved");
    assert_eq!(seen["approvals"][0]["approver"], "User::\"dave\"");
    assert_eq!(seen["approvals"][0]["comment"], "approved from the UI");
    browser.quit().await;
}

#[tokio::test]
async fn an_administrator_reviews_break_glass_access_in_chromium() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "SEV1 outage", "break_glass": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();

    browser.goto(&format!("{}/ui", server.base)).await;
    browser
        .type_into("#token", &server.dev_token("sam", &["security"], true))
        .await;
    browser.click("#sign-in").await;
    let row = format!("#awaiting-review tr[data-request-id=\"{id}\"]");
    let shown = browser.wait_text(&row, |s| s.contains("SEV1 outage")).await;
    assert!(shown.contains("db:write:orders for 5 min"), "{shown:?}");
    browser.click(&format!("{row} button.open")).await;
    browser
        .wait_text("#detail-status", |s| s == "needs_review")
        .await;
    browser
        .type_into("#review-comment", "outage confirmed")
        .await;
    browser.click("#mark-reviewed").await;
    browser
        .wait_text("#detail-status", |s| s == "reviewed")
        .await;
    // Nothing left to review: the section is gone.
    assert_eq!(
        browser
            .script("return document.getElementById('review-section').hidden")
            .await,
        true
    );
    browser.quit().await;
}

/// Two approvers sign in with the organisation's identity provider (a real one, see
/// `oidc.rs`), each in turn, and approve a request's two stages in order; a page on another
/// origin cannot make the signed-in browser approve; signing out ends the session.
#[tokio::test]
async fn two_signed_in_approvers_approve_two_stages_in_chromium() {
    let test = "two_signed_in_approvers_approve_two_stages_in_chromium";
    let Some((server, provider)) =
        super::oidc::start_with_provider(test, super::approvals::staged_pack(), |_| {}).await
    else {
        return;
    };
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let alice = server.dev_token("alice", &["oncall"], true);
    let id = super::sign_in::staged_request(&server).await;
    let row = format!("#pending tr[data-request-id=\"{id}\"]");
    let attacker = attacker_page(&format!("{}/v1/access-requests/{id}/approve", server.base)).await;

    for (approver, stages_after) in [
        ("erin", "dba 1/1 approved, then security 0/1 open"),
        ("sam", "dba 1/1 approved, then security 1/1 approved"),
    ] {
        browser.goto(&format!("{}/ui/", server.base)).await;
        if approver == "erin" {
            browser.screenshot("sign-in").await;
        }
        provider.sync(&server);
        browser.click("#sso").await;
        // The provider's own login page.
        browser.type_into("input[name=login]", approver).await;
        browser
            .type_into("input[name=password]", "any password")
            .await;
        browser.click("button[type=submit]").await;
        let who = browser.wait_text("#who", |s| !s.is_empty()).await;
        assert_eq!(who, format!("signed in as User::\"{approver}\""));

        if approver == "erin" {
            // A page elsewhere on the same site posts to jitgate with erin's cookie: refused.
            browser.goto(&attacker).await;
            let said = browser
                .wait_script_value("return document.body ? document.body.innerText : ''")
                .await;
            assert!(said.contains("must come from the UI"), "{said}");
            let seen: Value = server
                .get(&format!("/v1/access-requests/{id}"), Some(&alice))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(seen["approvals"], json!([]), "{seen}");
            browser.goto(&format!("{}/ui/", server.base)).await;
        }

        browser
            .wait_text(&row, |s| s.contains("migration 42"))
            .await;
        browser.click(&format!("{row} button.open")).await;
        browser
            .wait_text("#detail-status", |s| s == "pending")
            .await;
        browser.click("#approve").await;
        let fields = browser
            .wait_text("#detail-fields", |s| s.contains(stages_after))
            .await;
        assert!(fields.contains(stages_after), "{fields}");
        browser
            .screenshot(&format!("stages-after-{approver}"))
            .await;

        // Signing out ends the session on the server, not just in the page.
        let cookie = browser
            .command("GET", "/cookie/jitgate_session", Value::Null)
            .await
            .unwrap();
        let session = cookie["value"].as_str().unwrap().to_owned();
        browser.click("#sign-out").await;
        browser.find("#sso").await;
        let after = reqwest::Client::new()
            .get(format!("{}/v1/me", server.base))
            .header("cookie", format!("jitgate_session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
        // The next approver signs in at the provider afresh, not into erin's session there.
        browser
            .command("DELETE", "/cookie", Value::Null)
            .await
            .unwrap();
    }
    let seen: Value = server
        .get(&format!("/v1/access-requests/{id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "approved");
    assert_eq!(seen["approvals"][0]["approver"], "User::\"erin\"");
    assert_eq!(seen["approvals"][1]["approver"], "User::\"sam\"");
    browser.quit().await;
}

/// A page on another origin of the same site (another port of 127.0.0.1, so the browser sends
/// SameSite=Lax cookies along) that posts a form to `target` as soon as it loads; its URL.
async fn attacker_page(target: &str) -> String {
    let page = format!(
        "<!doctype html><form id=f method=post action=\"{target}\"></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A requester asks from the form, sees the request approved without reloading, and gets the
/// token.
#[tokio::test]
async fn a_requester_asks_from_the_form_and_sees_it_approved_live_in_chromium() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let server = TestServer::start(TempPack::shipped(), |_| {}).await;
    browser.goto(&format!("{}/ui", server.base)).await;
    browser
        .type_into("#token", &server.dev_token("alice", &["oncall"], true))
        .await;
    browser.click("#sign-in").await;
    // The form offers what the policies would allow or escalate, never what they deny.
    let offered = browser
        .wait_text("#ask-target", |s| {
            s.contains("write on Database::\"orders\"")
        })
        .await;
    assert!(
        offered.contains("read on Database::\"orders\" (at once)"),
        "{offered}"
    );
    assert!(
        offered.contains("write on Database::\"orders\" (1 approval(s))"),
        "{offered}"
    );
    assert!(!offered.contains("deploy"), "{offered}");
    browser
        .script(
            "const s = document.getElementById('ask-target');\
             s.value = [...s.options].find(o => o.text.startsWith('write on Database::\"orders\"')).value;",
        )
        .await;
    browser.type_into("#ask-reason", "INC-77").await;
    browser.click("#ask-submit").await;
    let row = browser
        .wait_text("#mine tbody tr", |s| s.contains("pending"))
        .await;
    browser.screenshot("requester-pending").await;
    assert!(row.contains("write"), "{row}");
    let mine: Value = server
        .get(
            "/v1/access-requests?status=mine",
            Some(&server.dev_token("alice", &["oncall"], true)),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = mine["requests"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Dave approves elsewhere; Alice's page follows without a reload.
    let dave = server.dev_token("dave", &["dba"], true);
    let (status, _) = server
        .post(
            &format!("/v1/access-requests/{id}/approve"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    browser
        .wait_text("#mine tbody tr", |s| s.contains("approved"))
        .await;
    browser.click("#mine button.mint").await;
    let token = browser
        .wait_script_value("return document.getElementById('minted-token').value")
        .await;
    let claims = server.verify(&token, "db-proxy").await;
    assert_eq!(claims.jit.request_id, id);
    browser.screenshot("requester-token").await;
    browser.quit().await;
}
