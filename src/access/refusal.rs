//! Refusals that leave a trace: a privileged operation refused (403 `forbidden`) or refused to
//! a revoked subject (403 `revoked`) is written to the audit trail (`access.refused`) before the
//! caller hears of it, so attempts are seen.

use serde_json::json;

use super::{ApiError, App, AuditKind};
use crate::identity::Caller;
use crate::store::{AuditRecord, Write};

/// 403 `revoked` for `caller`'s `attempt`, audited, while a subject block names `caller`.
pub async fn refuse_blocked(app: &App, caller: &Caller, attempt: &str) -> Result<(), ApiError> {
    let Some(block) = app
        .store
        .subject_block(&caller.principal.to_string())
        .await?
    else {
        return Ok(());
    };
    let why = format!("subject revoked ({})", block.id);
    record_refusal(app, caller, attempt, None, "revoked", &why).await?;
    Err(ApiError::Revoked(block.reason))
}

/// 403 for `caller`'s `attempt` (e.g. `approve req_…`, on `request_id` if it concerns one)
/// because `why`, recorded in the audit trail first.
pub async fn forbidden(
    app: &App,
    caller: &Caller,
    attempt: &str,
    request_id: Option<&str>,
    why: &str,
) -> ApiError {
    match record_refusal(app, caller, attempt, request_id, "forbidden", why).await {
        Ok(()) => ApiError::Forbidden(why.to_owned()),
        Err(e) => e,
    }
}

async fn record_refusal(
    app: &App,
    caller: &Caller,
    attempt: &str,
    request_id: Option<&str>,
    code: &str,
    why: &str,
) -> Result<(), ApiError> {
    let principal = caller.principal.to_string();
    tracing::info!(principal = %principal, attempt, code, "refused");
    app.store
        .write(vec![Write::Audit(AuditRecord {
            at: app.now_stored(),
            kind: AuditKind::AccessRefused.into(),
            request_id: request_id.map(str::to_owned),
            subject: Some(principal.clone()),
            data: json!({"principal": principal, "attempt": attempt, "code": code, "reason": why}),
        })])
        .await?;
    Ok(())
}
