//! Polling an escalated request for its token (DESIGN §9.2, CIBA-style): the requester asks
//! again and again until approvers decide; once approved, the poll mints the token as
//! `POST /v1/access-requests/{id}/token` would, decided again in the context of now.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use super::answer::{DeniedAnswer, IssuedAnswer};
use super::approval::load;
use super::mint::{Minted, mint};
use super::{ApiError, App, RequestStatus};
use crate::identity::Caller;
use crate::store::effective_status;

/// Seconds a client waits between two polls of one request.
pub const POLL_INTERVAL_SECS: u64 = 5;
/// Most requests whose last poll is remembered; the memory is cleared when full.
const MAX_REMEMBERED: usize = 16_384;

/// What a poll found.
#[derive(Debug, Clone)]
pub enum Polled {
    /// Approvers have not decided yet.
    Pending,
    /// Asked again sooner than [`POLL_INTERVAL_SECS`] after the last poll.
    SlowDown,
    /// Denied by an approver, cancelled, or revoked.
    Denied,
    /// Nobody decided in time, or the approved window ended.
    Expired,
    /// The token, with the action and resource (`Type::"id"`) it was asked for.
    Issued {
        answer: IssuedAnswer,
        action: String,
        resource: String,
    },
    /// Approved, but the policies no longer allow it.
    Refused(DeniedAnswer),
}

/// When each request was last polled (app-clock milliseconds), to tell a client polling too
/// fast to slow down. Per replica: a client whose polls alternate between replicas polls each
/// half as often, and a slow-down is advice, never a security decision.
#[derive(Debug, Default)]
pub struct PollPace {
    last: Mutex<HashMap<String, i64>>,
}

impl PollPace {
    /// Records a poll of `id` at `now_ms`; whether it came too soon after the previous one.
    fn too_soon(&self, id: &str, now_ms: i64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.len() >= MAX_REMEMBERED {
            last.clear();
        }
        let interval_ms = i64::try_from(POLL_INTERVAL_SECS * 1_000).unwrap_or(i64::MAX);
        let previous = last.insert(id.to_owned(), now_ms);
        previous.is_some_and(|at| now_ms.saturating_sub(at) < interval_ms)
    }
}

/// `caller` polls request `id` from `source_ip` (the token bound to DPoP key `dpop_jkt`, if
/// any). Only the requester may; anyone else hears that there is no such request.
pub async fn poll(
    app: &App,
    caller: &Caller,
    source_ip: IpAddr,
    id: &str,
    dpop_jkt: Option<String>,
) -> Result<Polled, ApiError> {
    app.admit_operation(&caller.principal.to_string())?;
    let stored = load(app, id).await?;
    if stored.record.principal != caller.principal.to_string() {
        return Err(ApiError::NotFound(format!("no access request `{id}`")));
    }
    let now = app.now_stored();
    let status = effective_status(&stored.record.status, stored.record.expires_at, now);
    match RequestStatus::parse(&status) {
        Some(RequestStatus::Pending) if app.polls.too_soon(id, app.now_ms()) => {
            Ok(Polled::SlowDown)
        }
        Some(RequestStatus::Pending) => Ok(Polled::Pending),
        Some(RequestStatus::Expired) => Ok(Polled::Expired),
        Some(RequestStatus::Denied | RequestStatus::Cancelled | RequestStatus::Revoked) => {
            Ok(Polled::Denied)
        }
        // Scheduled: approved, but its window has not opened yet.
        Some(RequestStatus::Approved) if stored.record.not_before.is_some_and(|at| now < at) => {
            Ok(Polled::Pending)
        }
        Some(RequestStatus::Approved | RequestStatus::Issued) => {
            match mint(app, caller, source_ip, id, dpop_jkt).await {
                Ok(Minted::Issued(answer)) => Ok(Polled::Issued {
                    answer,
                    action: stored.record.action,
                    resource: stored.record.resource,
                }),
                Ok(Minted::Denied(denied)) => Ok(Polled::Refused(denied)),
                Err(ApiError::Conflict { .. }) => Ok(Polled::Expired),
                Err(e) => Err(e),
            }
        }
        _ => Err(ApiError::Conflict { status }),
    }
}
