//! What a caller could ask for (`GET /v1/requestable`): every requestable action with every
//! known resource it applies to, each decided by the live policies as if the caller asked now,
//! without a reason or client context keys. Nothing is recorded: it is a question about the
//! policies, not a request. A page at a time, so a pack with many resources stays bounded.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Map;

use super::evaluate::risk_for;
use super::{ApiError, App};
use crate::decision::{
    DecisionContext, DecisionRequest, DenyReason, Engine, EntityRef, Outcome, RequestContext, Stage,
};
use crate::identity::Caller;
use crate::risk::Risk;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

/// Which page to list.
#[derive(Debug, Clone, Default)]
pub struct RequestableQuery {
    pub limit: Option<usize>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// One action on one resource, and what asking for it now would do.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Requestable {
    pub action: String,
    /// Cedar form, e.g. `Database::"orders"`.
    pub resource: String,
    /// `allow`: a token at once; `escalate`: after `approvals_required` approvals; `deny`.
    pub decision: Outcome,
    pub approvals_required: u32,
    /// The stages of those approvals, in order.
    pub stages: Vec<Stage>,
    pub break_glass_allowed: bool,
    /// What the token would carry.
    pub scopes: Vec<String>,
    pub lifetime_secs: u64,
    pub policies: Vec<String>,
    pub reasons: Vec<DenyReason>,
    pub advice: Vec<String>,
    /// Why the policies could not decide it without the client context keys (then `deny`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A page of [`Requestable`]s, decided under `policy_version` with the caller's `risk` now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestablePage {
    pub policy_version: String,
    pub risk: Risk,
    pub requestable: Vec<Requestable>,
    /// The cursor of the following page.
    pub next: Option<String>,
}

/// A page of what `caller`, from `source_ip`, could ask for.
pub async fn requestable(
    app: &App,
    caller: &Caller,
    source_ip: IpAddr,
    query: RequestableQuery,
) -> Result<RequestablePage, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let start: usize = match &query.cursor {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| ApiError::InvalidRequest("malformed cursor".into()))?,
    };
    let now = app.now();
    let time = app.request_time(now);
    // Asking what could be asked is not asking: it does not count as a request for the
    // request-rate signal (the privileged-operation guard has counted it already).
    let (risk, _) = risk_for(app, caller, source_ip, time.hour, 0).await?;
    let pack = app.policies.current();
    let targets = pack.requestable_actions().into_iter().flat_map(|action| {
        pack.requestable_resources(&action)
            .into_iter()
            .map(move |resource| (action.clone(), resource))
    });
    let mut page: Vec<(String, EntityRef)> = targets.skip(start).take(limit + 1).collect();
    let next = (page.len() > limit).then(|| (start + limit).to_string());
    page.truncate(limit);
    let defaults = app.config.grant_defaults();
    let requestable = page
        .into_iter()
        .map(|(action, resource)| {
            let question = DecisionRequest {
                principal: caller.principal.clone(),
                groups: caller.groups.clone(),
                action: action.clone(),
                resource: resource.clone(),
                context: DecisionContext::Access(RequestContext {
                    source_ip,
                    risk_score: risk.score,
                    mfa: caller.mfa,
                    reason: String::new(),
                    time,
                    dpop_bound: false,
                    extension: None,
                    extra: Map::new(),
                }),
                scopes: Vec::new(),
                duration: None,
            };
            let resource = resource.to_string();
            match crate::decision::decide(&pack, &question, &defaults) {
                Ok(decision) => Requestable {
                    action,
                    resource,
                    decision: decision.outcome,
                    approvals_required: decision.approvals_required,
                    stages: decision.stages,
                    break_glass_allowed: decision.break_glass_allowed,
                    scopes: decision.scopes,
                    lifetime_secs: decision.lifetime.as_secs(),
                    policies: decision.policies,
                    reasons: decision.reasons,
                    advice: decision.advice,
                    error: None,
                },
                Err(e) => Requestable {
                    action,
                    resource,
                    decision: Outcome::Deny,
                    approvals_required: 0,
                    stages: Vec::new(),
                    break_glass_allowed: false,
                    scopes: Vec::new(),
                    lifetime_secs: 0,
                    policies: Vec::new(),
                    reasons: Vec::new(),
                    advice: Vec::new(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    Ok(RequestablePage {
        policy_version: pack.version().to_owned(),
        risk,
        requestable,
        next,
    })
}
