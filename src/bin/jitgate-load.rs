//! `jitgate-load`: starts `jitgate serve` on 127.0.0.1 with a pack and a generated config,
//! drives `POST /v1/access-requests` from N keep-alive connections for a bounded time with a
//! mix of allowed, denied and escalated requests from dev-token and API-key callers, and
//! reports throughput, latency percentiles, errors, and the server's CPU time and RSS.
//!
//! ```sh
//! cargo build --release && cargo run --release --bin jitgate-load -- --connections 32 --duration 20s
//! ```
//!
//! Loopback only, and it always stops: after `--duration` (and `--requests`, if given).

#![expect(clippy::print_stdout, reason = "the harness prints its report")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use jitgate::identity::DevIssuer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const API_KEY: &str = "jg_load-harness-key";

#[derive(Debug, Parser)]
#[command(name = "jitgate-load", about = "Load test jitgate on 127.0.0.1")]
struct Args {
    /// The jitgate binary to start [default: `jitgate` next to this one]
    #[arg(long)]
    server_binary: Option<PathBuf>,
    /// Policies directory
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Schemas directory
    #[arg(long, default_value = "schemas")]
    schemas: PathBuf,
    /// Extra TOML appended to the generated configuration (e.g. `signing_alg = "EdDSA"`)
    #[arg(long, default_value = "")]
    config: String,
    /// Concurrent keep-alive connections
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to measure
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring (not reported)
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Stop after this many measured requests, if sooner
    #[arg(long)]
    requests: Option<u64>,
    /// Weights of the kinds of request: allow (dev token), allow-key (API key), deny, escalate
    #[arg(long, default_value = "allow=70,allow-key=10,deny=10,escalate=10")]
    mix: String,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// One kind of request in the mix.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    weight: u32,
    credential: String,
    body: Value,
    expected: u16,
}

const KINDS: [&str; 4] = ["allow", "allow-key", "deny", "escalate"];

/// `allow=70,deny=10,…` as weights by kind.
fn parse_mix(mix: &str) -> Result<std::collections::BTreeMap<&str, u32>, String> {
    let mut weights = std::collections::BTreeMap::new();
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

fn scenarios(
    weights: &std::collections::BTreeMap<&str, u32>,
    dev: &DevIssuer,
    now: u64,
) -> Result<Vec<Scenario>, String> {
    let token = |sub: &str, groups: &[&str], mfa: bool| {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        dev.mint(sub, &groups, mfa, Duration::from_secs(24 * 3600), now)
            .map_err(|e| e.to_string())
    };
    let alice = token("alice", &["oncall"], true)?;
    let mallory = token("mallory", &[], false)?;
    let mut all = vec![
        Scenario {
            name: "allow",
            weight: 0,
            credential: alice.clone(),
            body: json!({"action": "read", "resource": "Database::\"orders\"", "reason": "load"}),
            expected: 201,
        },
        Scenario {
            name: "allow-key",
            weight: 0,
            credential: API_KEY.into(),
            body: json!({"action": "deploy", "resource": "Host::\"web-1\"", "reason": "load"}),
            expected: 201,
        },
        Scenario {
            name: "deny",
            weight: 0,
            credential: mallory,
            body: json!({"action": "read", "resource": "Database::\"orders\"", "reason": "load"}),
            expected: 403,
        },
        Scenario {
            name: "escalate",
            weight: 0,
            credential: alice,
            body: json!({"action": "write", "resource": "Database::\"orders\"", "reason": "load"}),
            expected: 202,
        },
    ];
    for scenario in &mut all {
        scenario.weight = weights.get(scenario.name).copied().unwrap_or(0);
    }
    all.retain(|s| s.weight > 0);
    Ok(all)
}

/// The server under test; killed when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(probe.local_addr().map_err(|e| e.to_string())?.port())
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}

async fn start_server(args: &Args) -> Result<(Server, DevIssuer), String> {
    let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let data = dir.path().join("data");
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nissuer = \"http://127.0.0.1:{port}\"\ndata_dir = {data:?}\n\
         [policy]\ndir = {policies:?}\nschemas = {schemas:?}\n\
         [identity.dev]\nenabled = true\n\
         [[identity.api_keys]]\nname = \"load\"\nhash = \"sha256:{hash}\"\n\
         principal = 'Service::\"deployer\"'\ngroups = ['Group::\"deployers\"']\n\
         [rate_limit]\nper_principal_per_minute = 1000000000\n{extra}\n",
        data = data.display().to_string(),
        policies = absolute(&args.policies)?.display().to_string(),
        schemas = absolute(&args.schemas)?.display().to_string(),
        hash = hex::encode(Sha256::digest(API_KEY.as_bytes())),
        extra = args.config,
    );
    let config_path = dir.path().join("jitgate.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let binary = match &args.server_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("jitgate"),
    };
    let child = Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("JITGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{}/readyz", server.base)).send().await
            && r.status().is_success()
        {
            let dev = DevIssuer::open(&data, now()).map_err(|e| e.to_string())?;
            return Ok((server, dev));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the server did not become ready within 15 s".into())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// CPU seconds (user + system) and RSS bytes of process `pid`, from /proc.
fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux architecture jitgate runs on.
    Some((ticks as f64 / 100.0, rss_kib * 1024))
}

/// What one connection saw.
#[derive(Debug, Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    errors: Vec<String>,
}

async fn drive(
    base: String,
    scenarios: Arc<Vec<Scenario>>,
    start: usize,
    until: Instant,
    measure_from: Instant,
    budget: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    let http = match reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tally.errors.push(e.to_string());
            return tally;
        }
    };
    let url = format!("{base}/v1/access-requests");
    let total: u32 = scenarios.iter().map(|s| s.weight).sum();
    let mut i = start;
    while Instant::now() < until {
        // A fixed interleaving by weight: each connection walks the same cycle from its own
        // starting point.
        let mut slot = u32::try_from(i % usize::try_from(total).unwrap_or(1)).unwrap_or(0);
        i += 1;
        let Some(scenario) = scenarios.iter().find(|s| {
            if slot < s.weight {
                true
            } else {
                slot -= s.weight;
                false
            }
        }) else {
            continue;
        };
        let measured = Instant::now() >= measure_from;
        if measured
            && budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_err()
        {
            break;
        }
        let sent = Instant::now();
        let outcome = http
            .post(&url)
            .bearer_auth(&scenario.credential)
            .json(&scenario.body)
            .send()
            .await;
        let elapsed = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let error = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                (status != scenario.expected).then(|| format!("{}: HTTP {status}", scenario.name))
            }
            Err(e) => Some(format!("{}: {e}", scenario.name)),
        };
        if measured {
            tally.latencies_ns.push(elapsed);
            if let Some(error) = error {
                tally.errors.push(error);
            }
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank).copied().unwrap_or(0) as f64 / 1e6
}

async fn run(args: Args) -> Result<Report, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let weights = parse_mix(&args.mix)?;
    let (server, dev) = start_server(&args).await?;
    let pid = server.child.id();
    let scenarios = Arc::new(scenarios(&weights, &dev, now())?);
    let measure_from = Instant::now() + args.warmup;
    let until = measure_from + args.duration;
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let mut workers = Vec::new();
    for c in 0..args.connections.max(1) {
        workers.push(tokio::spawn(drive(
            server.base.clone(),
            Arc::clone(&scenarios),
            c * 7,
            until,
            measure_from,
            Arc::clone(&budget),
        )));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let (cpu_before, _) = usage(pid).unwrap_or_default();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for worker in workers {
        let tally = worker.await.map_err(|e| e.to_string())?;
        latencies.extend(tally.latencies_ns);
        errors.extend(tally.errors);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, rss) = usage(pid).unwrap_or_default();
    latencies.sort_unstable();
    let mut by_kind = std::collections::BTreeMap::<String, u64>::new();
    for error in &errors {
        *by_kind.entry(error.clone()).or_default() += 1;
    }
    drop(server);
    let requests = latencies.len() as f64;
    let cpu = cpu_after - cpu_before;
    Ok(Report {
        connections: args.connections,
        seconds: elapsed,
        requests: latencies.len(),
        requests_per_second: requests / elapsed.max(f64::EPSILON),
        latency_ms: Latency {
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            p99_9: percentile(&latencies, 99.9),
            max: percentile(&latencies, 100.0),
        },
        errors: errors.len(),
        errors_by_kind: by_kind,
        server_cpu_seconds: cpu,
        server_cpu_cores: cpu / elapsed.max(f64::EPSILON),
        server_rss_bytes: rss,
        mix: args.mix,
    })
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    connections: usize,
    seconds: f64,
    requests: usize,
    requests_per_second: f64,
    latency_ms: Latency,
    errors: usize,
    errors_by_kind: std::collections::BTreeMap<String, u64>,
    server_cpu_seconds: f64,
    server_cpu_cores: f64,
    server_rss_bytes: u64,
    mix: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json_output = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) if json_output => {
            println!("{}", json!(report));
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!(
                "{} requests in {:.1} s over {} connections: {:.0} req/s\n\
                 latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n\
                 errors {} {:?}\n\
                 server: {:.2} CPU s ({:.2} cores), RSS {:.1} MiB",
                r.requests,
                r.seconds,
                r.connections,
                r.requests_per_second,
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.latency_ms.p99_9,
                r.latency_ms.max,
                r.errors,
                r.errors_by_kind,
                r.server_cpu_seconds,
                r.server_cpu_cores,
                r.server_rss_bytes as f64 / 1_048_576.0,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
