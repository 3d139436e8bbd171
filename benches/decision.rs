//! What a decision costs, on the shipped schema and entities with packs of 10 and 1,000
//! policies: (a) Cedar's `Authorizer::is_authorized` alone on a prebuilt request, (b) the full
//! `decision::decide` path on the same request (context, request validation, principal
//! entity, rules), warm and with every cache missing, (c) the schema-directed way of building
//! the context that `decide` avoids, and (d) loading and validating a 1,000-policy pack.
//! Results and how to read them: docs/BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup: a failed step should stop the run"
)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, Schema};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jitgate::decision::{
    DecisionContext, DecisionRequest, EntityRef, GrantDefaults, RequestContext, RequestTime, decide,
};
use jitgate::policy::{PackPaths, PolicyPack};
use tempfile::TempDir;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `n` policies shaped like a real pack: grants per group with context conditions, forbid guard
/// rails, and a few approval policies. Some match the benchmark request, most do not.
fn policies(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let group = if i % 10 == 0 {
            "oncall".to_owned()
        } else {
            format!("team-{}", i % 50)
        };
        match i % 5 {
            0..=2 => writeln!(
                text,
                "@id(\"grant-{i}\") @scope(\"db:read:{{resource.id}} s{i}\") @ttl(\"{}m\")\n\
                 permit (principal in Group::\"{group}\", action == Action::\"read\", resource in Environment::\"prod\")\n\
                 when {{ context.risk_score < {} && context.mfa }};",
                10 + i % 50,
                50 + i % 50
            ),
            3 => writeln!(
                text,
                "@id(\"approval-{i}\") @scope(\"db:write:{{resource.id}}\") @approval(\"{}\")\n\
                 permit (principal in Group::\"{group}\", action == Action::\"write\", resource is Database);",
                1 + i % 3
            ),
            _ => writeln!(
                text,
                "@id(\"guard-{i}\") @advice(\"guard rail {i}\")\n\
                 forbid (principal, action in Action::\"requestable\", resource)\n\
                 when {{ context.risk_score > {} && context.time.hour == {} }};",
                90 + i % 10,
                i % 24
            ),
        }
        .unwrap();
    }
    text
}

/// A pack shaped like a large organisation's: `n` policies, almost all narrow grants of one
/// team on one database (`n` databases in all), and 20 broad guard rails, with an
/// `entities.json` listing the databases. Slicing leaves a request the guard rails and the
/// grants of its own teams on its database.
fn spread_pack_dir(n: usize) -> (TempDir, PackPaths) {
    let dir = TempDir::new().unwrap();
    let paths = PackPaths::new(dir.path().join("policies"), Path::new(REPO).join("schemas"));
    fs::create_dir_all(&paths.policies).unwrap();
    let mut entities = vec![serde_json::json!({
        "uid": {"type": "Group", "id": "oncall"}, "attrs": {}, "parents": []
    })];
    let databases = n.max(20);
    for d in 0..databases {
        entities.push(serde_json::json!({
            "uid": {"type": "Database", "id": format!("db-{d}")},
            "attrs": {"environment": "prod", "engine": "postgres", "data_class": "internal"},
            "parents": [{"type": "Environment", "id": "prod"}],
        }));
    }
    fs::write(
        paths.entities_file(),
        serde_json::to_string(&entities).unwrap(),
    )
    .unwrap();
    let guards = 20.min(n / 2);
    let mut text = String::new();
    for i in 0..guards {
        writeln!(
            text,
            "@id(\"guard-{i}\") forbid (principal, action in Action::\"requestable\", resource)\n\
             when {{ context.risk_score > {} && context.time.hour == {} }};",
            90 + i % 10,
            i % 24
        )
        .unwrap();
    }
    for i in guards..n {
        writeln!(
            text,
            "@id(\"grant-{i}\") @scope(\"db:read:{{resource.id}}\")\n\
             permit (principal in Group::\"team-{}\", action == Action::\"read\", resource == Database::\"db-{}\")\n\
             when {{ context.mfa }};",
            i % 50,
            i % databases
        )
        .unwrap();
    }
    // The benchmark request's own grant, so the decision is an allow.
    writeln!(
        text,
        "@id(\"grant-oncall\") @scope(\"db:read:{{resource.id}}\")\n\
         permit (principal in Group::\"oncall\", action == Action::\"read\", resource == Database::\"db-7\");"
    )
    .unwrap();
    fs::write(paths.policies.join("generated.cedar"), text).unwrap();
    (dir, paths)
}

/// A pack dir with the shipped schema and entities and `n` generated policies.
fn pack_dir(n: usize) -> (TempDir, PackPaths) {
    let dir = TempDir::new().unwrap();
    let paths = PackPaths::new(dir.path().join("policies"), Path::new(REPO).join("schemas"));
    fs::create_dir_all(&paths.policies).unwrap();
    fs::copy(
        Path::new(REPO).join("policies/entities.json"),
        paths.policies.join("entities.json"),
    )
    .unwrap();
    fs::write(paths.policies.join("generated.cedar"), policies(n)).unwrap();
    (dir, paths)
}

fn request() -> DecisionRequest {
    let mut context = RequestContext::neutral(RequestTime::from_unix(1_795_466_920, 0));
    context.source_ip = "10.1.2.3".parse().unwrap();
    context.risk_score = 20;
    context.mfa = true;
    context.reason = "INC-1234 stuck orders".into();
    DecisionRequest {
        principal: EntityRef::new("User", "alice"),
        groups: vec![
            EntityRef::new("Group", "oncall"),
            EntityRef::new("Group", "team-1"),
        ],
        action: "read".into(),
        resource: EntityRef::new("Database", "orders"),
        context: DecisionContext::Access(context),
        scopes: Vec::new(),
        duration: Some(Duration::from_secs(600)),
    }
}

/// The request's context as JSON, for the schema-directed way of building it.
fn context_json() -> serde_json::Value {
    serde_json::json!({
        "source_ip": "10.1.2.3", "risk_score": 20, "mfa": true,
        "reason": "INC-1234 stuck orders", "duration_secs": 600,
        "time": { "unix": 1_795_466_920, "hour": 20, "weekday": "mon" },
    })
}

/// The same decision as Cedar objects built once, for the raw `is_authorized` measurement.
struct Raw {
    request: Request,
    policies: PolicySet,
    entities: Entities,
}

fn raw(paths: &PackPaths, schema: &Schema) -> Raw {
    let text = fs::read_to_string(paths.policies.join("generated.cedar")).unwrap();
    let policies = PolicySet::from_str(&text).unwrap();
    let entities_json = fs::read_to_string(paths.entities_file()).unwrap();
    let alice = EntityUid::from_str(r#"User::"alice""#).unwrap();
    let parents: HashSet<EntityUid> = [r#"Group::"oncall""#, r#"Group::"team-1""#]
        .iter()
        .map(|g| EntityUid::from_str(g).unwrap())
        .collect();
    let entities = Entities::from_json_str(&entities_json, Some(schema))
        .unwrap()
        .add_entities([Entity::new_no_attrs(alice.clone(), parents)], Some(schema))
        .unwrap();
    let action = EntityUid::from_str(r#"Action::"read""#).unwrap();
    let context = Context::from_json_value(context_json(), Some((schema, &action))).unwrap();
    let request = Request::new(
        alice,
        action,
        EntityUid::from_str(r#"Database::"orders""#).unwrap(),
        context,
        Some(schema),
    )
    .unwrap();
    Raw {
        request,
        policies,
        entities,
    }
}

fn schema() -> Schema {
    let text = fs::read_to_string(Path::new(REPO).join("schemas/jitgate.cedarschema")).unwrap();
    Schema::from_cedarschema_str(&text).unwrap().0
}

fn decisions(c: &mut Criterion) {
    let schema = schema();
    let defaults = GrantDefaults::default();
    let request = request();
    let mut group = c.benchmark_group("decision");
    for n in [10, 1000] {
        let (_dir, paths) = pack_dir(n);
        let pack = PolicyPack::load(&paths).unwrap();
        let decision = decide(&pack, &request, &defaults).unwrap();
        assert_eq!(
            decision.outcome.as_str(),
            "allow",
            "the request must match some grants"
        );
        let raw = raw(&paths, &schema);
        let authorizer = Authorizer::new();
        group.bench_with_input(BenchmarkId::new("raw_is_authorized", n), &raw, |b, raw| {
            b.iter(|| {
                authorizer.is_authorized(black_box(&raw.request), &raw.policies, &raw.entities)
            })
        });
        group.bench_with_input(BenchmarkId::new("full_decide", n), &pack, |b, pack| {
            b.iter(|| decide(pack, black_box(&request), &defaults).unwrap())
        });
        // The same with the whole pack evaluated, as before slicing.
        group.bench_with_input(
            BenchmarkId::new("full_decide_unsliced", n),
            &pack,
            |b, pack| b.iter(|| decide(&pack.unsliced(), black_box(&request), &defaults).unwrap()),
        );
        // A principal and source IP never seen before: every per-pack cache misses.
        let mut fresh = 0u32;
        group.bench_with_input(BenchmarkId::new("full_decide_cold", n), &pack, |b, pack| {
            b.iter_batched(
                || {
                    fresh += 1;
                    let mut cold = request.clone();
                    cold.principal.id = format!("user-{fresh}");
                    if let DecisionContext::Access(context) = &mut cold.context {
                        context.source_ip = std::net::Ipv4Addr::from(0x0a00_0000 + fresh).into();
                    }
                    cold
                },
                |cold| decide(pack, black_box(&cold), &defaults).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    // The large-organisation shape: what slicing is for.
    let mut spread_request = request.clone();
    spread_request.resource = EntityRef::new("Database", "db-7");
    for n in [10, 1000] {
        let (_dir, paths) = spread_pack_dir(n);
        let pack = PolicyPack::load(&paths).unwrap();
        assert_eq!(
            decide(&pack, &spread_request, &defaults)
                .unwrap()
                .outcome
                .as_str(),
            "allow"
        );
        group.bench_with_input(BenchmarkId::new("spread_decide", n), &pack, |b, pack| {
            b.iter(|| decide(pack, black_box(&spread_request), &defaults).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("spread_decide_unsliced", n),
            &pack,
            |b, pack| {
                b.iter(|| decide(&pack.unsliced(), black_box(&spread_request), &defaults).unwrap())
            },
        );
    }
    group.finish();
}

fn contexts(c: &mut Criterion) {
    let schema = schema();
    let action = EntityUid::from_str(r#"Action::"read""#).unwrap();
    let alice = EntityUid::from_str(r#"User::"alice""#).unwrap();
    let orders = EntityUid::from_str(r#"Database::"orders""#).unwrap();
    let json = context_json();
    let mut group = c.benchmark_group("context");
    group.bench_function("from_json_value_with_schema+request", |b| {
        b.iter(|| {
            let context =
                Context::from_json_value(black_box(json.clone()), Some((&schema, &action)))
                    .unwrap();
            Request::new(
                alice.clone(),
                action.clone(),
                orders.clone(),
                context,
                Some(&schema),
            )
            .unwrap()
        })
    });
    group.finish();
}

fn loading(c: &mut Criterion) {
    let (_dir, paths) = pack_dir(1000);
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("load_and_validate_1000", |b| {
        b.iter(|| PolicyPack::load(black_box(&paths)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = decisions, contexts, loading
}
criterion_main!(benches);
