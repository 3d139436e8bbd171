//! The claims of a jitgate access token (RFC 9068 with jitgate's `jit` object), as the server
//! signs them and a resource server reads them.

use serde::{Deserialize, Serialize};

/// The `aud` claim: a string for one audience, an array for several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut list: Vec<String>) -> Self {
        match list.len() {
            1 => Audience::One(list.remove(0)),
            _ => Audience::Many(list),
        }
    }
}

/// jitgate's own claims: which request and decision the token comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JitClaims {
    /// The full principal, Cedar form (e.g. `Service::"deployer"`): `sub` alone does not say
    /// whether a `User` or a `Service` holds the token.
    pub principal: String,
    pub request_id: String,
    pub action: String,
    /// Cedar form, e.g. `Database::"orders"`.
    pub resource: String,
    pub policies: Vec<String>,
    pub policy_version: String,
    pub approvers: Vec<String>,
}

/// Claims of an issued access token (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    pub scope: String,
    pub client_id: String,
    pub jit: JitClaims,
    /// The key a DPoP-bound token is bound to (RFC 9449 §6); absent for a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<crate::dpop::Confirmation>,
}
