//! Where an escalated request's approval stages stand (DESIGN §9.3): its plan as recorded, the
//! approvals given in each stage, and the stage now open — the first without its quorum.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Answer;
use crate::decision::{DEFAULT_STAGE, Stage};
use crate::store::{ApprovalRecord, RequestRecord};

/// The stages `request` needs: as recorded, or one `default` stage of its quorum (requests
/// that escalated before stages existed, and `@approval` ones).
pub fn plan(request: &RequestRecord) -> Vec<Stage> {
    serde_json::from_value::<Vec<Stage>>(request.stages.clone())
        .ok()
        .filter(|stages| !stages.is_empty())
        .unwrap_or_else(|| {
            Stage::default_of(u32::try_from(request.approvals_required.max(1)).unwrap_or(1))
        })
}

/// The stages to record for a request that escalated with `stages`: none for one `default`
/// stage, which a missing plan means.
pub fn recorded(stages: &[Stage]) -> serde_json::Value {
    match stages {
        [only] if only.name == DEFAULT_STAGE => serde_json::Value::Null,
        [] => serde_json::Value::Null,
        _ => serde_json::to_value(stages).unwrap_or(serde_json::Value::Null),
    }
}

/// Approvals (not denials) given in each stage.
pub fn approvals_by_stage(approvals: &[ApprovalRecord]) -> BTreeMap<String, usize> {
    let mut given = BTreeMap::new();
    for approval in approvals {
        if approval.decision == Answer::Approve.as_str() {
            *given.entry(approval.stage.clone()).or_insert(0) += 1;
        }
    }
    given
}

/// The stage now open: the first of `plan` without its quorum; `None` once every stage has it.
pub fn open_stage<'a>(plan: &'a [Stage], approvals: &[ApprovalRecord]) -> Option<&'a Stage> {
    let given = approvals_by_stage(approvals);
    plan.iter().find(|stage| {
        let have = given.get(&stage.name).copied().unwrap_or(0);
        usize::try_from(stage.required).is_ok_and(|required| have < required)
    })
}

/// One stage as a request shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageProgress {
    pub name: String,
    pub required: u32,
    /// Approvals given in this stage.
    pub approvals: usize,
    /// `approved` (its quorum reached), `open` (approvers act in it now) or `waiting`.
    pub status: &'static str,
}

/// Every stage of `plan` with the approvals given in it.
pub fn progress(plan: &[Stage], approvals: &[ApprovalRecord]) -> Vec<StageProgress> {
    let given = approvals_by_stage(approvals);
    let open = open_stage(plan, approvals).map(|stage| stage.name.as_str());
    let mut passed_open = false;
    plan.iter()
        .map(|stage| {
            let status = if Some(stage.name.as_str()) == open {
                passed_open = true;
                "open"
            } else if passed_open {
                "waiting"
            } else {
                "approved"
            };
            StageProgress {
                name: stage.name.clone(),
                required: stage.required,
                approvals: given.get(&stage.name).copied().unwrap_or(0),
                status,
            }
        })
        .collect()
}
