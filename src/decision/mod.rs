//! Decisions: from an access request to allow, deny or escalate, with the grant that goes with
//! it, by the rules of DESIGN §4. No HTTP here: the service, the policy test runner and the
//! benchmarks all call [`PolicyPack::decide`].

mod approved;
mod context;
mod entity;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cedar_policy::{
    AuthorizationError, Authorizer, Decision as CedarDecision, Entities, Entity, EntityUid, Request,
};
use serde::{Deserialize, Serialize};

use crate::policy::{PolicyEffect, PolicyInfo, PolicyPack, ScopeVars};

pub use approved::{ApprovedGrant, BeyondApproval, MintGrant, within_approval};
pub use context::{DecisionContext, RequestContext, RequestTime, SERVER_CONTEXT_KEYS, Weekday};
pub use entity::EntityRef;

/// What is asked: who (with their groups), what, on which resource, in which context.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRequest {
    pub principal: EntityRef,
    /// The principal's parents (`Group::"oncall"`), from its identity.
    pub groups: Vec<EntityRef>,
    /// Action id, e.g. `read`.
    pub action: String,
    pub resource: EntityRef,
    pub context: DecisionContext,
    /// Scopes asked for; empty asks for everything the policies grant.
    pub scopes: Vec<String>,
    /// Lifetime asked for; `None` asks for the default.
    pub duration: Option<Duration>,
}

/// Lifetime and audience settings that apply when policies say nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantDefaults {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub default_audience: String,
}

impl Default for GrantDefaults {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(5 * 60),
            max_ttl: Duration::from_secs(60 * 60),
            default_audience: "jitgate".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Deny,
    Escalate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Escalate => "escalate",
        }
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum DenyReason {
    /// A forbid policy matched.
    Forbidden,
    /// A forbid policy failed to evaluate; that counts as matching (fail closed).
    ForbidError,
    /// No permit policy matched.
    NoPermit,
    /// Some requested scopes are not granted by the deciding policies.
    ScopeNotGranted { scopes: Vec<String> },
    /// A deciding policy's `@scope` expands to something that is not a safe scope token
    /// (e.g. the principal id has a space or a `*` in it).
    InvalidScope { scopes: Vec<String> },
}

impl DenyReason {
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::Forbidden => "forbidden",
            DenyReason::ForbidError => "forbid_error",
            DenyReason::NoPermit => "no_permit",
            DenyReason::ScopeNotGranted { .. } => "scope_not_granted",
            DenyReason::InvalidScope { .. } => "invalid_scope",
        }
    }
}

/// A policy that failed to evaluate for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluationError {
    pub policy: String,
    pub message: String,
}

/// The answer to a [`DecisionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// The deciding policies: the permits that grant (allow, escalate, or a scope denial), or the
    /// forbids that matched or failed (deny); empty when no permit matched.
    pub policies: Vec<String>,
    /// Empty unless denied.
    pub reasons: Vec<DenyReason>,
    /// Scopes of the token: what was asked for, or everything the deciding policies grant.
    pub scopes: Vec<String>,
    /// Token lifetime; zero when denied.
    #[serde(serialize_with = "as_secs")]
    pub lifetime: Duration,
    pub audience: Vec<String>,
    /// Human approvals needed before a token is minted (escalate only).
    pub approvals_required: u32,
    /// Whether the requester may skip the approvals by declaring a break-glass emergency.
    pub break_glass_allowed: bool,
    /// `@advice` of the deciding policies.
    pub advice: Vec<String>,
    pub policy_version: String,
    pub errors: Vec<EvaluationError>,
}

impl Decision {
    /// This decision turned into a denial for `reason`, keeping its deciding policies.
    fn denied(mut self, reason: DenyReason) -> Self {
        self.outcome = Outcome::Deny;
        self.reasons = vec![reason];
        self.scopes.clear();
        self.approvals_required = 0;
        self.break_glass_allowed = false;
        self
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Whether [`PolicyPack::decide_in`] evaluates only the policies that can apply (see
/// `slice`) or the whole pack, as Cedar alone would: the reference that slicing is tested and
/// benchmarked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slicing {
    On,
    Off,
}

/// A request the pack cannot decide because it is malformed: the caller's mistake, never a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown action `{action}`; valid actions: {}", .valid.join(", "))]
    UnknownAction { action: String, valid: Vec<String> },
    #[error("unknown entity type `{type_name}`; valid types: {}", .valid.join(", "))]
    UnknownEntityType {
        type_name: String,
        valid: Vec<String>,
    },
    #[error("context key `{0}` is set by the server and may not be sent")]
    ReservedContextKey(String),
    #[error("duration must be at least one second")]
    ZeroDuration,
    /// The resource is not in the pack's entities: jitgate grants access only to resources it
    /// knows, so that guard rails keyed on a resource's environment or attributes always apply.
    #[error("unknown resource `{0}`")]
    UnknownResource(String),
    #[error("{0}")]
    Invalid(String),
}

impl PolicyPack {
    /// Decides `request` by the rules of DESIGN §4.
    pub fn decide(
        &self,
        request: &DecisionRequest,
        defaults: &GrantDefaults,
    ) -> Result<Decision, RequestError> {
        if request.duration.is_some_and(|d| d.as_secs() == 0) {
            return Err(RequestError::ZeroDuration);
        }
        self.decide_in(request, defaults, Slicing::On)
    }

    /// [`decide`](Self::decide), evaluating the whole pack or only the slice that can apply.
    pub fn decide_in(
        &self,
        request: &DecisionRequest,
        defaults: &GrantDefaults,
        slicing: Slicing,
    ) -> Result<Decision, RequestError> {
        if request.duration.is_some_and(|d| d.as_secs() == 0) {
            return Err(RequestError::ZeroDuration);
        }
        let cedar_request = self.cedar_request(request)?;
        let entities = self.entities_with_principal(request)?;
        let slice = match (
            slicing,
            cedar_request.principal(),
            cedar_request.action(),
            cedar_request.resource(),
        ) {
            (Slicing::On, Some(principal), Some(action), Some(resource)) => {
                self.slice(principal, action, resource, &entities)
            }
            _ => None,
        };
        let policies = slice.as_deref().unwrap_or(&self.policy_set);
        let response = Authorizer::new().is_authorized(&cedar_request, policies, &entities);

        let mut errors: Vec<EvaluationError> = response
            .diagnostics()
            .errors()
            .map(|error| match error {
                AuthorizationError::PolicyEvaluationError(e) => EvaluationError {
                    policy: e.policy_id().to_string(),
                    message: e.inner().to_string(),
                },
            })
            .collect();
        errors.sort_by(|a, b| a.policy.cmp(&b.policy));
        let failed_forbids: BTreeSet<String> = errors
            .iter()
            .filter(|e| self.effect_of(&e.policy) == Some(PolicyEffect::Forbid))
            .map(|e| e.policy.clone())
            .collect();
        // Cedar reports policies in no particular order; sort so decisions are reproducible.
        let mut satisfied: Vec<&PolicyInfo> = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.policies.get(id.to_string().as_str()))
            .collect();
        satisfied.sort_by(|a, b| a.id.cmp(&b.id));

        let mut decision = Decision {
            outcome: Outcome::Deny,
            policies: Vec::new(),
            reasons: Vec::new(),
            scopes: Vec::new(),
            lifetime: Duration::ZERO,
            audience: Vec::new(),
            approvals_required: 0,
            break_glass_allowed: false,
            advice: Vec::new(),
            policy_version: self.version().to_owned(),
            errors,
        };

        // Rule 1: a matching forbid, or one that failed to evaluate, denies.
        let forbids: BTreeSet<&str> = satisfied
            .iter()
            .filter(|p| p.effect == PolicyEffect::Forbid)
            .map(|p| p.id.as_str())
            .chain(failed_forbids.iter().map(String::as_str))
            .collect();
        if !forbids.is_empty() || response.decision() == CedarDecision::Deny {
            if satisfied.iter().any(|p| p.effect == PolicyEffect::Forbid) {
                decision.reasons.push(DenyReason::Forbidden);
            }
            if !failed_forbids.is_empty() {
                decision.reasons.push(DenyReason::ForbidError);
            }
            if decision.reasons.is_empty() {
                decision.reasons.push(DenyReason::NoPermit);
            }
            let deciding: Vec<&PolicyInfo> = forbids
                .iter()
                .filter_map(|id| self.policies.get(*id))
                .collect();
            decision.advice = advice_of(&deciding);
            decision.policies = forbids.iter().map(|id| (*id).to_owned()).collect();
            return Ok(decision);
        }

        // Rule 2: a permit without @approval allows; only approval permits escalate.
        let permits: Vec<&PolicyInfo> = satisfied
            .into_iter()
            .filter(|p| p.effect == PolicyEffect::Permit)
            .collect();
        let direct: Vec<&PolicyInfo> = permits
            .iter()
            .copied()
            .filter(|p| p.grant.approvals.is_none())
            .collect();
        let deciding = if direct.is_empty() {
            decision.outcome = Outcome::Escalate;
            decision.approvals_required = permits
                .iter()
                .filter_map(|p| p.grant.approvals)
                .max()
                .unwrap_or(1);
            // Break-glass only when every deciding policy allows it: the strictest one wins.
            decision.break_glass_allowed = permits.iter().all(|p| p.grant.break_glass);
            permits
        } else {
            decision.outcome = Outcome::Allow;
            direct
        };
        decision.policies = deciding.iter().map(|p| p.id.clone()).collect();
        decision.advice = advice_of(&deciding);

        // Rule 3: granted scopes are the union over the deciding policies; asked-for scopes are
        // all granted or the request is denied.
        let vars = ScopeVars {
            principal_id: &request.principal.id,
            resource_id: &request.resource.id,
            resource_type: &request.resource.type_name,
            action: &request.action,
        };
        let mut granted = BTreeSet::new();
        let mut invalid = Vec::new();
        for policy in &deciding {
            let (scopes, bad) = policy.grant.expand_scopes(vars);
            granted.extend(scopes);
            for bad in bad {
                decision.errors.push(EvaluationError {
                    policy: policy.id.clone(),
                    message: format!(
                        "@scope `{}` expands to `{}`, which is not a safe scope token",
                        bad.template, bad.expanded
                    ),
                });
                invalid.push(bad.expanded);
            }
        }
        // A grant that cannot be expressed is not given in part: fail closed.
        if !invalid.is_empty() {
            return Ok(decision.denied(DenyReason::InvalidScope { scopes: invalid }));
        }
        if request.scopes.is_empty() {
            decision.scopes = granted.into_iter().collect();
        } else {
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
                return Ok(decision.denied(DenyReason::ScopeNotGranted { scopes: missing }));
            }
            decision.scopes = requested;
        }

        // Rule 4: lifetime = min(asked or default, every @ttl, max_ttl).
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
        Ok(decision)
    }

    fn effect_of(&self, id: &str) -> Option<PolicyEffect> {
        self.policies.get(id).map(|p| p.effect)
    }

    fn uid(&self, entity: &EntityRef) -> Result<EntityUid, RequestError> {
        if !self.entity_types.contains(&entity.type_name) {
            return Err(RequestError::UnknownEntityType {
                type_name: entity.type_name.clone(),
                valid: self.entity_types.iter().cloned().collect(),
            });
        }
        entity.to_uid()
    }

    fn cedar_request(&self, request: &DecisionRequest) -> Result<Request, RequestError> {
        let action = self
            .actions
            .get(&request.action)
            .ok_or_else(|| RequestError::UnknownAction {
                action: request.action.clone(),
                valid: self.action_names(),
            })?
            .clone();
        let principal = self.uid(&request.principal)?;
        let resource = self.uid(&request.resource)?;
        if self.entities.get(&resource).is_none() {
            return Err(RequestError::UnknownResource(request.resource.to_string()));
        }
        let duration_secs = request
            .duration
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let context =
            request
                .context
                .to_cedar(duration_secs, &self.schema, &action, &self.cache)?;
        let server_keys_only =
            matches!(&request.context, DecisionContext::Access(c) if c.extra.is_empty());
        if !server_keys_only {
            return Request::new(principal, action, resource, context, Some(&self.schema))
                .map_err(|e| RequestError::Invalid(e.to_string()));
        }
        let shape = (principal, action, resource);
        if self.cache.is_valid_shape(&shape) {
            let (principal, action, resource) = shape;
            return Request::new(principal, action, resource, context, None)
                .map_err(|e| RequestError::Invalid(e.to_string()));
        }
        let (principal, action, resource) = shape.clone();
        let checked = Request::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| RequestError::Invalid(e.to_string()))?;
        self.cache.remember_valid_shape(shape);
        Ok(checked)
    }

    /// The pack's entities plus the principal with the groups its identity gives it. A principal
    /// that `entities.json` also lists keeps its attributes and gains the identity's groups.
    fn entities_with_principal(
        &self,
        request: &DecisionRequest,
    ) -> Result<Arc<Entities>, RequestError> {
        let uid = self.uid(&request.principal)?;
        let mut groups = request
            .groups
            .iter()
            .map(|group| self.uid(group))
            .collect::<Result<Vec<_>, _>>()?;
        groups.sort();
        groups.dedup();
        // Adding an entity recomputes the hierarchy of the whole store, which costs more than
        // evaluating a small pack; the result depends only on the principal and its groups.
        self.cache
            .entities((uid, groups), |(uid, groups)| {
                let mut parents: HashSet<EntityUid> = groups.iter().cloned().collect();
                let principal = match self.entities.get(uid) {
                    Some(known) => {
                        let (uid, attrs, known_parents) = known.clone().into_inner();
                        parents.extend(known_parents);
                        Entity::new(uid, attrs, parents).map_err(|e| e.to_string())?
                    }
                    None => Entity::new_no_attrs(uid.clone(), parents),
                };
                self.entities
                    .clone()
                    .upsert_entities([principal], Some(&self.schema))
                    .map_err(|e| format!("principal: {e}"))
            })
            .map_err(RequestError::Invalid)
    }
}

fn advice_of(policies: &[&PolicyInfo]) -> Vec<String> {
    let mut advice: Vec<String> = Vec::new();
    for text in policies.iter().filter_map(|p| p.grant.advice.as_ref()) {
        if !advice.contains(text) {
            advice.push(text.clone());
        }
    }
    advice
}

#[cfg(test)]
mod slice_tests;
#[cfg(test)]
mod tests;
