//! Webhook notifications (`[[webhooks]]`, DESIGN §8): what an approver or an on-call channel
//! hears about escalations, decisions, expiries and break-glass access.
//!
//! A notification is rendered once, when the change it announces happens, and queued in the
//! store's outbox in the same transaction as that change ([`Notifier::outbox`]). A background
//! task ([`Notifier::deliver`], in `delivery`) posts it and retries with exponential backoff,
//! so the API never waits for a receiver, a restart loses nothing, and a change that did not
//! commit is never announced. Receivers may see a notification twice only if jitgate stops
//! between their answer and its own record of it; `X-Jitgate-Delivery` lets them drop the copy.
//!
//! `json` bodies are signed: `X-Jitgate-Signature: sha256=<hex HMAC-SHA256>` over
//! `"<X-Jitgate-Timestamp>.<body>"`, so a captured delivery cannot be replayed later with a new
//! timestamp. `slack` bodies are Slack incoming-webhook messages; there the URL is the secret.

mod delivery;
mod render;

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::{Config, WebhookConfig};
use crate::store::{OutboxRecord, RequestRecord};

pub use render::Event;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhooks[{index}]: {message}")]
    Hook { index: usize, message: String },
    #[error("webhook client: {0}")]
    Client(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Slack,
}

/// One configured webhook.
struct Hook {
    /// Names the hook in the outbox without storing its URL (a Slack URL is a credential).
    key: String,
    url: reqwest::Url,
    format: Format,
    secret: Vec<u8>,
    /// Empty: every event.
    events: Vec<String>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("key", &self.key)
            .field("target", &target(&self.url))
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Hook {
    fn from_config(index: usize, config: &WebhookConfig) -> Result<Self, NotifyError> {
        let fail = |message: String| NotifyError::Hook { index, message };
        let url =
            reqwest::Url::parse(&config.url).map_err(|e| fail(format!("url is not a URL: {e}")))?;
        let secret = match (&config.secret, &config.secret_file) {
            (Some(secret), _) => secret.as_bytes().to_vec(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| fail(format!("secret_file {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .as_bytes()
                .to_vec(),
            (None, None) => Vec::new(),
        };
        let format = if config.format == "slack" {
            Format::Slack
        } else {
            Format::Json
        };
        if format == Format::Json && secret.is_empty() {
            return Err(fail("json webhooks are signed: the secret is empty".into()));
        }
        Ok(Self {
            key: hook_key(&config.url),
            url,
            format,
            secret,
            events: config.events.clone(),
        })
    }

    fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

/// The outbox's name for the hook at `url`.
fn hook_key(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// Scheme, host and port of `url`: what logs may show of it.
fn target(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// `sha256=<hex>`: the MAC of `"<timestamp>.<body>"` under `secret`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // INVARIANT: HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The configured webhooks, and the task that delivers to them.
#[derive(Debug)]
pub struct Notifier {
    hooks: Vec<Hook>,
    /// Where the approver UI shows a request: this plus its id.
    ui_url: String,
    client: reqwest::Client,
    wake: tokio::sync::Notify,
}

impl Notifier {
    /// The webhooks `config` lists; reads their secret files.
    pub fn from_config(config: &Config) -> Result<Arc<Self>, NotifyError> {
        let hooks = config
            .webhooks
            .iter()
            .enumerate()
            .map(|(index, hook)| Hook::from_config(index, hook))
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(delivery::ATTEMPT_TIMEOUT)
            // A receiver answers for itself; following it elsewhere would let it aim jitgate at
            // any address.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Arc::new(Self {
            hooks,
            // The request pages' common start; each link appends its request's id.
            ui_url: config.request_page(""),
            client,
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// The outbox records announcing `event` about `request` to every hook that wants it.
    pub fn outbox(&self, event: &Event, request: &RequestRecord, at_ms: i64) -> Vec<OutboxRecord> {
        self.hooks
            .iter()
            .filter(|hook| hook.wants(event.name()))
            .map(|hook| {
                let delivery_id = crate::token::new_jti();
                let body = match hook.format {
                    Format::Json => {
                        render::json_body(&delivery_id, event, request, &self.ui_url, at_ms)
                    }
                    Format::Slack => render::slack_body(event, request, &self.ui_url),
                };
                OutboxRecord {
                    delivery_id,
                    hook: hook.key.clone(),
                    event: event.name().to_owned(),
                    request_id: Some(request.id.clone()),
                    body,
                    created_ms: at_ms,
                }
            })
            .collect()
    }

    /// Tells the delivery task that something was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
