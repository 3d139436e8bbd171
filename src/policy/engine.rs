//! The pack as a decision [`Engine`]: Cedar evaluates the request against the policies that
//! can apply (its slice, see `slice`), and reports which were satisfied and which failed.

use cedar_policy::{
    ActionConstraint, AuthorizationError, Authorizer, PolicyId, ResourceConstraint,
};

use std::collections::HashSet;

use super::{PolicyInfo, PolicyPack, RESERVED_ACTIONS};
use crate::decision::{
    DecisionRequest, Effect, Engine, EntityRef, Evaluation, Failure, RequestError, ScopeVars,
};

impl Engine for PolicyPack {
    fn version(&self) -> &str {
        PolicyPack::version(self)
    }

    fn evaluate(&self, request: &DecisionRequest) -> Result<Evaluation<'_>, RequestError> {
        self.evaluate_in(request, Slicing::On)
    }

    /// Every action of the schema but action groups and the reserved `approve` and
    /// `administer`, sorted.
    fn requestable_actions(&self) -> Vec<String> {
        let groups: HashSet<String> = self
            .schema
            .action_groups()
            .map(|uid| uid.id().unescaped().to_owned())
            .collect();
        let mut names: Vec<String> = self
            .actions
            .keys()
            .filter(|name| !groups.contains(*name) && !RESERVED_ACTIONS.contains(&name.as_str()))
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn is_requestable(&self, action: &str) -> bool {
        self.actions.contains_key(action)
            && !RESERVED_ACTIONS.contains(&action)
            && !self
                .schema
                .action_groups()
                .any(|uid| uid.id().unescaped() == action)
    }

    fn targets_granting(&self, scopes: &[String], principal_id: &str) -> Vec<(String, EntityRef)> {
        let mut targets: Vec<(String, EntityRef)> = Vec::new();
        for info in self.policies().filter(|info| info.effect == Effect::Permit) {
            let Some(policy) = self.policy_set.policy(&PolicyId::new(&info.id)) else {
                continue;
            };
            let (ActionConstraint::Eq(action), ResourceConstraint::Eq(resource)) =
                (policy.action_constraint(), policy.resource_constraint())
            else {
                continue;
            };
            let action = action.id().unescaped().to_owned();
            if !self.is_requestable(&action) {
                continue;
            }
            let resource =
                EntityRef::new(resource.type_name().to_string(), resource.id().unescaped());
            let (granted, _) = info.grant.expand_scopes(ScopeVars {
                principal_id,
                resource_id: &resource.id,
                resource_type: &resource.type_name,
                action: &action,
            });
            let target = (action, resource);
            if scopes.iter().all(|scope| granted.contains(scope)) && !targets.contains(&target) {
                targets.push(target);
            }
        }
        targets
    }

    fn requestable_resources(&self, action: &str) -> Vec<EntityRef> {
        let Some(uid) = self
            .actions
            .get(action)
            .filter(|_| self.is_requestable(action))
        else {
            return Vec::new();
        };
        let Some(types) = self.schema.resources_for_action(uid) else {
            return Vec::new();
        };
        let types: HashSet<String> = types.map(ToString::to_string).collect();
        let mut resources: Vec<EntityRef> = self
            .entities
            .iter()
            .map(cedar_policy::Entity::uid)
            .filter(|uid| types.contains(&uid.type_name().to_string()))
            .map(|uid| EntityRef::new(uid.type_name().to_string(), uid.id().unescaped()))
            .collect();
        resources.sort_by(|a, b| (&a.type_name, &a.id).cmp(&(&b.type_name, &b.id)));
        resources
    }
}

/// The pack evaluated whole, as Cedar alone would: the reference that slicing is tested and
/// benchmarked against. Decides as the pack itself does.
#[derive(Debug, Clone, Copy)]
pub struct Unsliced<'a>(&'a PolicyPack);

impl Engine for Unsliced<'_> {
    fn version(&self) -> &str {
        self.0.version()
    }

    fn evaluate(&self, request: &DecisionRequest) -> Result<Evaluation<'_>, RequestError> {
        self.0.evaluate_in(request, Slicing::Off)
    }

    fn requestable_actions(&self) -> Vec<String> {
        self.0.requestable_actions()
    }

    fn is_requestable(&self, action: &str) -> bool {
        self.0.is_requestable(action)
    }

    fn targets_granting(&self, scopes: &[String], principal_id: &str) -> Vec<(String, EntityRef)> {
        self.0.targets_granting(scopes, principal_id)
    }

    fn requestable_resources(&self, action: &str) -> Vec<EntityRef> {
        self.0.requestable_resources(action)
    }
}

/// Whether to evaluate only the policies that can apply or the whole pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slicing {
    On,
    Off,
}

impl PolicyPack {
    /// This pack as an engine that evaluates every policy for every request.
    pub fn unsliced(&self) -> Unsliced<'_> {
        Unsliced(self)
    }

    fn evaluate_in(
        &self,
        request: &DecisionRequest,
        slicing: Slicing,
    ) -> Result<Evaluation<'_>, RequestError> {
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
        // Every policy of the set, or of a slice of it, is one of the pack's.
        let satisfied = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.policies.get(id.to_string().as_str()))
            .map(PolicyInfo::policy_ref)
            .collect();
        let failed = response
            .diagnostics()
            .errors()
            .filter_map(|error| match error {
                AuthorizationError::PolicyEvaluationError(e) => {
                    let policy = self.policies.get(e.policy_id().to_string().as_str())?;
                    Some(Failure {
                        policy: policy.policy_ref(),
                        message: e.inner().to_string(),
                    })
                }
            })
            .collect();
        Ok(Evaluation { satisfied, failed })
    }
}
