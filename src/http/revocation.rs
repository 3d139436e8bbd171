//! Revocation (RFC 7009 and the administrators' `/v1/revocations`), the revocation feed that
//! stateless verifiers poll, and introspection (RFC 7662). DESIGN §5.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Authenticated, FormOrJson, JsonBody};
use super::guard::{Admitted, Privileged, forbidden, refuse_blocked};
use super::state::AppState;
use crate::identity::Caller;
use crate::identity::jwt::LEEWAY_SECS;
use crate::store::{AuditRecord, RevocationRecord, StoreError, Write};
use crate::token::{AccessClaims, new_jti};
use crate::verify::Verifier;

const MAX_REASON_CHARS: usize = 1_000;

/// The `token` parameter of RFC 7009 and RFC 7662.
#[derive(Debug, Deserialize)]
pub struct TokenParameter {
    token: String,
    /// Accepted and ignored: jitgate issues one kind of token.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "RFC 7009 lets clients send it; it changes nothing here"
    )]
    token_type_hint: Option<String>,
}

/// `token`'s claims if jitgate signed it and a verifier would still accept it (up to `exp`
/// plus the verification leeway); `None` for anything else.
fn own_token(state: &AppState, token: &str) -> Option<AccessClaims> {
    let now = state.now();
    let verifier = Verifier {
        issuer: Some(state.tokens.issuer().to_owned()),
        jwks: state.tokens.jwks(now),
    };
    verifier.verify(token.trim(), None, now).ok()
}

fn now_secs(state: &AppState) -> i64 {
    i64::try_from(state.now()).unwrap_or(i64::MAX)
}

/// When a revocation of tokens expiring at `exp` may be forgotten: verifiers accept a token
/// until `exp` plus their leeway, so the store and the feed keep it that long.
fn kept_until(exp: i64) -> i64 {
    exp.saturating_add(i64::try_from(LEEWAY_SECS).unwrap_or(i64::MAX))
}

/// What recording a revocation came to.
enum Recorded {
    Created(RevocationRecord),
    /// One of the same kind and value was already in force: it stands, nothing was written.
    Existing(RevocationRecord),
}

/// Records `revocation` with its audit event and counts it, unless one of the same kind and
/// value is in force: revoking twice writes nothing more (no feed entry, no audit event).
async fn record(
    state: &AppState,
    caller: &Caller,
    revocation: RevocationRecord,
    extra: Vec<Write>,
) -> Result<Recorded, ApiError> {
    let in_force = || {
        state
            .store
            .revocation_in_force(&revocation.kind, &revocation.value)
    };
    if let Some(existing) = in_force().await? {
        return Ok(Recorded::Existing(existing));
    }
    let kind = revocation.kind.clone();
    // The revocation first: when it is a repeat after all, the job stops there.
    let mut writes = vec![Write::Revocation(revocation.clone())];
    writes.extend(extra);
    writes.push(Write::Audit(AuditRecord {
        at: revocation.revoked_at,
        kind: "revocation.created".into(),
        request_id: (kind == "request_id").then(|| revocation.value.clone()),
        subject: Some(caller.principal.to_string()),
        data: json!({
            "id": revocation.id, "kind": kind, "value": revocation.value,
            "reason": revocation.reason, "revoked_by": revocation.revoked_by,
        }),
    }));
    match state.store.write(writes).await {
        Ok(()) => {}
        // Made a moment ago by a concurrent call.
        Err(StoreError::Conflict(_)) => {
            if let Some(existing) = in_force().await? {
                return Ok(Recorded::Existing(existing));
            }
            return Err(ApiError::Unavailable(
                "a revocation conflicted with one that is gone".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    state
        .metrics
        .revocations
        .with_label_values(&[kind.as_str()])
        .inc();
    Ok(Recorded::Created(revocation))
}

/// `POST /v1/tokens/revoke` (RFC 7009): the token's subject or an administrator revokes it.
/// Anything that is not a live jitgate token is already as good as revoked: 200.
pub async fn revoke_token(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    FormOrJson(parameter): FormOrJson<TokenParameter>,
) -> Result<StatusCode, ApiError> {
    let Some(claims) = own_token(&state, &parameter.token) else {
        return Ok(StatusCode::OK);
    };
    // The full principal: `User::"deployer"` does not hold `Service::"deployer"`'s tokens.
    let holder = claims.jit.principal == caller.principal.to_string();
    if !holder {
        // Revoking another's token is administration: a blocked administrator has none.
        refuse_blocked(&state, &caller, &format!("revoke token {}", claims.jti)).await?;
    }
    if !holder && !state.may_administer(&caller) {
        let attempt = format!("revoke token {}", claims.jti);
        let why = "only the token's subject or an administrator revokes it";
        return Err(forbidden(&state, &caller, &attempt, Some(&claims.jit.request_id), why).await);
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
        revoked_at: now_secs(&state),
        expires_at: kept_until(i64::try_from(claims.exp).unwrap_or(i64::MAX)),
        lifted_at: None,
    };
    record(&state, &caller, revocation, Vec::new()).await?;
    Ok(StatusCode::OK)
}

/// Body of `POST /v1/revocations`: one of `jti`, `request_id`, `subject`, and a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    reason: String,
}

async fn require_administrator(
    state: &AppState,
    caller: &Caller,
    attempt: &str,
) -> Result<(), ApiError> {
    if state.may_administer(caller) {
        Ok(())
    } else {
        let why = "only administrators manage revocations";
        Err(forbidden(state, caller, attempt, None, why).await)
    }
}

/// `POST /v1/revocations`: an administrator revokes a token, every token of a request (which
/// then mints no more), or every token of a subject (who gets none until it is lifted). A
/// subject is a principal (`User::"sue"`, or `sue` where only one principal can be meant).
/// Revoking what is already revoked answers 200 with the revocation in force.
pub async fn create(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    JsonBody(body): JsonBody<RevocationBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_administrator(&state, &caller, "create a revocation").await?;
    if body.reason.trim().is_empty() || body.reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "reason must be 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let (kind, value) = match (body.jti, body.request_id, body.subject) {
        (Some(jti), None, None) => ("jti", jti),
        (None, Some(request_id), None) => ("request_id", request_id),
        (None, None, Some(subject)) => ("subject", state.resolve_subject(&subject)?.to_string()),
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of jti, request_id and subject".into(),
            ));
        }
    };
    if value.is_empty() {
        return Err(ApiError::InvalidRequest(format!("{kind} is empty")));
    }
    let now = now_secs(&state);
    // Every token lives at most max_ttl, so nothing this covers is live after that.
    let max_ttl = i64::try_from(state.config.max_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut expires_at = kept_until(now.saturating_add(max_ttl));
    let mut extra = Vec::new();
    match kind {
        "jti" => {
            if let Some(token) = state.store.token(&value).await? {
                expires_at = kept_until(token.expires_at);
            }
        }
        "request_id" => {
            if state.store.request(&value).await?.is_none() {
                return Err(ApiError::NotFound(format!("no access request `{value}`")));
            }
            extra.push(Write::SetStatus {
                id: value.clone(),
                status: "revoked".into(),
                at: now,
            });
        }
        _ => {}
    }
    let revocation = RevocationRecord {
        id: format!("rev_{}", new_jti()),
        kind: kind.into(),
        value,
        reason: body.reason,
        revoked_by: caller.principal.to_string(),
        revoked_at: now,
        expires_at,
        lifted_at: None,
    };
    match record(&state, &caller, revocation, extra).await? {
        Recorded::Created(revocation) => {
            tracing::warn!(revocation.id = %revocation.id, revocation.kind = %revocation.kind, "revoked");
            Ok((StatusCode::CREATED, Json(json!(revocation))))
        }
        Recorded::Existing(revocation) => Ok((StatusCode::OK, Json(json!(revocation)))),
    }
}

/// `DELETE /v1/revocations/{id}`: an administrator lets a revoked subject get tokens again;
/// never the subject itself. The tokens it covered stay revoked.
pub async fn lift(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let attempt = format!("lift revocation {id}");
    require_administrator(&state, &caller, &attempt).await?;
    let Some(revocation) = state.store.revocation(&id).await? else {
        return Err(ApiError::NotFound(format!("no revocation `{id}`")));
    };
    if revocation.kind == "subject" && revocation.value == caller.principal.to_string() {
        let why = "nobody lifts a block on their own subject";
        return Err(forbidden(&state, &caller, &attempt, None, why).await);
    }
    let now = now_secs(&state);
    state
        .store
        .write(vec![
            Write::LiftRevocation {
                id: id.clone(),
                at: now,
            },
            Write::Audit(AuditRecord {
                at: now,
                kind: "revocation.lifted".into(),
                request_id: None,
                subject: Some(caller.principal.to_string()),
                data: json!({"id": id, "kind": revocation.kind, "value": revocation.value}),
            }),
        ])
        .await?;
    Ok(Json(json!(RevocationRecord {
        lifted_at: Some(now),
        ..revocation
    })))
}

/// Query of the feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// `next` of the previous page; absent for the start.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

const DEFAULT_FEED_PAGE: i64 = 500;
const MAX_FEED_PAGE: i64 = 5_000;

/// `GET /v1/revocations?since=<cursor>&limit=N`: the revocations whose tokens may still be
/// live, in the order they were made, for verifiers to keep a deny-list. `next` is the cursor
/// to poll with; it stays put while nothing new happens.
pub async fn feed(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    Query(query): Query<FeedQuery>,
) -> Result<Json<Value>, ApiError> {
    let after: i64 = match &query.since {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| ApiError::InvalidRequest("malformed cursor".into()))?,
    };
    let limit = query
        .limit
        .unwrap_or(DEFAULT_FEED_PAGE)
        .clamp(1, MAX_FEED_PAGE);
    let page = state
        .store
        .revocations_after(after, now_secs(&state), limit)
        .await?;
    let next = page.last().map_or(after, |(position, _)| *position);
    let entries: Vec<Value> = page
        .into_iter()
        .map(|(_, r)| {
            json!({
                "id": r.id, "kind": r.kind, "value": r.value,
                "revoked_at": r.revoked_at, "expires_at": r.expires_at,
            })
        })
        .collect();
    Ok(Json(
        json!({"revocations": entries, "next": next.to_string()}),
    ))
}

/// `POST /v1/tokens/introspect` (RFC 7662), for authenticated callers: the claims of a live
/// token, or `{"active": false}` alone for anything else. jitgate's own clock needs no
/// leeway: a token is inactive from its `exp` on.
pub async fn introspect(
    State(state): State<AppState>,
    Admitted(_caller): Admitted,
    FormOrJson(parameter): FormOrJson<TokenParameter>,
) -> Result<Json<Value>, ApiError> {
    let inactive = Json(json!({"active": false}));
    let Some(claims) = own_token(&state, &parameter.token).filter(|c| c.exp > state.now()) else {
        return Ok(inactive);
    };
    // Signed by us but never recorded means something is wrong: not active.
    if state.store.token(&claims.jti).await?.is_none() {
        return Ok(inactive);
    }
    let revoked = state
        .store
        .revocation_covering(
            &claims.jti,
            &claims.jit.request_id,
            &claims.jit.principal,
            i64::try_from(claims.iat).unwrap_or(i64::MAX),
        )
        .await?;
    if revoked.is_some() {
        return Ok(inactive);
    }
    let mut answer = json!({"active": true, "token_type": "Bearer"});
    if let (Value::Object(answer), Value::Object(claims)) = (&mut answer, json!(claims)) {
        answer.extend(claims);
    }
    Ok(Json(answer))
}
