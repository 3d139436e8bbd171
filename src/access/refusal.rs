//! Refusals that leave a trace: a privileged operation refused (403 `forbidden`) or refused to
//! a revoked subject (403 `revoked`) is written to the audit trail before the caller hears of
//! it, so attempts are seen — `request.refused` when the subject asked for a token,
//! `access.refused` for any other operation.

use serde_json::json;

use super::{ApiError, App, AuditKind};
use crate::identity::Caller;
use crate::store::{AuditRecord, Write};

/// A subject revocation in force: it refuses the caller new tokens and privileges.
#[derive(Debug)]
pub struct SubjectBlock {
    pub id: String,
    pub reason: String,
}

/// What a revoked subject was refused.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// A token: an access request or a mint.
    Token,
    /// Any other operation, as `METHOD route` or a verb and its object.
    Operation(&'a str),
}

/// 403 `revoked` for `caller`'s `attempt`, audited, while a subject block names `caller`.
pub async fn refuse_blocked(
    app: &App,
    caller: &Caller,
    attempt: Attempt<'_>,
) -> Result<(), ApiError> {
    match app
        .store
        .subject_block(&caller.principal.to_string())
        .await?
    {
        Some(block) => {
            let block = SubjectBlock {
                id: block.id,
                reason: block.reason,
            };
            Err(refuse_revoked(app, caller, attempt, block).await)
        }
        None => Ok(()),
    }
}

/// The refusal of `caller`'s `attempt` under `block`, audited.
pub(super) async fn refuse_revoked(
    app: &App,
    caller: &Caller,
    attempt: Attempt<'_>,
    block: SubjectBlock,
) -> ApiError {
    let audited = match attempt {
        Attempt::Token => {
            write_refusal(
                app,
                caller,
                AuditKind::RequestRefused,
                None,
                json!({"reason": "subject_revoked", "revocation": block.id}),
            )
            .await
        }
        Attempt::Operation(attempt) => {
            let why = format!("subject revoked ({})", block.id);
            record_refusal(app, caller, attempt, None, "revoked", &why).await
        }
    };
    match audited {
        Ok(()) => ApiError::Revoked(block.reason),
        Err(e) => e,
    }
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
    let data = json!({"principal": principal, "attempt": attempt, "code": code, "reason": why});
    write_refusal(app, caller, AuditKind::AccessRefused, request_id, data).await
}

async fn write_refusal(
    app: &App,
    caller: &Caller,
    kind: AuditKind,
    request_id: Option<&str>,
    data: serde_json::Value,
) -> Result<(), ApiError> {
    app.store
        .write(vec![Write::Audit(AuditRecord {
            at: app.now_stored(),
            kind: kind.into(),
            request_id: request_id.map(str::to_owned),
            subject: Some(caller.principal.to_string()),
            data,
        })])
        .await?;
    Ok(())
}
