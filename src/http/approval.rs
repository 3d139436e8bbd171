//! Escalated requests (DESIGN §4): reading one, approving, denying, cancelling, and minting the
//! token once approved. Who may approve is Cedar's `approve` action; nobody approves their own.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::access::{admit, refuse_revoked_subject, risk_for, token_writes};
use super::error::ApiError;
use super::extract::{Authenticated, ClientIp, OptionalJsonBody};
use super::guard::{Admitted, Privileged, forbidden};
use super::state::AppState;
use crate::clock::rfc3339;
use crate::decision::{
    ApprovedGrant, DecisionContext, DecisionRequest, EntityRef, Outcome, RequestContext,
    within_approval,
};
use crate::identity::Caller;
use crate::notify::Event;
use crate::policy::PolicyPack;
use crate::store::{ApprovalRecord, AuditRecord, StoredRequest, Write, effective_status};
use crate::token::{JitClaims, TokenGrant};

/// Optional body of approve, deny and cancel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    #[serde(default)]
    comment: String,
}

const MAX_COMMENT_CHARS: usize = 1_000;

/// `request` with its answers, as every endpoint here shows it.
async fn respond(
    state: &AppState,
    request: &StoredRequest,
    now: i64,
) -> Result<Json<Value>, ApiError> {
    let approvals = state.store.approvals(&request.record.id).await?;
    Ok(Json(view(request, &approvals, now)))
}

/// Moves request `id` from `from` to `to` (409 with the current status unless it is `from`),
/// with the audit event `request.<to>`, and shows the result.
async fn transition(
    state: &AppState,
    caller: &Caller,
    id: &str,
    (from, to): (&str, &str),
    data: Value,
) -> Result<Json<Value>, ApiError> {
    let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
    state
        .store
        .write(vec![
            Write::RequireStatus {
                id: id.to_owned(),
                status: from.into(),
                at: now,
            },
            Write::SetStatus {
                id: id.to_owned(),
                status: to.into(),
                at: now,
            },
            Write::Audit(AuditRecord {
                at: now,
                kind: format!("request.{to}"),
                request_id: Some(id.to_owned()),
                subject: Some(caller.principal.to_string()),
                data,
            }),
        ])
        .await?;
    respond(state, &load(state, id).await?, now).await
}

async fn load(state: &AppState, id: &str) -> Result<StoredRequest, ApiError> {
    state
        .store
        .request(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no access request `{id}`")))
}

/// Whether Cedar lets `caller` approve `request` (never their own).
fn may_approve(
    pack: &PolicyPack,
    state: &AppState,
    caller: &Caller,
    request: &StoredRequest,
) -> bool {
    let r = &request.record;
    if caller.principal.to_string() == r.principal {
        return false;
    }
    let Ok(resource) = r.resource.parse::<EntityRef>() else {
        return false;
    };
    let mut context = Map::new();
    context.insert("request_id".into(), json!(r.id));
    context.insert("requester".into(), json!(r.principal));
    context.insert("requested_action".into(), json!(r.action));
    context.insert("risk_score".into(), json!(r.risk_score));
    context.insert("reason".into(), json!(r.reason));
    let question = DecisionRequest {
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        action: "approve".into(),
        resource,
        context: DecisionContext::Other(context),
        scopes: Vec::new(),
        duration: None,
    };
    crate::decision::decide(pack, &question, &state.config.grant_defaults())
        .is_ok_and(|d| d.outcome == Outcome::Allow)
}

fn view(request: &StoredRequest, approvals: &[ApprovalRecord], now: i64) -> Value {
    let r = &request.record;
    json!({
        "request_id": r.id,
        "status": effective_status(&r.status, r.expires_at, now),
        "requester": r.principal,
        "action": r.action,
        "resource": r.resource,
        "scopes": r.scopes,
        "granted_scopes": r.granted_scopes,
        "audience": r.audience,
        "reason": r.reason,
        "decision": r.decision,
        "policies": r.policies,
        "approvals_required": r.approvals_required,
        "approvals": approvals,
        "risk": {"score": r.risk_score, "signals": r.risk_signals},
        "created_at": rfc3339(u64::try_from(r.created_at).unwrap_or(0)),
        "expires_at": r.expires_at.map(|at| rfc3339(u64::try_from(at).unwrap_or(0))),
    })
}

/// Query of `GET /v1/access-requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: String,
    #[serde(default)]
    limit: Option<usize>,
    /// `next` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;
/// Pending rows read from the store at a time.
const SCAN_BATCH: i64 = 200;

/// `GET /v1/access-requests?status=pending`: the pending requests the caller may approve,
/// oldest first, a page at a time (`next` is the cursor of the following page). Which rows
/// the caller may approve is Cedar's to say, row by row; one call checks at most
/// `rate_limit.pending_list_scan` rows, so a page may be short (even empty) with a `next`.
pub async fn list(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if query.status != "pending" {
        return Err(ApiError::InvalidRequest(
            "only status=pending can be listed".into(),
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut after: i64 = match &query.cursor {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| ApiError::InvalidRequest("malformed cursor".into()))?,
    };
    let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
    let pack = state.policies.current();
    let mut unscanned = i64::from(state.config.rate_limit.pending_list_scan);
    let mut page = Vec::new();
    let mut last_included = after;
    let mut next = None;
    'scan: loop {
        let batch_size = unscanned.min(SCAN_BATCH);
        let batch = state.store.pending_page(now, after, batch_size).await?;
        let exhausted = i64::try_from(batch.len()).map_or(true, |n| n < batch_size);
        for (position, request) in batch {
            if may_approve(&pack, &state, &caller, &request) {
                if page.len() == limit {
                    next = Some(last_included.to_string());
                    break 'scan;
                }
                last_included = position;
                page.push(request);
            }
            after = position;
            unscanned -= 1;
        }
        if exhausted {
            break;
        }
        if unscanned == 0 {
            next = Some(after.to_string());
            break;
        }
    }
    let requests: Vec<Value> = page.iter().map(|r| view(r, &[], now)).collect();
    Ok(Json(json!({"requests": requests, "next": next})))
}

/// `GET /v1/access-requests/{id}`: for the requester, its approvers and administrators.
pub async fn get(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let request = load(&state, &id).await?;
    let pack = state.policies.current();
    let visible = caller.principal.to_string() == request.record.principal
        || may_approve(&pack, &state, &caller, &request)
        || state.may_administer(&caller);
    if !visible {
        // Not 403: whether a request exists is not for others to learn.
        return Err(ApiError::NotFound(format!("no access request `{id}`")));
    }
    let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
    respond(&state, &request, now).await
}

pub async fn approve(
    state: State<AppState>,
    caller: Privileged,
    id: Path<String>,
    body: OptionalJsonBody<CommentBody>,
) -> Result<Json<Value>, ApiError> {
    answer(state, caller, id, body, "approve").await
}

pub async fn deny(
    state: State<AppState>,
    caller: Privileged,
    id: Path<String>,
    body: OptionalJsonBody<CommentBody>,
) -> Result<Json<Value>, ApiError> {
    answer(state, caller, id, body, "deny").await
}

/// An approver's answer. The writes check that the request is still pending and commit after
/// every earlier answer, so of two approvals racing for a quorum of one, one moves the request
/// and the other gets 409.
async fn answer(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
    decision: &str,
) -> Result<Json<Value>, ApiError> {
    let comment = body.unwrap_or_default().comment;
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    let request = load(&state, &id).await?;
    let attempt = format!("{decision} {id}");
    if caller.principal.to_string() == request.record.principal {
        let why = "nobody approves or denies their own request";
        return Err(forbidden(&state, &caller, &attempt, Some(&id), why).await);
    }
    let pack = state.policies.current();
    if !may_approve(&pack, &state, &caller, &request) {
        let why = "the policies do not let you approve this request";
        return Err(forbidden(&state, &caller, &attempt, Some(&id), why).await);
    }
    let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
    let approver = caller.principal.to_string();
    let mut writes = vec![
        // A block that lands while this approval is on its way refuses it too.
        Write::RequireNotRevoked {
            subject: approver.clone(),
            request_id: id.clone(),
        },
        Write::RequireStatus {
            id: id.clone(),
            status: "pending".into(),
            at: now,
        },
        Write::Approval(ApprovalRecord {
            request_id: id.clone(),
            approver: approver.clone(),
            decision: decision.into(),
            comment: comment.clone(),
            at: now,
        }),
    ];
    let now_ms = state.now_ms();
    if decision == "approve" {
        let approved = Event::Approved {
            by: approver.clone(),
            comment: comment.clone(),
        };
        writes.push(Write::ApproveAtQuorum {
            id: id.clone(),
            at: now,
            announce: state.notifier.outbox(&approved, &request.record, now_ms),
        });
    } else {
        writes.push(Write::SetStatus {
            id: id.clone(),
            status: "denied".into(),
            at: now,
        });
        let denied = Event::Denied {
            by: approver.clone(),
            comment: comment.clone(),
        };
        let queued = state.notifier.outbox(&denied, &request.record, now_ms);
        writes.extend(queued.into_iter().map(Write::Outbox));
    }
    writes.push(Write::Audit(AuditRecord {
        at: now,
        kind: format!("request.{decision}"),
        request_id: Some(id.clone()),
        subject: Some(caller.principal.to_string()),
        data: json!({"approver": approver, "comment": comment}),
    }));
    state.store.write(writes).await?;
    state.notifier.wake();
    let decided = load(&state, &id).await?;
    if decided.record.status != "pending" {
        let waited = (now - decided.record.created_at).max(0);
        state.metrics.approval_wait.observe(waited as f64);
    }
    respond(&state, &decided, now).await
}

/// `POST /v1/access-requests/{id}/review`: an administrator closes a break-glass request
/// with a comment; never their own, as nobody approves their own request.
pub async fn review(
    State(state): State<AppState>,
    Privileged(caller): Privileged,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
) -> Result<Json<Value>, ApiError> {
    let comment = body.unwrap_or_default().comment;
    if comment.trim().is_empty() || comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "a review needs a comment of 1 to {MAX_COMMENT_CHARS} characters"
        )));
    }
    let request = load(&state, &id).await?;
    let attempt = format!("review {id}");
    if !state.may_administer(&caller) {
        let why = "only administrators review break-glass access";
        return Err(forbidden(&state, &caller, &attempt, Some(&id), why).await);
    }
    if caller.principal.to_string() == request.record.principal {
        let why = "nobody reviews their own break-glass access";
        return Err(forbidden(&state, &caller, &attempt, Some(&id), why).await);
    }
    transition(
        &state,
        &caller,
        &id,
        ("needs_review", "reviewed"),
        json!({"reviewer": caller.principal.to_string(), "comment": comment}),
    )
    .await
}

/// `POST /v1/access-requests/{id}/cancel`: the requester withdraws a pending request.
pub async fn cancel(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CommentBody>,
) -> Result<Json<Value>, ApiError> {
    let request = load(&state, &id).await?;
    if caller.principal.to_string() != request.record.principal {
        return Err(ApiError::Forbidden(
            "only the requester cancels a request".into(),
        ));
    }
    transition(
        &state,
        &caller,
        &id,
        ("pending", "cancelled"),
        json!({"comment": body.unwrap_or_default().comment}),
    )
    .await
}

/// `POST /v1/access-requests/{id}/token`: after approval, the requester mints. The request is
/// decided again with a fresh context; the token never outlives the approved window.
pub async fn mint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let principal = caller.principal.to_string();
    // Before anything is read or audited: refusals cost a write each.
    let requests_last_minute = admit(&state, &principal)?;
    let stored = load(&state, &id).await?;
    let r = &stored.record;
    if principal != r.principal {
        return Err(ApiError::Forbidden(
            "only the requester mints the token".into(),
        ));
    }
    refuse_revoked_subject(&state, &caller).await?;
    let now = state.now();
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let status = effective_status(&r.status, r.expires_at, now_i);
    if status != "approved" && status != "issued" {
        return Err(ApiError::Conflict { status });
    }
    let window_end = stored
        .decided_at
        .unwrap_or(0)
        .saturating_add(r.lifetime_secs);
    if now_i >= window_end {
        return Err(ApiError::Conflict {
            status: "approval window ended".into(),
        });
    }
    let resource: EntityRef = r.resource.parse().map_err(ApiError::Internal)?;
    let time = state.request_time(now);
    // The block, if any, was refused above.
    let (risk, _) = risk_for(
        &state,
        &caller,
        &principal,
        ip,
        time.hour,
        requests_last_minute,
    )
    .await?;
    let extra = match &r.context {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let request = DecisionRequest {
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        action: r.action.clone(),
        resource,
        context: DecisionContext::Access(RequestContext {
            source_ip: ip,
            risk_score: risk.score,
            mfa: caller.mfa,
            reason: r.reason.clone(),
            time,
            extra,
        }),
        scopes: r.scopes.clone(),
        duration: (r.duration_secs > 0)
            .then(|| Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0))),
    };
    let decision = crate::decision::decide(
        &state.policies.current(),
        &request,
        &state.config.grant_defaults(),
    )?;
    if decision.outcome == Outcome::Deny {
        return Ok((
            axum::http::StatusCode::FORBIDDEN,
            Json(json!({
                "request_id": id,
                "decision": "deny",
                "status": status,
                "reasons": decision.reasons,
                "policies": decision.policies,
                "risk": risk,
                "advice": decision.advice,
                "error": {"code": "denied", "message": "the request no longer passes the policies"},
            })),
        ));
    }
    let approvers: Vec<String> = state
        .store
        .approvals(&id)
        .await?
        .into_iter()
        .filter(|a| a.decision == "approve")
        .map(|a| a.approver)
        .collect();
    let (Some(approved_scopes), Some(approved_audience)) = (&r.granted_scopes, &r.audience) else {
        return Err(ApiError::Forbidden(
            "this request was approved before jitgate recorded approved grants; ask again".into(),
        ));
    };
    // The fresh decision may take away, never add to, what was approved.
    let approved = ApprovedGrant {
        scopes: approved_scopes,
        audience: approved_audience,
        approvals: approvers.len(),
    };
    let narrowed =
        within_approval(&decision, approved).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let remaining = u64::try_from(window_end - now_i).unwrap_or(0);
    let lifetime = decision.lifetime.min(Duration::from_secs(remaining));
    let grant = TokenGrant {
        subject: caller.principal.id.clone(),
        client_id: caller.client_id.clone(),
        audience: narrowed.audience,
        scopes: narrowed.scopes,
        lifetime,
        jit: JitClaims {
            principal: caller.principal.to_string(),
            request_id: id.clone(),
            action: r.action.clone(),
            resource: r.resource.clone(),
            policies: decision.policies.clone(),
            policy_version: decision.policy_version.clone(),
            approvers,
        },
    };
    let issued = state
        .tokens
        .mint(&grant, now)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut writes = Vec::new();
    if status == "approved" {
        writes.push(Write::RequireStatus {
            id: id.clone(),
            status: "approved".into(),
            at: now_i,
        });
        writes.push(Write::SetStatus {
            id: id.clone(),
            status: "issued".into(),
            at: stored.decided_at.unwrap_or(now_i),
        });
    }
    writes.extend(token_writes(
        &issued,
        &id,
        &caller,
        &grant.audience,
        now_i,
        json!({"approvers": grant.jit.approvers, "risk": risk}),
    ));
    // INVARIANT: the token leaves only once its records are durable.
    state.store.write(writes).await?;
    state
        .metrics
        .tokens_issued
        .with_label_values(&[issued.alg.as_str()])
        .inc();
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({
            "request_id": id,
            "decision": "allow",
            "status": "issued",
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "expires_at": rfc3339(issued.expires_at),
            "scope": issued.scope,
            "policies": decision.policies,
            "approvers": grant.jit.approvers,
            "risk": risk,
            "advice": decision.advice,
        })),
    ))
}
