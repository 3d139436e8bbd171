//! `GET /v1/audit`: the audit trail for administrators, filtered and a page at a time.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::guard::{Privileged, forbidden};
use super::state::AppState;
use crate::audit::{AuditFilter, parse_time};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    request_id: Option<String>,
    subject: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// RFC 3339 or unix seconds, inclusive.
    since: Option<String>,
    /// RFC 3339 or unix seconds, exclusive.
    until: Option<String>,
    limit: Option<i64>,
    /// `next` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1_000;

pub async fn list(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    if !state.may_administer(&caller) {
        let why = "only administrators read the audit trail";
        return Err(forbidden(&state, &caller, "read the audit trail", None, why).await);
    }
    let time = |field: &str, value: Option<String>| {
        value
            .map(|text| parse_time(&text))
            .transpose()
            .map_err(|e| ApiError::InvalidRequest(format!("{field}: {e}")))
    };
    let filter = AuditFilter {
        request_id: query.request_id,
        // A principal, matched as revocations match it.
        subject: query
            .subject
            .map(|subject| state.resolve_subject(&subject))
            .transpose()?,
        kind: query.kind,
        since: time("since", query.since)?,
        until: time("until", query.until)?,
    };
    let after = match query.cursor {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| ApiError::InvalidRequest("malformed cursor".into()))?,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let events = state
        .store
        .audit_page(&filter, after, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let next = (i64::try_from(events.len()).unwrap_or(0) == limit)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(json!({"events": events, "next": next})))
}
