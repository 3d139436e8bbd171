//! The rules of DESIGN §4, from what an engine found to a [`Decision`]: forbids win, a direct
//! permit allows and approval permits escalate, scopes are the union over the deciding
//! policies, the lifetime the smallest limit, the audience every deciding policy's.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::engine::{Effect, Engine, Evaluation, PolicyRef};
use super::{
    Decision, DecisionRequest, DenyReason, EvaluationError, GrantDefaults, Outcome, RequestError,
    ScopeVars, Stage,
};

/// Decides `request` by the rules of DESIGN §4, on what `engine` finds for it.
pub fn decide<E: Engine + ?Sized>(
    engine: &E,
    request: &DecisionRequest,
    defaults: &GrantDefaults,
) -> Result<Decision, RequestError> {
    if request.duration.is_some_and(|d| d.as_secs() == 0) {
        return Err(RequestError::ZeroDuration);
    }
    let evaluation = engine.evaluate(request)?;
    Ok(apply(evaluation, engine.version(), request, defaults))
}

/// The decision for `request`, given what the engine found.
fn apply(
    evaluation: Evaluation<'_>,
    version: &str,
    request: &DecisionRequest,
    defaults: &GrantDefaults,
) -> Decision {
    let Evaluation {
        mut satisfied,
        mut failed,
    } = evaluation;
    // Engines report policies in no particular order; sort so decisions are reproducible.
    satisfied.sort_by(|a, b| a.id.cmp(b.id));
    failed.sort_by(|a, b| a.policy.id.cmp(b.policy.id));
    let mut decision = Decision {
        outcome: Outcome::Deny,
        policies: Vec::new(),
        reasons: Vec::new(),
        scopes: Vec::new(),
        lifetime: Duration::ZERO,
        audience: Vec::new(),
        approvals_required: 0,
        stages: Vec::new(),
        break_glass_allowed: false,
        advice: Vec::new(),
        policy_version: version.to_owned(),
        errors: failed
            .iter()
            .map(|f| EvaluationError {
                policy: f.policy.id.to_owned(),
                message: f.message.clone(),
            })
            .collect(),
    };

    // Rule 1: a matching forbid, or one that failed to evaluate, denies; so does no permit.
    let matched_forbids: Vec<PolicyRef<'_>> = satisfied
        .iter()
        .copied()
        .filter(|p| p.effect == Effect::Forbid)
        .collect();
    let failed_forbids: Vec<PolicyRef<'_>> = failed
        .iter()
        .map(|f| f.policy)
        .filter(|p| p.effect == Effect::Forbid)
        .collect();
    let permits: Vec<PolicyRef<'_>> = satisfied
        .into_iter()
        .filter(|p| p.effect == Effect::Permit)
        .collect();
    if !matched_forbids.is_empty() || !failed_forbids.is_empty() || permits.is_empty() {
        return denied_by_forbids(decision, &matched_forbids, &failed_forbids);
    }

    // Rule 2: a permit without an approval allows; only approval permits escalate.
    let deciding = choose_permits(&mut decision, permits);
    decision.policies = deciding.iter().map(|p| p.id.to_owned()).collect();
    decision.advice = advice_of(&deciding);

    // Rule 3: scopes.
    if let Err(reason) = grant_scopes(&mut decision, &deciding, request) {
        return decision.denied(reason);
    }

    // Rule 4: lifetime = min(asked or default, every policy's ttl, max_ttl).
    decision.lifetime = deciding
        .iter()
        .filter_map(|p| p.grant.ttl)
        .chain([
            request.duration.unwrap_or(defaults.default_ttl),
            defaults.max_ttl,
        ])
        .min()
        .unwrap_or(defaults.default_ttl);

    let audiences: BTreeSet<&str> = deciding
        .iter()
        .filter_map(|p| p.grant.audience.as_deref())
        .collect();
    decision.audience = if audiences.is_empty() {
        vec![defaults.default_audience.clone()]
    } else {
        audiences.into_iter().map(str::to_owned).collect()
    };
    decision
}

/// The denial by the forbids that matched or failed, or for want of a permit when none did.
fn denied_by_forbids(
    mut decision: Decision,
    matched: &[PolicyRef<'_>],
    failed: &[PolicyRef<'_>],
) -> Decision {
    if !matched.is_empty() {
        decision.reasons.push(DenyReason::Forbidden);
    }
    if !failed.is_empty() {
        decision.reasons.push(DenyReason::ForbidError);
    }
    if decision.reasons.is_empty() {
        decision.reasons.push(DenyReason::NoPermit);
    }
    // A forbid that both matched and failed (an engine may say so) counts once.
    let mut seen = HashSet::new();
    let mut forbids: Vec<PolicyRef<'_>> = matched
        .iter()
        .chain(failed)
        .copied()
        .filter(|p| seen.insert(p.id))
        .collect();
    forbids.sort_by(|a, b| a.id.cmp(b.id));
    decision.advice = advice_of(&forbids);
    decision.policies = forbids.iter().map(|p| p.id.to_owned()).collect();
    decision
}

/// The deciding permits: the direct ones, which allow; else the approval ones, which escalate
/// with the largest quorum any of them asks, and break-glass only when every one allows it.
fn choose_permits<'a>(decision: &mut Decision, permits: Vec<PolicyRef<'a>>) -> Vec<PolicyRef<'a>> {
    let direct: Vec<PolicyRef<'a>> = permits
        .iter()
        .copied()
        .filter(|p| p.grant.stages.is_none())
        .collect();
    if !direct.is_empty() {
        decision.outcome = Outcome::Allow;
        return direct;
    }
    decision.outcome = Outcome::Escalate;
    // Every policy's stages, each with the largest quorum any asks for it, in the order the
    // policies (sorted by id) name them: approving satisfies each policy's plan.
    let mut stages: Vec<Stage> = Vec::new();
    for stage in permits
        .iter()
        .filter_map(|p| p.grant.stages.as_ref())
        .flatten()
    {
        match stages.iter_mut().find(|s| s.name == stage.name) {
            Some(known) => known.required = known.required.max(stage.required),
            None => stages.push(stage.clone()),
        }
    }
    if stages.is_empty() {
        stages = Stage::default_of(1);
    }
    decision.approvals_required = stages.iter().map(|s| s.required).sum();
    decision.stages = stages;
    // The strictest policy wins.
    decision.break_glass_allowed = permits.iter().all(|p| p.grant.break_glass);
    permits
}

/// Granted scopes are the union over the deciding policies, placeholders expanded; asked-for
/// scopes are all granted or the request is denied. A grant that cannot be expressed is not
/// given in part: fail closed.
fn grant_scopes(
    decision: &mut Decision,
    deciding: &[PolicyRef<'_>],
    request: &DecisionRequest,
) -> Result<(), DenyReason> {
    let vars = ScopeVars {
        principal_id: &request.principal.id,
        resource_id: &request.resource.id,
        resource_type: &request.resource.type_name,
        action: &request.action,
    };
    let mut granted = BTreeSet::new();
    let mut invalid = Vec::new();
    for policy in deciding {
        let (scopes, bad) = policy.grant.expand_scopes(vars);
        granted.extend(scopes);
        for bad in bad {
            decision.errors.push(EvaluationError {
                policy: policy.id.to_owned(),
                message: format!(
                    "@scope `{}` expands to `{}`, which is not a safe scope token",
                    bad.template, bad.expanded
                ),
            });
            invalid.push(bad.expanded);
        }
    }
    if !invalid.is_empty() {
        return Err(DenyReason::InvalidScope { scopes: invalid });
    }
    if request.scopes.is_empty() {
        decision.scopes = granted.into_iter().collect();
        return Ok(());
    }
    let mut seen = HashSet::new();
    let requested: Vec<String> = request
        .scopes
        .iter()
        .filter(|s| seen.insert(s.as_str()))
        .cloned()
        .collect();
    let missing: Vec<String> = requested
        .iter()
        .filter(|s| !granted.contains(s.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(DenyReason::ScopeNotGranted { scopes: missing });
    }
    decision.scopes = requested;
    Ok(())
}

/// The advice of `policies`, each text once, in their order.
fn advice_of(policies: &[PolicyRef<'_>]) -> Vec<String> {
    let mut advice: Vec<String> = Vec::new();
    for text in policies.iter().filter_map(|p| p.grant.advice.as_ref()) {
        if !advice.contains(text) {
            advice.push(text.clone());
        }
    }
    advice
}
