//! The rules of DESIGN §4 against a fake engine that says which policies matched: no policy
//! language involved, so these are the rules alone. (`policy`'s tests decide with Cedar.)

use std::cell::Cell;
use std::time::Duration;

use super::*;

/// A policy of the fake engine.
type Policy = (String, Effect, Grant);

/// An engine whose answer is set by the test: the policies it knows, the ids it reports
/// satisfied and the ids it reports failed, in the order given.
struct Fake {
    policies: Vec<Policy>,
    satisfied: Vec<&'static str>,
    failed: Vec<&'static str>,
    evaluated: Cell<u32>,
}

impl Fake {
    fn new(policies: Vec<Policy>) -> Self {
        Self {
            policies,
            satisfied: Vec::new(),
            failed: Vec::new(),
            evaluated: Cell::new(0),
        }
    }

    fn matching(mut self, satisfied: &[&'static str], failed: &[&'static str]) -> Self {
        self.satisfied = satisfied.to_vec();
        self.failed = failed.to_vec();
        self
    }

    fn policy(&self, id: &str) -> PolicyRef<'_> {
        let (id, effect, grant) = self.policies.iter().find(|p| p.0 == id).unwrap();
        PolicyRef {
            id,
            effect: *effect,
            grant,
        }
    }
}

impl Engine for Fake {
    fn version(&self) -> &str {
        "fake-1"
    }

    fn evaluate(&self, request: &DecisionRequest) -> Result<Evaluation<'_>, RequestError> {
        self.evaluated.set(self.evaluated.get() + 1);
        if request.action == "unknown" {
            return Err(RequestError::UnknownAction {
                action: request.action.clone(),
                valid: Vec::new(),
            });
        }
        Ok(Evaluation {
            satisfied: self.satisfied.iter().map(|id| self.policy(id)).collect(),
            failed: (self.failed.iter())
                .map(|id| Failure {
                    policy: self.policy(id),
                    message: format!("{id} overflowed"),
                })
                .collect(),
        })
    }

    fn requestable_actions(&self) -> Vec<String> {
        vec!["read".to_owned()]
    }

    fn is_requestable(&self, action: &str) -> bool {
        action == "read"
    }

    fn targets_granting(&self, _: &[String], _: &str) -> Vec<(String, EntityRef)> {
        Vec::new()
    }

    fn requestable_resources(&self, _: &str) -> Vec<EntityRef> {
        Vec::new()
    }
}

fn permit(id: &str, scopes: &str) -> Policy {
    let grant = Grant {
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        ..Grant::default()
    };
    (id.to_owned(), Effect::Permit, grant)
}

fn approval(id: &str, scopes: &str, approvals: u32, break_glass: bool) -> Policy {
    let (id, effect, mut grant) = permit(id, scopes);
    grant.stages = Some(crate::decision::Stage::default_of(approvals));
    grant.break_glass = break_glass;
    (id, effect, grant)
}

fn forbid(id: &str, advice: &str) -> Policy {
    let grant = Grant {
        advice: Some(advice.to_owned()),
        ..Grant::default()
    };
    (id.to_owned(), Effect::Forbid, grant)
}

fn with((id, effect, mut grant): Policy, set: impl FnOnce(&mut Grant)) -> Policy {
    set(&mut grant);
    (id, effect, grant)
}

fn request() -> DecisionRequest {
    DecisionRequest {
        principal: EntityRef::new("User", "alice"),
        groups: Vec::new(),
        action: "read".into(),
        resource: EntityRef::new("Database", "orders"),
        context: DecisionContext::Access(RequestContext::neutral(RequestTime::from_unix(0, 0))),
        scopes: Vec::new(),
        duration: None,
    }
}

fn decide_on(engine: &Fake, request: &DecisionRequest) -> Decision {
    decide(engine, request, &GrantDefaults::default()).unwrap()
}

#[test]
fn a_forbid_wins_over_every_permit() {
    let engine = Fake::new(vec![
        permit("grant", "db:read"),
        forbid("guard", "Not at night."),
    ])
    .matching(&["grant", "guard"], &[]);
    let d = decide_on(&engine, &request());
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons, [DenyReason::Forbidden]);
    assert_eq!(d.policies, ["guard"]);
    assert_eq!(d.advice, ["Not at night."]);
    assert!(d.scopes.is_empty() && d.audience.is_empty());
    assert_eq!(d.lifetime, Duration::ZERO);
    assert_eq!(d.policy_version, "fake-1");
}

#[test]
fn a_failed_forbid_denies_and_a_failed_permit_is_skipped() {
    let engine = Fake::new(vec![
        permit("grant", "db:read"),
        permit("broken-grant", "db:write"),
        forbid("broken-guard", "Guard rail."),
    ]);
    let d = decide_on(&engine.matching(&["grant"], &["broken-guard"]), &request());
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons, [DenyReason::ForbidError]);
    assert_eq!(d.policies, ["broken-guard"]);
    assert_eq!(d.advice, ["Guard rail."]);
    assert_eq!(d.errors[0].policy, "broken-guard");

    let engine = Fake::new(vec![
        permit("grant", "db:read"),
        permit("broken-grant", "db:write"),
    ]);
    let d = decide_on(&engine.matching(&["grant"], &["broken-grant"]), &request());
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.scopes, ["db:read"]);
    assert_eq!(
        d.errors,
        [EvaluationError {
            policy: "broken-grant".into(),
            message: "broken-grant overflowed".into()
        }]
    );
}

#[test]
fn a_forbid_that_matched_and_failed_is_named_once_with_both_reasons() {
    let engine = Fake::new(vec![forbid("b", "B."), forbid("a", "A.")]).matching(&["b"], &["a"]);
    let d = decide_on(&engine, &request());
    assert_eq!(d.reasons, [DenyReason::Forbidden, DenyReason::ForbidError]);
    assert_eq!(d.policies, ["a", "b"], "sorted by id");
    assert_eq!(d.advice, ["A.", "B."]);
}

#[test]
fn no_permit_denies_with_no_policies() {
    let engine = Fake::new(vec![permit("grant", "db:read")]);
    let d = decide_on(&engine, &request());
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons, [DenyReason::NoPermit]);
    assert!(d.policies.is_empty() && d.advice.is_empty());
}

#[test]
fn a_direct_permit_allows_and_beats_approval_permits() {
    let engine = Fake::new(vec![
        with(permit("direct", "db:read"), |g| {
            g.advice = Some("Direct.".into())
        }),
        with(approval("approved", "db:admin", 2, true), |g| {
            g.advice = Some("Approved.".into());
        }),
    ])
    .matching(&["approved", "direct"], &[]);
    let d = decide_on(&engine, &request());
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.policies, ["direct"]);
    assert_eq!(d.scopes, ["db:read"]);
    assert_eq!(
        d.advice,
        ["Direct."],
        "advice of the deciding policies only"
    );
    assert_eq!(d.approvals_required, 0);
    assert!(!d.break_glass_allowed);
}

#[test]
fn approval_permits_escalate_with_the_largest_quorum() {
    let engine = Fake::new(vec![
        approval("one", "db:write", 1, true),
        approval("three", "db:audit", 3, false),
        approval("two", "db:write", 2, true),
    ]);
    let d = decide_on(&engine.matching(&["two", "one", "three"], &[]), &request());
    assert_eq!(d.outcome, Outcome::Escalate);
    assert_eq!(d.policies, ["one", "three", "two"]);
    assert_eq!(d.approvals_required, 3);
    assert_eq!(d.scopes, ["db:audit", "db:write"]);
    assert!(!d.break_glass_allowed, "`three` does not allow break-glass");
}

#[test]
fn break_glass_only_when_every_deciding_policy_allows_it() {
    let engine = Fake::new(vec![
        approval("one", "", 1, true),
        approval("two", "", 2, true),
    ]);
    let d = decide_on(&engine.matching(&["one", "two"], &[]), &request());
    assert_eq!((d.outcome, d.approvals_required), (Outcome::Escalate, 2));
    assert!(d.break_glass_allowed);
}

#[test]
fn scopes_are_the_union_over_deciding_policies_with_placeholders_expanded() {
    let engine = Fake::new(vec![
        permit("a", "{resource.type}:{action}:{resource.id} shared"),
        permit("b", "owner:{principal.id} shared"),
    ])
    .matching(&["a", "b"], &[]);
    let d = decide_on(&engine, &request());
    assert_eq!(d.scopes, ["Database:read:orders", "owner:alice", "shared"]);
}

#[test]
fn asked_for_scopes_are_all_granted_or_the_request_is_denied() {
    let engine = Fake::new(vec![approval("a", "db:read db:list", 1, true)]).matching(&["a"], &[]);
    let mut r = request();
    r.scopes = vec!["db:list".into(), "db:list".into()];
    let d = decide_on(&engine, &r);
    assert_eq!(d.outcome, Outcome::Escalate);
    assert_eq!(d.scopes, ["db:list"], "exactly what was asked, once");

    r.scopes = vec!["db:list".into(), "db:write".into()];
    let d = decide_on(&engine, &r);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reasons,
        [DenyReason::ScopeNotGranted {
            scopes: vec!["db:write".into()]
        }]
    );
    assert_eq!(d.policies, ["a"]);
    assert!(d.scopes.is_empty());
    assert_eq!((d.approvals_required, d.break_glass_allowed), (0, false));
}

#[test]
fn an_unsafe_expansion_denies_the_whole_grant() {
    let engine = Fake::new(vec![permit("a", "owner:{principal.id} db:read")]);
    let engine = engine.matching(&["a"], &[]);
    let mut r = request();
    r.principal = EntityRef::new("User", "alice db:admin");
    let d = decide_on(&engine, &r);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reasons,
        [DenyReason::InvalidScope {
            scopes: vec!["owner:alice db:admin".into()]
        }]
    );
    assert!(d.scopes.is_empty());
    assert!(d.errors[0].message.contains("not a safe scope token"));
}

#[test]
fn lifetime_is_the_smallest_of_asked_or_default_every_ttl_and_max_ttl() {
    let ttl = |secs| move |g: &mut Grant| g.ttl = Some(Duration::from_secs(secs));
    let lifetime = |satisfied: &[&'static str], asked: Option<u64>, defaults: &GrantDefaults| {
        let engine = Fake::new(vec![
            with(permit("short", ""), ttl(1800)),
            with(permit("long", ""), ttl(7200)),
            permit("none", ""),
        ])
        .matching(satisfied, &[]);
        let mut r = request();
        r.duration = asked.map(Duration::from_secs);
        decide(&engine, &r, defaults).unwrap().lifetime.as_secs()
    };
    let defaults = GrantDefaults::default();
    assert_eq!(
        lifetime(&["short", "long"], None, &defaults),
        300,
        "default"
    );
    assert_eq!(lifetime(&["short", "long"], Some(600), &defaults), 600);
    assert_eq!(lifetime(&["short", "long"], Some(7200), &defaults), 1800);
    assert_eq!(lifetime(&["none"], Some(7200), &defaults), 3600, "max_ttl");
    let generous = GrantDefaults {
        default_ttl: Duration::from_secs(7200),
        max_ttl: Duration::from_secs(86_400),
        ..GrantDefaults::default()
    };
    assert_eq!(lifetime(&["long"], None, &generous), 7200);
    assert_eq!(lifetime(&["none"], Some(90_000), &generous), 86_400);
}

#[test]
fn audience_is_every_deciding_policys_or_the_default() {
    let audience = |aud: &'static str| move |g: &mut Grant| g.audience = Some(aud.to_owned());
    let engine = Fake::new(vec![
        with(permit("a", ""), audience("svc-b")),
        with(permit("b", ""), audience("svc-a")),
        with(permit("c", ""), audience("svc-a")),
    ]);
    let d = decide_on(&engine.matching(&["a", "b", "c"], &[]), &request());
    assert_eq!(d.audience, ["svc-a", "svc-b"]);
    let engine = Fake::new(vec![permit("plain", "")]).matching(&["plain"], &[]);
    assert_eq!(decide_on(&engine, &request()).audience, ["jitgate"]);
}

#[test]
fn malformed_requests_are_errors_and_a_zero_duration_is_never_evaluated() {
    let engine = Fake::new(vec![permit("a", "")]).matching(&["a"], &[]);
    let mut r = request();
    r.duration = Some(Duration::ZERO);
    assert_eq!(
        decide(&engine, &r, &GrantDefaults::default()),
        Err(RequestError::ZeroDuration)
    );
    assert_eq!(engine.evaluated.get(), 0);
    r.duration = None;
    r.action = "unknown".into();
    assert!(matches!(
        decide(&engine, &r, &GrantDefaults::default()),
        Err(RequestError::UnknownAction { .. })
    ));
}
