//! What every decision of an access request shares: the rate limit, the risk and the caller's
//! standing (one store read), the context the server computes, the decision with its metrics
//! and log line, and the audit record of it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::refusal::{Attempt, SubjectBlock, refuse_revoked};
use super::{ApiError, App, AuditKind};
use crate::decision::{
    Decision, DecisionContext, DecisionRequest, Engine, EntityRef, Extension, RequestContext,
    RequestError,
};
use crate::identity::Caller;
use crate::risk::{self, Observations, Risk};
use crate::store::AuditRecord;
use crate::token::new_jti;

/// What a caller asks for (DESIGN §3), checked for form by whoever received it.
#[derive(Debug, Clone)]
pub struct AccessRequest {
    pub action: String,
    pub resource: EntityRef,
    /// Empty asks for everything the policies grant.
    pub scopes: Vec<String>,
    /// `None` asks for the default lifetime.
    pub duration: Option<Duration>,
    pub reason: String,
    /// The client's context keys.
    pub context: Map<String, Value>,
    /// Declares an emergency: an escalation every deciding policy allows it for is issued at
    /// once and left for review.
    pub break_glass: bool,
    /// The thumbprint of the DPoP key the client proved it holds: the token is bound to it.
    pub dpop_jkt: Option<String>,
    /// Unix seconds the window of access opens (scheduled access); `None`: at once.
    pub not_before: Option<u64>,
    /// Set by the server for an extension of a live grant; never by a client.
    pub extension: Option<Extension>,
}

/// A decided request, before it is recorded.
pub(super) struct Evaluated {
    pub request_id: String,
    pub now: u64,
    pub caller: Caller,
    pub request: DecisionRequest,
    pub decision: Decision,
    pub risk: Risk,
    pub source_ip: IpAddr,
    /// The DPoP key the token is to be bound to.
    pub dpop_jkt: Option<String>,
}

/// What [`evaluate`] does for a caller whose subject is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenRevoked {
    /// 403 `revoked`, audited, before anything is decided (an access request).
    Refuse,
    /// Decide anyway (a dry run issues nothing).
    Decide,
}

const MAX_REASON_CHARS: usize = 1_000;
const MAX_SCOPES: usize = 64;

/// Rate limit, risk, and the decision itself.
pub(super) async fn evaluate(
    app: &App,
    caller: Caller,
    source_ip: IpAddr,
    command: AccessRequest,
    when_revoked: WhenRevoked,
) -> Result<Evaluated, ApiError> {
    let requests_last_minute = app.admit(&caller.principal.to_string())?;
    if command.reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if command.scopes.len() > MAX_SCOPES {
        return Err(ApiError::InvalidRequest(format!(
            "at most {MAX_SCOPES} scopes may be asked for"
        )));
    }
    let now = app.now();
    let time = app.request_time(now);
    let (risk, block) = risk_for(app, &caller, source_ip, time.hour, requests_last_minute).await?;
    if let (Some(block), WhenRevoked::Refuse) = (block, when_revoked) {
        return Err(refuse_revoked(app, &caller, Attempt::Token, block).await);
    }
    let dpop_jkt = command.dpop_jkt;
    let request = DecisionRequest {
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        action: command.action,
        resource: command.resource,
        context: DecisionContext::Access(RequestContext {
            source_ip,
            risk_score: risk.score,
            mfa: caller.mfa,
            reason: command.reason,
            time,
            dpop_bound: dpop_jkt.is_some(),
            extension: command.extension,
            extra: command.context,
        }),
        scopes: command.scopes,
        duration: command.duration,
    };
    let decision = decide_observed(app, &request)?;
    let request_id = format!("req_{}", new_jti());
    if let Some(shadow) = &app.shadow {
        let subject = caller.principal.to_string();
        shadow.offer(app, (&request_id, subject), &request, &decision);
    }
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
        source_ip,
        dpop_jkt,
    })
}

/// The decision of `request` under the live pack, counted in the metrics.
pub(super) fn decide_observed(app: &App, request: &DecisionRequest) -> Result<Decision, ApiError> {
    let started = Instant::now();
    let pack = app.policies.current();
    if !pack.is_requestable(&request.action) {
        return Err(RequestError::UnknownAction {
            action: request.action.clone(),
            valid: pack.requestable_actions(),
        }
        .into());
    }
    let decision = crate::decision::decide(&pack, request, &app.config.grant_defaults())?;
    let metrics = &app.metrics;
    metrics
        .decision_duration
        .observe(started.elapsed().as_secs_f64());
    metrics
        .decisions
        .with_label_values(&[decision.outcome.as_str(), request.action.as_str()])
        .inc();
    for policy in &decision.policies {
        metrics
            .policy_matches
            .with_label_values(&[policy.as_str()])
            .inc();
    }
    Ok(decision)
}

/// The risk of a request by `caller` from `source_ip` now, and the caller's subject block if
/// one is in force (one store query for both).
pub(super) async fn risk_for(
    app: &App,
    caller: &Caller,
    source_ip: IpAddr,
    hour: i64,
    requests_last_minute: usize,
) -> Result<(Risk, Option<SubjectBlock>), ApiError> {
    let now = app.now();
    let risk_config = &app.config.risk;
    let denials_since = match &risk_config.recent_denials {
        Some(config) => i64::try_from(now.saturating_sub(config.window.as_secs())).unwrap_or(0),
        // Counts nothing.
        None => i64::MAX,
    };
    let standing = app
        .store
        .standing(
            &caller.principal.to_string(),
            denials_since,
            &source_ip.to_string(),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let risk = risk::assess(
        risk_config,
        &Observations {
            source_ip,
            // A service has no second factor to show; it is not penalised for it unless asked.
            mfa: caller.mfa || (caller.api_key && !risk_config.no_mfa_for_api_keys),
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

/// The reason the requester gave.
pub(super) fn reason_of(request: &DecisionRequest) -> String {
    match &request.context {
        DecisionContext::Access(context) => context.reason.clone(),
        DecisionContext::Other(_) => String::new(),
    }
}

/// The client context keys of `request`, kept to decide an escalated request again.
pub(super) fn client_context(request: &DecisionRequest) -> Value {
    match &request.context {
        DecisionContext::Access(context) => Value::Object(context.extra.clone()),
        DecisionContext::Other(map) => Value::Object(map.clone()),
    }
}

/// The audit record of `evaluated` (a `decision` or a `dry_run`).
pub(super) fn decision_event(kind: AuditKind, evaluated: &Evaluated) -> AuditRecord {
    let Evaluated {
        request_id,
        now,
        caller,
        request,
        decision,
        risk,
        source_ip,
        ..
    } = evaluated;
    AuditRecord {
        at: crate::clock::stored_secs(*now),
        kind: kind.into(),
        request_id: Some(request_id.clone()),
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
            "source_ip": source_ip.to_string(),
            "decision": decision.outcome.as_str(),
            "policies": decision.policies,
            "reasons": decision.reasons,
            "scopes": decision.scopes,
            "lifetime_secs": decision.lifetime.as_secs(),
            "approvals_required": decision.approvals_required,
            "policy_version": decision.policy_version,
            "errors": decision.errors,
            "risk": risk,
            "context": recorded_context(request),
        }),
    }
}

/// The context the policies saw, as `jitgate test` cases and `jitgate replay` read it: the
/// server keys as computed and the client's keys, so a replay decides the same request.
fn recorded_context(request: &DecisionRequest) -> Value {
    match &request.context {
        DecisionContext::Access(context) => {
            let mut recorded = context.extra.clone();
            let server = json!({
                "source_ip": context.source_ip.to_string(),
                "risk_score": context.risk_score,
                "mfa": context.mfa,
                "reason": context.reason,
                "duration_secs": request.duration.map_or(0, |d| d.as_secs()),
                "time": context.time,
                "dpop_bound": context.dpop_bound,
            });
            if let Value::Object(server) = server {
                recorded.extend(server);
            }
            if let Some(extension) = &context.extension {
                recorded.insert("extends".into(), json!(extension.extends));
                recorded.insert("extended_secs".into(), json!(extension.extended_secs));
            }
            Value::Object(recorded)
        }
        DecisionContext::Other(map) => Value::Object(map.clone()),
    }
}
