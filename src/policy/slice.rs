//! Policy slicing: a request is evaluated against only the policies whose scope can match it,
//! instead of the whole pack. Cedar checks a policy's scope before its conditions, so a policy
//! left out could only ever have not matched: it would neither have been satisfied nor have
//! failed to evaluate. The answer is the same as the whole pack's
//! (`slice_tests::sliced_decisions_equal_whole_pack_decisions` checks that over random requests).
//!
//! A slice depends on the action, the resource, and the principal's type and ancestors (its
//! groups, transitively, as the request's entity store has them) — not on the principal's id,
//! so principals with the same groups share slices. Resources are static (they must be in
//! `entities.json`). Slices are built on first use and cached with the pack.

use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};

use super::PolicyPack;

/// What a slice depends on: action, resource, principal type, principal ancestors (sorted).
pub(crate) type SliceKey = (EntityUid, EntityUid, EntityTypeName, Vec<EntityUid>);

/// `b in a`, as Cedar reads it: reflexive, then through the hierarchy. (`is_ancestor_of` alone
/// is not reflexive for entities that exist.)
fn is_in(entities: &Entities, b: &EntityUid, a: &EntityUid) -> bool {
    a == b || entities.is_ancestor_of(a, b)
}

/// Whether a principal of `kind` with `ancestors` may be `uid` or in it. An entity of the
/// principal's own type may be the principal itself, whose id the key leaves out: kept.
fn principal_in(kind: &EntityTypeName, ancestors: &[EntityUid], uid: &EntityUid) -> bool {
    uid.type_name() == kind || ancestors.binary_search(uid).is_ok()
}

/// Whether `policy`'s scope can match the request `key` describes, judged with the schema's
/// action hierarchy and the pack's entities.
fn may_apply(policy: &Policy, key: &SliceKey, actions: &Entities, entities: &Entities) -> bool {
    let (action, resource, kind, ancestors) = key;
    let principal_matches = match policy.principal_constraint() {
        PrincipalConstraint::Any => true,
        PrincipalConstraint::Eq(uid) => uid.type_name() == kind,
        PrincipalConstraint::In(uid) => principal_in(kind, ancestors, &uid),
        PrincipalConstraint::Is(type_name) => type_name == *kind,
        PrincipalConstraint::IsIn(type_name, uid) => {
            type_name == *kind && principal_in(kind, ancestors, &uid)
        }
    };
    let action_matches = match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => uid == *action,
        ActionConstraint::In(groups) => groups.iter().any(|g| is_in(actions, action, g)),
    };
    principal_matches
        && action_matches
        && match policy.resource_constraint() {
            ResourceConstraint::Any => true,
            ResourceConstraint::Eq(uid) => uid == *resource,
            ResourceConstraint::In(uid) => is_in(entities, resource, &uid),
            ResourceConstraint::Is(type_name) => type_name == *resource.type_name(),
            ResourceConstraint::IsIn(type_name, uid) => {
                type_name == *resource.type_name() && is_in(entities, resource, &uid)
            }
        }
}

impl PolicyPack {
    /// The policies that can apply to a request of `principal` (as `request_entities` holds
    /// it) to `action` on `resource`, or `None` when the whole pack must be evaluated.
    pub(crate) fn slice(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
        request_entities: &Entities,
    ) -> Option<Arc<PolicySet>> {
        // The request adds the principal's identity groups to its entity: if the principal is
        // also the resource, the resource's ancestors are not the static ones.
        if principal == resource {
            return None;
        }
        let actions = self.action_entities.as_ref()?;
        let mut ancestors: Vec<EntityUid> =
            request_entities.ancestors(principal)?.cloned().collect();
        ancestors.sort();
        let key = (
            action.clone(),
            resource.clone(),
            principal.type_name().clone(),
            ancestors,
        );
        self.cache
            .slice(key, |key| {
                let policies = self
                    .policy_set
                    .policies()
                    .filter(|p| may_apply(p, key, actions, &self.entities))
                    .cloned();
                PolicySet::from_policies(policies)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .ok()
    }
}
