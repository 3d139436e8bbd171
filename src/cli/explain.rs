//! `jitgate explain`: how a pack decides one request, policy by policy (DESIGN §9.4), without a
//! server: what a policy author asks before changing a rule.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::{Format, PackArgs, load};
use crate::decision::GrantDefaults;
use crate::policy::explain;
use crate::policytest;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pack: PackArgs,
    /// The principal, e.g. `User::"alice"`
    #[arg(long)]
    principal: String,
    /// A group of the principal, e.g. `Group::"oncall"` (repeat, or `--groups A,B`)
    #[arg(
        long = "group",
        alias = "groups",
        value_name = "GROUP",
        value_delimiter = ','
    )]
    groups: Vec<String>,
    /// The action, e.g. `read`
    #[arg(long)]
    action: String,
    /// The resource, e.g. `Database::"orders"`
    #[arg(long)]
    resource: String,
    /// A context key, e.g. `mfa:=true`, `risk_score:=40`, `ticket=INC-42` (a string) or
    /// `KEY:=JSON`; server keys left out take neutral values, as in `jitgate test`
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = super::request::context_entry)]
    context: Vec<(String, Value)>,
    /// table (for people) or json
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// Prints the decision and each policy's part in it; exit 0, or 1 when the pack does not load
/// or the request is not one it can decide.
pub fn run(args: &ExplainArgs) -> ExitCode {
    let Some(pack) = load(&args.pack.paths()) else {
        return ExitCode::FAILURE;
    };
    let context = match super::context_table(&args.context) {
        Ok(context) => context,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let request = policytest::request_of(
        (&args.principal, &args.groups),
        (&args.action, &args.resource),
        &context,
        &[],
    );
    let explained = request.and_then(|request| {
        let decision = crate::decision::decide(&pack, &request, &GrantDefaults::default())
            .map_err(|e| e.to_string())?;
        let traces = pack.explain(&request).map_err(|e| e.to_string())?;
        Ok((decision, traces))
    });
    let (decision, traces) = match explained {
        Ok(explained) => explained,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let reasons: Vec<&str> = decision.reasons.iter().map(|r| r.code()).collect();
    match args.format {
        Format::Json => println!(
            "{}",
            json!({
                "decision": decision.outcome,
                "policies": decision.policies,
                "reasons": reasons,
                "explanation": traces,
            })
        ),
        Format::Table => {
            let by = if decision.policies.is_empty() {
                String::new()
            } else {
                format!(" by {}", decision.policies.join(", "))
            };
            let why = if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            };
            println!("{}{by}{why}\n", decision.outcome.as_str());
            if traces.is_empty() {
                println!("no policy applies to action `{}`", args.action);
            } else {
                print!("{}", explain::render(&traces));
            }
        }
    }
    ExitCode::SUCCESS
}
