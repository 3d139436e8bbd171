//! The token of an approved request: minted by its requester, decided again with a fresh
//! context, never beyond what was approved and never outliving the approved window.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::answer::{DeniedAnswer, IssuedAnswer};
use super::approval::load;
use super::evaluate::risk_for;
use super::issue::{count_issued, grant_of, issued_answer, sign, token_writes};
use super::refusal::{Attempt, refuse_blocked};
use super::{Answer, ApiError, App, RequestStatus};
use crate::clock::rfc3339;
use crate::decision::{
    ApprovedGrant, DecisionContext, DecisionRequest, EntityRef, Extension, Outcome, RequestContext,
    within_approval,
};
use crate::identity::Caller;
use crate::store::{StoredRequest, Write, effective_status};

/// What became of a mint.
#[derive(Debug, Clone)]
pub enum Minted {
    Issued(IssuedAnswer),
    /// The request no longer passes the policies.
    Denied(DeniedAnswer),
}

/// `caller` mints the token of approved request `id` from `source_ip`, bound to the DPoP key
/// `dpop_jkt` when the caller proved it holds one.
pub async fn mint(
    app: &App,
    caller: &Caller,
    source_ip: IpAddr,
    id: &str,
    dpop_jkt: Option<String>,
) -> Result<Minted, ApiError> {
    let principal = caller.principal.to_string();
    // Before anything is read or audited: refusals cost a write each.
    let requests_last_minute = app.admit(&principal)?;
    let stored = load(app, id).await?;
    if principal != stored.record.principal {
        return Err(ApiError::Forbidden(
            "only the requester mints the token".into(),
        ));
    }
    refuse_blocked(app, caller, Attempt::Token).await?;
    let now = app.now();
    let now_i = app.now_stored();
    let status = mintable_status(&stored, now_i)?;
    // The window opens at the decision, or later when the request was scheduled.
    let opens = stored
        .decided_at
        .unwrap_or(0)
        .max(stored.record.not_before.unwrap_or(0));
    if now_i < opens {
        return Err(ApiError::Conflict {
            status: format!(
                "scheduled: its window opens at {}",
                rfc3339(u64::try_from(opens).unwrap_or(0))
            ),
        });
    }
    let window_end = opens.saturating_add(stored.record.lifetime_secs);
    if now_i >= window_end {
        return Err(ApiError::Conflict {
            status: "approval window ended".into(),
        });
    }
    let time = app.request_time(now);
    // The block, if any, was refused above.
    let (risk, _) = risk_for(app, caller, source_ip, time.hour, requests_last_minute).await?;
    let request = decided_again(
        caller,
        &stored,
        (source_ip, dpop_jkt.is_some()),
        risk.score,
        time,
    )?;
    let pack = app.policies.current();
    let decision = crate::decision::decide(&pack, &request, &app.config.grant_defaults())?;
    if decision.outcome == Outcome::Deny {
        return Ok(Minted::Denied(DeniedAnswer::new(
            id, status, decision, risk,
        )));
    }
    let approvals = app.store.approvals(id).await?;
    let given = super::stages::approvals_by_stage(&approvals);
    let approvers: Vec<String> = (approvals.into_iter())
        .filter(|a| a.decision == Answer::Approve.as_str())
        .map(|a| a.approver)
        .collect();
    let r = &stored.record;
    let (Some(approved_scopes), Some(approved_audience)) = (&r.granted_scopes, &r.audience) else {
        return Err(ApiError::Forbidden(
            "this request was approved before jitgate recorded approved grants; ask again".into(),
        ));
    };
    // The fresh decision may take away, never add to, what was approved.
    let approved = ApprovedGrant {
        scopes: approved_scopes,
        audience: approved_audience,
        approvals: &given,
    };
    let narrowed =
        within_approval(&decision, approved).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let remaining = u64::try_from(window_end - now_i).unwrap_or(0);
    let mut grant = grant_of(
        caller,
        id,
        (&r.action, &r.resource),
        &decision,
        approvers.clone(),
    );
    grant.audience = narrowed.audience;
    grant.scopes = narrowed.scopes;
    grant.lifetime = decision.lifetime.min(Duration::from_secs(remaining));
    grant.bound_to = dpop_jkt;
    let issued = sign(app, &grant, now)?;
    let mut writes = Vec::new();
    if status == RequestStatus::Approved {
        writes.push(Write::RequireStatus {
            id: id.to_owned(),
            status: RequestStatus::Approved.into(),
            at: now_i,
        });
        writes.push(Write::SetStatus {
            id: id.to_owned(),
            status: RequestStatus::Issued.into(),
            at: stored.decided_at.unwrap_or(now_i),
        });
    }
    let extra = json!({"approvers": approvers, "risk": risk});
    writes.extend(token_writes(&issued, &grant, now_i, extra));
    // INVARIANT: the token leaves only once its records are durable.
    app.store.write(writes).await?;
    count_issued(app, &issued);
    let mut answer = issued_answer(issued, &grant, &decision, Outcome::Allow, risk);
    answer.approvers = Some(approvers);
    Ok(Minted::Issued(answer))
}

/// The status of `stored` if it may mint now (approved, or issued within its window); 409
/// with the status otherwise.
fn mintable_status(stored: &StoredRequest, now: i64) -> Result<RequestStatus, ApiError> {
    let r = &stored.record;
    let status = effective_status(&r.status, r.expires_at, now);
    match RequestStatus::parse(&status) {
        Some(mintable @ (RequestStatus::Approved | RequestStatus::Issued)) => Ok(mintable),
        _ => Err(ApiError::Conflict { status }),
    }
}

/// The approved request `stored`, asked again by `caller` in the context of now.
fn decided_again(
    caller: &Caller,
    stored: &StoredRequest,
    (source_ip, dpop_bound): (IpAddr, bool),
    risk_score: i64,
    time: crate::decision::RequestTime,
) -> Result<DecisionRequest, ApiError> {
    let r = &stored.record;
    let resource: EntityRef = r.resource.parse().map_err(ApiError::Internal)?;
    let extra = match &r.context {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    Ok(DecisionRequest {
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        action: r.action.clone(),
        resource,
        context: DecisionContext::Access(RequestContext {
            source_ip,
            risk_score,
            mfa: caller.mfa,
            reason: r.reason.clone(),
            time,
            dpop_bound,
            // An extension is decided again as the extension it is.
            extension: r.extends.clone().map(|extends| Extension {
                extends,
                extended_secs: r.extended_secs.unwrap_or(0),
            }),
            extra,
        }),
        scopes: r.scopes.clone(),
        duration: (r.duration_secs > 0)
            .then(|| Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0))),
    })
}
