//! A [`DecisionRequest`] as Cedar reads it: entity uids, the context, the request checked
//! against the schema, and the entity store with the principal in it. The costly steps are
//! cached in the pack (`cache`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
    Schema,
};

use super::{DecisionCache, PolicyPack};
use crate::decision::{DecisionContext, DecisionRequest, EntityRef, RequestContext, RequestError};

/// The uid of `entity`, built from its parts so that an id containing quotes cannot name
/// another entity.
pub(crate) fn uid_of(entity: &EntityRef) -> Result<EntityUid, RequestError> {
    let type_name = EntityTypeName::from_str(&entity.type_name).map_err(|_| {
        RequestError::Invalid(format!("`{}` is not an entity type name", entity.type_name))
    })?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(&entity.id),
    ))
}

/// Parses the Cedar form `Type::"id"`.
impl FromStr for EntityRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uid = EntityUid::from_str(s.trim())
            .map_err(|_| format!("`{s}` is not an entity reference like `Database::\"orders\"`"))?;
        Ok(Self {
            type_name: uid.type_name().to_string(),
            id: uid.id().unescaped().to_owned(),
        })
    }
}

/// Prints the Cedar form, with the id escaped.
impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match uid_of(self) {
            Ok(uid) => write!(f, "{uid}"),
            Err(_) => write!(f, "{}::{:?}", self.type_name, self.id),
        }
    }
}

impl PolicyPack {
    fn uid(&self, entity: &EntityRef) -> Result<EntityUid, RequestError> {
        if !self.entity_types.contains(&entity.type_name) {
            return Err(RequestError::UnknownEntityType {
                type_name: entity.type_name.clone(),
                valid: self.entity_types.iter().cloned().collect(),
            });
        }
        uid_of(entity)
    }

    pub(crate) fn cedar_request(&self, request: &DecisionRequest) -> Result<Request, RequestError> {
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
        let given = match &request.context {
            DecisionContext::Access(context) => context.extra.keys(),
            DecisionContext::Other(map) => map.keys(),
        };
        if let Some(unknown) = self.context_keys.unknown(&request.action, given) {
            return Err(RequestError::Invalid(unknown));
        }
        let context = match &request.context {
            DecisionContext::Access(context) => access_context(context, duration_secs, &self.cache),
            DecisionContext::Other(map) => other_context(map, &self.schema, &action),
        }?;
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
    pub(crate) fn entities_with_principal(
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

/// The context of an action other than an access request: the keys as given, checked against
/// the schema's context for the action.
fn other_context(
    map: &serde_json::Map<String, serde_json::Value>,
    schema: &Schema,
    action: &EntityUid,
) -> Result<Context, RequestError> {
    Context::from_json_value(
        serde_json::Value::Object(map.clone()),
        Some((schema, action)),
    )
    .map_err(|e| RequestError::Invalid(format!("context: {e}")))
}

/// The context of an access request. Server keys are built as values directly rather than
/// through `Context::from_json_value` with the schema, which costs more than evaluating the
/// policies; the whole context is then checked against the schema by `Request::new`.
fn access_context(
    context: &RequestContext,
    duration_secs: i64,
    cache: &DecisionCache,
) -> Result<Context, RequestError> {
    context.check_client_keys()?;
    let time = RestrictedExpression::new_record([
        (
            "unix".to_owned(),
            RestrictedExpression::new_long(context.time.unix),
        ),
        (
            "hour".to_owned(),
            RestrictedExpression::new_long(context.time.hour),
        ),
        (
            "weekday".to_owned(),
            RestrictedExpression::new_string(context.time.weekday.as_str().to_owned()),
        ),
    ])
    .map_err(|e| RequestError::Invalid(e.to_string()))?;
    let server = [
        ("source_ip".to_owned(), cache.ip(context.source_ip)),
        (
            "risk_score".to_owned(),
            RestrictedExpression::new_long(context.risk_score),
        ),
        (
            "mfa".to_owned(),
            RestrictedExpression::new_bool(context.mfa),
        ),
        (
            "reason".to_owned(),
            RestrictedExpression::new_string(context.reason.clone()),
        ),
        (
            "duration_secs".to_owned(),
            RestrictedExpression::new_long(duration_secs),
        ),
        ("time".to_owned(), time),
        (
            "dpop_bound".to_owned(),
            RestrictedExpression::new_bool(context.dpop_bound),
        ),
    ];
    let extension = context.extension.iter().flat_map(|e| {
        [
            (
                "extends".to_owned(),
                RestrictedExpression::new_string(e.extends.clone()),
            ),
            (
                "extended_secs".to_owned(),
                RestrictedExpression::new_long(e.extended_secs),
            ),
        ]
    });
    let server = server.into_iter().chain(extension);
    let cedar = if context.extra.is_empty() {
        Context::from_pairs(server)
    } else {
        Context::from_json_value(serde_json::Value::Object(context.extra.clone()), None)
            .map_err(|e| RequestError::Invalid(format!("context: {e}")))?
            .merge(server)
    };
    cedar.map_err(|e| RequestError::Invalid(format!("context: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_cedar_form() {
        let e: EntityRef = r#"Database::"orders""#.parse().unwrap();
        assert_eq!(e, EntityRef::new("Database", "orders"));
        assert_eq!(e.to_string(), r#"Database::"orders""#);
    }

    #[test]
    fn an_id_with_quotes_stays_one_id() {
        let forged = EntityRef::new("User", r#"alice", Group::"admins"#);
        let uid = uid_of(&forged).unwrap();
        assert_eq!(uid.type_name().to_string(), "User");
        assert_eq!(uid.id().unescaped(), r#"alice", Group::"admins"#);
        let back: EntityRef = forged.to_string().parse().unwrap();
        assert_eq!(back, forged);
    }

    #[test]
    fn rejects_malformed_references() {
        assert!("orders".parse::<EntityRef>().is_err());
        assert!(r#"Database::orders"#.parse::<EntityRef>().is_err());
        assert!(uid_of(&EntityRef::new(r#"User::"x""#, "y")).is_err());
    }
}
