//! The access an OAuth client asks for: RFC 9396 `authorization_details` with one entry of
//! type `jitgate_access` (the fields of an access request, DESIGN §3), or `scope` alone when
//! exactly one (action, resource) of the policies grants those scopes.

use serde::Serialize;
use serde_json::{Map, Value};

use super::client::OAuthForm;
use super::error::OAuthError;
use crate::access::ApiError;
use crate::access::ask::AccessRequest;
use crate::decision::{Engine, EntityRef};
use crate::http::access::AccessRequestBody;

/// The `authorization_details` type jitgate understands.
pub const JITGATE_ACCESS: &str = "jitgate_access";

/// The access granted, as the token response's `authorization_details` entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GrantedAccess {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub action: String,
    /// `Type::"id"`.
    pub resource: String,
    pub scopes: Vec<String>,
}

/// The access request `form` asks `principal_id` a token for.
pub fn requested_access(
    form: &OAuthForm,
    engine: &dyn Engine,
    principal_id: &str,
) -> Result<AccessRequest, OAuthError> {
    match (form.get("authorization_details"), form.get("scope")) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "send `authorization_details` or `scope`, not both",
        )),
        (Some(details), None) => from_details(details),
        (None, Some(scope)) => from_scope(scope, engine, principal_id),
        (None, None) => Err(OAuthError::invalid_request(
            "`authorization_details` (type jitgate_access) or `scope` is required",
        )),
    }
}

/// One `jitgate_access` entry of `authorization_details`.
fn from_details(details: &str) -> Result<AccessRequest, OAuthError> {
    let invalid = OAuthError::invalid_authorization_details;
    let entries: Vec<Map<String, Value>> = serde_json::from_str(details).map_err(|e| {
        invalid(format!(
            "authorization_details is not a JSON array of objects: {e}"
        ))
    })?;
    let [mut entry] = <[_; 1]>::try_from(entries).map_err(|entries: Vec<_>| {
        invalid(format!(
            "authorization_details has {} entries; jitgate grants one access per token",
            entries.len()
        ))
    })?;
    match entry.remove("type") {
        Some(Value::String(kind)) if kind == JITGATE_ACCESS => {}
        Some(other) => {
            return Err(invalid(format!(
                "authorization_details type {other} is not supported; use \"{JITGATE_ACCESS}\""
            )));
        }
        None => return Err(invalid("authorization_details entry has no `type`".into())),
    }
    let body: AccessRequestBody = serde_json::from_value(Value::Object(entry))
        .map_err(|e| invalid(format!("authorization_details: {e}")))?;
    AccessRequest::try_from(body).map_err(|e| match e {
        ApiError::InvalidRequest(m) => invalid(format!("authorization_details: {m}")),
        other => OAuthError::from(other),
    })
}

/// The one (action, resource) whose policies grant every scope of `scope` to `principal_id`.
fn from_scope(
    scope: &str,
    engine: &dyn Engine,
    principal_id: &str,
) -> Result<AccessRequest, OAuthError> {
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    let targets = engine.targets_granting(&scopes, principal_id);
    let (action, resource): (String, EntityRef) = match <[_; 1]>::try_from(targets) {
        Ok([target]) => target,
        Err(targets) if targets.is_empty() => {
            return Err(OAuthError::invalid_scope(format!(
                "no policy grants `{scope}` for one action on one resource; ask with authorization_details"
            )));
        }
        Err(targets) => {
            let named: Vec<String> = targets
                .iter()
                .map(|(action, resource)| format!("{action} on {resource}"))
                .collect();
            return Err(OAuthError::invalid_scope(format!(
                "`{scope}` is granted for {}; ask with authorization_details",
                named.join(", ")
            )));
        }
    };
    Ok(AccessRequest {
        action,
        resource,
        scopes,
        duration: None,
        reason: String::new(),
        context: Map::new(),
        break_glass: false,
        dpop_jkt: None,
        not_before: None,
        extension: None,
    })
}
