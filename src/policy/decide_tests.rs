//! The decision rules of DESIGN §4 with Cedar as the engine, each on a small pack written for
//! it: what the policies say, as Cedar evaluates them, decides as DESIGN says.

use std::fs;
use std::time::Duration;

use tempfile::TempDir;

use super::{PackPaths, PolicyPack};
use crate::decision::{
    self, Decision, DecisionContext, DecisionRequest, DenyReason, Engine, EntityRef, GrantDefaults,
    Outcome, RequestContext, RequestError, RequestTime,
};

const SCHEMA: &str = r#"
entity Group in [Group];
entity User in [Group];
entity Doc { secret: Bool };
type Ctx = {
  source_ip: ipaddr, risk_score: Long, mfa: Bool, reason: String, duration_secs: Long,
  dpop_bound: Bool,
  time: { unix: Long, hour: Long, weekday: String },
  ticket?: String,
};
action view, edit appliesTo { principal: [User], resource: [Doc], context: Ctx };
"#;

const ENTITIES: &str = r#"[
  { "uid": { "type": "Group", "id": "staff" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Group", "id": "team" }, "attrs": {}, "parents": [{ "type": "Group", "id": "staff" }] },
  { "uid": { "type": "Doc", "id": "plain" }, "attrs": { "secret": false }, "parents": [] },
  { "uid": { "type": "Doc", "id": "secret" }, "attrs": { "secret": true }, "parents": [] }
]"#;

fn pack(policies: &str) -> (TempDir, PolicyPack) {
    let dir = TempDir::new().unwrap();
    let paths = PackPaths::new(dir.path().join("policies"), dir.path().join("schemas"));
    fs::create_dir_all(&paths.policies).unwrap();
    fs::create_dir_all(&paths.schemas).unwrap();
    fs::write(paths.schemas.join("s.cedarschema"), SCHEMA).unwrap();
    fs::write(paths.policies.join("entities.json"), ENTITIES).unwrap();
    fs::write(paths.policies.join("p.cedar"), policies).unwrap();
    let pack = PolicyPack::load(&paths).unwrap_or_else(|e| panic!("{e}"));
    (dir, pack)
}

fn request(action: &str, doc: &str) -> DecisionRequest {
    DecisionRequest {
        principal: EntityRef::new("User", "alice"),
        groups: vec![EntityRef::new("Group", "team")],
        action: action.into(),
        resource: EntityRef::new("Doc", doc),
        context: DecisionContext::Access(RequestContext::neutral(RequestTime::from_unix(
            1_795_466_920,
            0,
        ))),
        scopes: Vec::new(),
        duration: None,
    }
}

fn decide(pack: &PolicyPack, request: &DecisionRequest) -> Decision {
    decision::decide(pack, request, &GrantDefaults::default()).unwrap()
}

const PERMIT_VIEW: &str = r#"
@id("view") @scope("doc:{action}:{resource.id}") @ttl("30m") @audience("docs")
@advice("Viewing is routine.")
permit (principal in Group::"staff", action == Action::"view", resource);
"#;

#[test]
fn a_direct_permit_allows_with_its_grant() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    let d = decide(&pack, &request("view", "plain"));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.policies, ["view"]);
    assert_eq!(d.scopes, ["doc:view:plain"]);
    assert_eq!(d.audience, ["docs"]);
    assert_eq!(d.lifetime, Duration::from_secs(300));
    assert_eq!(d.advice, ["Viewing is routine."]);
    assert_eq!(d.approvals_required, 0);
    assert!(d.reasons.is_empty() && d.errors.is_empty());
    assert_eq!(d.policy_version, pack.version());
}

#[test]
fn no_permit_denies_with_no_policies() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    let d = decide(&pack, &request("edit", "plain"));
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(d.policies.is_empty());
    assert_eq!(d.reasons, [DenyReason::NoPermit]);
    assert!(d.scopes.is_empty() && d.advice.is_empty());
    assert_eq!(d.lifetime, Duration::ZERO);
}

#[test]
fn a_matching_forbid_denies_and_names_itself() {
    let (_dir, pack) = pack(&format!(
        r#"{PERMIT_VIEW}
        @id("no-secrets") @advice("Secret docs are off limits.")
        forbid (principal, action, resource) when {{ resource.secret }};"#
    ));
    let d = decide(&pack, &request("view", "secret"));
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.policies, ["no-secrets"]);
    assert_eq!(d.reasons, [DenyReason::Forbidden]);
    assert_eq!(d.advice, ["Secret docs are off limits."]);
    assert!(d.scopes.is_empty());
}

/// Overflows, an evaluation error, for any requested duration of 2s or more.
const OVERFLOWS: &str = "context.duration_secs * 4611686018427387904 > 0";

#[test]
fn a_forbid_that_fails_to_evaluate_denies() {
    // Cedar skips a policy that errors, so it allows here; jitgate fails closed.
    let (_dir, pack) = pack(&format!(
        r#"{PERMIT_VIEW}
        @id("no-overflow") forbid (principal, action, resource) when {{ {OVERFLOWS} }};"#
    ));
    let mut r = request("view", "plain");
    r.duration = Some(Duration::from_secs(600));
    let d = decide(&pack, &r);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.policies, ["no-overflow"]);
    assert_eq!(d.reasons, [DenyReason::ForbidError]);
    assert_eq!(d.errors.len(), 1);
    assert_eq!(d.errors[0].policy, "no-overflow");
    assert!(d.errors[0].message.contains("overflow"), "{:?}", d.errors);
}

#[test]
fn a_permit_that_fails_to_evaluate_is_skipped_and_reported() {
    let (_dir, pack) = pack(&format!(
        r#"{PERMIT_VIEW}
        @id("overflowing") @scope("never")
        permit (principal, action == Action::"view", resource) when {{ {OVERFLOWS} }};"#
    ));
    let mut r = request("view", "plain");
    r.duration = Some(Duration::from_secs(600));
    let d = decide(&pack, &r);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.policies, ["view"]);
    assert_eq!(d.scopes, ["doc:view:plain"]);
    assert_eq!(d.errors[0].policy, "overflowing");
}

#[test]
fn resources_the_pack_does_not_list_are_refused() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    let err = decision::decide(
        &pack,
        &request("view", "missing"),
        &GrantDefaults::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        RequestError::UnknownResource("Doc::\"missing\"".into())
    );
}

const APPROVAL_PERMITS: &str = r#"
@id("edit-one") @scope("doc:edit:{resource.id}") @approval("1") @break_glass("true") @ttl("20m")
permit (principal in Group::"team", action == Action::"edit", resource);
@id("edit-three") @scope("doc:audit") @approval("3") @advice("Three approvals for edits.")
permit (principal in Group::"staff", action == Action::"edit", resource);
"#;

#[test]
fn approval_permits_escalate_with_the_largest_quorum_and_all_their_scopes() {
    let (_dir, pack) = pack(APPROVAL_PERMITS);
    let d = decide(&pack, &request("edit", "plain"));
    assert_eq!(d.outcome, Outcome::Escalate);
    assert_eq!(d.policies, ["edit-one", "edit-three"]);
    assert_eq!(d.approvals_required, 3);
    assert_eq!(d.scopes, ["doc:audit", "doc:edit:plain"]);
    assert_eq!(d.advice, ["Three approvals for edits."]);
    // One of the two policies does not allow break-glass, so the request may not use it.
    assert!(!d.break_glass_allowed);
    assert_eq!(d.lifetime, Duration::from_secs(300));
}

#[test]
fn stages_of_several_policies_are_all_needed_with_the_largest_quorum_each() {
    let (_stages_dir, staged) = pack(
        r#"@id("a-lead-then-security") @scope("") @stages("lead:1, security:1")
        permit (principal, action == Action::"edit", resource);
        @id("b-security-twice-then-owner") @scope("") @stages("security:2, owner:1")
        permit (principal, action == Action::"edit", resource);"#,
    );
    let d = decide(&staged, &request("edit", "plain"));
    assert_eq!(d.outcome, Outcome::Escalate);
    let stages: Vec<(&str, u32)> = d
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.required))
        .collect();
    assert_eq!(stages, [("lead", 1), ("security", 2), ("owner", 1)]);
    assert_eq!(d.approvals_required, 4);
    // `@approval` is one `default` stage.
    let (_dir, approval_pack) = pack(APPROVAL_PERMITS);
    let d = decide(&approval_pack, &request("edit", "plain"));
    let stages: Vec<(&str, u32)> = d
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.required))
        .collect();
    assert_eq!(stages, [("default", 3)]);
}

#[test]
fn break_glass_is_allowed_when_every_deciding_policy_allows_it() {
    let (_dir, pack) = pack(
        r#"@id("edit-one") @scope("") @approval("1") @break_glass("true")
        permit (principal, action == Action::"edit", resource);"#,
    );
    let d = decide(&pack, &request("edit", "plain"));
    assert_eq!(d.outcome, Outcome::Escalate);
    assert_eq!(d.approvals_required, 1);
    assert!(d.break_glass_allowed);
}

#[test]
fn a_direct_permit_beats_approval_permits() {
    let (_dir, pack) = pack(&format!(
        r#"{APPROVAL_PERMITS}
        @id("edit-direct") @scope("doc:edit:{{resource.id}}")
        permit (principal == User::"alice", action == Action::"edit", resource);"#
    ));
    let d = decide(&pack, &request("edit", "plain"));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.policies, ["edit-direct"]);
    assert_eq!(d.scopes, ["doc:edit:plain"]);
    assert_eq!(d.approvals_required, 0);
    assert!(
        d.advice.is_empty(),
        "advice comes from deciding policies only"
    );
}

#[test]
fn scopes_are_the_union_over_deciding_policies_with_placeholders_expanded() {
    let (_dir, pack) = pack(
        r#"@id("a") @scope("{resource.type}:{action}:{resource.id} shared")
        permit (principal, action == Action::"view", resource);
        @id("b") @scope("owner:{principal.id} shared")
        permit (principal in Group::"team", action == Action::"view", resource);"#,
    );
    let d = decide(&pack, &request("view", "plain"));
    assert_eq!(d.scopes, ["Doc:view:plain", "owner:alice", "shared"]);
}

#[test]
fn requested_scopes_are_all_granted_or_the_request_is_denied() {
    let (_dir, pack) = pack(
        r#"@id("a") @scope("doc:read doc:list")
        permit (principal, action == Action::"view", resource);"#,
    );
    let mut r = request("view", "plain");
    r.scopes = vec!["doc:list".into(), "doc:list".into()];
    let d = decide(&pack, &r);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.scopes, ["doc:list"], "exactly what was asked, once");

    r.scopes = vec!["doc:list".into(), "doc:write".into(), "doc:admin".into()];
    let d = decide(&pack, &r);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reasons,
        [DenyReason::ScopeNotGranted {
            scopes: vec!["doc:write".into(), "doc:admin".into()]
        }]
    );
    assert_eq!(d.policies, ["a"]);
    assert!(d.scopes.is_empty());
}

#[test]
fn requested_scopes_that_no_escalation_grants_deny_instead_of_escalating() {
    let (_dir, pack) = pack(APPROVAL_PERMITS);
    let mut r = request("edit", "plain");
    r.scopes = vec!["doc:delete".into()];
    let d = decide(&pack, &r);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.approvals_required, 0);
}

#[test]
fn an_expansion_that_is_not_a_safe_scope_token_denies() {
    let (_dir, pack) = pack(
        r#"@id("a") @scope("owner:{principal.id} doc:read")
        permit (principal, action == Action::"view", resource);"#,
    );
    for id in ["alice doc:admin", "*", "a\"b"] {
        let mut r = request("view", "plain");
        r.principal = EntityRef::new("User", id);
        let d = decide(&pack, &r);
        assert_eq!(d.outcome, Outcome::Deny, "{id}");
        assert_eq!(
            d.reasons,
            [DenyReason::InvalidScope {
                scopes: vec![format!("owner:{id}")]
            }]
        );
        assert_eq!(d.policies, ["a"]);
        assert!(d.scopes.is_empty());
        assert!(d.errors[0].message.contains("not a safe scope token"));
    }
}

#[test]
fn lifetime_is_the_minimum_of_request_ttls_and_max_ttl() {
    let (_dir, pack) = pack(
        r#"@id("short") @scope("") @ttl("30m") permit (principal, action == Action::"view", resource);
        @id("long") @scope("") @ttl("2h") permit (principal in Group::"team", action == Action::"view", resource);
        @id("none") @scope("") permit (principal, action == Action::"edit", resource);"#,
    );
    let lifetime = |action: &str, asked: Option<u64>, defaults: &GrantDefaults| {
        let mut r = request(action, "plain");
        r.duration = asked.map(Duration::from_secs);
        decision::decide(&pack, &r, defaults)
            .unwrap()
            .lifetime
            .as_secs()
    };
    let defaults = GrantDefaults::default();
    assert_eq!(lifetime("view", None, &defaults), 300, "default_ttl");
    assert_eq!(lifetime("view", Some(600), &defaults), 600, "as asked");
    assert_eq!(
        lifetime("view", Some(7200), &defaults),
        1800,
        "the smallest @ttl"
    );
    assert_eq!(lifetime("edit", Some(7200), &defaults), 3600, "max_ttl");
    let generous = GrantDefaults {
        default_ttl: Duration::from_secs(7200),
        max_ttl: Duration::from_secs(86_400),
        ..GrantDefaults::default()
    };
    assert_eq!(lifetime("view", None, &generous), 1800);
    assert_eq!(lifetime("edit", None, &generous), 7200);
}

#[test]
fn audience_is_the_default_or_every_deciding_policys() {
    let (_dir, pack) = pack(
        r#"@id("a") @scope("") @audience("svc-b") permit (principal, action == Action::"view", resource);
        @id("b") @scope("") @audience("svc-a") permit (principal in Group::"team", action == Action::"view", resource);
        @id("c") @scope("") permit (principal, action == Action::"edit", resource);"#,
    );
    assert_eq!(
        decide(&pack, &request("view", "plain")).audience,
        ["svc-a", "svc-b"]
    );
    assert_eq!(
        decide(&pack, &request("edit", "plain")).audience,
        ["jitgate"]
    );
}

#[test]
fn groups_come_from_the_request_and_their_ancestors_from_entities() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    let mut r = request("view", "plain");
    r.groups.clear();
    assert_eq!(decide(&pack, &r).outcome, Outcome::Deny);
    r.groups = vec![EntityRef::new("Group", "team")];
    assert_eq!(
        decide(&pack, &r).outcome,
        Outcome::Allow,
        "team is in staff"
    );
}

#[test]
fn a_principal_id_with_quotes_names_no_other_entity() {
    let (_dir, pack) =
        pack(r#"@id("admin") @scope("") permit (principal == User::"admin", action, resource);"#);
    let mut r = request("view", "plain");
    r.principal = EntityRef::new("User", r#"admin", resource == Doc::"plain"#);
    assert_eq!(decide(&pack, &r).outcome, Outcome::Deny);
    r.principal = EntityRef::new("User", "admin");
    assert_eq!(decide(&pack, &r).outcome, Outcome::Allow);
}

#[test]
fn the_context_is_checked_against_the_schema() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    let with_extra = |key: &str, value: serde_json::Value| {
        let mut r = request("view", "plain");
        let DecisionContext::Access(context) = &mut r.context else {
            unreachable!()
        };
        context.extra.insert(key.into(), value);
        decision::decide(&pack, &r, &GrantDefaults::default())
    };
    assert_eq!(
        with_extra("ticket", "INC-1".into()).unwrap().outcome,
        Outcome::Allow
    );
    assert!(matches!(
        with_extra("ticket", 7.into()),
        Err(RequestError::Invalid(_))
    ));
    assert!(matches!(
        with_extra("undeclared", "x".into()),
        Err(RequestError::Invalid(_))
    ));
    assert_eq!(
        with_extra("risk_score", 0.into()),
        Err(RequestError::ReservedContextKey("risk_score".into()))
    );
}

#[test]
fn malformed_requests_are_errors_not_denials() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    let err = decision::decide(
        &pack,
        &request("delete", "plain"),
        &GrantDefaults::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        RequestError::UnknownAction {
            action: "delete".into(),
            valid: vec!["edit".into(), "view".into()]
        }
    );
    let mut r = request("view", "plain");
    r.resource = EntityRef::new("Table", "t");
    let err = decision::decide(&pack, &r, &GrantDefaults::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown entity type `Table`; valid types: Doc, Group, User"),
        "{err}"
    );
    let mut r = request("view", "plain");
    r.resource = EntityRef::new("Group", "team");
    assert!(matches!(
        decision::decide(&pack, &r, &GrantDefaults::default()),
        Err(RequestError::Invalid(_))
    ));
    let mut r = request("view", "plain");
    r.duration = Some(Duration::ZERO);
    assert_eq!(
        decision::decide(&pack, &r, &GrantDefaults::default()),
        Err(RequestError::ZeroDuration)
    );
}

#[test]
fn cached_checks_never_let_a_later_bad_request_through() {
    let (_dir, pack) = pack(PERMIT_VIEW);
    // The first decision caches the principal's store, its IP and the request's shape.
    assert_eq!(
        decide(&pack, &request("view", "plain")).outcome,
        Outcome::Allow
    );
    let mut r = request("view", "plain");
    let DecisionContext::Access(context) = &mut r.context else {
        unreachable!()
    };
    context.extra.insert("ticket".into(), 7.into());
    assert!(matches!(
        decision::decide(&pack, &r, &GrantDefaults::default()),
        Err(RequestError::Invalid(_))
    ));
    let mut r = request("view", "plain");
    r.resource = EntityRef::new("Group", "team");
    assert!(decision::decide(&pack, &r, &GrantDefaults::default()).is_err());
    let mut r = request("view", "plain");
    r.groups.clear();
    assert_eq!(
        decide(&pack, &r).outcome,
        Outcome::Deny,
        "groups are part of the key"
    );
}

#[test]
fn is_requestable_agrees_with_the_list_of_requestable_actions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let pack = PolicyPack::load(&PackPaths::new(root.join("policies"), root.join("schemas")))
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = pack.requestable_actions();
    assert_eq!(listed, ["admin", "deploy", "read", "ssh", "sudo", "write"]);
    let mut asked = pack.action_names();
    asked.extend(["nonsense".to_owned(), String::new()]);
    for action in &asked {
        assert_eq!(
            pack.is_requestable(action),
            listed.contains(action),
            "{action}"
        );
    }
}
