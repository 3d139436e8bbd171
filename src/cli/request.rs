//! `jitgate request`: ask a jitgate server for access, optionally wait for the approval, and
//! print the token. The exit code tells a script what happened.

use std::process::ExitCode;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// Issued (the token is on stdout).
const ISSUED: u8 = 0;
/// Something went wrong: bad arguments, the server unreachable, a rejected credential.
const ERROR: u8 = 1;
/// Denied, by the policies or by an approver.
const DENIED: u8 = 2;
/// Expired or cancelled before anyone answered.
const CLOSED: u8 = 3;
/// Waiting for approval, and `--wait` was not given.
const PENDING: u8 = 4;

/// What `jitgate request` is asked.
#[derive(Debug, clap::Args)]
pub struct Ask {
    /// The jitgate server
    #[arg(long, value_name = "URL", env = "JITGATE_SERVER")]
    server: String,
    /// Your identity token (prefer the environment variable: arguments are visible to others)
    #[arg(long, env = "JITGATE_TOKEN", hide_env_values = true)]
    token: String,
    /// The action, e.g. `write`
    #[arg(long, required_unless_present_any = ["resume", "extend"])]
    action: Option<String>,
    /// The resource, e.g. `Database::"orders"`
    #[arg(long, required_unless_present_any = ["resume", "extend"])]
    resource: Option<String>,
    /// Why you need it (ticket, incident)
    #[arg(long)]
    reason: Option<String>,
    /// How long the token should live, e.g. `15m`
    #[arg(long)]
    duration: Option<String>,
    /// Schedule the window of access to open at this time (RFC 3339, e.g.
    /// `2026-12-02T22:00:00Z`); approvals may come before it
    #[arg(long, value_name = "TIME")]
    not_before: Option<String>,
    /// A scope to ask for (repeat for several); default: what the policies grant
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A context key the policies read, e.g. `ticket=INC-42` (a string) or `count:=3` (JSON);
    /// repeat for several
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = context_entry)]
    context: Vec<(String, Value)>,
    /// An emergency: skip the approvals where every deciding policy allows it; the token is
    /// issued at once and an administrator reviews it afterwards
    #[arg(long)]
    break_glass: bool,
    /// If approval is needed, wait for it and then mint the token
    #[arg(long)]
    wait: bool,
    /// Wait for request ID, asked earlier, instead of asking again; mints once it is approved
    #[arg(long, value_name = "ID", conflicts_with_all = ["action", "resource", "reason", "duration", "not_before", "scopes", "context", "break_glass"])]
    resume: Option<String>,
    /// Ask for more time on request ID, whose token is still live (a new request, decided by
    /// the policies); takes --duration and --reason
    #[arg(long, value_name = "ID", conflicts_with_all = ["action", "resource", "not_before", "scopes", "context", "break_glass", "resume"])]
    extend: Option<String>,
    /// Print the server's JSON answer instead of the bare token
    #[arg(long)]
    json: bool,
    /// How often to look while waiting
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
}

/// `KEY=VALUE` as a string, `KEY:=JSON` as that JSON value.
pub(super) fn context_entry(text: &str) -> Result<(String, Value), String> {
    let (key, value) = match text.split_once('=') {
        Some((key, json)) if key.ends_with(':') => {
            let value = serde_json::from_str(json)
                .map_err(|e| format!("`{json}` after `:=` is not JSON: {e}"))?;
            (key.trim_end_matches(':'), value)
        }
        Some((key, value)) => (key, Value::String(value.to_owned())),
        None => return Err("expected KEY=VALUE (a string) or KEY:=JSON".into()),
    };
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    Ok((key.to_owned(), value))
}

/// Whether `request` is scheduled to open after this machine's now.
fn opens_later(request: &Value) -> bool {
    at(request, "/not_before")
        .as_str()
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .is_some_and(|opens| opens > jiff::Timestamp::now())
}

/// `id` as one path segment, whatever was typed after `--resume`.
fn path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A failure that ends the command with [`ERROR`].
struct Failed(String);

struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Client {
    /// Sends `request` with the caller's token; the status and the JSON body.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), Failed> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| Failed(format!("cannot reach {}: {e}", self.server)))?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failed(format!(
                "the server refused the token{}",
                message(&body).map_or(String::new(), |m| format!(": {m}"))
            )));
        }
        Ok((status, body))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }
}

/// The value at JSON pointer `pointer` in `value`, or null.
fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value.pointer(pointer).unwrap_or(&Value::Null)
}

fn message(body: &Value) -> Option<&str> {
    at(body, "/error/message").as_str()
}

/// Runs `jitgate request`.
pub fn run(ask: &Ask) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(request(ask)) {
        Ok(code) => ExitCode::from(code),
        Err(Failed(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(ERROR)
        }
    }
}

async fn request(ask: &Ask) -> Result<u8, Failed> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Failed(format!("HTTP client: {e}")))?;
    let client = Client {
        http,
        server: ask.server.trim_end_matches('/').to_owned(),
        token: ask.token.trim().to_owned(),
    };
    if let Some(id) = &ask.resume {
        return wait(ask, &client, id).await;
    }
    let (path, mut body) = match &ask.extend {
        Some(id) => (
            format!("/v1/access-requests/{}/extend", path_segment(id)),
            json!({}),
        ),
        None => (
            "/v1/access-requests".to_owned(),
            json!({"action": ask.action, "resource": ask.resource}),
        ),
    };
    if let Value::Object(fields) = &mut body {
        if let Some(reason) = &ask.reason {
            fields.insert("reason".into(), json!(reason));
        }
        if let Some(duration) = &ask.duration {
            fields.insert("duration".into(), json!(duration));
        }
        if let Some(not_before) = &ask.not_before {
            fields.insert("not_before".into(), json!(not_before));
        }
        if !ask.scopes.is_empty() {
            fields.insert("scopes".into(), json!(ask.scopes));
        }
        if !ask.context.is_empty() {
            let context: serde_json::Map<String, Value> = ask.context.iter().cloned().collect();
            fields.insert("context".into(), Value::Object(context));
        }
        if ask.break_glass {
            fields.insert("break_glass".into(), json!(true));
        }
    }
    let (status, answer) = client
        .send(client.http.post(client.url(&path)).json(&body))
        .await?;
    match status {
        StatusCode::CREATED => Ok(issued(ask, &answer)),
        StatusCode::FORBIDDEN => Ok(denied(ask, &answer)),
        StatusCode::ACCEPTED => {
            let id = at(&answer, "/request_id")
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if at(&answer, "/status") == "approved" {
                eprintln!(
                    "scheduled: request {id} is allowed; its window opens at {}",
                    at(&answer, "/not_before").as_str().unwrap_or("?")
                );
            } else {
                eprintln!(
                    "pending: request {id} needs {} approval(s); it expires at {}",
                    at(&answer, "/approvals_required"),
                    at(&answer, "/expires_at").as_str().unwrap_or("?")
                );
            }
            if !ask.wait {
                if ask.json {
                    println!("{answer}");
                }
                eprintln!(
                    "to wait for the answer (without asking again): jitgate request --resume {id}"
                );
                return Ok(PENDING);
            }
            wait(ask, &client, &id).await
        }
        other => Err(Failed(format!(
            "the server answered {other}: {}",
            message(&answer).unwrap_or("no error message")
        ))),
    }
}

/// Polls request `id` until it is answered, and mints the token once approved.
async fn wait(ask: &Ask, client: &Client, id: &str) -> Result<u8, Failed> {
    let mut approvals_seen = 0;
    let mut told_scheduled = false;
    loop {
        tokio::time::sleep(ask.poll_interval).await;
        let path = format!("/v1/access-requests/{}", path_segment(id));
        let (status, request) = match client.send(client.http.get(client.url(&path))).await {
            Ok(answer) => answer,
            // A restarting server is not an answer: keep waiting.
            Err(Failed(message)) if message.starts_with("cannot reach") => {
                eprintln!("{message}; retrying");
                continue;
            }
            Err(failed) => return Err(failed),
        };
        if status.is_server_error() {
            eprintln!("the server answered {status}; retrying");
            continue;
        }
        if status != StatusCode::OK {
            return Err(Failed(format!(
                "reading request {id}: {status}: {}",
                message(&request).unwrap_or("no error message")
            )));
        }
        let approvals = at(&request, "/approvals").as_array().map_or(0, Vec::len);
        if approvals != approvals_seen {
            approvals_seen = approvals;
            eprintln!(
                "{approvals} of {} approval(s) so far",
                at(&request, "/approvals_required")
            );
        }
        match at(&request, "/status").as_str().unwrap_or_default() {
            "pending" => {}
            "approved" if opens_later(&request) => {
                if !told_scheduled {
                    told_scheduled = true;
                    eprintln!(
                        "approved; waiting for the window to open at {}",
                        at(&request, "/not_before").as_str().unwrap_or("?")
                    );
                }
            }
            "approved" | "issued" => return mint(ask, client, id).await,
            "denied" => {
                let by = at(&request, "/approvals")
                    .as_array()
                    .and_then(|a| a.iter().find(|a| at(a, "/decision") == "deny"));
                if ask.json {
                    println!("{request}");
                }
                eprintln!(
                    "denied by {}{}",
                    by.and_then(|a| at(a, "/approver").as_str())
                        .unwrap_or("an approver"),
                    by.and_then(|a| at(a, "/comment").as_str())
                        .filter(|c| !c.is_empty())
                        .map_or(String::new(), |c| format!(": {c}"))
                );
                return Ok(DENIED);
            }
            closed @ ("expired" | "cancelled") => {
                if ask.json {
                    println!("{request}");
                }
                eprintln!("request {id} {closed}");
                return Ok(CLOSED);
            }
            other => return Err(Failed(format!("request {id} is {other}"))),
        }
    }
}

async fn mint(ask: &Ask, client: &Client, id: &str) -> Result<u8, Failed> {
    let path = format!("/v1/access-requests/{}/token", path_segment(id));
    let (status, answer) = client
        .send(client.http.post(client.url(&path)).json(&json!({})))
        .await?;
    match status {
        StatusCode::CREATED => Ok(issued(ask, &answer)),
        StatusCode::FORBIDDEN => Ok(denied(ask, &answer)),
        StatusCode::CONFLICT => {
            if ask.json {
                println!("{answer}");
            }
            eprintln!(
                "request {id} can no longer be minted: {}",
                at(&answer, "/status").as_str().unwrap_or("conflict")
            );
            Ok(CLOSED)
        }
        other => Err(Failed(format!(
            "minting request {id}: {other}: {}",
            message(&answer).unwrap_or("no error message")
        ))),
    }
}

fn issued(ask: &Ask, answer: &Value) -> u8 {
    if ask.json {
        println!("{answer}");
    } else {
        println!(
            "{}",
            at(answer, "/access_token").as_str().unwrap_or_default()
        );
        eprintln!(
            "issued: scope `{}`, expires at {}",
            at(answer, "/scope").as_str().unwrap_or_default(),
            at(answer, "/expires_at").as_str().unwrap_or("?")
        );
    }
    ISSUED
}

fn denied(ask: &Ask, answer: &Value) -> u8 {
    if ask.json {
        println!("{answer}");
    }
    eprintln!(
        "denied: {}",
        message(answer).unwrap_or("the policies refuse this request")
    );
    for reason in at(answer, "/reasons").as_array().into_iter().flatten() {
        eprintln!("  - {}", reason_line(reason));
    }
    for advice in at(answer, "/advice").as_array().into_iter().flatten() {
        if let Some(advice) = advice.as_str() {
            eprintln!("  advice: {advice}");
        }
    }
    DENIED
}

/// `scope_not_granted: db:admin:orders`, from `{"code": …, "scopes": […]}`.
fn reason_line(reason: &Value) -> String {
    let code = at(reason, "/code").as_str().unwrap_or("unknown");
    match at(reason, "/scopes").as_array() {
        Some(scopes) => {
            let scopes: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
            format!("{code}: {}", scopes.join(" "))
        }
        None => code.to_owned(),
    }
}
