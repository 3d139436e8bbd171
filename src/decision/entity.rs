//! Entity references (`Database::"orders"`) as plain data. Their text form is Cedar's, with its
//! escapes: `policy` parses and prints it (`FromStr` and `Display`), and turns a reference into a
//! Cedar uid only with `EntityUid::from_type_name_and_id`, so an id containing quotes cannot
//! name another entity.

use serde::{Deserialize, Serialize};

/// An entity's type and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
}
