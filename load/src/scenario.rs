//! The kinds of request the harness sends, and the mix of them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::server::{API_KEY, DevTokens};

/// One kind of request in the mix.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) weight: u32,
    pub(crate) path: &'static str,
    pub(crate) credential: Option<String>,
    pub(crate) body: Value,
    pub(crate) expected: u16,
    /// Text the answer must contain (cedar-agent answers 200 to a denial too).
    pub(crate) expected_text: Option<&'static str>,
}

impl Scenario {
    fn new(name: &'static str, credential: Option<String>, body: Value, expected: u16) -> Self {
        Self {
            name,
            weight: 1,
            path: "/v1/access-requests",
            credential,
            body,
            expected,
            expected_text: None,
        }
    }
}

const KINDS: [&str; 4] = ["allow", "allow-key", "deny", "escalate"];

/// `allow=70,deny=10,…` as weights by kind.
pub(crate) fn parse_mix(mix: &str) -> Result<BTreeMap<&str, u32>, String> {
    let mut weights = BTreeMap::new();
    for part in mix.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: `{part}` is not kind=weight"))?;
        let weight: u32 = weight
            .parse()
            .map_err(|_| format!("--mix: `{weight}` is not a whole number"))?;
        if !KINDS.contains(&name) {
            return Err(format!(
                "--mix: unknown kind `{name}`; kinds: {}",
                KINDS.join(", ")
            ));
        }
        weights.insert(name, weight);
    }
    if weights.values().all(|w| *w == 0) {
        return Err("--mix: every weight is zero".into());
    }
    Ok(weights)
}

/// The mix against jitgate's access-request endpoint.
pub(crate) fn jitgate_scenarios(
    weights: &BTreeMap<&str, u32>,
    dev: &DevTokens,
) -> Result<Vec<Scenario>, String> {
    let alice = dev.mint("alice", &["oncall"], true)?;
    let mallory = dev.mint("mallory", &[], false)?;
    let read = json!({"action": "read", "resource": "Database::\"orders\"", "reason": "load"});
    let mut all = vec![
        Scenario::new("allow", Some(alice.clone()), read.clone(), 201),
        Scenario::new(
            "allow-key",
            Some(API_KEY.into()),
            json!({"action": "deploy", "resource": "Host::\"web-1\"", "reason": "load"}),
            201,
        ),
        Scenario::new("deny", Some(mallory), read, 403),
        Scenario::new(
            "escalate",
            Some(alice),
            json!({"action": "write", "resource": "Database::\"orders\"", "reason": "load"}),
            202,
        ),
    ];
    for scenario in &mut all {
        scenario.weight = weights.get(scenario.name).copied().unwrap_or(0);
    }
    all.retain(|s| s.weight > 0);
    Ok(all)
}

/// The `allow` request of the mix, to the stripped endpoint: the same principal, groups, MFA,
/// action, resource and reason, named in the body instead of proven by a token.
pub(crate) fn stripped_scenario() -> Scenario {
    Scenario {
        path: "/bench/stripped",
        ..Scenario::new(
            "allow-stripped",
            None,
            json!({
                "principal": "User::\"alice\"", "groups": ["Group::\"oncall\""], "mfa": true,
                "action": "read", "resource": "Database::\"orders\"", "reason": "load",
            }),
            201,
        )
    }
}

/// The `allow` request of the mix as a cedar-agent authorization query.
pub(crate) fn cedar_agent_scenario(inputs: &Path) -> Result<Scenario, String> {
    let path = inputs.join("query.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Scenario {
        path: "/v1/is_authorized",
        expected_text: Some("\"decision\":\"Allow\""),
        ..Scenario::new("allow-cedar-agent", None, body, 200)
    })
}
