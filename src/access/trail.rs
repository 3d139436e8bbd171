//! The audit trail for administrators, filtered and a page at a time; and its signed heads,
//! made every `audit_head_every` and on shutdown, for anyone to keep and check the trail
//! against later (`jitgate audit verify --head`).

use serde_json::json;

use super::answer::AuditPage;
use super::refusal::forbidden;
use super::{ApiError, App, AppState, AuditKind};
use crate::audit::{AuditFilter, HEAD_EVENT, HEAD_TYP, HeadClaims, parse_time};
use crate::clock::stored_secs;
use crate::identity::Caller;
use crate::store::{AuditRecord, StoreError, Write};

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1_000;

/// Which events to read, as a caller gives them.
#[derive(Debug, Clone, Default)]
pub struct TrailQuery {
    pub request_id: Option<String>,
    /// A principal, matched as revocations match it.
    pub subject: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339 or unix seconds, inclusive.
    pub since: Option<String>,
    /// RFC 3339 or unix seconds, exclusive.
    pub until: Option<String>,
    pub limit: Option<i64>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the audit trail, for administrators.
pub async fn page(app: &App, caller: &Caller, query: TrailQuery) -> Result<AuditPage, ApiError> {
    if !app.may_administer(caller) {
        let why = "only administrators read the audit trail";
        return Err(forbidden(app, caller, "read the audit trail", None, why).await);
    }
    let time = |field: &str, value: Option<String>| {
        value
            .map(|text| parse_time(&text))
            .transpose()
            .map_err(|e| ApiError::InvalidRequest(format!("{field}: {e}")))
    };
    let filter = AuditFilter {
        request_id: query.request_id,
        subject: (query.subject)
            .map(|subject| app.resolve_subject(&subject))
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
    let events = app
        .store
        .audit_page(&filter, after, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let next = (i64::try_from(events.len()).unwrap_or(0) == limit)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(AuditPage { events, next })
}

/// The latest signed head, a compact JWS (`typ: jitgate-audit-head+jwt`).
pub async fn latest_head(app: &App) -> Result<String, ApiError> {
    app.store
        .latest_signed_head()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound("no signed audit head yet".into()))
}

/// Signs the chain's head and keeps it in the trail as an `audit.head` event; nothing when
/// the last event is already a signed head (an idle server adds nothing).
pub async fn sign_head(app: &App) -> Result<(), String> {
    let Some((seq, hash, kind)) = app.store.audit_head().await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if kind == HEAD_EVENT {
        return Ok(());
    }
    let last_signed = app
        .last_signed_head
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some((signed_seq, signed_hash)) = last_signed {
        let now_at = (app.store.audit_hash_at(signed_seq).await).map_err(|e| e.to_string())?;
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
    let now = app.now();
    let claims = HeadClaims {
        iss: app.config.issuer.clone(),
        iat: now,
        seq,
        hash: hash.clone(),
    };
    let jws = (app.tokens.sign_claims(HEAD_TYP, &claims)).map_err(|e| e.to_string())?;
    let written = app
        .store
        .write(vec![
            Write::RequireNoSignedHeadAfter { seq },
            Write::Audit(AuditRecord {
                at: stored_secs(now),
                kind: AuditKind::AuditHead.into(),
                request_id: None,
                subject: None,
                data: json!({"seq": seq, "hash": hash, "jws": jws}),
            }),
        ])
        .await;
    match written {
        Ok(()) => {}
        // Another replica signed this head (or a later one) since it was read.
        Err(StoreError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    }
    *app.last_signed_head
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((seq, hash));
    Ok(())
}

/// Signs the head every `audit_head_every` (the first at once) until aborted.
pub async fn sign_heads(app: AppState) {
    let mut ticks = tokio::time::interval(app.config.audit_head_every);
    loop {
        ticks.tick().await;
        if let Err(e) = sign_head(&app).await {
            tracing::warn!(error = %e, "cannot sign the audit head");
        }
    }
}
