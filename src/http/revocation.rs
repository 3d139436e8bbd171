//! Revocation (RFC 7009 and the administrators' `/v1/revocations`), the revocation feed that
//! stateless verifiers poll, and introspection (RFC 7662). DESIGN §5.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Authenticated, FormOrJson, JsonBody};
use super::state::AppState;
use crate::identity::Caller;
use crate::store::{AuditRecord, RevocationRecord, Write};
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

/// `token`'s claims if jitgate signed it and it has not expired; `None` for anything else.
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

/// Records `revocation` with its audit event and counts it.
async fn record(
    state: &AppState,
    caller: &Caller,
    revocation: RevocationRecord,
    mut extra: Vec<Write>,
) -> Result<(), ApiError> {
    let kind = revocation.kind.clone();
    let mut writes = vec![Write::Audit(AuditRecord {
        at: revocation.revoked_at,
        kind: "revocation.created".into(),
        request_id: (kind == "request_id").then(|| revocation.value.clone()),
        subject: Some(caller.principal.id.clone()),
        data: json!({
            "id": revocation.id, "kind": kind, "value": revocation.value,
            "reason": revocation.reason, "revoked_by": revocation.revoked_by,
        }),
    })];
    writes.append(&mut extra);
    writes.push(Write::Revocation(revocation));
    state.store.write(writes).await?;
    state
        .metrics
        .revocations
        .with_label_values(&[kind.as_str()])
        .inc();
    Ok(())
}

/// `POST /v1/tokens/revoke` (RFC 7009): the token's subject or an administrator revokes it.
/// Anything that is not a live jitgate token is already as good as revoked: 200.
pub async fn revoke_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    FormOrJson(parameter): FormOrJson<TokenParameter>,
) -> Result<StatusCode, ApiError> {
    let Some(claims) = own_token(&state, &parameter.token) else {
        return Ok(StatusCode::OK);
    };
    let holder = claims.sub == caller.principal.id;
    if !holder && !state.may_administer(&caller) {
        return Err(ApiError::Forbidden(
            "only the token's subject or an administrator revokes it".into(),
        ));
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
        expires_at: i64::try_from(claims.exp).unwrap_or(i64::MAX),
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

fn require_administrator(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if state.may_administer(caller) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only administrators manage revocations".into(),
        ))
    }
}

/// `POST /v1/revocations`: an administrator revokes a token, every token of a request (which
/// then mints no more), or every token of a subject (who gets none until it is lifted).
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<RevocationBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_administrator(&state, &caller)?;
    if body.reason.trim().is_empty() || body.reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "reason must be 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let (kind, value) = match (body.jti, body.request_id, body.subject) {
        (Some(jti), None, None) => ("jti", jti),
        (None, Some(request_id), None) => ("request_id", request_id),
        (None, None, Some(subject)) => ("subject", subject),
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
    let mut expires_at = now.saturating_add(max_ttl);
    let mut extra = Vec::new();
    match kind {
        "jti" => {
            if let Some(token) = state.store.token(&value).await? {
                expires_at = token.expires_at;
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
    record(&state, &caller, revocation.clone(), extra).await?;
    tracing::warn!(revocation.id = %revocation.id, revocation.kind = %revocation.kind, "revoked");
    Ok((StatusCode::CREATED, Json(json!(revocation))))
}

/// `DELETE /v1/revocations/{id}`: an administrator lets a revoked subject get tokens again.
/// The tokens it covered stay revoked.
pub async fn lift(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_administrator(&state, &caller)?;
    let Some(revocation) = state.store.revocation(&id).await? else {
        return Err(ApiError::NotFound(format!("no revocation `{id}`")));
    };
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
                subject: Some(caller.principal.id.clone()),
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
/// token, or `{"active": false}` alone for anything else.
pub async fn introspect(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    FormOrJson(parameter): FormOrJson<TokenParameter>,
) -> Result<Json<Value>, ApiError> {
    let inactive = Json(json!({"active": false}));
    let Some(claims) = own_token(&state, &parameter.token) else {
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
            &claims.sub,
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
