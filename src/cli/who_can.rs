//! `jitgate who-can` (DESIGN §9.4): who may get an action on a resource — each group of
//! `entities.json` and each API-key principal of a configuration, with the outcome and the
//! deciding policies — and the reverse, what one principal with its groups could request.
//! Decided by the pack itself with the same neutral context as `jitgate test` (MFA off, risk
//! 0, from 127.0.0.1, now), which `--context` changes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::{Format, PackArgs, load};
use crate::config::Config;
use crate::decision::{Decision, Engine as _, GrantDefaults};
use crate::policy::PolicyPack;
use crate::policytest;

#[derive(Debug, Args)]
pub struct WhoCanArgs {
    #[command(flatten)]
    pack: PackArgs,
    /// The action (with --resource): who may get it
    #[arg(long, requires = "resource", conflicts_with = "principal")]
    action: Option<String>,
    /// The resource, e.g. `Database::"orders"`
    #[arg(long, requires = "action")]
    resource: Option<String>,
    /// Instead: what this principal (e.g. `User::"alice"`) could request
    #[arg(long, conflicts_with_all = ["action", "resource"])]
    principal: Option<String>,
    /// A group of --principal (repeat, or `--groups A,B`)
    #[arg(
        long = "group",
        alias = "groups",
        value_name = "GROUP",
        value_delimiter = ',',
        requires = "principal"
    )]
    groups: Vec<String>,
    /// Also ask for the API-key principals of this configuration (`[[identity.api_keys]]`)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A context key, as for `jitgate explain` (e.g. `mfa:=true`)
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = super::request::context_entry)]
    context: Vec<(String, Value)>,
    /// table (for people) or json
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// One line of the answer.
#[derive(Debug, Serialize)]
struct Line {
    /// Who (a group's members, or a principal) or what (action on resource).
    subject: String,
    outcome: String,
    policies: Vec<String>,
    /// Why a deny (`forbidden`, `no_permit`, `invalid_scope`, …).
    reasons: Vec<String>,
}

pub fn run(args: &WhoCanArgs) -> ExitCode {
    let Some(pack) = load(&args.pack.paths()) else {
        return ExitCode::FAILURE;
    };
    let lines = match (&args.action, &args.resource, &args.principal) {
        (Some(action), Some(resource), None) => who_can(&pack, args, action, resource),
        (None, None, Some(principal)) => what_can(&pack, args, principal),
        _ => Err("give --action and --resource, or --principal".into()),
    };
    let lines = match lines {
        Ok(lines) => lines,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&lines).unwrap_or_default()),
        Format::Table => {
            let width = lines
                .iter()
                .map(|l| l.subject.chars().count())
                .max()
                .unwrap_or(0);
            for line in &lines {
                let why = if line.reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", line.reasons.join(", "))
                };
                let by = if line.policies.is_empty() {
                    why
                } else {
                    format!("{why}  {}", line.policies.join(", "))
                };
                println!("{:width$}  {:8}{by}", line.subject, line.outcome);
            }
        }
    }
    ExitCode::SUCCESS
}

fn decide(
    pack: &PolicyPack,
    (principal, groups): (&str, &[String]),
    (action, resource): (&str, &str),
    context: &toml::Table,
) -> Result<Decision, String> {
    let request = policytest::request_of((principal, groups), (action, resource), context, &[])?;
    crate::decision::decide(pack, &request, &GrantDefaults::default()).map_err(|e| e.to_string())
}

fn line(subject: String, decision: Decision) -> Line {
    Line {
        subject,
        outcome: decision.outcome.as_str().to_owned(),
        reasons: decision
            .reasons
            .iter()
            .map(|r| r.code().to_owned())
            .collect(),
        policies: decision.policies,
    }
}

/// Each group's members (of each principal type that can be in it) and each API-key principal,
/// for `action` on `resource`.
fn who_can(
    pack: &PolicyPack,
    args: &WhoCanArgs,
    action: &str,
    resource: &str,
) -> Result<Vec<Line>, String> {
    let context = super::context_table(&args.context)?;
    let kinds = pack.principals_and_groups(action);
    if kinds.is_empty() {
        return Err(format!("no principal may ask for action `{action}`"));
    }
    let mut lines = Vec::new();
    for (principal_type, groups) in &kinds {
        // A member of the group and of nothing else (an id fit for scopes like
        // `deployer:{principal.id}`, which no policy names).
        let member = format!("{principal_type}::\"who-can-member\"");
        for group in groups {
            let decision = decide(
                pack,
                (&member, &[group.to_string()]),
                (action, resource),
                &context,
            )?;
            lines.push(line(format!("{principal_type} in {group}"), decision));
        }
    }
    if let Some(path) = &args.config {
        let config = Config::load(Some(path), std::iter::empty())
            .map_err(|e| format!("configuration: {e}"))?;
        for key in &config.identity.api_keys {
            let decision = decide(
                pack,
                (&key.principal, &key.groups),
                (action, resource),
                &context,
            )?;
            lines.push(line(
                format!("{} (API key {})", key.principal, key.name),
                decision,
            ));
        }
    }
    Ok(lines)
}

/// Every action and resource `principal` with `--group`s could request, and what would
/// happen; what would be denied is left out.
fn what_can(pack: &PolicyPack, args: &WhoCanArgs, principal: &str) -> Result<Vec<Line>, String> {
    let context = super::context_table(&args.context)?;
    let mut lines = Vec::new();
    for action in pack.requestable_actions() {
        for resource in pack.requestable_resources(&action) {
            let resource = resource.to_string();
            let decision = decide(
                pack,
                (principal, &args.groups),
                (&action, &resource),
                &context,
            )?;
            if decision.outcome != crate::decision::Outcome::Deny {
                lines.push(line(format!("{action} on {resource}"), decision));
            }
        }
    }
    Ok(lines)
}
