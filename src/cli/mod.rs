//! The `jitgate` command line: parses arguments and runs one command. Each command prints what a
//! person needs and returns the process exit code; the work itself lives in the library.

#![expect(clippy::print_stdout, reason = "the command line prints its results")]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::decision::GrantDefaults;
use crate::policy::{PackPaths, PolicyPack};
use crate::policytest;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Just-in-time access: short-lived tokens decided by Cedar policies"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy pack: exit 0 with a summary, or 1 listing every problem as file:line:col.
    Check(PackArgs),
    /// Run policy test cases (TOML) against a pack; exit 1 on any failure.
    Test {
        #[command(flatten)]
        pack: PackArgs,
        /// Case files or directories [default: <policies>/tests]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct PackArgs {
    /// Directory of *.cedar policies and entities.json
    #[arg(long, value_name = "DIR", default_value = "policies")]
    policies: PathBuf,
    /// Directory of *.cedarschema files
    #[arg(long, value_name = "DIR", default_value = "schemas")]
    schemas: PathBuf,
}

impl PackArgs {
    fn paths(&self) -> PackPaths {
        PackPaths::new(&self.policies, &self.schemas)
    }
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(pack) => check(&pack.paths()),
        Command::Test { pack, paths } => test(&pack.paths(), paths),
    }
}

/// Loads the pack, printing its warnings, or every error.
fn load(paths: &PackPaths) -> Option<PolicyPack> {
    match PolicyPack::load(paths) {
        Ok(pack) => {
            for warning in pack.warnings() {
                eprintln!("warning: {warning}");
            }
            Some(pack)
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            let n = errors.0.len();
            eprintln!(
                "error: the pack is invalid ({n} problem{})",
                if n == 1 { "" } else { "s" }
            );
            None
        }
    }
}

fn check(paths: &PackPaths) -> ExitCode {
    let Some(pack) = load(paths) else {
        return ExitCode::FAILURE;
    };
    println!(
        "ok: {} policies in {} files, version {}",
        pack.policy_count(),
        pack.files().len(),
        pack.version()
    );
    ExitCode::SUCCESS
}

fn test(paths: &PackPaths, case_paths: Vec<PathBuf>) -> ExitCode {
    let Some(pack) = load(paths) else {
        return ExitCode::FAILURE;
    };
    let whole_suite = case_paths.is_empty();
    let case_paths = if whole_suite {
        vec![paths.policies.join("tests")]
    } else {
        case_paths
    };
    let files = match policytest::case_files(&case_paths) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let report = policytest::run(&pack, &files, &GrantDefaults::default());
    for (file, message) in &report.file_errors {
        println!("ERROR {}: {message}", file.display());
    }
    for result in &report.results {
        if !matches!(result.outcome, policytest::CaseOutcome::Passed) {
            println!("{result}");
        }
    }
    if report.results.is_empty() && report.file_errors.is_empty() {
        eprintln!("error: no test cases found");
        return ExitCode::FAILURE;
    }
    if whole_suite && !report.uncovered.is_empty() {
        println!(
            "note: no case is decided by: {}",
            report.uncovered.join(", ")
        );
    }
    println!("{} passed, {} failed", report.passed(), report.failed());
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
