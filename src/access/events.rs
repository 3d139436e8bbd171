//! Live events for a caller (`GET /v1/events`): what happens to its own requests, and to the
//! pending requests it may approve, as the audit trail records it. Read from the trail rather
//! than from this process, so that every replica tells the same story and a client that comes
//! back resumes where it left (`Last-Event-ID`, the trail's `seq`).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::approval::{load, may_follow};
use super::{ApiError, App};
use crate::audit::{AuditEvent, AuditFilter};
use crate::identity::Caller;

/// How often the trail is read for new events.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Trail events read at a time.
const BATCH: i64 = 200;

/// One event as a caller sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveEvent {
    /// The trail's `seq`: the SSE id to resume from.
    pub seq: i64,
    /// The audit event type: `decision`, `request.approved`, `token.issued`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: String,
    /// Unix seconds.
    pub at: i64,
    /// Who did it (Cedar form): the requester, an approver, an administrator.
    pub by: Option<String>,
    /// Where the request stands now.
    pub status: String,
}

/// Where a caller's stream starts: after `last_seen` when it resumes, else after the newest
/// event now (only what happens from here on).
pub async fn start(app: &App, last_seen: Option<i64>) -> Result<i64, ApiError> {
    match last_seen {
        Some(seq) => Ok(seq),
        None => Ok(app.store.audit_head().await?.map_or(0, |(seq, _, _)| seq)),
    }
}

/// The events after `after` that `caller` may see, and the `seq` to read after next time.
pub async fn next(
    app: &App,
    caller: &Caller,
    after: i64,
) -> Result<(Vec<LiveEvent>, i64), ApiError> {
    let events: Vec<AuditEvent> = app
        .store
        .audit_page(&AuditFilter::default(), after, BATCH)
        .await?;
    let last = events.last().map_or(after, |event| event.seq);
    // Where each request of the batch stands now, if the caller may follow it: read once per
    // request, however many of its events the batch holds.
    let mut followed: HashMap<String, Option<String>> = HashMap::new();
    let mut visible = Vec::new();
    for event in events {
        let Some(request_id) = event.request_id.clone() else {
            continue;
        };
        if !followed.contains_key(&request_id) {
            let status = match load(app, &request_id).await {
                Ok(request) if may_follow(app, caller, &request).await? => {
                    Some(crate::store::effective_status(
                        &request.record.status,
                        request.record.expires_at,
                        app.now_stored(),
                    ))
                }
                _ => None,
            };
            followed.insert(request_id.clone(), status);
        }
        if let Some(Some(status)) = followed.get(&request_id) {
            visible.push(LiveEvent {
                seq: event.seq,
                kind: event.kind,
                request_id,
                at: event.at,
                by: event.subject,
                status: status.clone(),
            });
        }
    }
    Ok((visible, last))
}
