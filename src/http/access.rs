//! `POST /v1/access-requests` (decide, record, and issue) and `POST /v1/decisions` (the same
//! decision as a dry run: recorded in the audit trail, nothing issued or created).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::extract::{Authenticated, ClientIp, JsonBody};
use super::state::AppState;
use crate::clock::rfc3339;
use crate::decision::{
    Decision, DecisionContext, DecisionRequest, EntityRef, Outcome, RequestContext, RequestError,
};
use crate::identity::Caller;
use crate::notify::Event;
use crate::risk::{self, Observations, RequestRates, Risk};
use crate::store::{AuditRecord, RequestRecord, TokenRecord, Write};
use crate::token::{IssuedToken, JitClaims, TokenGrant, new_jti};

const MAX_REASON_CHARS: usize = 1_000;
const MAX_SCOPES: usize = 64;

/// The body of an access request (DESIGN §3).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestBody {
    action: String,
    resource: ResourceField,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    duration: Option<DurationField>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    break_glass: bool,
}

/// `{"type": "Database", "id": "orders"}` or `Database::"orders"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ResourceField {
    Cedar(String),
    Object(EntityRef),
}

/// `"15m"` or seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationField {
    Seconds(u64),
    Text(String),
}

/// A decided request, before it is recorded.
struct Evaluated {
    request_id: String,
    now: u64,
    caller: Caller,
    request: DecisionRequest,
    decision: Decision,
    risk: Risk,
    source_ip: String,
}

pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<AccessRequestBody>,
) -> Result<Response, ApiError> {
    let break_glass_asked = body.break_glass;
    let evaluated = evaluate(&state, caller, ip, body, Revoked::Refuse).await?;
    let Evaluated {
        request_id,
        now,
        caller,
        request,
        decision,
        risk,
        source_ip,
    } = evaluated;
    let principal = caller.principal.to_string();
    // Break-glass: an escalation whose every deciding policy allows it is issued at once and
    // left for an administrator to review. Asked for anywhere else, it changes nothing.
    let break_glass =
        break_glass_asked && decision.outcome == Outcome::Escalate && decision.break_glass_allowed;
    let status = match decision.outcome {
        Outcome::Allow => "issued",
        Outcome::Deny => "denied",
        Outcome::Escalate if break_glass => "needs_review",
        Outcome::Escalate => "pending",
    };
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let pending_until = now + state.config.pending_ttl.as_secs();
    let record = RequestRecord {
        id: request_id.clone(),
        created_at: now_i,
        principal: principal.clone(),
        action: request.action.clone(),
        resource: request.resource.to_string(),
        scopes: request.scopes.clone(),
        duration_secs: request
            .duration
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        reason: reason_of(&request),
        source_ip: source_ip.clone(),
        decision: decision.outcome.as_str().into(),
        status: status.into(),
        policies: decision.policies.clone(),
        policy_version: decision.policy_version.clone(),
        risk_score: risk.score,
        risk_signals: json!(risk.signals),
        approvals_required: i64::from(decision.approvals_required),
        expires_at: (status == "pending").then(|| i64::try_from(pending_until).unwrap_or(i64::MAX)),
        context: match &request.context {
            DecisionContext::Access(context) => Value::Object(context.extra.clone()),
            DecisionContext::Other(map) => Value::Object(map.clone()),
        },
        lifetime_secs: i64::try_from(decision.lifetime.as_secs()).unwrap_or(i64::MAX),
        granted_scopes: Some(decision.scopes.clone()),
        audience: Some(decision.audience.clone()),
    };
    let mut writes = vec![
        Write::Request(Box::new(record.clone())),
        Write::Audit(decision_event(
            "decision",
            &request_id,
            &caller,
            &request,
            &decision,
            &risk,
            &source_ip,
            now_i,
        )),
        Write::SourceSeen {
            principal: principal.clone(),
            source_ip,
            at: now_i,
        },
    ];

    let (status, body, issued_with) = match (decision.outcome, break_glass) {
        (Outcome::Allow, _) | (Outcome::Escalate, true) => {
            if break_glass {
                writes.push(Write::Audit(AuditRecord {
                    at: now_i,
                    kind: "break_glass".into(),
                    request_id: Some(request_id.clone()),
                    subject: Some(principal.clone()),
                    data: json!({
                        "principal": principal, "action": request.action,
                        "resource": request.resource.to_string(), "reason": reason_of(&request),
                        "policies": decision.policies, "approvals_skipped": decision.approvals_required,
                    }),
                }));
                tracing::warn!(request.id = %request_id, principal.id = %principal, "BREAK-GLASS: token issued without approval; needs review");
            }
            let grant = grant_of(&caller, &request_id, &request, &decision);
            let issued = state
                .tokens
                .mint(&grant, now)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            writes.extend(token_writes(
                &issued,
                &request_id,
                &caller,
                &decision.audience,
                now_i,
                json!({}),
            ));
            if break_glass {
                let alert = Event::BreakGlass {
                    jti: issued.jti.clone(),
                    expires_at: issued.expires_at,
                };
                let queued = state.notifier.outbox(&alert, &record, state.now_ms());
                writes.extend(queued.into_iter().map(Write::Outbox));
            }
            let body = json!({
                "request_id": request_id,
                "decision": decision.outcome.as_str(),
                "status": status,
                "break_glass": break_glass,
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": decision.lifetime.as_secs(),
                "expires_at": rfc3339(issued.expires_at),
                "scope": issued.scope,
                "policies": decision.policies,
                "risk": risk,
                "advice": decision.advice,
            });
            (StatusCode::CREATED, body, Some(issued.alg))
        }
        (Outcome::Escalate, false) => {
            let queued = state
                .notifier
                .outbox(&Event::Pending, &record, state.now_ms());
            writes.extend(queued.into_iter().map(Write::Outbox));
            let body = json!({
                "request_id": request_id,
                "decision": "escalate",
                "status": "pending",
                "approvals_required": decision.approvals_required,
                "expires_at": rfc3339(pending_until),
                "policies": decision.policies,
                "risk": risk,
                "advice": decision.advice,
            });
            (StatusCode::ACCEPTED, body, None)
        }
        (Outcome::Deny, _) => {
            let body = json!({
                "request_id": request_id,
                "decision": "deny",
                "status": "denied",
                "reasons": decision.reasons,
                "policies": decision.policies,
                "risk": risk,
                "advice": decision.advice,
                "error": {"code": "denied", "message": deny_message(&decision)},
            });
            (StatusCode::FORBIDDEN, body, None)
        }
    };
    // INVARIANT: nothing is answered, and no token leaves, before its records are durable.
    state.store.write(writes).await?;
    state.notifier.wake();
    if let Some(alg) = issued_with {
        state
            .metrics
            .tokens_issued
            .with_label_values(&[alg.as_str()])
            .inc();
    }
    Ok((status, Json(body)).into_response())
}

/// The dry run: the same decision, audited as such, nothing issued.
pub async fn dry_run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<AccessRequestBody>,
) -> Result<Response, ApiError> {
    let evaluated = evaluate(&state, caller, ip, body, Revoked::Decide).await?;
    let Evaluated {
        request_id,
        now,
        caller,
        request,
        decision,
        risk,
        source_ip,
    } = evaluated;
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let mut writes = vec![Write::Audit(decision_event(
        "dry_run",
        &request_id,
        &caller,
        &request,
        &decision,
        &risk,
        &source_ip,
        now_i,
    ))];
    if decision.outcome == Outcome::Deny {
        writes.push(Write::DryRunDenied {
            principal: caller.principal.to_string(),
            at: now_i,
        });
    }
    state
        .store
        .write(writes)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({
        "request_id": request_id,
        "decision": decision.outcome.as_str(),
        "dry_run": true,
        "policies": decision.policies,
        "reasons": decision.reasons,
        "scope": decision.scopes.join(" "),
        "expires_in": decision.lifetime.as_secs(),
        "audience": decision.audience,
        "approvals_required": decision.approvals_required,
        "break_glass_allowed": decision.break_glass_allowed,
        "risk": risk,
        "advice": decision.advice,
        "policy_version": decision.policy_version,
    }))
    .into_response())
}

/// What [`evaluate`] does for a caller whose subject is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoked {
    /// 403 `revoked`, audited, before anything is decided (an access request).
    Refuse,
    /// Decide anyway (a dry run issues nothing).
    Decide,
}

/// Rate limit, risk, and the decision itself.
async fn evaluate(
    state: &AppState,
    caller: Caller,
    ip: std::net::IpAddr,
    body: AccessRequestBody,
    revoked: Revoked,
) -> Result<Evaluated, ApiError> {
    let principal = caller.principal.to_string();
    let requests_last_minute = admit(state, &principal)?;

    let resource = match body.resource {
        ResourceField::Object(entity) => entity,
        ResourceField::Cedar(text) => text.parse().map_err(ApiError::InvalidRequest)?,
    };
    let duration = match body.duration {
        None => None,
        Some(DurationField::Seconds(secs)) => Some(Duration::from_secs(secs)),
        Some(DurationField::Text(text)) => Some(
            humantime::parse_duration(&text)
                .map_err(|e| ApiError::InvalidRequest(format!("duration `{text}`: {e}")))?,
        ),
    };
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if body.scopes.len() > MAX_SCOPES {
        return Err(ApiError::InvalidRequest(format!(
            "at most {MAX_SCOPES} scopes may be asked for"
        )));
    }

    let now = state.now();
    let time = state.request_time(now);
    let (risk, block) = risk_for(
        state,
        &caller,
        &principal,
        ip,
        time.hour,
        requests_last_minute,
    )
    .await?;
    if let (Some(block), Revoked::Refuse) = (block, revoked) {
        return Err(refuse(state, &caller, block).await);
    }

    let request = DecisionRequest {
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        action: body.action,
        resource,
        context: DecisionContext::Access(RequestContext {
            source_ip: ip,
            risk_score: risk.score,
            mfa: caller.mfa,
            reason,
            time,
            extra: body.context,
        }),
        scopes: body.scopes,
        duration,
    };
    let started = Instant::now();
    let pack = state.policies.current();
    if !pack.is_requestable(&request.action) {
        return Err(RequestError::UnknownAction {
            action: request.action,
            valid: pack.requestable_actions(),
        }
        .into());
    }
    let decision = crate::decision::decide(&pack, &request, &state.config.grant_defaults())?;
    state
        .metrics
        .decision_duration
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .decisions
        .with_label_values(&[decision.outcome.as_str(), request.action.as_str()])
        .inc();
    for policy in &decision.policies {
        state
            .metrics
            .policy_matches
            .with_label_values(&[policy.as_str()])
            .inc();
    }
    let request_id = format!("req_{}", new_jti());
    tracing::info!(
        request.id = %request_id,
        principal.id = %caller.principal,
        action = %request.action,
        resource = %request.resource,
        decision = decision.outcome.as_str(),
        policies = ?decision.policies,
        risk.score = risk.score,
        policy.version = %decision.policy_version,
        "decision"
    );
    Ok(Evaluated {
        request_id,
        now,
        caller,
        request,
        decision,
        risk,
        source_ip: ip.to_string(),
    })
}

/// A subject revocation in force: it refuses the caller new tokens.
pub(super) struct SubjectBlock {
    id: String,
    reason: String,
}

/// 403 `revoked` (audited) while a subject revocation refuses the caller new tokens.
pub(super) async fn refuse_revoked_subject(
    state: &AppState,
    caller: &Caller,
) -> Result<(), ApiError> {
    match state
        .store
        .subject_block(&caller.principal.to_string())
        .await?
    {
        Some(block) => Err(refuse(
            state,
            caller,
            SubjectBlock {
                id: block.id,
                reason: block.reason,
            },
        )
        .await),
        None => Ok(()),
    }
}

/// The refusal of `caller` under `block`, audited.
async fn refuse(state: &AppState, caller: &Caller, block: SubjectBlock) -> ApiError {
    let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
    let audited = state
        .store
        .write(vec![Write::Audit(AuditRecord {
            at: now,
            kind: "request.refused".into(),
            request_id: None,
            subject: Some(caller.principal.to_string()),
            data: json!({"reason": "subject_revoked", "revocation": block.id}),
        })])
        .await;
    match audited {
        Ok(()) => ApiError::Revoked(block.reason),
        Err(e) => e.into(),
    }
}

/// The token an allowed `request` of `caller` gets, as `decision` grants it.
pub(super) fn grant_of(
    caller: &Caller,
    request_id: &str,
    request: &DecisionRequest,
    decision: &Decision,
) -> TokenGrant {
    TokenGrant {
        subject: caller.principal.id.clone(),
        client_id: caller.client_id.clone(),
        audience: decision.audience.clone(),
        scopes: decision.scopes.clone(),
        lifetime: decision.lifetime,
        jit: JitClaims {
            principal: caller.principal.to_string(),
            request_id: request_id.to_owned(),
            action: request.action.clone(),
            resource: request.resource.to_string(),
            policies: decision.policies.clone(),
            policy_version: decision.policy_version.clone(),
            approvers: Vec::new(),
        },
    }
}

/// What the store keeps of an issued token (never the token): its record, and the audit event
/// with `extra` fields merged in.
pub(super) fn token_writes(
    issued: &IssuedToken,
    request_id: &str,
    caller: &Caller,
    audience: &[String],
    at: i64,
    extra: Value,
) -> [Write; 3] {
    let mut data = json!({
        "jti": issued.jti, "kid": issued.kid, "alg": issued.alg.as_str(),
        "exp": issued.expires_at, "scope": issued.scope, "aud": audience,
    });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
    }
    let principal = caller.principal.to_string();
    [
        Write::RequireNotRevoked {
            subject: principal.clone(),
            request_id: request_id.to_owned(),
        },
        Write::Token(TokenRecord {
            jti: issued.jti.clone(),
            request_id: request_id.to_owned(),
            subject: principal.clone(),
            kid: issued.kid.clone(),
            scope: issued.scope.clone(),
            issued_at: at,
            expires_at: i64::try_from(issued.expires_at).unwrap_or(i64::MAX),
        }),
        Write::Audit(AuditRecord {
            at,
            kind: "token.issued".into(),
            request_id: Some(request_id.to_owned()),
            subject: Some(principal),
            data,
        }),
    ]
}

/// The risk of a request by `caller` from `ip` now, and the caller's subject block if one is
/// in force (one store query for both).
pub(super) async fn risk_for(
    state: &AppState,
    caller: &Caller,
    principal: &str,
    ip: std::net::IpAddr,
    hour: i64,
    requests_last_minute: usize,
) -> Result<(Risk, Option<SubjectBlock>), ApiError> {
    let now = state.now();
    let risk_config = &state.config.risk;
    let denials_since = match &risk_config.recent_denials {
        Some(config) => i64::try_from(now.saturating_sub(config.window.as_secs())).unwrap_or(0),
        // Counts nothing.
        None => i64::MAX,
    };
    let standing = state
        .store
        .standing(principal, denials_since, &ip.to_string())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let risk = risk::assess(
        risk_config,
        &Observations {
            source_ip: ip,
            mfa: caller.mfa,
            hour,
            recent_denials: standing.recent_denials,
            requests_last_minute,
            seen_from_ip: risk_config.new_source_ip.is_none() || standing.seen_from,
        },
    );
    let block = standing
        .block
        .map(|(id, reason)| SubjectBlock { id, reason });
    Ok((risk, block))
}

/// Counts an access request (or dry run, or mint) of `principal` against the rate limit.
pub(super) fn admit(state: &AppState, principal: &str) -> Result<usize, ApiError> {
    let limit = state.config.rate_limit.per_principal_per_minute as usize;
    within_limit(&state.rates, principal, limit)
}

/// Counts any other operation of `principal` against its own limit.
pub(super) fn admit_operation(state: &AppState, principal: &str) -> Result<(), ApiError> {
    let limit = state.config.rate_limit.operations_per_principal_per_minute as usize;
    within_limit(&state.operation_rates, principal, limit).map(|_| ())
}

fn within_limit(rates: &RequestRates, principal: &str, limit: usize) -> Result<usize, ApiError> {
    rates
        .admit(principal, limit, Instant::now())
        .map_err(|wait| ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        })
}

fn reason_of(request: &DecisionRequest) -> String {
    match &request.context {
        DecisionContext::Access(context) => context.reason.clone(),
        DecisionContext::Other(_) => String::new(),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one audit record gathers every part of a decision"
)]
fn decision_event(
    kind: &str,
    request_id: &str,
    caller: &Caller,
    request: &DecisionRequest,
    decision: &Decision,
    risk: &Risk,
    source_ip: &str,
    at: i64,
) -> AuditRecord {
    AuditRecord {
        at,
        kind: kind.into(),
        request_id: Some(request_id.into()),
        subject: Some(caller.principal.to_string()),
        data: json!({
            "principal": caller.principal.to_string(),
            "groups": caller.groups.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "client_id": caller.client_id,
            "action": request.action,
            "resource": request.resource.to_string(),
            "scopes_requested": request.scopes,
            "duration_secs": request.duration.map(|d| d.as_secs()),
            "reason": reason_of(request),
            "source_ip": source_ip,
            "decision": decision.outcome.as_str(),
            "policies": decision.policies,
            "reasons": decision.reasons,
            "scopes": decision.scopes,
            "lifetime_secs": decision.lifetime.as_secs(),
            "approvals_required": decision.approvals_required,
            "policy_version": decision.policy_version,
            "errors": decision.errors,
            "risk": risk,
        }),
    }
}

fn deny_message(decision: &Decision) -> String {
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code()).collect();
    format!("access denied ({})", codes.join(", "))
}
