//! Asking for access (DESIGN §3, §4): decided, recorded, and issued at once when allowed (or
//! by break-glass), left for approvers when escalated; and the dry run, the same decision with
//! nothing issued or created.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use super::answer::{DeniedAnswer, DryRunAnswer, IssuedAnswer, PendingAnswer};
pub use super::evaluate::AccessRequest;
use super::evaluate::{
    Evaluated, WhenRevoked, client_context, decision_event, evaluate, reason_of,
};
use super::issue::{count_issued, grant_of, issued_answer, sign, token_writes};
use super::{ApiError, App, AuditKind, RequestStatus};
use crate::clock::{rfc3339, stored_secs};
use crate::decision::{DEFAULT_STAGE, DecisionContext, Outcome};
use crate::notify::Event;
use crate::store::{AuditRecord, RequestRecord, Write};

/// What became of an access request.
#[derive(Debug, Clone)]
pub enum Asked {
    Issued(IssuedAnswer),
    Pending(PendingAnswer),
    Denied(DeniedAnswer),
}

/// Decides `command` for `caller`, records it and, when allowed, issues the token. Nothing is
/// answered, and no token leaves, before its records are durable.
pub async fn ask(
    app: &App,
    caller: crate::identity::Caller,
    source_ip: IpAddr,
    command: AccessRequest,
) -> Result<Asked, ApiError> {
    let break_glass_asked = command.break_glass;
    let not_before = scheduled_from(app, command.not_before, break_glass_asked)?;
    let evaluated = evaluate(app, caller, source_ip, command, WhenRevoked::Refuse).await?;
    let decision = &evaluated.decision;
    // Asked for anywhere but an escalation every deciding policy allows it for, break-glass
    // changes nothing.
    let break_glass =
        break_glass_asked && decision.outcome == Outcome::Escalate && decision.break_glass_allowed;
    let status = match decision.outcome {
        // Allowed ahead of its window: nothing is issued until it opens; the requester mints.
        Outcome::Allow if not_before.is_some() => RequestStatus::Approved,
        Outcome::Allow => RequestStatus::Issued,
        Outcome::Deny => RequestStatus::Denied,
        Outcome::Escalate if break_glass => RequestStatus::NeedsReview,
        Outcome::Escalate => RequestStatus::Pending,
    };
    let pending_until = evaluated.now + app.config.pending_ttl.as_secs();
    let record = RequestRecord {
        not_before: not_before.map(stored_secs),
        ..request_record(&evaluated, status, pending_until)
    };
    let principal = record.principal.clone();
    // The policies' outcome, and what became of the request: for break-glass, `escalate`
    // with `needs_review`, as the API answers it.
    let mut decided = decision_event(AuditKind::Decision, &evaluated);
    if let serde_json::Value::Object(data) = &mut decided.data {
        data.insert("status".into(), json!(status));
        data.insert("break_glass".into(), json!(break_glass));
        data.insert("not_before".into(), json!(not_before.map(rfc3339)));
    }
    let mut writes = vec![
        Write::Request(Box::new(record.clone())),
        Write::Audit(decided),
        Write::SourceSeen {
            principal,
            source_ip: evaluated.source_ip.to_string(),
            at: record.created_at,
        },
    ];
    let (asked, issued) = match status {
        RequestStatus::Issued | RequestStatus::NeedsReview => {
            let (answer, issued) = issue_now(app, &evaluated, &record, status, &mut writes)?;
            (Asked::Issued(answer), Some(issued))
        }
        RequestStatus::Pending => {
            let first = decision.stages.first().map(|s| s.name.clone());
            let opened = Event::Pending {
                stage: first.unwrap_or_else(|| DEFAULT_STAGE.to_owned()),
            };
            let queued = app.notifier.outbox(&opened, &record, app.now_ms());
            writes.extend(queued.into_iter().map(Write::Outbox));
            let answer = PendingAnswer {
                request_id: evaluated.request_id.clone(),
                decision: Outcome::Escalate,
                status,
                approvals_required: decision.approvals_required,
                stages: decision.stages.clone(),
                expires_at: rfc3339(pending_until),
                not_before: not_before.map(rfc3339),
                policies: decision.policies.clone(),
                risk: evaluated.risk.clone(),
                advice: decision.advice.clone(),
            };
            (Asked::Pending(answer), None)
        }
        RequestStatus::Approved => {
            let opens = not_before.unwrap_or(evaluated.now);
            let answer = PendingAnswer {
                request_id: evaluated.request_id.clone(),
                decision: Outcome::Allow,
                status,
                approvals_required: 0,
                stages: Vec::new(),
                expires_at: rfc3339(opens.saturating_add(decision.lifetime.as_secs())),
                not_before: Some(rfc3339(opens)),
                policies: decision.policies.clone(),
                risk: evaluated.risk.clone(),
                advice: decision.advice.clone(),
            };
            (Asked::Pending(answer), None)
        }
        _ => {
            let Evaluated {
                request_id,
                decision,
                risk,
                ..
            } = &evaluated;
            let answer = DeniedAnswer::new(request_id, status, decision.clone(), risk.clone());
            (Asked::Denied(answer), None)
        }
    };
    // INVARIANT: nothing is answered, and no token leaves, before its records are durable.
    app.store.write(writes).await?;
    app.notifier.wake();
    if let Some(issued) = &issued {
        count_issued(app, issued);
    }
    if break_glass {
        let action = evaluated.request.action.as_str();
        app.metrics.break_glass.with_label_values(&[action]).inc();
    }
    Ok(asked)
}

/// A request may schedule its window this far in the past (clocks differ); before that it is
/// a mistake.
const SCHEDULE_GRACE_SECS: u64 = 300;

/// When the window of a request asked with `not_before` opens: `None` for now (or a moment
/// ago); 400 past `max_schedule_ahead`, in the past, or with break-glass (an emergency is now).
fn scheduled_from(
    app: &App,
    not_before: Option<u64>,
    break_glass: bool,
) -> Result<Option<u64>, ApiError> {
    let Some(at) = not_before else {
        return Ok(None);
    };
    let now = app.now();
    if break_glass {
        return Err(ApiError::InvalidRequest(
            "break_glass is for access now; it takes no not_before".into(),
        ));
    }
    if at.saturating_add(SCHEDULE_GRACE_SECS) < now {
        return Err(ApiError::InvalidRequest(format!(
            "not_before {} is in the past",
            rfc3339(at)
        )));
    }
    let ahead = app.config.max_schedule_ahead.as_secs();
    if at > now.saturating_add(ahead) {
        return Err(ApiError::InvalidRequest(format!(
            "not_before {} is more than max_schedule_ahead ({}) ahead",
            rfc3339(at),
            humantime::format_duration(app.config.max_schedule_ahead)
        )));
    }
    Ok((at > now).then_some(at))
}

/// The token of an allowed (or break-glass) request, with its writes added to `writes`.
fn issue_now(
    app: &App,
    evaluated: &Evaluated,
    record: &RequestRecord,
    status: RequestStatus,
    writes: &mut Vec<Write>,
) -> Result<(IssuedAnswer, crate::token::IssuedToken), ApiError> {
    let Evaluated {
        request_id,
        now,
        caller,
        request,
        decision,
        risk,
        ..
    } = evaluated;
    let at = stored_secs(*now);
    let break_glass = status == RequestStatus::NeedsReview;
    if break_glass {
        writes.push(Write::Audit(AuditRecord {
            at,
            kind: AuditKind::BreakGlass.into(),
            request_id: Some(request_id.clone()),
            subject: Some(record.principal.clone()),
            data: json!({
                "principal": record.principal, "action": request.action,
                "resource": record.resource, "reason": record.reason,
                "policies": decision.policies, "approvals_skipped": decision.approvals_required,
            }),
        }));
        tracing::warn!(request.id = %request_id, principal.id = %record.principal, "BREAK-GLASS: token issued without approval; needs review");
    }
    let resource = request.resource.to_string();
    let mut grant = grant_of(
        caller,
        request_id,
        (&request.action, &resource),
        decision,
        Vec::new(),
    );
    grant.bound_to = evaluated.dpop_jkt.clone();
    let issued = sign(app, &grant, *now)?;
    writes.extend(token_writes(&issued, &grant, at, json!({})));
    if break_glass {
        let alert = Event::BreakGlass {
            jti: issued.jti.clone(),
            expires_at: issued.expires_at,
        };
        let queued = app.notifier.outbox(&alert, record, app.now_ms());
        writes.extend(queued.into_iter().map(Write::Outbox));
    }
    let mut answer = issued_answer(
        issued.clone(),
        &grant,
        decision,
        decision.outcome,
        risk.clone(),
    );
    answer.status = status;
    answer.break_glass = Some(break_glass);
    Ok((answer, issued))
}

/// What the store keeps of a decided request.
fn request_record(
    evaluated: &Evaluated,
    status: RequestStatus,
    pending_until: u64,
) -> RequestRecord {
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
    let secs = |d: Duration| stored_secs(d.as_secs());
    let extension = match &request.context {
        DecisionContext::Access(context) => context.extension.as_ref(),
        DecisionContext::Other(_) => None,
    };
    RequestRecord {
        id: request_id.clone(),
        created_at: stored_secs(*now),
        principal: caller.principal.to_string(),
        action: request.action.clone(),
        resource: request.resource.to_string(),
        scopes: request.scopes.clone(),
        duration_secs: request.duration.map_or(0, secs),
        reason: reason_of(request),
        source_ip: source_ip.to_string(),
        decision: decision.outcome.as_str().into(),
        status: status.into(),
        policies: decision.policies.clone(),
        policy_version: decision.policy_version.clone(),
        risk_score: risk.score,
        risk_signals: json!(risk.signals),
        approvals_required: i64::from(decision.approvals_required),
        expires_at: (status == RequestStatus::Pending).then(|| stored_secs(pending_until)),
        context: client_context(request),
        lifetime_secs: secs(decision.lifetime),
        granted_scopes: Some(decision.scopes.clone()),
        audience: Some(decision.audience.clone()),
        stages: super::stages::recorded(&decision.stages),
        not_before: None,
        extends: extension.map(|e| e.extends.clone()),
        extended_secs: extension.map(|e| e.extended_secs),
    }
}

/// The same decision as [`ask`], audited as a dry run: nothing issued or created.
pub async fn dry_run(
    app: &App,
    caller: crate::identity::Caller,
    source_ip: IpAddr,
    command: AccessRequest,
    explain: bool,
) -> Result<DryRunAnswer, ApiError> {
    let evaluated = evaluate(app, caller, source_ip, command, WhenRevoked::Decide).await?;
    let explanation = if explain {
        let pack = app.policies.current();
        // The pack that decided, unless a reload came in between: then none rather than
        // another pack's account.
        (pack.version() == evaluated.decision.policy_version)
            .then(|| pack.explain(&evaluated.request))
            .transpose()?
    } else {
        None
    };
    let mut writes = vec![Write::Audit(decision_event(AuditKind::DryRun, &evaluated))];
    if evaluated.decision.outcome == Outcome::Deny {
        writes.push(Write::DryRunDenied {
            principal: evaluated.caller.principal.to_string(),
            at: stored_secs(evaluated.now),
        });
    }
    app.store
        .write(writes)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let Evaluated {
        request_id,
        decision,
        risk,
        ..
    } = evaluated;
    Ok(DryRunAnswer {
        explanation,
        ..DryRunAnswer::new(request_id, decision, risk)
    })
}
