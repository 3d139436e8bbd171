//! A real OpenID provider for the sign-in tests: the npm package `oidc-provider` (a certified
//! implementation), run by Node.js from `tests/oidc/` on 127.0.0.1 with an ephemeral port, and
//! jitgate started beside it with the provider as its sign-in issuer.
//!
//! Needs Node.js and `npm ci --prefix tests/oidc`. Without them the tests that use it are skipped
//! with a message, unless `JITGATE_TEST_REQUIRE_OIDC=1` (set by `.ci/run`, which installs them)
//! makes them fail instead.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::TestServer;
use super::{TempPack, repo};

/// The client jitgate signs people in as, and its secret at the provider.
pub const CLIENT_ID: &str = "jitgate-ui";
const CLIENT_SECRET: &str = "test-client-secret-7f3a";

/// The provider process; stopped when dropped.
pub struct Provider {
    pub issuer: String,
    /// How far the test has moved the provider's clock, in seconds.
    offset_secs: u64,
    child: Child,
    commands: ChildStdin,
    answers: BufReader<std::process::ChildStdout>,
}

impl Provider {
    /// A provider whose client may return to `redirect_uri`, or `None` (with the reason
    /// printed) when Node.js or the package is missing and the test is not required.
    pub fn start(test: &str, redirect_uri: &str) -> Option<Self> {
        let dir = repo().join("tests/oidc");
        let node = std::env::var_os("JITGATE_TEST_NODE").unwrap_or_else(|| "node".into());
        let installed = dir.join("node_modules/oidc-provider/package.json").exists();
        let has_node = Command::new(&node)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !has_node {
            let why = "Node.js or tests/oidc/node_modules missing (npm ci --prefix tests/oidc)";
            assert!(
                std::env::var("JITGATE_TEST_REQUIRE_OIDC").as_deref() != Ok("1"),
                "{why}, and JITGATE_TEST_REQUIRE_OIDC=1"
            );
            super::skipped(test, why);
            return None;
        }
        let mut child = Command::new(node)
            .arg(dir.join("provider.mjs"))
            .env("JITGATE_REDIRECT_URI", redirect_uri)
            .env("JITGATE_CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let commands = child.stdin.take().unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the provider did not start ({e}): {line:?}"));
        Some(Self {
            issuer: started["issuer"].as_str().unwrap().to_owned(),
            offset_secs: 0,
            child,
            commands,
            answers,
        })
    }

    /// Moves jitgate's clock (which stands still unless moved) up to the provider's, which
    /// runs: the id_tokens of a sign-in are then issued at jitgate's present, not ahead of it
    /// (past the verification leeway when a slow machine took seconds to get here).
    pub fn sync(&self, server: &TestServer) {
        let offset_ms = i64::try_from(self.offset_secs).unwrap() * 1000;
        server.catch_up_to(jitgate::clock::unix_now_ms() + offset_ms);
    }

    /// Moves the provider's clock forward, as a test moves jitgate's.
    pub fn advance(&mut self, secs: u64) {
        self.offset_secs += secs;
        writeln!(self.commands, "advance {secs}").unwrap();
        let mut line = String::new();
        self.answers.read_line(&mut line).unwrap();
        assert!(line.contains("advanced"), "{line}");
    }

    /// The `[[identity.issuers]]` entry for this provider (as the UI's sign-in issuer when
    /// `signs_in`).
    pub fn issuer_config(&self, signs_in: bool) -> jitgate::config::TrustedIssuerConfig {
        let mut entry = json!({
            "issuer": self.issuer,
            "audience": CLIENT_ID,
            "jwks": format!("{}/jwks", self.issuer),
            "algorithms": ["RS256"],
        });
        if signs_in {
            entry["client_id"] = json!(CLIENT_ID);
            entry["client_secret"] = json!(CLIENT_SECRET);
        }
        serde_json::from_value(entry).unwrap()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// jitgate on a port chosen first (the provider must know the callback), signing people in
/// with a fresh provider; `None` when the provider cannot run here.
pub async fn start_with_provider(
    test: &str,
    pack: TempPack,
    configure: impl FnOnce(&mut jitgate::config::Config),
) -> Option<(TestServer, Provider)> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let callback = format!("http://127.0.0.1:{port}/auth/callback");
    let provider = Provider::start(test, &callback)?;
    let issuer = provider.issuer_config(true);
    let server = TestServer::start(pack, |config| {
        config.listen = ([127, 0, 0, 1], port).into();
        config.identity.issuers.push(issuer);
        configure(config);
    })
    .await;
    Some((server, provider))
}

/// A browser without a browser: follows the sign-in's redirects by hand, keeping cookies (all
/// on 127.0.0.1), and fills in the provider's login form.
pub struct WebClient {
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// Every `Set-Cookie` received, as sent.
    pub set_cookies: Vec<String>,
    /// How many times the provider's login form was filled in.
    pub logins: usize,
}

impl Default for WebClient {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
            logins: 0,
        }
    }
}

/// One answer: status, `Location`, body.
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl WebClient {
    fn cookie_header(&self) -> String {
        (self.cookies.iter())
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One request; the cookies it sets are kept (and those it expires forgotten).
    pub async fn send(&mut self, method: &str, url: &str, form: Option<&[(&str, &str)]>) -> Answer {
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(form).unwrap());
        }
        let response = request.send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            self.set_cookies.push(set.to_owned());
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let expired = attributes.to_ascii_lowercase().contains("max-age=0")
                || attributes.contains("1970");
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap_or_default();
        Answer {
            status,
            location,
            body,
        }
    }

    /// Follows redirects from `url` until a page that is not one, or until one to a URL
    /// starting with `stop_at` (not requested; the last URL visited); the provider's login form
    /// is filled in as `user` when it comes. Returns the last answer and the URLs visited.
    pub async fn follow(
        &mut self,
        url: &str,
        user: &str,
        stop_at: Option<&str>,
    ) -> (Answer, Vec<String>) {
        let mut visited = vec![url.to_owned()];
        let mut answer = self.send("GET", url, None).await;
        for _ in 0..20 {
            let base = reqwest::Url::parse(visited.last().unwrap()).unwrap();
            if let Some(location) = answer.location.clone() {
                let next = base.join(&location).unwrap().to_string();
                visited.push(next.clone());
                if stop_at.is_some_and(|stop| next.starts_with(stop)) {
                    return (answer, visited);
                }
                answer = self.send("GET", &next, None).await;
            } else if answer.body.contains("name=\"login\"") {
                let action = form_action(&answer.body);
                let next = base.join(&action).unwrap().to_string();
                visited.push(next.clone());
                let form = [("prompt", "login"), ("login", user), ("password", "any")];
                self.logins += 1;
                answer = self.send("POST", &next, Some(&form)).await;
            } else {
                return (answer, visited);
            }
        }
        panic!("too many redirects: {visited:?}");
    }

    /// Signs in to `server` as `user` through `/auth/login?next=…`; the last answer.
    pub async fn sign_in(
        &mut self,
        server: &TestServer,
        user: &str,
        query: &str,
    ) -> (Answer, Vec<String>) {
        let (answer, visited) = self
            .follow(&format!("{}/auth/login?{query}", server.base), user, None)
            .await;
        assert!(
            visited.iter().any(|url| url.contains("/auth/callback"))
                && answer.status == StatusCode::OK,
            "signing in as {user} failed ({}: {}): {visited:?}",
            answer.status,
            answer.body
        );
        (answer, visited)
    }

    /// The session cookie jitgate set.
    pub fn session(&self) -> Option<&str> {
        self.cookies.get("jitgate_session").map(String::as_str)
    }

    /// A JSON API call with the session cookie and the given extra headers.
    pub async fn api(
        &self,
        server: &TestServer,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", server.base);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        request = request.header("cookie", self.cookie_header());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The `action` of the first form in `html`, unescaped.
fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&amp;", "&")
        .replace("&#x2F;", "/")
}
