//! `jitgate test` on mutated and arbitrary test-case TOML.

use std::fs;

use jitgate::decision::GrantDefaults;
use jitgate::policy::{PackPaths, PolicyPack};
use jitgate::policytest::{self, CaseOutcome};
use proptest::prelude::*;
use tempfile::TempDir;

use super::mutation::{self, Edit};
use super::{proptest_config, repo};

const TOKENS: &[&str] = &[
    "[[case]]",
    "[case]",
    "name = \"x\"",
    "principal = ",
    "groups = ",
    "action = ",
    "resource = ",
    "expect = ",
    "\"allow\"",
    "\"deny\"",
    "\"escalate\"",
    "scopes = ",
    "ttl = \"1h\"",
    "ttl = \"-1s\"",
    "approvals = 4294967296",
    "context = ",
    "[case.context]",
    "time = ",
    "1979-05-27T07:32:00Z",
    "risk_score = -1",
    "mfa = ",
    "source_ip = \"::1\"",
    "source_ip = \"x\"",
    "duration_secs = 18446744073709551615",
    "User::\"a\"",
    "Group::\"dba\"",
    "Database::\"orders\"",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "=",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "#",
    "\\",
    "\\u0000",
    "inf",
    "nan",
    "1e400",
    "true",
    "é",
];

#[test]
fn a_mutated_case_file_runs_or_says_what_is_wrong() {
    let pack = PolicyPack::load(&PackPaths::new(
        repo().join("policies"),
        repo().join("schemas"),
    ))
    .unwrap();
    let mut bases = Vec::new();
    for entry in fs::read_dir(repo().join("policies/tests")).unwrap() {
        bases.push(fs::read(entry.unwrap().path()).unwrap());
    }
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("cases.toml");
    let defaults = GrantDefaults::default();
    let input = (
        any::<usize>(),
        prop_oneof![4 => mutation::edits().prop_map(Some), 1 => Just(None::<Vec<Edit>>)],
        mutation::arbitrary_input(),
    );
    proptest!(proptest_config(), |((index, edits, arbitrary) in input)| {
        let contents = match &edits {
            Some(edits) => mutation::apply(&bases[index % bases.len()], edits, TOKENS),
            None => arbitrary,
        };
        fs::write(&file, &contents).unwrap();
        let report = policytest::run(&pack, std::slice::from_ref(&file), &defaults);
        for (_, message) in &report.file_errors {
            prop_assert!(!message.trim().is_empty(), "an empty file error");
        }
        for result in &report.results {
            if let CaseOutcome::Error(message) = &result.outcome {
                prop_assert!(!message.trim().is_empty(), "case {}: an empty error", result.name);
            }
        }
    });
}
