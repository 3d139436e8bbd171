//! `GET /v1/audit`: the audit trail for administrators, filtered and a page at a time; the
//! signed audit head: made every `audit_head_every` and on shutdown, served to anyone at
//! `GET /v1/audit/head`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::guard::{Privileged, forbidden};
use super::state::{App, AppState};
use crate::audit::{AuditFilter, HEAD_EVENT, HEAD_TYP, HeadClaims, parse_time};
use crate::store::{AuditRecord, Write};

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

/// `GET /v1/audit/head`: the latest signed head, a compact JWS (`typ:
/// jitgate-audit-head+jwt`) anyone verifies with the JWKS and keeps, to check the trail
/// against later (`jitgate audit verify --head`).
pub async fn head(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jws = state
        .store
        .latest_signed_head()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound("no signed audit head yet".into()))?;
    Ok(([(header::CONTENT_TYPE, "application/jwt")], jws).into_response())
}

/// Signs the chain's head and keeps it in the trail as an `audit.head` event; nothing when
/// the last event is already a signed head (an idle server adds nothing).
pub async fn sign_head(state: &App) -> Result<(), String> {
    let Some((seq, hash, kind)) = state.store.audit_head().await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if kind == HEAD_EVENT {
        return Ok(());
    }
    let last_signed = state
        .last_signed_head
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some((signed_seq, signed_hash)) = last_signed {
        let now_at = state
            .store
            .audit_hash_at(signed_seq)
            .await
            .map_err(|e| e.to_string())?;
        if now_at.as_deref() != Some(signed_hash.as_str()) {
            tracing::error!(
                audit.seq = signed_seq,
                "the audit chain no longer holds the head this server signed: it was changed under the server; no head is signed over it"
            );
            return Err(format!(
                "the chain no longer holds the head signed at seq {signed_seq}"
            ));
        }
    }
    let now = state.now();
    let claims = HeadClaims {
        iss: state.config.issuer.clone(),
        iat: now,
        seq,
        hash: hash.clone(),
    };
    let jws = state
        .tokens
        .sign_claims(HEAD_TYP, &claims)
        .map_err(|e| e.to_string())?;
    state
        .store
        .write(vec![Write::Audit(AuditRecord {
            at: i64::try_from(now).unwrap_or(i64::MAX),
            kind: HEAD_EVENT.into(),
            request_id: None,
            subject: None,
            data: json!({"seq": seq, "hash": hash, "jws": jws}),
        })])
        .await
        .map_err(|e| e.to_string())?;
    *state
        .last_signed_head
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((seq, hash));
    Ok(())
}

/// Signs the head every `audit_head_every` (the first at once) until aborted.
pub async fn sign_heads(state: AppState) {
    let mut ticks = tokio::time::interval(state.config.audit_head_every);
    loop {
        ticks.tick().await;
        if let Err(e) = sign_head(&state).await {
            tracing::warn!(error = %e, "cannot sign the audit head");
        }
    }
}
