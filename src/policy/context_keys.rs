//! The context keys the schema declares for each action, so that a context key nobody declared
//! (a typo in a test case, a client's misspelt key) is named as such, with the key meant,
//! rather than left to Cedar's message about the attribute it then finds missing.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::grant::edit_distance;

/// Action id → the attribute names of its context record.
#[derive(Debug, Clone, Default)]
pub struct ContextKeys(HashMap<String, BTreeSet<String>>);

impl ContextKeys {
    /// The keys of every action in `fragments` (the schema files in Cedar's JSON schema form):
    /// a context given inline or as a common type, in any namespace.
    pub fn of(fragments: &[Value]) -> Self {
        let namespaces = || {
            fragments
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|namespaces| namespaces.values())
        };
        let common: HashMap<&str, &Value> = namespaces()
            .filter_map(|ns| ns.get("commonTypes")?.as_object())
            .flat_map(|types| types.iter().map(|(name, ty)| (name.as_str(), ty)))
            .collect();
        let mut keys = HashMap::new();
        for actions in namespaces().filter_map(|ns| ns.get("actions")?.as_object()) {
            for (name, action) in actions {
                let context = action.get("appliesTo").and_then(|a| a.get("context"));
                let attributes =
                    context.map_or_else(BTreeSet::new, |c| attribute_names(c, &common));
                keys.insert(name.clone(), attributes);
            }
        }
        Self(keys)
    }

    /// An error naming the first key of `given` that action `action`'s context does not
    /// declare (and the declared key it most likely means); `None` when all are declared or
    /// the action is unknown here.
    pub fn unknown<'k>(
        &self,
        action: &str,
        given: impl IntoIterator<Item = &'k String>,
    ) -> Option<String> {
        let declared = self.0.get(action)?;
        let unknown = given.into_iter().find(|key| !declared.contains(*key))?;
        let meant = declared
            .iter()
            .map(|known| (edit_distance(unknown, known), known))
            .filter(|(distance, _)| *distance <= 2)
            .min();
        let listed = declared
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Some(match meant {
            Some((_, known)) => format!(
                "context key `{unknown}` is not in the schema's context of action `{action}`: did you mean `{known}`?"
            ),
            None => format!(
                "context key `{unknown}` is not in the schema's context of action `{action}` (it has: {listed})"
            ),
        })
    }
}

/// The attribute names of a record type, following one common-type name.
fn attribute_names(ty: &Value, common: &HashMap<&str, &Value>) -> BTreeSet<String> {
    let names = |record: &Value| -> Option<BTreeSet<String>> {
        Some(
            record
                .get("attributes")?
                .as_object()?
                .keys()
                .cloned()
                .collect(),
        )
    };
    if let Some(found) = names(ty) {
        return found;
    }
    let referenced = match ty.get("type").and_then(Value::as_str) {
        Some("EntityOrCommon") => ty.get("name").and_then(Value::as_str),
        other => other,
    };
    referenced
        .and_then(|name| common.get(name.rsplit("::").next().unwrap_or(name)))
        .and_then(|record| names(record))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_misspelt_key_is_named_with_the_one_meant() {
        let keys = ContextKeys::of(&[json!({"": {
            "commonTypes": {"Ctx": {"type": "Record", "attributes": {"ticket": {"type": "String"}}}},
            "actions": {
                "approve": {"appliesTo": {"context": {"type": "Record", "attributes": {
                    "stage": {"type": "String"}, "auth_age_secs": {"type": "Long"}}}}},
                "read": {"appliesTo": {"context": {"type": "EntityOrCommon", "name": "Ctx"}}},
                "sudo": {"appliesTo": {"context": {"type": "NS::Ctx"}}},
            },
        }})]);
        let given = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            keys.unknown("approve", &given(&["stage", "auth_age_secs"])),
            None
        );
        let typo = keys
            .unknown("approve", &given(&["auth_agee_secs"]))
            .unwrap();
        assert!(
            typo.contains("`auth_agee_secs`") && typo.contains("did you mean `auth_age_secs`?"),
            "{typo}"
        );
        let stranger = keys.unknown("read", &given(&["priority"])).unwrap();
        assert!(stranger.contains("(it has: ticket)"), "{stranger}");
        assert!(
            keys.unknown("sudo", &given(&["tickt"]))
                .unwrap()
                .contains("`ticket`")
        );
        assert_eq!(keys.unknown("deploy", &given(&["x"])), None);
    }
}
