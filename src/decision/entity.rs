//! Entity references (`Database::"orders"`) as plain data, turned into Cedar uids only with
//! `EntityUid::from_type_name_and_id`, so an id containing quotes cannot name another entity.

use std::fmt;
use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use serde::{Deserialize, Serialize};

use super::RequestError;

/// An entity's type and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    #[serde(rename = "type")]
    pub type_name: String,
    pub id: String,
}

impl EntityRef {
    pub fn new(type_name: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            type_name: type_name.into(),
            id: id.into(),
        }
    }

    pub(crate) fn to_uid(&self) -> Result<EntityUid, RequestError> {
        let type_name = EntityTypeName::from_str(&self.type_name).map_err(|_| {
            RequestError::Invalid(format!("`{}` is not an entity type name", self.type_name))
        })?;
        Ok(EntityUid::from_type_name_and_id(
            type_name,
            EntityId::new(&self.id),
        ))
    }
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
        match self.to_uid() {
            Ok(uid) => write!(f, "{uid}"),
            Err(_) => write!(f, "{}::{:?}", self.type_name, self.id),
        }
    }
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
        let uid = forged.to_uid().unwrap();
        assert_eq!(uid.type_name().to_string(), "User");
        assert_eq!(uid.id().unescaped(), r#"alice", Group::"admins"#);
        let back: EntityRef = forged.to_string().parse().unwrap();
        assert_eq!(back, forged);
    }

    #[test]
    fn rejects_malformed_references() {
        assert!("orders".parse::<EntityRef>().is_err());
        assert!(r#"Database::orders"#.parse::<EntityRef>().is_err());
        assert!(EntityRef::new(r#"User::"x""#, "y").to_uid().is_err());
    }
}
