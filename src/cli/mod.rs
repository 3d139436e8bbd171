//! The `jitgate` command line: parses arguments and runs one command. Each command prints what a
//! person needs and returns the process exit code; the work itself lives in the library.

#![expect(clippy::print_stdout, reason = "the command line prints its results")]

mod audit;
mod explain;
mod replay;
mod request;
mod who_can;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::decision::GrantDefaults;
use crate::identity::DevIssuer;
use crate::policy::{PackPaths, PolicyPack};
use crate::policytest;
use crate::store::Store;
use crate::token::KeyRing;

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
    /// Serve the access API (quickstart without --config or JITGATE_ keys: dev issuer, shipped
    /// pack, ./data).
    Serve(ServeArgs),
    /// Print an identity token from the dev issuer (trusted while [identity.dev] is enabled).
    DevToken {
        #[command(flatten)]
        config: ConfigArgs,
        /// The principal id (`User::"<sub>"`)
        #[arg(long)]
        sub: String,
        /// Comma-separated group ids
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Claim that the user signed in with MFA
        #[arg(long)]
        mfa: bool,
        /// Token lifetime
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Ask a jitgate server for access and print the token (exit 0); denied: 2; expired or
    /// cancelled: 3; pending without --wait: 4; any error: 1.
    Request(request::Ask),
    /// Work with issued access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the signing keys in <data_dir>/keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check or export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Bring the database's schema up to this binary's and exit (the server also does when it
    /// starts; run this first when several replicas share a PostgreSQL database).
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Validate a policy pack: exit 0 with a summary, or 1 listing every problem as file:line:col.
    Check {
        #[command(flatten)]
        pack: PackArgs,
        /// Check this configuration file too, and the pack it names (`[policy]`)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Exit 1 when there is any warning (a permit reaching approve or administer without
        /// naming them, a policy that can never match, …), as a CI gate would
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Explain how a pack decides one request: each policy for the action, whether its
    /// principal and resource matched and its condition held.
    Explain(explain::ExplainArgs),
    /// Decide recorded access requests again under a candidate pack and say what changes
    /// (exit 3 with --fail-on-change when anything does).
    Replay(replay::ReplayArgs),
    /// Who may get an action on a resource (each group, each API key), or what one principal
    /// could request.
    WhoCan(who_can::WhoCanArgs),
    /// Run policy test cases (TOML) against a pack; exit 1 on any failure.
    Test {
        #[command(flatten)]
        pack: PackArgs,
        /// Decide as this configuration does: its pack (`[policy]`), `default_ttl`, `max_ttl` and
        /// `default_audience` [default: DESIGN's defaults]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Case files or directories [default: <policies>/tests]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Verify an access token against a server's published keys and print its claims.
    Verify {
        /// The jitgate server: its metadata names the issuer and the JWKS
        #[arg(
            long,
            value_name = "URL",
            conflicts_with = "jwks",
            required_unless_present = "jwks"
        )]
        server: Option<String>,
        /// A JWKS URL (the issuer is then not checked)
        #[arg(long, value_name = "URL")]
        jwks: Option<String>,
        /// Check that the token is for this audience
        #[arg(long)]
        audience: Option<String>,
        /// The DPoP proof the token is presented with (a DPoP-bound token needs one)
        #[arg(long, value_name = "JWT", requires_all = ["method", "url"])]
        dpop_proof: Option<String>,
        /// The method of the request the proof is for
        #[arg(long, requires = "dpop_proof")]
        method: Option<String>,
        /// The URL of the request the proof is for
        #[arg(long, requires = "dpop_proof")]
        url: Option<String>,
        /// The token, or `-` to read it from standard input (out of the shell's history)
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and check every signed head in it: exit 0 with its head, or 1 naming
    /// the first edited, deleted or reordered event or the head that no longer matches.
    Verify {
        /// A signed head kept outside (`GET /v1/audit/head`): a file holding it, or the URL
        /// to fetch it from. The trail must still contain it.
        #[arg(long, value_name = "FILE|URL")]
        head: Option<String>,
    },
    /// Write events as JSON lines on stdout, oldest first.
    Export {
        /// From this time on (RFC 3339 or unix seconds)
        #[arg(long, value_parser = crate::audit::parse_time)]
        since: Option<i64>,
        /// Before this time (RFC 3339 or unix seconds)
        #[arg(long, value_parser = crate::audit::parse_time)]
        until: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the first signing key if there is none.
    Generate,
    /// Add a new signing key; restart the server to sign with it.
    Rotate,
    /// List the keys, newest last.
    List,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// jitgate.toml; without it (and without JITGATE_CONFIG), the quickstart configuration
    #[arg(long, value_name = "FILE", env = "JITGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[cfg(feature = "bench")]
    #[command(flatten)]
    bench: BenchArgs,
}

/// Measurement switches (`bench` builds only; see `jitgate-load`).
#[cfg(feature = "bench")]
#[derive(Debug, Args)]
struct BenchArgs {
    /// Serve POST /bench/stripped: parse, decide and sign, nothing else
    #[arg(long)]
    bench_stripped_endpoint: bool,
    /// Write nothing to the store (no audit trail): to measure what durable audit costs
    #[arg(long)]
    bench_discard_writes: bool,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, ExitCode> {
        Config::load(self.config.as_deref(), std::env::vars()).map_err(|e| {
            eprintln!("error: configuration: {e}");
            ExitCode::FAILURE
        })
    }
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

/// How a report is printed: for people, or for programs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Context keys given as `--context KEY=VALUE` (or `KEY:=JSON`), as a test case's table: what
/// `jitgate test` cases, `explain` and `who-can` decide with.
fn context_table(entries: &[(String, serde_json::Value)]) -> Result<toml::Table, String> {
    let mut table = toml::Table::new();
    for (key, value) in entries {
        let value =
            toml::Value::try_from(value).map_err(|e| format!("context key `{key}`: {e}"))?;
        table.insert(key.clone(), value);
    }
    Ok(table)
}

/// The runtime of a command that talks to a server or the store (exit 1 if it cannot start).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::DevToken {
            config,
            sub,
            groups,
            mfa,
            ttl,
        } => dev_token(&config, &sub, &groups, mfa, ttl),
        Command::Keys { command, config } => keys(&config, &command),
        Command::Migrate { config } => match config.load() {
            Err(code) => code,
            Ok(config) => migrate(&config),
        },
        Command::Audit { command, config } => match config.load() {
            Err(code) => code,
            Ok(config) => match command {
                AuditCommand::Verify { head } => audit::verify(&config, head.as_deref()),
                AuditCommand::Export { since, until } => audit::export(
                    &config,
                    crate::audit::AuditFilter {
                        since,
                        until,
                        ..Default::default()
                    },
                ),
            },
        },
        Command::Token {
            command:
                TokenCommand::Verify {
                    server,
                    jwks,
                    audience,
                    dpop_proof,
                    method,
                    url,
                    token,
                },
        } => {
            let presentation = match (&dpop_proof, &method, &url) {
                (Some(proof), Some(method), Some(url)) => {
                    crate::verify::Presentation::Dpop { proof, method, url }
                }
                _ => crate::verify::Presentation::Bearer,
            };
            let token = if token == "-" {
                let mut text = String::new();
                if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                    eprintln!("cannot read the token from standard input: {e}");
                    return ExitCode::FAILURE;
                }
                text
            } else {
                token
            };
            verify_token(
                (server.as_deref(), jwks.as_deref()),
                audience.as_deref(),
                &token,
                presentation,
            )
        }
        Command::Request(ask) => request::run(&ask),
        Command::Explain(args) => explain::run(&args),
        Command::WhoCan(args) => who_can::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Check {
            pack,
            config,
            deny_warnings,
        } => match config {
            Some(path) => check_config(&path, deny_warnings),
            None => check(&pack.paths(), deny_warnings),
        },
        Command::Test {
            pack,
            config: None,
            paths,
        } => test(&pack.paths(), &GrantDefaults::default(), paths),
        Command::Test {
            config: Some(path),
            paths,
            ..
        } => match Config::load(Some(&path), std::env::vars()) {
            Ok(config) => test(&config.pack_paths(), &config.grant_defaults(), paths),
            Err(e) => {
                eprintln!("error: configuration: {e}");
                ExitCode::FAILURE
            }
        },
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

fn check(paths: &PackPaths, deny_warnings: bool) -> ExitCode {
    let Some(pack) = load(paths) else {
        return ExitCode::FAILURE;
    };
    let warnings = pack.warnings().len();
    if deny_warnings && warnings > 0 {
        eprintln!(
            "error: {warnings} warning{} and --deny-warnings",
            if warnings == 1 { "" } else { "s" }
        );
        return ExitCode::FAILURE;
    }
    println!(
        "ok: {} policies in {} files, version {}",
        pack.policy_count(),
        pack.files().len(),
        pack.version()
    );
    ExitCode::SUCCESS
}

/// Checks the configuration at `path` (with the environment's overrides, as `serve` reads it),
/// warns about what it lets through, and checks its pack.
fn check_config(path: &Path, deny_warnings: bool) -> ExitCode {
    let config = match Config::load(Some(path), std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in config.overlapping_issuers() {
        eprintln!("warning: {warning}");
    }
    let key_errors = crate::identity::client_key_errors(&config);
    for error in &key_errors {
        eprintln!("error: {error}");
    }
    if !key_errors.is_empty() {
        return ExitCode::FAILURE;
    }
    let overlapping = !config.overlapping_issuers().is_empty();
    if deny_warnings && overlapping {
        eprintln!("error: the configuration has warnings and --deny-warnings");
        return ExitCode::FAILURE;
    }
    // The shadow pack must load too: the server refuses to start without it.
    if let Some(shadow) = config.shadow_pack_paths() {
        println!("shadow pack ({}):", shadow.policies.display());
        if check(&shadow, deny_warnings) != ExitCode::SUCCESS {
            return ExitCode::FAILURE;
        }
    }
    check(&config.pack_paths(), deny_warnings)
}

fn test(paths: &PackPaths, defaults: &GrantDefaults, case_paths: Vec<PathBuf>) -> ExitCode {
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
    let report = policytest::run(&pack, &files, defaults);
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

fn now() -> u64 {
    crate::clock::unix_now()
}

fn serve(args: &ServeArgs) -> ExitCode {
    crate::telemetry::init();
    #[cfg_attr(
        not(feature = "bench"),
        expect(unused_mut, reason = "bench builds set switches")
    )]
    let mut config = match args.config.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    #[cfg(feature = "bench")]
    {
        config.bench = crate::config::BenchSwitches {
            stripped_endpoint: args.bench.bench_stripped_endpoint,
            discard_writes: args.bench.bench_discard_writes,
        };
        tracing::warn!(switches = ?config.bench, "BENCH BUILD: measurement switches compiled in");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        crate::http::run(config, listener, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn dev_token(
    args: &ConfigArgs,
    sub: &str,
    groups: &[String],
    mfa: bool,
    ttl: std::time::Duration,
) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if !config.identity.dev.enabled {
        eprintln!(
            "warning: [identity.dev] is not enabled in this configuration: the server will refuse this token"
        );
    }
    if let Err(e) = config.ensure_data_dir() {
        eprintln!("error: {}: {e}", config.data_dir.display());
        return ExitCode::FAILURE;
    }
    let groups: Vec<String> = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    let minted = DevIssuer::open(&config.data_dir, now())
        .and_then(|dev| dev.mint(sub, &groups, mfa, ttl, now()));
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `jitgate migrate`: the configured database's schema brought up to date.
fn migrate(config: &Config) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(Store::migrate(&config.database_url, &config.data_dir)) {
        Ok(()) => {
            println!("ok: the database schema is up to date");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: store: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys(args: &ConfigArgs, command: &KeysCommand) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if Store::is_shared_url(&config.database_url) {
        return keys_in_database(&config, command);
    }
    let dir = config.data_dir.join("keys");
    if let KeysCommand::List = command {
        // Listing only looks: it never creates the dir or generates a key.
        return match KeyRing::read(&dir) {
            Ok(ring) => {
                list_keys(&ring, &config);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = config.ensure_data_dir() {
        eprintln!("error: {}: {e}", config.data_dir.display());
        return ExitCode::FAILURE;
    }
    let mut ring = match KeyRing::open(&dir, config.signing_alg, now()) {
        Ok(ring) => ring,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        KeysCommand::Generate => {
            if let Some(key) = ring.active() {
                println!("{} {} (active)", key.kid, key.alg.as_str());
            }
        }
        KeysCommand::Rotate => match ring.rotate(config.signing_alg, now()) {
            Ok(key) => println!(
                "{} {} (active from the next server start; older keys stay in the JWKS until their tokens expire)",
                key.kid,
                key.alg.as_str()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        KeysCommand::List => list_keys(&ring, &config),
    }
    ExitCode::SUCCESS
}

/// `jitgate keys …` against the signing keys a PostgreSQL database keeps for every replica.
fn keys_in_database(config: &Config, command: &KeysCommand) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        if let KeysCommand::List = command {
            // Listing only looks, and needs no key-encryption key.
            let store = Store::open_existing(&config.database_url, &config.data_dir).await?;
            let keys = store.signing_keys().await?;
            if keys.is_empty() {
                println!("no signing keys yet: the first server to start generates one");
            }
            for (i, key) in keys.iter().enumerate() {
                let state = if i + 1 == keys.len() { "active" } else { "retired" };
                let created = crate::clock::rfc3339(u64::try_from(key.created).unwrap_or(0));
                println!("{} {} created {created} {state}", key.kid, key.alg);
            }
            return Ok(());
        }
        let text = config
            .key_encryption_key_text()
            .map_err(|e| e.to_string())?
            .ok_or("set key_encryption_key_file or JITGATE_KEY_ENCRYPTION_KEY: the keys in the database are sealed with it")?;
        let kek = crate::token::KeyEncryptionKey::from_base64(text.expose())
            .map_err(|e| e.to_string())?;
        let store = Store::open(&config.database_url, &config.data_dir).await?;
        let (ring, note) = match command {
            KeysCommand::Rotate => (
                crate::access::keys::rotate(&store, &kek, config.signing_alg, now()).await,
                "(active on every replica within 10 s; older keys stay in the JWKS until their tokens expire)",
            ),
            _ => (
                crate::access::keys::open(&store, &kek, config.signing_alg, now()).await,
                "(active)",
            ),
        };
        let ring = ring.map_err(|e| e.to_string())?;
        if let Some(key) = ring.active() {
            println!("{} {} {note}", key.kid, key.alg.as_str());
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list_keys(ring: &KeyRing, config: &Config) {
    let keys = ring.keys();
    if keys.is_empty() {
        println!("no signing keys yet: the server generates one at its first start");
        return;
    }
    let verifying: Vec<&str> = ring
        .verifying_keys(now(), config.max_ttl, &std::collections::HashMap::new())
        .iter()
        .map(|k| k.kid.as_str())
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let state = if i + 1 == keys.len() {
            "active"
        } else if verifying.contains(&key.kid.as_str()) {
            "retired, in JWKS"
        } else {
            "retired; dropped at the next start unless a token it signed is still live"
        };
        println!(
            "{} {} created {} {state}",
            key.kid,
            key.alg.as_str(),
            crate::clock::rfc3339(key.created)
        );
    }
}

fn verify_token(
    (server, jwks): (Option<&str>, Option<&str>),
    audience: Option<&str>,
    token: &str,
    presentation: crate::verify::Presentation<'_>,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let verifier = runtime.block_on(async {
        match (server, jwks) {
            (Some(server), _) => crate::verify::Verifier::from_server(server).await,
            (None, Some(jwks)) => crate::verify::Verifier::from_jwks_url(jwks).await,
            (None, None) => Err(crate::verify::VerifyError::Fetch {
                url: String::new(),
                message: "give --server or --jwks".into(),
            }),
        }
    });
    let token = token.trim();
    let result = verifier
        .and_then(|v| v.verify(token, audience, now()))
        .and_then(|claims| {
            crate::verify::check_presentation(token, &claims, presentation, now())?;
            Ok(claims)
        });
    match result {
        Ok(claims) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
