//! The seam between the rules of DESIGN §4 and the policy language: an [`Engine`] says which
//! policies apply to a request and which failed to evaluate; [`decide`](super::decide) does
//! the rest. Cedar (`policy::PolicyPack`) is one engine; another is one more implementation.

use std::sync::Arc;

use serde::Serialize;

use super::{DecisionRequest, EntityRef, Grant, RequestError};

/// Whether a policy grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Permit,
    Forbid,
}

/// A policy of an engine, as the rules read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRef<'a> {
    /// Stable across reloads; recorded with every decision.
    pub id: &'a str,
    pub effect: Effect,
    pub grant: &'a Grant,
}

/// A policy that failed to evaluate for a request. The rules count a failed forbid as a
/// matching one (fail closed) and skip a failed permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<'a> {
    pub policy: PolicyRef<'a>,
    pub message: String,
}

/// What an engine found for one request, in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation<'a> {
    /// Policies whose scope and conditions hold.
    pub satisfied: Vec<PolicyRef<'a>>,
    pub failed: Vec<Failure<'a>>,
}

/// A policy engine with its loaded policies.
pub trait Engine {
    /// The version of the policies, recorded with every decision and token.
    fn version(&self) -> &str;

    /// Evaluates every policy that can apply to `request`. A request the engine cannot
    /// evaluate (an unknown action, entity type or resource, a context its schema refuses) is
    /// the caller's mistake: an error, never a denial.
    fn evaluate(&self, request: &DecisionRequest) -> Result<Evaluation<'_>, RequestError>;

    /// The actions principals may ask a token for, sorted: the reserved `approve` and
    /// `administer` are the engine's to ask, never a requester's.
    fn requestable_actions(&self) -> Vec<String>;

    /// Whether `action` is one of [`Engine::requestable_actions`], without building the list:
    /// it is asked on every request.
    fn is_requestable(&self, action: &str) -> bool;

    /// The (action, resource) pairs whose permit policies name one action and one resource
    /// (`==`) and grant every scope of `scopes` to `principal_id`, each once: how an OAuth
    /// client asking by `scope` alone is understood (it is, only when there is exactly one).
    fn targets_granting(&self, scopes: &[String], principal_id: &str) -> Vec<(String, EntityRef)>;

    /// The resources `action` may be asked for, sorted: the known entities of the types the
    /// action applies to. Empty for an action that is not requestable.
    fn requestable_resources(&self, action: &str) -> Vec<EntityRef>;
}

/// The engine a reload swaps in and out is shared: `decide(&current, …)`.
impl<E: Engine + ?Sized> Engine for Arc<E> {
    fn version(&self) -> &str {
        E::version(self)
    }

    fn evaluate(&self, request: &DecisionRequest) -> Result<Evaluation<'_>, RequestError> {
        E::evaluate(self, request)
    }

    fn requestable_actions(&self) -> Vec<String> {
        E::requestable_actions(self)
    }

    fn is_requestable(&self, action: &str) -> bool {
        E::is_requestable(self, action)
    }

    fn targets_granting(&self, scopes: &[String], principal_id: &str) -> Vec<(String, EntityRef)> {
        E::targets_granting(self, scopes, principal_id)
    }

    fn requestable_resources(&self, action: &str) -> Vec<EntityRef> {
        E::requestable_resources(self, action)
    }
}
