//! Why a request was decided as it was (DESIGN §9.4): for each policy that could apply (its
//! action constraint covers the request's action), whether its principal and resource
//! constraints matched and whether its condition held, was false or failed. Each part is asked
//! of Cedar itself, on a copy of the policy reduced to that part, against the very request and
//! entities the decision used, so the explanation cannot drift from the decision.

use cedar_policy::{Authorizer, Decision, Entities, Policy, PolicyId, PolicySet, Request};
use serde::Serialize;
use serde_json::{Value, json};

use super::PolicyPack;
use crate::decision::{DecisionRequest, Effect, RequestError};

/// One policy's part in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PolicyTrace {
    pub id: String,
    pub effect: Effect,
    /// `file:line` of the policy.
    pub location: String,
    /// Whether the principal constraint matched (`principal in Group::"dba"`, …).
    pub principal_matched: bool,
    /// Whether the resource constraint matched.
    pub resource_matched: bool,
    /// `true`, `false` or `error` once the scope matched; `not_evaluated` otherwise.
    pub condition: Condition,
    /// The evaluation error, for `condition: error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a policy's `when`/`unless` conditions came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    True,
    False,
    Error,
    NotEvaluated,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::True => "true",
            Condition::False => "false",
            Condition::Error => "error",
            Condition::NotEvaluated => "not evaluated",
        }
    }
}

/// What a reduced copy of a policy keeps.
#[derive(Debug, Clone, Copy)]
enum Part {
    Action,
    Principal,
    Resource,
    Whole,
}

impl PolicyPack {
    /// The part each policy whose action constraint covers `request`'s action played in
    /// deciding it, in the pack's order (by id).
    pub fn explain(&self, request: &DecisionRequest) -> Result<Vec<PolicyTrace>, RequestError> {
        let cedar_request = self.cedar_request(request)?;
        let entities = self.entities_with_principal(request)?;
        let mut traces = Vec::new();
        for info in self.policies() {
            let Some(policy) = self.policy_set.policy(&PolicyId::new(&info.id)) else {
                continue;
            };
            let holds = |part| holds(policy, part, &cedar_request, &entities);
            if holds(Part::Action) != Some(Ok(true)) {
                continue;
            }
            let principal_matched = holds(Part::Principal) == Some(Ok(true));
            let resource_matched = holds(Part::Resource) == Some(Ok(true));
            let (condition, error) = if principal_matched && resource_matched {
                match holds(Part::Whole) {
                    Some(Ok(true)) => (Condition::True, None),
                    Some(Ok(false)) => (Condition::False, None),
                    Some(Err(message)) => (Condition::Error, Some(message)),
                    None => (
                        Condition::Error,
                        Some("cannot evaluate this policy alone".into()),
                    ),
                }
            } else {
                (Condition::NotEvaluated, None)
            };
            traces.push(PolicyTrace {
                id: info.id.clone(),
                effect: info.effect,
                location: info.location.clone(),
                principal_matched,
                resource_matched,
                condition,
                error,
            });
        }
        Ok(traces)
    }
}

/// Whether `part` of `policy` holds for the request: `Err` with Cedar's message when its
/// evaluation failed; `None` when the reduced policy could not be built.
fn holds(
    policy: &Policy,
    part: Part,
    request: &Request,
    entities: &Entities,
) -> Option<Result<bool, String>> {
    let mut json = policy.to_json().ok()?;
    let object = json.as_object_mut()?;
    // As a permit, a policy that holds is among the reasons of an allow.
    object.insert("effect".into(), json!("permit"));
    object.insert("annotations".into(), json!({}));
    let all = json!({"op": "All"});
    match part {
        Part::Action => {
            object.insert("principal".into(), all.clone());
            object.insert("resource".into(), all);
        }
        Part::Principal => {
            object.insert("resource".into(), all);
        }
        Part::Resource => {
            object.insert("principal".into(), all);
        }
        Part::Whole => {}
    }
    if !matches!(part, Part::Whole) {
        object.insert("conditions".into(), Value::Array(Vec::new()));
    }
    let reduced = Policy::from_json(Some(PolicyId::new("explained")), json).ok()?;
    let set = PolicySet::from_policies([reduced]).ok()?;
    let response = Authorizer::new().is_authorized(request, &set, entities);
    if let Some(error) = response.diagnostics().errors().next() {
        return Some(Err(error.to_string()));
    }
    Some(Ok(response.decision() == Decision::Allow))
}

/// The traces as a table a person reads at a glance.
pub fn render(traces: &[PolicyTrace]) -> String {
    let yes_no = |matched: bool| if matched { "yes" } else { "no" };
    let rows: Vec<[String; 5]> = traces
        .iter()
        .map(|t| {
            let effect = match t.effect {
                Effect::Permit => "permit",
                Effect::Forbid => "forbid",
            };
            let condition = match &t.error {
                Some(error) => format!("error: {error}"),
                None => t.condition.as_str().to_owned(),
            };
            [
                t.id.clone(),
                effect.to_owned(),
                yes_no(t.principal_matched).to_owned(),
                yes_no(t.resource_matched).to_owned(),
                condition,
            ]
        })
        .collect();
    let header = ["policy", "effect", "principal", "resource", "condition"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
