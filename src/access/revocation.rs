//! Revocation (RFC 7009 and the administrators' revocations), the revocation feed that
//! stateless verifiers poll, and introspection (RFC 7662). DESIGN §5.

use serde_json::json;

use super::answer::{FeedEntry, FeedPage, Introspection, Revoked};
use super::refusal::{Attempt, forbidden, refuse_blocked};
use super::{ApiError, App, AuditKind, RequestStatus};
use crate::clock::stored_secs;
use crate::identity::Caller;
use crate::identity::jwt::LEEWAY_SECS;
use crate::store::{AuditRecord, RevocationRecord, StoreError, Write};
use crate::token::{AccessClaims, new_jti};
use crate::verify::Verifier;

const MAX_REASON_CHARS: usize = 1_000;
const DEFAULT_FEED_PAGE: i64 = 500;
const MAX_FEED_PAGE: i64 = 5_000;

/// `token`'s claims if jitgate signed it and a verifier would still accept it (up to `exp`
/// plus the verification leeway); `None` for anything else.
fn own_token(app: &App, token: &str) -> Option<AccessClaims> {
    let now = app.now();
    let verifier = Verifier {
        issuer: Some(app.tokens.issuer().to_owned()),
        jwks: app.tokens.jwks(now),
    };
    verifier.verify(token.trim(), None, now).ok()
}

/// When a revocation of tokens expiring at `exp` may be forgotten: verifiers accept a token
/// until `exp` plus their leeway, so the store and the feed keep it that long.
fn kept_until(exp: i64) -> i64 {
    exp.saturating_add(stored_secs(LEEWAY_SECS))
}

/// Records `revocation` with its audit event and counts it, unless one of the same kind and
/// value is in force: revoking twice writes nothing more (no feed entry, no audit event).
async fn record(
    app: &App,
    caller: &Caller,
    revocation: RevocationRecord,
    extra: Vec<Write>,
) -> Result<Revoked, ApiError> {
    let in_force = || {
        app.store
            .revocation_in_force(&revocation.kind, &revocation.value)
    };
    if let Some(existing) = in_force().await? {
        return Ok(Revoked::Existing(existing));
    }
    let kind = revocation.kind.clone();
    // The revocation first: when it is a repeat after all, the job stops there.
    let mut writes = vec![Write::Revocation(revocation.clone())];
    writes.extend(extra);
    writes.push(Write::Audit(AuditRecord {
        at: revocation.revoked_at,
        kind: AuditKind::RevocationCreated.into(),
        request_id: (kind == "request_id").then(|| revocation.value.clone()),
        subject: Some(caller.principal.to_string()),
        data: json!({
            "id": revocation.id, "kind": kind, "value": revocation.value,
            "reason": revocation.reason, "revoked_by": revocation.revoked_by,
        }),
    }));
    match app.store.write(writes).await {
        Ok(()) => {}
        // Made a moment ago by a concurrent call.
        Err(StoreError::Conflict(_)) => {
            if let Some(existing) = in_force().await? {
                return Ok(Revoked::Existing(existing));
            }
            return Err(ApiError::Unavailable(
                "a revocation conflicted with one that is gone".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    app.metrics
        .revocations
        .with_label_values(&[kind.as_str()])
        .inc();
    Ok(Revoked::Created(revocation))
}

/// The token's subject or an administrator revokes `token` (RFC 7009). Anything that is not a
/// live jitgate token is already as good as revoked: `Ok`.
pub async fn revoke_token(app: &App, caller: &Caller, token: &str) -> Result<(), ApiError> {
    let Some(claims) = own_token(app, token) else {
        return Ok(());
    };
    // The full principal: `User::"deployer"` does not hold `Service::"deployer"`'s tokens.
    let holder = claims.jit.principal == caller.principal.to_string();
    let attempt = format!("revoke token {}", claims.jti);
    if !holder {
        // Revoking another's token is administration: a blocked administrator has none.
        refuse_blocked(app, caller, Attempt::Operation(&attempt)).await?;
    }
    if !holder && !app.may_administer(caller) {
        let why = "only the token's subject or an administrator revokes it";
        return Err(forbidden(app, caller, &attempt, Some(&claims.jit.request_id), why).await);
    }
    let revocation = RevocationRecord {
        id: format!("rev_{}", new_jti()),
        kind: "jti".into(),
        value: claims.jti.clone(),
        reason: if holder {
            "revoked by its holder".into()
        } else {
            "revoked by an administrator".into()
        },
        revoked_by: caller.principal.to_string(),
        revoked_at: app.now_stored(),
        expires_at: kept_until(stored_secs(claims.exp)),
        lifted_at: None,
    };
    record(app, caller, revocation, Vec::new()).await?;
    Ok(())
}

/// What an administrator revokes: exactly one of a token, every token of a request, or every
/// token of a subject.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub jti: Option<String>,
    pub request_id: Option<String>,
    /// A principal (`User::"sue"`, or `sue` where only one principal can be meant).
    pub subject: Option<String>,
    pub reason: String,
}

async fn require_administrator(app: &App, caller: &Caller, attempt: &str) -> Result<(), ApiError> {
    if app.may_administer(caller) {
        Ok(())
    } else {
        let why = "only administrators manage revocations";
        Err(forbidden(app, caller, attempt, None, why).await)
    }
}

/// An administrator revokes a token, every token of a request (which then mints no more), or
/// every token of a subject (who gets none until it is lifted). Revoking what is already
/// revoked answers the revocation in force.
pub async fn revoke(app: &App, caller: &Caller, command: Revocation) -> Result<Revoked, ApiError> {
    require_administrator(app, caller, "create a revocation").await?;
    if command.reason.trim().is_empty() || command.reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "reason must be 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let (kind, value) = match (command.jti, command.request_id, command.subject) {
        (Some(jti), None, None) => ("jti", jti),
        (None, Some(request_id), None) => ("request_id", request_id),
        (None, None, Some(subject)) => ("subject", app.resolve_subject(&subject)?.to_string()),
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of jti, request_id and subject".into(),
            ));
        }
    };
    if value.is_empty() {
        return Err(ApiError::InvalidRequest(format!("{kind} is empty")));
    }
    let now = app.now_stored();
    // Every token lives at most max_ttl, so nothing this covers is live after that.
    let max_ttl = stored_secs(app.config.max_ttl.as_secs());
    let mut expires_at = kept_until(now.saturating_add(max_ttl));
    let mut extra = Vec::new();
    match kind {
        "jti" => {
            if let Some(token) = app.store.token(&value).await? {
                expires_at = kept_until(token.expires_at);
            }
        }
        "request_id" => {
            if app.store.request(&value).await?.is_none() {
                return Err(ApiError::NotFound(format!("no access request `{value}`")));
            }
            extra.push(Write::SetStatus {
                id: value.clone(),
                status: RequestStatus::Revoked.into(),
                at: now,
            });
        }
        // A revoked person is signed out of the UI too.
        "subject" => extra.push(Write::EndSessionsOf {
            principal: value.clone(),
        }),
        _ => {}
    }
    let revocation = RevocationRecord {
        id: format!("rev_{}", new_jti()),
        kind: kind.into(),
        value,
        reason: command.reason,
        revoked_by: caller.principal.to_string(),
        revoked_at: now,
        expires_at,
        lifted_at: None,
    };
    let recorded = record(app, caller, revocation, extra).await?;
    if let Revoked::Created(revocation) = &recorded {
        tracing::warn!(revocation.id = %revocation.id, revocation.kind = %revocation.kind, "revoked");
    }
    Ok(recorded)
}

/// An administrator lets a revoked subject get tokens again; never the subject itself. The
/// tokens it covered stay revoked.
pub async fn lift(app: &App, caller: &Caller, id: &str) -> Result<RevocationRecord, ApiError> {
    let attempt = format!("lift revocation {id}");
    require_administrator(app, caller, &attempt).await?;
    let Some(revocation) = app.store.revocation(id).await? else {
        return Err(ApiError::NotFound(format!("no revocation `{id}`")));
    };
    if revocation.kind == "subject" && revocation.value == caller.principal.to_string() {
        let why = "nobody lifts a block on their own subject";
        return Err(forbidden(app, caller, &attempt, None, why).await);
    }
    let now = app.now_stored();
    app.store
        .write(vec![
            Write::LiftRevocation {
                id: id.to_owned(),
                at: now,
            },
            Write::Audit(AuditRecord {
                at: now,
                kind: AuditKind::RevocationLifted.into(),
                request_id: None,
                subject: Some(caller.principal.to_string()),
                data: json!({"id": id, "kind": revocation.kind, "value": revocation.value}),
            }),
        ])
        .await?;
    Ok(RevocationRecord {
        lifted_at: Some(now),
        ..revocation
    })
}

/// The revocations whose tokens may still be live, after cursor `since`, in the order they
/// were made; `next` stays put while nothing new happens.
pub async fn feed(
    app: &App,
    since: Option<&str>,
    limit: Option<i64>,
) -> Result<FeedPage, ApiError> {
    let after: i64 = match since {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| ApiError::InvalidRequest("malformed cursor".into()))?,
    };
    let limit = limit.unwrap_or(DEFAULT_FEED_PAGE).clamp(1, MAX_FEED_PAGE);
    let page = app
        .store
        .revocations_after(after, app.now_stored(), limit)
        .await?;
    let next = page.last().map_or(after, |(position, _)| *position);
    let revocations = page
        .into_iter()
        .map(|(_, r)| FeedEntry {
            id: r.id,
            kind: r.kind,
            value: r.value,
            revoked_at: r.revoked_at,
            expires_at: r.expires_at,
        })
        .collect();
    Ok(FeedPage {
        revocations,
        next: next.to_string(),
    })
}

/// The claims of `token` if it is live (RFC 7662), inactive for anything else. jitgate's own
/// clock needs no leeway: a token is inactive from its `exp` on.
pub async fn introspect(app: &App, token: &str) -> Result<Introspection, ApiError> {
    let Some(claims) = own_token(app, token).filter(|c| c.exp > app.now()) else {
        return Ok(Introspection::INACTIVE);
    };
    // Signed by us but never recorded means something is wrong: not active.
    if app.store.token(&claims.jti).await?.is_none() {
        return Ok(Introspection::INACTIVE);
    }
    let revoked = app
        .store
        .revocation_covering(
            &claims.jti,
            &claims.jit.request_id,
            &claims.jit.principal,
            stored_secs(claims.iat),
        )
        .await?;
    if revoked.is_some() {
        return Ok(Introspection::INACTIVE);
    }
    Ok(Introspection::active(claims))
}
