//! What a policy grants — scopes, lifetime, audience, approvals, break-glass, advice — as the
//! rules of DESIGN §4 read it, whatever engine the policy is written for; and the expansion of
//! a grant's scope templates for one request. How an engine's policies state their grant
//! (Cedar's `@scope(…)` annotations) is the engine's business.

use std::time::Duration;

use serde::Serialize;

/// Placeholders a scope template may contain, expanded per request.
pub const SCOPE_PLACEHOLDERS: [&str; 4] = [
    "{principal.id}",
    "{resource.id}",
    "{resource.type}",
    "{action}",
];

/// The stage of a request that escalated with `@approval` rather than `@stages`.
pub const DEFAULT_STAGE: &str = "default";

/// One stage of the approvals a grant needs: its name and how many distinct approvers must
/// approve in it. Stages are passed in order; each approver acts in at most one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Stage {
    pub name: String,
    pub required: u32,
}

impl Stage {
    /// The one stage of `@approval("n")`.
    pub fn default_of(required: u32) -> Vec<Stage> {
        vec![Stage {
            name: DEFAULT_STAGE.to_owned(),
            required,
        }]
    }
}

/// The grant of one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Scope templates (`db:read:{resource.id}`), each one scope token once expanded.
    pub scopes: Vec<String>,
    pub ttl: Option<Duration>,
    pub audience: Option<String>,
    /// The grant needs these stages of human approvals (`@approval("n")` is one stage,
    /// `default`, of `n`).
    pub stages: Option<Vec<Stage>>,
    /// The requester may skip the approvals by declaring an emergency.
    pub break_glass: bool,
    pub advice: Option<String>,
}

/// The values placeholders expand to for one request.
#[derive(Debug, Clone, Copy)]
pub struct ScopeVars<'a> {
    pub principal_id: &'a str,
    pub resource_id: &'a str,
    pub resource_type: &'a str,
    pub action: &'a str,
}

/// A scope template whose expansion is not a valid RFC 6749 scope token (a principal id with a
/// space in it would otherwise smuggle a second scope into the token) or used an unsafe value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidExpansion {
    pub template: String,
    pub expanded: String,
}

impl Grant {
    /// The scopes for one request, placeholders expanded. Expansions that are not valid scope
    /// tokens are returned apart and must not be granted.
    pub fn expand_scopes(&self, vars: ScopeVars<'_>) -> (Vec<String>, Vec<InvalidExpansion>) {
        let mut granted = Vec::with_capacity(self.scopes.len());
        let mut invalid = Vec::new();
        for template in &self.scopes {
            let (expanded, values_safe) = expand(template, vars);
            if values_safe && is_scope_token(&expanded) {
                granted.push(expanded);
            } else {
                invalid.push(InvalidExpansion {
                    template: template.clone(),
                    expanded,
                });
            }
        }
        (granted, invalid)
    }
}

/// Single pass, so a value that itself looks like a placeholder is never expanded again.
/// Also tells whether every value put in was safe.
fn expand(template: &str, vars: ScopeVars<'_>) -> (String, bool) {
    let [principal_id, resource_id, resource_type, action] = SCOPE_PLACEHOLDERS;
    let mut safe = true;
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(rest.get(..start).unwrap_or_default());
        let tail = rest.get(start..).unwrap_or_default();
        let (value, len) = if tail.starts_with(principal_id) {
            (vars.principal_id, principal_id.len())
        } else if tail.starts_with(resource_id) {
            (vars.resource_id, resource_id.len())
        } else if tail.starts_with(resource_type) {
            (vars.resource_type, resource_type.len())
        } else if tail.starts_with(action) {
            (vars.action, action.len())
        } else {
            out.push('{');
            rest = tail.get(1..).unwrap_or_default();
            continue;
        };
        safe &= is_safe_value(value);
        out.push_str(value);
        rest = tail.get(len..).unwrap_or_default();
    }
    out.push_str(rest);
    (out, safe)
}

/// What a placeholder may expand to: letters, digits and `-._~@:/+=`. No `*` or `?`, which
/// resource servers may read as wildcards, and nothing that splits or quotes a scope.
fn is_safe_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~@:/+=".contains(&b))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scopes: &str) -> Grant {
        Grant {
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            ..Grant::default()
        }
    }

    const VARS: ScopeVars<'static> = ScopeVars {
        principal_id: "alice",
        resource_id: "orders",
        resource_type: "Database",
        action: "read",
    };

    #[test]
    fn expands_every_placeholder() {
        let g = grant("{resource.type}:{action}:{resource.id} owner:{principal.id} static");
        let (scopes, invalid) = g.expand_scopes(VARS);
        assert_eq!(scopes, ["Database:read:orders", "owner:alice", "static"]);
        assert!(invalid.is_empty());
    }

    #[test]
    fn an_expansion_with_a_space_is_not_granted() {
        let g = grant("owner:{principal.id} static");
        let vars = ScopeVars {
            principal_id: "alice db:admin",
            ..VARS
        };
        let (scopes, invalid) = g.expand_scopes(vars);
        assert_eq!(scopes, ["static"]);
        assert_eq!(invalid[0].expanded, "owner:alice db:admin");
    }

    #[test]
    fn a_wildcard_in_a_value_is_not_granted() {
        let g = grant("ssh:{resource.id} static");
        let vars = ScopeVars {
            resource_id: "*",
            ..VARS
        };
        let (scopes, invalid) = g.expand_scopes(vars);
        assert_eq!(scopes, ["static"]);
        assert_eq!(invalid[0].expanded, "ssh:*");
    }

    #[test]
    fn expansion_is_single_pass() {
        let g = grant("owner:{principal.id}");
        let vars = ScopeVars {
            principal_id: "{resource.id}",
            ..VARS
        };
        let (scopes, invalid) = g.expand_scopes(vars);
        assert!(scopes.is_empty());
        assert_eq!(invalid[0].expanded, "owner:{resource.id}");
    }
}
