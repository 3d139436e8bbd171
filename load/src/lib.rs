//! `jitgate-load`: starts `jitgate serve` on 127.0.0.1 with a pack and a generated config,
//! drives `POST /v1/access-requests` from N keep-alive connections for a bounded time with a
//! mix of allowed, denied and escalated requests from dev-token and API-key callers, and
//! reports throughput, latency percentiles, errors, and the server's CPU time and RSS.
//!
//! The same harness measures what issue 6 compares jitgate with: its stripped endpoint and its
//! store with writes discarded (`--target stripped`, `--discard-writes`; a `bench` build), a
//! hot reload of a large pack under load (`--extra-policies`, `--reload-every`), memory over a
//! long run (`--rss-after`), and cedar-agent (`--target cedar-agent`). docs/BENCHMARKS.md has
//! the commands.
//!
//! ```sh
//! cargo build --release --workspace && ./target/release/jitgate-load --connections 32 --duration 20s
//! ```
//!
//! Loopback only, and it always stops: after `--duration` (and `--requests`, if given).
//!
//! It knows jitgate only as a binary and an HTTP server (dev tokens come from
//! `jitgate dev-token`), so it is a library too: jitgate's tests call [`run`] with the binary
//! cargo built for them.

mod drive;
mod pack;
mod report;
mod scenario;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use report::{Latency, Reloads, Report};

use drive::{Schedule, Tally, drive};
use scenario::Scenario;
use server::{Server, usage};

/// The command line of `jitgate-load`.
#[derive(Debug, clap::Parser)]
#[command(name = "jitgate-load", about = "Load test jitgate on 127.0.0.1")]
pub struct Args {
    /// What to drive: jitgate's access-request endpoint with the mix, its stripped endpoint
    /// (`bench` builds), or cedar-agent's `/v1/is_authorized` (give --cedar-agent)
    #[arg(long, value_enum, default_value_t = Target::Jitgate)]
    target: Target,
    /// The jitgate binary to start [default: `jitgate` next to this one]
    #[arg(long)]
    server_binary: Option<PathBuf>,
    /// Policies directory
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Schemas directory
    #[arg(long, default_value = "schemas")]
    schemas: PathBuf,
    /// Add this many narrow database grants (one team, one database each) to a copy of the pack
    #[arg(long, default_value_t = 0)]
    extra_policies: usize,
    /// Also decide every request with a shadow pack (`[policy.shadow]`): a copy of the pack,
    /// generated grants included, to measure what the shadow costs the live path
    #[arg(long)]
    shadow: bool,
    /// Extra TOML appended to the generated configuration (e.g. `signing_alg = "EdDSA"`)
    #[arg(long, default_value = "")]
    config: String,
    /// Start jitgate with its store acknowledging writes without making them (`bench` builds):
    /// no audit trail, to measure what durability costs
    #[arg(long)]
    discard_writes: bool,
    /// A cedar-agent binary (built from its own repository, outside this one)
    #[arg(long)]
    cedar_agent: Option<PathBuf>,
    /// cedar-agent's policies.json, data.json and query.json: the shipped pack in Cedar 2 syntax
    #[arg(long, default_value = "benches/cedar-agent")]
    cedar_agent_inputs: PathBuf,
    /// Concurrent keep-alive connections (spread over the replicas)
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Start jitgate on this database instead of SQLite in a temp dir (`postgres://…`; give a
    /// fresh schema: the run writes into it)
    #[arg(long)]
    database_url: Option<String>,
    /// jitgate processes sharing `--database-url`, each behind its own port
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// How long to measure
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring (not reported)
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Stop after this many measured requests, if sooner
    #[arg(long)]
    requests: Option<u64>,
    /// Also report the server's RSS when this many requests have been measured
    #[arg(long)]
    rss_after: Option<u64>,
    /// In the second half of the measurement, rewrite the pack this often (a hot reload each
    /// time) and report latency before and during the reloads apart
    #[arg(long, value_parser = humantime::parse_duration)]
    reload_every: Option<Duration>,
    /// Weights of the kinds of request: allow (dev token), allow-key (API key), deny, escalate
    #[arg(long, default_value = "allow=70,allow-key=10,deny=10,escalate=10")]
    mix: String,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// What the harness drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Jitgate,
    Stripped,
    CedarAgent,
}

/// Starts the server, drives it as `args` say, stops it, and reports.
pub async fn run(args: Args) -> Result<Report, String> {
    if args.reload_every.is_some() && args.extra_policies == 0 {
        return Err("--reload-every rewrites the generated policies: give --extra-policies".into());
    }
    if args.replicas > 1 && args.database_url.is_none() {
        return Err("--replicas share a database: give --database-url postgres://…".into());
    }
    let (server, scenarios, pack) = start(&args).await?;
    let measured = measure(&args, &server, scenarios, pack).await?;
    drop(server);
    Ok(report(args, measured))
}

/// The server for `args.target`, the requests to send it, and the pack directory when it is
/// a copy to rewrite.
async fn start(args: &Args) -> Result<(Server, Vec<Scenario>, Option<PathBuf>), String> {
    match args.target {
        Target::CedarAgent => {
            let binary = args
                .cedar_agent
                .as_deref()
                .ok_or("--target cedar-agent needs --cedar-agent <binary>")?;
            let server = server::start_cedar_agent(args, binary).await?;
            let scenarios = vec![scenario::cedar_agent_scenario(&args.cedar_agent_inputs)?];
            Ok((server, scenarios, None))
        }
        Target::Stripped => {
            let (server, _, pack) = server::start_jitgate(args).await?;
            Ok((server, vec![scenario::stripped_scenario()], pack))
        }
        Target::Jitgate => {
            let weights = scenario::parse_mix(&args.mix)?;
            let (server, dev, pack) = server::start_jitgate(args).await?;
            let scenarios = scenario::jitgate_scenarios(&weights, &dev)?;
            Ok((server, scenarios, pack))
        }
    }
}

/// What the connections and the process measurements saw.
#[derive(Debug, Default)]
struct Measured {
    /// Sorted; before the reloads began, or all without reloads.
    latencies: Vec<u64>,
    /// Sorted; during the reloads.
    reloading: Vec<u64>,
    errors: Vec<String>,
    seconds: f64,
    cpu_seconds: f64,
    rss: u64,
    rss_after: Option<u64>,
    pack_rewrites: Option<u64>,
    reloads_applied: Option<u64>,
    shadow: Option<report::Shadow>,
}

/// Warms up, then measures the server with `args.connections` connections (and the pack
/// rewrites and the RSS sample `args` asks for).
async fn measure(
    args: &Args,
    server: &Server,
    scenarios: Vec<Scenario>,
    pack: Option<PathBuf>,
) -> Result<Measured, String> {
    let measure_from = Instant::now() + args.warmup;
    let until = measure_from + args.duration;
    let reloads_from = args.reload_every.map(|_| measure_from + args.duration / 2);
    let schedule = Schedule {
        measure_from,
        until,
        reloads_from,
        budget: Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX))),
        measured: Arc::new(AtomicU64::new(0)),
    };
    let scenarios = Arc::new(scenarios);
    let bases = server.bases();
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|c| {
            let base = bases.get(c % bases.len()).cloned().unwrap_or_default();
            let scenarios = Arc::clone(&scenarios);
            tokio::spawn(drive(base, scenarios, c * 7, schedule.clone()))
        })
        .collect();
    let rewrites = match (pack, args.reload_every, reloads_from) {
        (Some(pack), Some(every), Some(from)) => Some(tokio::spawn(pack::rewrite_pack(
            pack,
            args.extra_policies,
            every,
            from,
            until,
        ))),
        _ => None,
    };
    let rss_at = args
        .rss_after
        .map(|count| tokio::spawn(rss_once_measured(server.pid(), count, schedule.measured)));
    tokio::time::sleep_until(measure_from.into()).await;
    let (cpu_before, _) = server.usage();
    let started = Instant::now();
    let mut measured = Measured::default();
    for worker in workers {
        let tally: Tally = worker.await.map_err(|e| e.to_string())?;
        measured.latencies.extend(tally.latencies_ns);
        measured.reloading.extend(tally.reloading_ns);
        measured.errors.extend(tally.errors);
    }
    measured.seconds = started.elapsed().as_secs_f64();
    let (cpu_after, rss) = server.usage();
    (measured.cpu_seconds, measured.rss) = (cpu_after - cpu_before, rss);
    measured.rss_after = match rss_at {
        Some(task) if task.is_finished() => task.await.ok().flatten(),
        Some(task) => {
            task.abort();
            None
        }
        None => None,
    };
    if let Some(task) = rewrites {
        measured.pack_rewrites = Some(task.await.map_err(|e| e.to_string())??);
        let applied = "jitgate_policy_reloads_total{result=\"success\"}";
        measured.reloads_applied = server::metric(&server.base, applied)
            .await
            .map(|n| n as u64);
    }
    if args.shadow {
        // Warm-up included: what the shadow pack decided and what it had to drop.
        let mut evaluated = 0.0;
        for outcome in ["allow", "deny", "escalate"] {
            let series = format!(
                "jitgate_shadow_decisions_total{{live=\"{outcome}\",shadow=\"{outcome}\"}}"
            );
            evaluated += server::metric(&server.base, &series).await.unwrap_or(0.0);
        }
        let dropped = server::metric(&server.base, "jitgate_shadow_dropped_total").await;
        measured.shadow = Some(report::Shadow {
            evaluated: evaluated as u64,
            dropped: dropped.unwrap_or(0.0) as u64,
        });
    }
    measured.latencies.sort_unstable();
    measured.reloading.sort_unstable();
    Ok(measured)
}

/// The server's RSS once `count` requests have been measured.
async fn rss_once_measured(pid: u32, count: u64, measured: Arc<AtomicU64>) -> Option<u64> {
    while measured.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    usage(pid).map(|(_, rss)| rss)
}

fn report(args: Args, measured: Measured) -> Report {
    let mut errors_by_kind = std::collections::BTreeMap::<String, u64>::new();
    for error in &measured.errors {
        *errors_by_kind.entry(error.clone()).or_default() += 1;
    }
    let requests = measured.latencies.len() + measured.reloading.len();
    let seconds = measured.seconds.max(f64::EPSILON);
    let mut all = [measured.latencies.as_slice(), measured.reloading.as_slice()].concat();
    all.sort_unstable();
    Report {
        target: args.target,
        connections: args.connections,
        seconds: measured.seconds,
        requests,
        requests_per_second: requests as f64 / seconds,
        latency_ms: Latency::of(&all),
        during_reloads: measured.pack_rewrites.map(|rewrites| Reloads {
            before_ms: Latency::of(&measured.latencies),
            during_ms: Latency::of(&measured.reloading),
            pack_rewrites: rewrites,
            reloads_applied: measured.reloads_applied.unwrap_or(0),
        }),
        errors: measured.errors.len(),
        errors_by_kind,
        server_cpu_seconds: measured.cpu_seconds,
        server_cpu_cores: measured.cpu_seconds / seconds,
        server_rss_bytes: measured.rss,
        server_rss_bytes_after: args.rss_after.zip(measured.rss_after),
        shadow: measured.shadow,
        mix: match args.target {
            Target::Jitgate => args.mix,
            Target::Stripped | Target::CedarAgent => "allow=100".into(),
        },
    }
}
