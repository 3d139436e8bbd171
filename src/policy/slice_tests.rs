//! Slicing decides as the whole pack does: random packs and requests, both ways.

use std::fmt::Write as _;
use std::path::Path;

use proptest::test_runner::{RngAlgorithm, TestRng};
use rand::RngExt as _;
use rand::seq::IndexedRandom as _;

use super::request::uid_of;
use super::{PackPaths, PolicyPack};
use crate::decision::{
    DecisionContext, DecisionRequest, EntityRef, GrantDefaults, RequestContext, RequestTime, decide,
};

const GROUPS: [&str; 6] = [
    "engineering",
    "oncall",
    "sre",
    "dba",
    "security",
    "deployers",
];
const DATABASES: [&str; 3] = ["orders", "billing", "orders-staging"];
const HOSTS: [&str; 2] = ["web-1", "web-staging-1"];
const DATABASE_ACTIONS: [&str; 3] = ["read", "write", "admin"];
const HOST_ACTIONS: [&str; 3] = ["ssh", "sudo", "deploy"];

fn pick<'a>(rng: &mut TestRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

/// A policy over the shipped schema whose scope mixes every kind of constraint, with a
/// condition that sometimes fails to evaluate (an overflow).
fn random_policy(rng: &mut TestRng, n: usize) -> String {
    let database = rng.random_bool(0.5);
    let (kind, ids, actions) = if database {
        ("Database", &DATABASES[..], &DATABASE_ACTIONS[..])
    } else {
        ("Host", &HOSTS[..], &HOST_ACTIONS[..])
    };
    let effect = if rng.random_bool(0.1) {
        "forbid"
    } else {
        "permit"
    };
    let principal = match rng.random_range(0..5) {
        0 => "principal".to_owned(),
        1 => format!("principal in Group::\"{}\"", pick(rng, &GROUPS)),
        2 => format!("principal == User::\"u{}\"", rng.random_range(0..4)),
        3 => "principal is User".to_owned(),
        _ => format!("principal is Service in Group::\"{}\"", pick(rng, &GROUPS)),
    };
    let action = match rng.random_range(0..4) {
        0 => "action in Action::\"requestable\"".to_owned(),
        1 => format!("action == Action::\"{}\"", pick(rng, actions)),
        2 => format!(
            "action in [Action::\"{}\", Action::\"{}\"]",
            pick(rng, actions),
            pick(rng, actions)
        ),
        _ => format!("action in [Action::\"{}\"]", pick(rng, actions)),
    };
    let resource = match rng.random_range(0..5) {
        0 => format!("resource is {kind}"),
        1 => format!("resource == {kind}::\"{}\"", pick(rng, ids)),
        2 => format!(
            "resource is {kind} in Environment::\"{}\"",
            pick(rng, &["prod", "staging"])
        ),
        3 => format!("resource is {kind} in {kind}::\"{}\"", pick(rng, ids)),
        _ => format!("resource is {kind}"),
    };
    let condition = match rng.random_range(0..5) {
        _ if effect == "forbid" && rng.random_bool(0.5) => {
            format!("context.risk_score > {}", rng.random_range(60..100))
        }
        0 => "true".to_owned(),
        1 => format!("context.risk_score < {}", rng.random_range(0..100)),
        2 => "context.mfa".to_owned(),
        3 => "resource.environment == \"prod\"".to_owned(),
        _ => "context.risk_score * 4611686018427387904 > 0".to_owned(),
    };
    let mut text = format!("@id(\"p{n}\")\n");
    if effect == "permit" {
        let _ = writeln!(text, "@scope(\"x:{{action}}:{{resource.id}}\")");
        if rng.random_bool(0.6) {
            let _ = writeln!(text, "@approval(\"{}\")", rng.random_range(1..3));
        }
    }
    let _ = writeln!(
        text,
        "{effect} ({principal}, {action}, {resource}) when {{ {condition} }};"
    );
    text
}

fn random_request(rng: &mut TestRng) -> DecisionRequest {
    let database = rng.random_bool(0.5);
    let (kind, ids, actions) = if database {
        ("Database", &DATABASES[..], &DATABASE_ACTIONS[..])
    } else {
        ("Host", &HOSTS[..], &HOST_ACTIONS[..])
    };
    let principal = if rng.random_bool(0.8) {
        EntityRef::new("User", format!("u{}", rng.random_range(0..5)))
    } else {
        EntityRef::new("Service", "deployer")
    };
    let groups = GROUPS
        .iter()
        .filter(|_| rng.random_bool(0.3))
        .map(|g| EntityRef::new("Group", *g))
        .collect();
    let mut context = RequestContext::neutral(RequestTime::from_unix(1_795_466_920, 0));
    context.risk_score = rng.random_range(0..100);
    context.mfa = rng.random_bool(0.5);
    DecisionRequest {
        principal,
        groups,
        action: pick(rng, actions).to_owned(),
        resource: EntityRef::new(kind, pick(rng, ids)),
        context: DecisionContext::Access(context),
        scopes: Vec::new(),
        duration: None,
    }
}

#[test]
fn sliced_decisions_equal_whole_pack_decisions() {
    let mut rng = TestRng::from_seed(RngAlgorithm::XorShift, &0x51_1ce_u128.to_le_bytes());
    let dir = tempfile::TempDir::new().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = PackPaths::new(dir.path().join("policies"), repo.join("schemas"));
    std::fs::create_dir_all(&paths.policies).unwrap();
    std::fs::copy(
        repo.join("policies/entities.json"),
        paths.policies.join("entities.json"),
    )
    .unwrap();
    let policies: String = (0..300).map(|n| random_policy(&mut rng, n)).collect();
    std::fs::write(paths.policies.join("random.cedar"), policies).unwrap();
    let pack = PolicyPack::load(&paths).unwrap_or_else(|e| panic!("{e}"));

    let defaults = GrantDefaults::default();
    let mut outcomes = std::collections::BTreeMap::new();
    let mut with_errors = 0;
    for _ in 0..2_000 {
        let request = random_request(&mut rng);
        let sliced = decide(&pack, &request, &defaults);
        let whole = decide(&pack.unsliced(), &request, &defaults);
        assert_eq!(sliced, whole, "{request:?}");
        if let Ok(decision) = whole {
            *outcomes.entry(decision.outcome.as_str()).or_insert(0) += 1;
            with_errors += usize::from(!decision.errors.is_empty());
        }
    }
    // The random pack must exercise every outcome and evaluation errors to mean anything.
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(with_errors > 100, "{with_errors} decisions with errors");
    let mut request = random_request(&mut rng);
    request.principal = EntityRef::new("User", "u1");
    request.groups = vec![EntityRef::new("Group", "oncall")];
    let slice = pack
        .slice(
            &uid_of(&request.principal).unwrap(),
            &pack.actions["read"],
            &uid_of(&EntityRef::new("Database", "orders")).unwrap(),
            &pack.entities_with_principal(&request).unwrap(),
        )
        .unwrap();
    assert!(
        slice.policies().count() < 100,
        "a slice holds {} of 300 policies",
        slice.policies().count()
    );
}
