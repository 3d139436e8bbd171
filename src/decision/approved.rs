//! What an approval covers. Approvers approve the grant of the decision that escalated; the
//! request is decided again when the token is minted, and that fresh decision may take away
//! but never add: not more approvals than were given, not a scope or audience that was not
//! approved.

use std::collections::BTreeMap;

use super::Decision;

/// The grant the approvers approved, as recorded when the request escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovedGrant<'a> {
    pub scopes: &'a [String],
    pub audience: &'a [String],
    /// Distinct approvers who approved, by the stage they approved in.
    pub approvals: &'a BTreeMap<String, usize>,
}

/// What a token minted under an approval carries: the fresh grant narrowed to the approved one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintGrant {
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
}

/// Why a fresh decision gives nothing under an approval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeyondApproval {
    #[error(
        "the policies now require {required} approvals in stage `{stage}` and {given} were given; ask again to be approved under the current policies"
    )]
    MoreApprovals {
        stage: String,
        required: u32,
        given: usize,
    },
    #[error(
        "none of the scopes the policies now grant ({}) was approved ({})",
        .granted.join(" "), .approved.join(" ")
    )]
    NoApprovedScope {
        granted: Vec<String>,
        approved: Vec<String>,
    },
    #[error(
        "none of the audiences the policies now grant ({}) was approved ({})",
        .granted.join(" "), .approved.join(" ")
    )]
    NoApprovedAudience {
        granted: Vec<String>,
        approved: Vec<String>,
    },
}

/// The grant of `fresh` (a decision that does not deny) within `approved`: refused when it
/// needs more approvals than were given; otherwise its scopes and audiences that were
/// approved, in its order, refused when none of its scopes or none of its audiences are.
pub fn within_approval(
    fresh: &Decision,
    approved: ApprovedGrant<'_>,
) -> Result<MintGrant, BeyondApproval> {
    for stage in &fresh.stages {
        let given = approved.approvals.get(&stage.name).copied().unwrap_or(0);
        if usize::try_from(stage.required).map_or(true, |required| required > given) {
            return Err(BeyondApproval::MoreApprovals {
                stage: stage.name.clone(),
                required: stage.required,
                given,
            });
        }
    }
    let scopes = intersection(&fresh.scopes, approved.scopes);
    // Nothing in common is refused; only an approval of no scopes (`@scope("")`) mints none.
    if scopes.is_empty() && !approved.scopes.is_empty() {
        return Err(BeyondApproval::NoApprovedScope {
            granted: fresh.scopes.clone(),
            approved: approved.scopes.to_vec(),
        });
    }
    let audience = intersection(&fresh.audience, approved.audience);
    if audience.is_empty() {
        return Err(BeyondApproval::NoApprovedAudience {
            granted: fresh.audience.clone(),
            approved: approved.audience.to_vec(),
        });
    }
    Ok(MintGrant { scopes, audience })
}

fn intersection(fresh: &[String], approved: &[String]) -> Vec<String> {
    fresh
        .iter()
        .filter(|item| approved.contains(item))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decision::{DEFAULT_STAGE, Outcome, Stage};

    /// One approval, in the one stage of `@approval`.
    fn one_approval() -> BTreeMap<String, usize> {
        BTreeMap::from([(DEFAULT_STAGE.to_owned(), 1)])
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn fresh(outcome: Outcome, approvals_required: u32, scopes: &[&str], aud: &[&str]) -> Decision {
        Decision {
            outcome,
            policies: strings(&["p"]),
            reasons: Vec::new(),
            scopes: strings(scopes),
            lifetime: Duration::from_secs(60),
            audience: strings(aud),
            approvals_required,
            stages: if approvals_required == 0 {
                Vec::new()
            } else {
                Stage::default_of(approvals_required)
            },
            break_glass_allowed: false,
            advice: Vec::new(),
            policy_version: "v".into(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn the_same_grant_is_minted_as_approved() {
        let scopes = strings(&["db:write:orders"]);
        let audience = strings(&["db-proxy"]);
        let approved = ApprovedGrant {
            scopes: &scopes,
            audience: &audience,
            approvals: &one_approval(),
        };
        let decision = fresh(Outcome::Escalate, 1, &["db:write:orders"], &["db-proxy"]);
        assert_eq!(
            within_approval(&decision, approved),
            Ok(MintGrant {
                scopes,
                audience: audience.clone()
            })
        );
    }

    #[test]
    fn more_approvals_than_were_given_are_refused() {
        let scopes = strings(&["a"]);
        let approved = ApprovedGrant {
            scopes: &scopes,
            audience: &scopes,
            approvals: &one_approval(),
        };
        assert_eq!(
            within_approval(&fresh(Outcome::Escalate, 2, &["a"], &["a"]), approved),
            Err(BeyondApproval::MoreApprovals {
                stage: DEFAULT_STAGE.to_owned(),
                required: 2,
                given: 1
            })
        );
        // Approvals given in one stage count for that stage only.
        let plan = vec![
            Stage {
                name: "lead".into(),
                required: 1,
            },
            Stage {
                name: "security".into(),
                required: 1,
            },
        ];
        let mut staged = fresh(Outcome::Escalate, 2, &["a"], &["a"]);
        staged.stages = plan;
        let lead_only = BTreeMap::from([("lead".to_owned(), 2)]);
        let approved_by_leads = ApprovedGrant {
            approvals: &lead_only,
            ..approved
        };
        assert_eq!(
            within_approval(&staged, approved_by_leads),
            Err(BeyondApproval::MoreApprovals {
                stage: "security".into(),
                required: 1,
                given: 0
            })
        );
        // A direct grant needs none.
        assert!(within_approval(&fresh(Outcome::Allow, 0, &["a"], &["a"]), approved).is_ok());
    }

    #[test]
    fn only_approved_scopes_and_audiences_are_kept() {
        let scopes = strings(&["write"]);
        let audience = strings(&["db-proxy"]);
        let approved = ApprovedGrant {
            scopes: &scopes,
            audience: &audience,
            approvals: &one_approval(),
        };
        let wider = fresh(
            Outcome::Allow,
            0,
            &["read", "write"],
            &["db-proxy", "ssh-ca"],
        );
        assert_eq!(
            within_approval(&wider, approved),
            Ok(MintGrant {
                scopes: strings(&["write"]),
                audience: strings(&["db-proxy"]),
            })
        );
    }

    #[test]
    fn nothing_in_common_is_refused() {
        let scopes = strings(&["write"]);
        let audience = strings(&["db-proxy"]);
        let approved = ApprovedGrant {
            scopes: &scopes,
            audience: &audience,
            approvals: &one_approval(),
        };
        assert!(matches!(
            within_approval(
                &fresh(Outcome::Escalate, 1, &["dump"], &["db-proxy"]),
                approved
            ),
            Err(BeyondApproval::NoApprovedScope { .. })
        ));
        assert!(matches!(
            within_approval(
                &fresh(Outcome::Escalate, 1, &["write"], &["other"]),
                approved
            ),
            Err(BeyondApproval::NoApprovedAudience { .. })
        ));
    }

    #[test]
    fn a_fresh_grant_of_no_scopes_under_an_approval_of_some_is_refused() {
        let approved = strings(&["db:write:orders"]);
        let aud = strings(&["db-proxy"]);
        let grant = ApprovedGrant {
            scopes: &approved,
            audience: &aud,
            approvals: &one_approval(),
        };
        let refused = within_approval(&fresh(Outcome::Escalate, 1, &[], &["db-proxy"]), grant);
        assert!(matches!(
            refused,
            Err(BeyondApproval::NoApprovedScope { .. })
        ));
        let none: Vec<String> = Vec::new();
        let approved_none = ApprovedGrant {
            scopes: &none,
            ..grant
        };
        let minted = within_approval(
            &fresh(Outcome::Escalate, 1, &[], &["db-proxy"]),
            approved_none,
        );
        assert_eq!(minted.map(|g| g.scopes), Ok(Vec::new()));
    }
}
