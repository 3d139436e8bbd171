//! `jitgate replay` (DESIGN §9.4): decides the access requests a trail recorded again, under a
//! candidate pack, with the principal, groups and context each was decided with, and says what
//! would change. Reads the trail from the store of a configuration, or from a file written by
//! `jitgate audit export` (so a policy repository's CI needs no access to the database).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::{Format, PackArgs, load};
use crate::audit::AuditFilter;
use crate::config::Config;
use crate::decision::GrantDefaults;
use crate::policy::PolicyPack;
use crate::policytest;

/// The exit status when `--fail-on-change` finds a change.
const CHANGED: u8 = 3;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The candidate pack
    #[command(flatten)]
    pack: PackArgs,
    /// Read the trail from this configuration's store (and decide with its lifetimes)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "trail",
        conflicts_with = "trail"
    )]
    config: Option<PathBuf>,
    /// Read the trail from this `jitgate audit export` file (`-`: standard input)
    #[arg(long, value_name = "FILE")]
    trail: Option<PathBuf>,
    /// Only requests decided since (a duration back from now, e.g. `7d`, or RFC 3339 / unix)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// table (for people) or json
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Exit 3 when any decision would change
    #[arg(long)]
    fail_on_change: bool,
}

/// One recorded request decided again.
#[derive(Debug, Serialize)]
struct Change {
    request_id: String,
    principal: String,
    action: String,
    resource: String,
    recorded: String,
    recorded_policies: Vec<String>,
    candidate: String,
    candidate_policies: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    replayed: usize,
    /// (recorded → candidate) outcome: how many.
    outcomes: BTreeMap<String, usize>,
    changed: Vec<Change>,
    /// Decisions recorded before jitgate kept their context, which cannot be replayed
    /// faithfully and are left out.
    without_context: usize,
    /// Recorded requests the candidate cannot decide (an action or resource it lacks).
    undecidable: Vec<(String, String)>,
}

pub fn run(args: &ReplayArgs) -> ExitCode {
    let Some(pack) = load(&args.pack.paths()) else {
        return ExitCode::FAILURE;
    };
    let since = match args.since.as_deref().map(since) {
        Some(Ok(at)) => Some(at),
        Some(Err(message)) => {
            eprintln!("error: --since: {message}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    let (events, defaults) = match read_trail(args, since) {
        Ok(read) => read,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let report = replay(&pack, &events, &defaults, since);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        Format::Table => print_table(&report),
    }
    if args.fail_on_change && !(report.changed.is_empty() && report.undecidable.is_empty()) {
        ExitCode::from(CHANGED)
    } else {
        ExitCode::SUCCESS
    }
}

/// `7d` back from now, or a time `audit` understands.
fn since(text: &str) -> Result<i64, String> {
    match humantime::parse_duration(text) {
        Ok(back) => {
            let now = crate::clock::stored_secs(crate::clock::unix_now());
            Ok(now.saturating_sub(i64::try_from(back.as_secs()).unwrap_or(i64::MAX)))
        }
        Err(_) => crate::audit::parse_time(text),
    }
}

/// The `decision` events of the trail, and the lifetimes to decide with.
fn read_trail(
    args: &ReplayArgs,
    since: Option<i64>,
) -> Result<(Vec<Value>, GrantDefaults), String> {
    if let Some(path) = &args.trail {
        let reader: Box<dyn std::io::BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Box::new(std::io::BufReader::new(file))
        };
        let mut events = Vec::new();
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let event: Value = serde_json::from_str(&line).map_err(|e| {
                format!("{}:{}: not an audit event: {e}", path.display(), number + 1)
            })?;
            events.push(event);
        }
        return Ok((events, GrantDefaults::default()));
    }
    let Some(path) = &args.config else {
        return Err("give --config or --trail".into());
    };
    let config =
        Config::load(Some(path), std::env::vars()).map_err(|e| format!("configuration: {e}"))?;
    let runtime = super::runtime().map_err(|_| "cannot start".to_owned())?;
    let events = runtime.block_on(async {
        let store = crate::store::Store::open_existing(&config.database_url, &config.data_dir)
            .await
            .map_err(|e| format!("store: {e}"))?;
        let filter = AuditFilter {
            kind: Some("decision".into()),
            since,
            ..AuditFilter::default()
        };
        let mut events = Vec::new();
        let mut after = i64::MIN;
        loop {
            let page = store
                .audit_page(&filter, after, 1_000)
                .await
                .map_err(|e| format!("store: {e}"))?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            for event in page {
                events.push(serde_json::to_value(event).map_err(|e| e.to_string())?);
            }
        }
        Ok::<_, String>(events)
    })?;
    Ok((events, config.grant_defaults()))
}

fn replay(
    pack: &PolicyPack,
    events: &[Value],
    defaults: &GrantDefaults,
    since: Option<i64>,
) -> Report {
    let mut report = Report::default();
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let list = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    for event in events {
        if event["type"] != "decision"
            || since.is_some_and(|since| event["at"].as_i64().unwrap_or(0) < since)
        {
            continue;
        }
        let data = &event["data"];
        let Some(context) = data
            .get("context")
            .and_then(|c| toml::Value::try_from(c).ok())
        else {
            report.without_context += 1;
            continue;
        };
        let Some(context) = context.as_table() else {
            report.without_context += 1;
            continue;
        };
        let request_id = text(&event["request_id"]);
        let (principal, action, resource) = (
            text(&data["principal"]),
            text(&data["action"]),
            text(&data["resource"]),
        );
        let request = policytest::request_of(
            (&principal, &list(&data["groups"])),
            (&action, &resource),
            context,
            &list(&data["scopes_requested"]),
        );
        let decision = request.and_then(|request| {
            crate::decision::decide(pack, &request, defaults).map_err(|e| e.to_string())
        });
        let decision = match decision {
            Ok(decision) => decision,
            Err(message) => {
                report.undecidable.push((request_id, message));
                continue;
            }
        };
        report.replayed += 1;
        let recorded = text(&data["decision"]);
        let candidate = decision.outcome.as_str().to_owned();
        *report
            .outcomes
            .entry(format!("{recorded} -> {candidate}"))
            .or_default() += 1;
        let mut recorded_policies = list(&data["policies"]);
        let mut candidate_policies = decision.policies;
        recorded_policies.sort();
        candidate_policies.sort();
        if recorded != candidate || recorded_policies != candidate_policies {
            report.changed.push(Change {
                request_id,
                principal,
                action,
                resource,
                recorded,
                recorded_policies,
                candidate,
                candidate_policies,
            });
        }
    }
    report
}

fn print_table(report: &Report) {
    println!("{} recorded requests decided again", report.replayed);
    for (transition, count) in &report.outcomes {
        println!("  {transition:<22} {count}");
    }
    if report.without_context > 0 {
        println!(
            "{} decisions recorded before their context was kept were left out",
            report.without_context
        );
    }
    for (request_id, message) in &report.undecidable {
        println!("cannot decide {request_id} under the candidate: {message}");
    }
    if report.changed.is_empty() {
        println!("no decision changes");
        return;
    }
    println!("{} decisions change:", report.changed.len());
    for change in &report.changed {
        println!(
            "  {}  {} {} on {}: {} ({}) -> {} ({})",
            change.request_id,
            change.principal,
            change.action,
            change.resource,
            change.recorded,
            change.recorded_policies.join(", "),
            change.candidate,
            change.candidate_policies.join(", "),
        );
    }
}
