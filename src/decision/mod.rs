//! Decisions: from an access request to allow, deny or escalate, with the grant that goes with
//! it, by the rules of DESIGN §4. No HTTP here, and no policy language: an [`Engine`] (Cedar's
//! is `policy::PolicyPack`) says which policies apply, and [`decide`] applies the rules. The
//! service, the policy test runner and the benchmarks all call [`decide`].

mod approved;
mod context;
mod engine;
mod entity;
mod grant;
mod rules;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use approved::{ApprovedGrant, BeyondApproval, MintGrant, within_approval};
pub use context::{
    DecisionContext, Extension, RequestContext, RequestTime, SERVER_CONTEXT_KEYS, Weekday,
};
pub use engine::{Effect, Engine, Evaluation, Failure, PolicyRef};
pub use entity::EntityRef;
pub use grant::{
    DEFAULT_STAGE, Grant, InvalidExpansion, SCOPE_PLACEHOLDERS, ScopeVars, Stage, is_scope_token,
};
pub use rules::decide;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// Human approvals needed before a token is minted (escalate only): every stage's.
    pub approvals_required: u32,
    /// The stages of those approvals, in order (escalate only).
    pub stages: Vec<Stage>,
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
        self.stages.clear();
        self.break_glass_allowed = false;
        self
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A request the engine cannot decide because it is malformed: the caller's mistake, never a deny.
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

#[cfg(test)]
mod tests;
