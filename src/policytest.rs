//! Policy test cases (DESIGN §4): TOML files of `[[case]]` tables, each a request and the
//! decision it must get, run against a pack by `jitgate test`.
//!
//! Beyond the keys of DESIGN §4 a case may also check `reasons` (deny reason codes),
//! `audience`, `break_glass` and `stages`. Unknown keys are an error, so a typo cannot pass silently.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::decision::{
    Decision, DecisionContext, DecisionRequest, EntityRef, Extension, GrantDefaults, Outcome,
    RequestContext, RequestTime, Weekday,
};
use crate::policy::{PolicyPack, RESERVED_ACTIONS};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<Case>,
}

/// One test case, in the TOML format of DESIGN §4.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub principal: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub action: String,
    pub resource: String,
    #[serde(default)]
    pub context: toml::Table,
    #[serde(default)]
    pub scopes_requested: Vec<String>,
    pub expect: Outcome,
    pub scopes: Option<Vec<String>>,
    pub ttl: Option<String>,
    pub approvals: Option<u32>,
    /// The approval stages expected, in order, each `name:approvals` (`["lead:1",
    /// "security:2"]`; `["default:2"]` for `@approval("2")`).
    pub stages: Option<Vec<String>>,
    pub policies: Option<Vec<String>>,
    pub reasons: Option<Vec<String>>,
    pub audience: Option<Vec<String>>,
    pub break_glass: Option<bool>,
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone)]
pub enum CaseOutcome {
    Passed,
    Failed {
        mismatches: Vec<Mismatch>,
        decision: Box<Decision>,
    },
    /// The case could not be run: a malformed case or a request the pack rejects.
    Error(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    pub outcome: CaseOutcome,
}

/// Everything one run found.
#[derive(Debug, Default)]
pub struct Report {
    pub results: Vec<CaseResult>,
    /// Files that could not be read or parsed; each counts as one failure.
    pub file_errors: Vec<(PathBuf, String)>,
    /// Policies that decided no case.
    pub uncovered: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, CaseOutcome::Passed))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed() + self.file_errors.len()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            CaseOutcome::Passed => write!(f, "ok {}: {}", self.file.display(), self.name),
            CaseOutcome::Error(message) => {
                write!(
                    f,
                    "ERROR {}: {}\n  {message}",
                    self.file.display(),
                    self.name
                )
            }
            CaseOutcome::Failed {
                mismatches,
                decision,
            } => {
                write!(f, "FAIL {}: {}", self.file.display(), self.name)?;
                for m in mismatches {
                    write!(
                        f,
                        "\n  {}: expected {}, actual {}",
                        m.field, m.expected, m.actual
                    )?;
                }
                write!(
                    f,
                    "\n  decided: {} by [{}]",
                    decision.outcome.as_str(),
                    decision.policies.join(", ")
                )?;
                if !decision.reasons.is_empty() {
                    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code()).collect();
                    write!(f, ", reasons [{}]", codes.join(", "))?;
                }
                for error in &decision.errors {
                    write!(f, "\n  policy `{}` failed: {}", error.policy, error.message)?;
                }
                Ok(())
            }
        }
    }
}

/// The `*.toml` files at `paths` (files as given, directories searched recursively), sorted.
pub fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_toml(path, &mut files)?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            collect_toml(&path, out)?;
        } else if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs every case of `files` against `pack`.
pub fn run(pack: &PolicyPack, files: &[PathBuf], defaults: &GrantDefaults) -> Report {
    let mut report = Report::default();
    let mut deciding = HashSet::new();
    for file in files {
        let parsed = fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str::<CaseFile>(&text).map_err(|e| e.to_string()));
        let cases = match parsed {
            Ok(parsed) => parsed.case,
            Err(message) => {
                report
                    .file_errors
                    .push((file.clone(), message.trim_end().to_owned()));
                continue;
            }
        };
        for case in cases {
            let outcome = match run_case(pack, &case, defaults) {
                Ok(decision) => {
                    deciding.extend(decision.policies.iter().cloned());
                    let mismatches = compare(&case, &decision);
                    if mismatches.is_empty() {
                        CaseOutcome::Passed
                    } else {
                        CaseOutcome::Failed {
                            mismatches,
                            decision: Box::new(decision),
                        }
                    }
                }
                Err(message) => CaseOutcome::Error(message),
            };
            report.results.push(CaseResult {
                file: file.clone(),
                name: case.name,
                outcome,
            });
        }
    }
    report.uncovered = pack
        .policies()
        .filter(|p| !deciding.contains(&p.id))
        .map(|p| p.id.clone())
        .collect();
    report
}

/// Decides one case.
pub fn run_case(
    pack: &PolicyPack,
    case: &Case,
    defaults: &GrantDefaults,
) -> Result<Decision, String> {
    let request = request_of(
        (&case.principal, &case.groups),
        (&case.action, &case.resource),
        &case.context,
        &case.scopes_requested,
    )?;
    crate::decision::decide(pack, &request, defaults).map_err(|e| e.to_string())
}

/// The request a case (or `jitgate explain`) describes: `principal` with `groups` (Cedar
/// form), `action` on `resource`, the `context` keys given (server keys not given take their
/// neutral values), asking for `scopes`.
pub fn request_of(
    (principal, groups): (&str, &[String]),
    (action, resource): (&str, &str),
    context: &toml::Table,
    scopes: &[String],
) -> Result<DecisionRequest, String> {
    let principal: EntityRef = principal.parse()?;
    let resource: EntityRef = resource.parse()?;
    let groups = groups
        .iter()
        .map(|g| g.parse())
        .collect::<Result<Vec<EntityRef>, String>>()?;
    let (context, duration) = if RESERVED_ACTIONS.contains(&action) {
        let json = serde_json::to_value(context).map_err(|e| format!("context: {e}"))?;
        let serde_json::Value::Object(map) = json else {
            return Err("context must be a table".into());
        };
        (DecisionContext::Other(map), None)
    } else {
        let (context, duration) = request_context(context)?;
        (DecisionContext::Access(context), duration)
    };
    Ok(DecisionRequest {
        principal,
        groups,
        action: action.to_owned(),
        resource,
        context,
        scopes: scopes.to_vec(),
        duration,
    })
}

/// The access-request context of a case: server keys not given take their neutral values
/// (127.0.0.1, 0, false, "", 0, now, false, no extension); `duration_secs` is the requested
/// duration; `extends` and `extended_secs` make it an extension.
fn request_context(table: &toml::Table) -> Result<(RequestContext, Option<Duration>), String> {
    let mut context = RequestContext::neutral(RequestTime::now_utc());
    let mut duration = None;
    let (mut extends, mut extended_secs) = (None, None);
    for (key, value) in table {
        let wrong = |expected: &str| format!("context.{key}: expected {expected}, got {value}");
        match key.as_str() {
            "source_ip" => {
                context.source_ip = value
                    .as_str()
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .ok_or_else(|| wrong("an IP address string"))?;
            }
            "risk_score" => {
                context.risk_score = value.as_integer().ok_or_else(|| wrong("an integer"))?;
            }
            "mfa" => context.mfa = value.as_bool().ok_or_else(|| wrong("a boolean"))?,
            "dpop_bound" => {
                context.dpop_bound = value.as_bool().ok_or_else(|| wrong("a boolean"))?;
            }
            "reason" => {
                context.reason = value.as_str().ok_or_else(|| wrong("a string"))?.to_owned();
            }
            "duration_secs" => {
                let secs = value
                    .as_integer()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| wrong("a non-negative integer"))?;
                duration = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "time" => context.time = case_time(value).map_err(|e| format!("context.time: {e}"))?,
            "extends" => {
                extends = Some(value.as_str().ok_or_else(|| wrong("a string"))?.to_owned());
            }
            "extended_secs" => {
                extended_secs = Some(value.as_integer().ok_or_else(|| wrong("an integer"))?);
            }
            _ => {
                let json =
                    serde_json::to_value(value).map_err(|e| format!("context.{key}: {e}"))?;
                context.extra.insert(key.clone(), json);
            }
        }
    }
    // An extension's keys come together: either one makes the case an extension.
    if extends.is_some() || extended_secs.is_some() {
        context.extension = Some(Extension {
            extends: extends.unwrap_or_default(),
            extended_secs: extended_secs.unwrap_or(0),
        });
    }
    Ok((context, duration))
}

/// `time = { unix = …, hour = …, weekday = "…" }`: `hour` and `weekday` derive from `unix` (UTC)
/// unless given.
fn case_time(value: &toml::Value) -> Result<RequestTime, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CaseTime {
        unix: Option<i64>,
        hour: Option<i64>,
        weekday: Option<Weekday>,
    }
    let given: CaseTime = value.clone().try_into().map_err(|e: toml::de::Error| {
        format!("{} (keys: unix, hour 0-23, weekday mon…sun)", e.message())
    })?;
    let mut time = match given.unix {
        Some(unix) => RequestTime::from_unix(unix, 0),
        None => RequestTime::now_utc(),
    };
    if let Some(hour) = given.hour {
        if !(0..24).contains(&hour) {
            return Err(format!("hour {hour} is not 0-23"));
        }
        time.hour = hour;
    }
    if let Some(weekday) = given.weekday {
        time.weekday = weekday;
    }
    Ok(time)
}

fn compare(case: &Case, decision: &Decision) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    let mut check = |field: &'static str, expected: String, actual: String| {
        if expected != actual {
            mismatches.push(Mismatch {
                field,
                expected,
                actual,
            });
        }
    };
    check(
        "decision",
        case.expect.as_str().to_owned(),
        decision.outcome.as_str().to_owned(),
    );
    if let Some(scopes) = &case.scopes {
        check("scopes", set(scopes), set(&decision.scopes));
    }
    if let Some(ttl) = &case.ttl {
        let expected = humantime::parse_duration(ttl)
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|e| format!("{ttl:?} (not a duration: {e})"));
        check(
            "ttl",
            expected,
            humantime::format_duration(decision.lifetime).to_string(),
        );
    }
    if let Some(approvals) = case.approvals {
        check(
            "approvals",
            approvals.to_string(),
            decision.approvals_required.to_string(),
        );
    }
    if let Some(stages) = &case.stages {
        let actual: Vec<String> = (decision.stages.iter())
            .map(|s| format!("{}:{}", s.name, s.required))
            .collect();
        check("stages", format!("{stages:?}"), format!("{actual:?}"));
    }
    if let Some(policies) = &case.policies {
        check("policies", set(policies), set(&decision.policies));
    }
    if let Some(reasons) = &case.reasons {
        let actual: Vec<&str> = decision.reasons.iter().map(|r| r.code()).collect();
        check("reasons", set(reasons), set(&actual));
    }
    if let Some(audience) = &case.audience {
        check("audience", set(audience), set(&decision.audience));
    }
    if let Some(break_glass) = case.break_glass {
        check(
            "break_glass",
            break_glass.to_string(),
            decision.break_glass_allowed.to_string(),
        );
    }
    mismatches
}

/// A list as a sorted set, printed `["a", "b"]`.
fn set<S: AsRef<str>>(items: &[S]) -> String {
    let sorted: BTreeSet<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("{sorted:?}")
}
