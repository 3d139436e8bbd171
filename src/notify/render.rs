//! The bodies of notifications: signed JSON, or a Slack message.

use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::decision::DEFAULT_STAGE;
use crate::store::RequestRecord;

/// What happened to a request, as a webhook announces it.
#[derive(Debug, Clone)]
pub enum Event {
    /// An escalation waits for the approvers of `stage` (the first, or the next once the one
    /// before has its approvals).
    Pending {
        stage: String,
    },
    /// The approval `by` gave completed the quorum.
    Approved {
        by: String,
        comment: String,
    },
    Denied {
        by: String,
        comment: String,
    },
    /// Nobody answered within `pending_ttl`.
    Expired,
    /// The requester withdrew the request before it was decided.
    Cancelled {
        comment: String,
    },
    /// A token was issued without approval and waits for review.
    BreakGlass {
        jti: String,
        expires_at: u64,
    },
}

impl Event {
    /// The event's name in `[[webhooks]] events`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Pending { .. } => "request.pending",
            Event::Approved { .. } => "request.approved",
            Event::Denied { .. } => "request.denied",
            Event::Expired => "request.expired",
            Event::Cancelled { .. } => "request.cancelled",
            Event::BreakGlass { .. } => "break_glass",
        }
    }

    /// The request's status once this happened.
    fn status(&self) -> &'static str {
        match self {
            Event::Pending { .. } => "pending",
            Event::Approved { .. } => "approved",
            Event::Denied { .. } => "denied",
            Event::Expired => "expired",
            Event::Cancelled { .. } => "cancelled",
            Event::BreakGlass { .. } => "needs_review",
        }
    }
}

fn seconds(unix: i64) -> String {
    rfc3339(u64::try_from(unix).unwrap_or(0))
}

/// The `json` format: everything an approver tool needs, including where to act on it.
pub(super) fn json_body(
    delivery_id: &str,
    event: &Event,
    request: &RequestRecord,
    ui_url: &str,
    at_ms: i64,
) -> String {
    let mut body = json!({
        "delivery_id": delivery_id,
        "event": event.name(),
        "occurred_at": seconds(at_ms / 1000),
        "request": {
            "id": request.id,
            "status": event.status(),
            "requester": request.principal,
            "action": request.action,
            "resource": request.resource,
            "scopes": request.scopes,
            "reason": request.reason,
            "risk": {"score": request.risk_score, "signals": request.risk_signals},
            "policies": request.policies,
            "approvals_required": request.approvals_required,
            // `[{"name", "required"}, …]`, or null for one stage of `approvals_required`.
            "stages": request.stages,
            "created_at": seconds(request.created_at),
            "expires_at": request.expires_at.map(seconds),
            "url": format!("{ui_url}{}", request.id),
        },
    });
    let extra = match event {
        Event::Approved { by, comment } | Event::Denied { by, comment } => {
            json!({"by": by, "comment": comment})
        }
        Event::BreakGlass { jti, expires_at } => {
            json!({"token": {"jti": jti, "expires_at": rfc3339(*expires_at)}})
        }
        Event::Cancelled { comment } => json!({"by": request.principal, "comment": comment}),
        Event::Pending { stage } => json!({"stage": stage}),
        Event::Expired => Value::Null,
    };
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body.to_string()
}

/// Longest piece of requester text a Slack message quotes (before escaping): Slack refuses a
/// section over 3,000 characters, and the UI link shows the whole request.
const SLACK_LITERAL_CHARS: usize = 300;

/// Text Slack shows literally: its markup characters escaped, so a name cannot turn into a link
/// or a mention. For text jitgate chose (signal names).
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text from a requester or an approver as a Slack code span: on one line (so it cannot add
/// lines that pass for jitgate's own), without markup, mentions, emoji or clickable links, and
/// shortened to [`SLACK_LITERAL_CHARS`].
fn slack_literal(text: &str) -> String {
    let mut line = String::with_capacity(text.len().min(SLACK_LITERAL_CHARS) + 2);
    let mut chars = 0;
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars >= SLACK_LITERAL_CHARS {
                line.push('…');
                return code_span(&line);
            }
            // A backtick would close the span; U+02CB looks the same and does not.
            line.push(if c == '`' { 'ˋ' } else { c });
            chars += 1;
        }
    }
    code_span(&line)
}

fn code_span(line: &str) -> String {
    if line.is_empty() {
        return "(none)".into();
    }
    // A word joiner (U+2060) inside `://` and `www.` keeps clients that link bare URLs, even in
    // code or in the notification's plain-text fallback, from making one clickable.
    let unlinked = line
        .replace("://", ":/\u{2060}/")
        .replace("www.", "www\u{2060}.");
    format!("`{}`", slack_text(&unlinked))
}

/// The `slack` format: an incoming-webhook message with the summary and a link to the UI.
pub(super) fn slack_body(event: &Event, request: &RequestRecord, ui_url: &str) -> String {
    let who = slack_literal(&request.principal);
    let what = format!(
        "{} on {}",
        slack_literal(&request.action),
        slack_literal(&request.resource)
    );
    let headline = match event {
        Event::Pending { stage } if stage == DEFAULT_STAGE => format!(
            ":hourglass: *Approval needed* ({} approval(s)): {who} requests {what}",
            request.approvals_required
        ),
        Event::Pending { stage } => format!(
            ":hourglass: *Approval needed* in stage {}: {who} requests {what}",
            slack_literal(stage)
        ),
        Event::Approved { by, .. } => {
            format!(
                ":white_check_mark: *Approved* by {}: {who}, {what}",
                slack_literal(by)
            )
        }
        Event::Denied { by, .. } => {
            format!(
                ":no_entry: *Denied* by {}: {who}, {what}",
                slack_literal(by)
            )
        }
        Event::Expired => format!(":zzz: *Expired* unanswered: {who}, {what}"),
        Event::Cancelled { .. } => {
            format!(":leftwards_arrow_with_hook: *Cancelled* by the requester: {who}, {what}")
        }
        Event::BreakGlass { .. } => format!(
            ":rotating_light: *BREAK-GLASS*: {who} took {what} without approval; an administrator must review it"
        ),
    };
    let signals = request
        .risk_signals
        .as_array()
        .map(|signals| {
            signals
                .iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str))
                .map(slack_text)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut details = format!(
        "*Reason:* {}\n*Risk:* {}{}",
        slack_literal(&request.reason),
        request.risk_score,
        if signals.is_empty() {
            String::new()
        } else {
            format!(" ({signals})")
        }
    );
    if let Event::Approved { comment, .. } | Event::Denied { comment, .. } = event
        && !comment.is_empty()
    {
        details.push_str(&format!("\n*Comment:* {}", slack_literal(comment)));
    }
    let link = format!("<{ui_url}{}|Open request {}>", request.id, request.id);
    json!({
        "text": format!("{headline}\n{details}\n{link}"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": link}]},
        ],
        "unfurl_links": false,
        "unfurl_media": false,
    })
    .to_string()
}
