//! Warnings about policies that load but are likely mistakes (DESIGN §9.4): a permit that
//! reaches `approve` or `administer` without naming them (whoever it permits can then approve
//! requests or operate jitgate), and a policy whose resource constraint names an entity that
//! `entities.json` does not have, so it can never match. `jitgate check` prints them and exits
//! 0 (1 with `--deny-warnings`); the server logs them on every load.

use std::collections::HashSet;

use cedar_policy::{ActionConstraint, Entities, EntityUid, Policy, ResourceConstraint};

use super::RESERVED_ACTIONS;
use crate::decision::Effect;

/// The warnings about `policy` (a permit or forbid of effect `effect`), each a message.
pub(super) fn lint(
    id: &str,
    effect: Effect,
    policy: &Policy,
    actions: &Entities,
    reserved: &[EntityUid],
    resources: &KnownResources<'_>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if effect == Effect::Permit {
        for action in reserved {
            let reached = match policy.action_constraint() {
                ActionConstraint::Any => Some("it constrains no action".to_owned()),
                ActionConstraint::In(listed) if !listed.contains(action) => {
                    let ancestors: Vec<&EntityUid> = actions
                        .ancestors(action)
                        .map(Iterator::collect)
                        .unwrap_or_default();
                    listed
                        .iter()
                        .find(|group| ancestors.contains(group))
                        .map(|group| format!("it names the action group {group}"))
                }
                _ => None,
            };
            if let Some(how) = reached {
                warnings.push(format!(
                    "policy `{id}` permits {action} without naming it ({how}): whoever it \
                     permits may {}; name the actions it is for, or `{action}` itself if that is meant",
                    if action.id().unescaped() == "approve" {
                        "approve requests"
                    } else {
                        "administer jitgate"
                    }
                ));
            }
        }
    }
    // `==` needs the entity itself (jitgate refuses requests for unknown resources); `in`
    // needs it, or an entity under it.
    let unknown = match policy.resource_constraint() {
        ResourceConstraint::Eq(uid) => resources.entities.get(&uid).is_none().then_some(uid),
        ResourceConstraint::In(uid) | ResourceConstraint::IsIn(_, uid) => {
            (!resources.with_ancestors.contains(&uid)).then_some(uid)
        }
        ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
    };
    if let Some(uid) = unknown {
        warnings.push(format!(
            "policy `{id}` names the resource {uid}, which entities.json does not have: it can never match"
        ));
    }
    warnings
}

/// The entities of `entities.json`, and every uid one of them is or is under.
pub(super) struct KnownResources<'a> {
    entities: &'a Entities,
    with_ancestors: HashSet<EntityUid>,
}

impl<'a> KnownResources<'a> {
    pub(super) fn of(entities: &'a Entities) -> Self {
        let mut with_ancestors = HashSet::new();
        for entity in entities.iter() {
            let uid = entity.uid();
            if let Some(ancestors) = entities.ancestors(&uid) {
                with_ancestors.extend(ancestors.cloned());
            }
            with_ancestors.insert(uid);
        }
        Self {
            entities,
            with_ancestors,
        }
    }
}

/// The uids of the reserved actions among `actions` (the schema's).
pub(super) fn reserved_actions<'a>(actions: impl Iterator<Item = &'a EntityUid>) -> Vec<EntityUid> {
    actions
        .filter(|uid| RESERVED_ACTIONS.contains(&uid.id().unescaped()))
        .cloned()
        .collect()
}
