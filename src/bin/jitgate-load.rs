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
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Target {
    Jitgate,
    Stripped,
    CedarAgent,
}

/// One kind of request in the mix.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    weight: u32,
    path: &'static str,
    credential: Option<String>,
    body: Value,
    expected: u16,
    /// Text the answer must contain (cedar-agent answers 200 to a denial too).
    expected_text: Option<&'static str>,
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

/// The mix against jitgate's access-request endpoint.
fn jitgate_scenarios(
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
fn stripped_scenario() -> Scenario {
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
fn cedar_agent_scenario(inputs: &Path) -> Result<Scenario, String> {
    let path = inputs.join("query.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Scenario {
        path: "/v1/is_authorized",
        expected_text: Some("\"decision\":\"Allow\""),
        ..Scenario::new("allow-cedar-agent", None, body, 200)
    })
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

/// A copy of the pack in `dir` with `extra` generated database grants added.
fn copy_pack(from: &Path, dir: &Path, extra: usize) -> Result<(), String> {
    let io = |e: std::io::Error| format!("copying the pack: {e}");
    std::fs::create_dir_all(dir).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).map_err(io)?;
        }
    }
    let entities_path = dir.join("entities.json");
    let text = std::fs::read_to_string(&entities_path).map_err(io)?;
    let mut entities: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    entities.extend((0..extra).map(|i| {
        json!({
            "uid": {"type": "Database", "id": format!("db-{i}")},
            "attrs": {"environment": "prod", "engine": "postgres", "data_class": "internal"},
            "parents": [{"type": "Environment", "id": "prod"}],
        })
    }));
    std::fs::write(&entities_path, json!(entities).to_string()).map_err(io)?;
    write_generated(dir, extra, 0)
}

/// `generated.cedar`: `extra` grants, each of one team on one database. Written beside the pack
/// and renamed into it, as an editor or a deploy would; `generation` makes every rewrite a new
/// pack version.
fn write_generated(dir: &Path, extra: usize, generation: u64) -> Result<(), String> {
    use std::fmt::Write as _;
    let mut text = format!("// generation {generation}\n");
    for i in 0..extra {
        let _ = write!(
            text,
            "@id(\"team-{i}-db-read\")\n@scope(\"db:read:{{resource.id}}\")\n@ttl(\"15m\")\n\
             @audience(\"db-proxy\")\npermit (\n  principal in Group::\"team-{i}\",\n  \
             action == Action::\"read\",\n  resource == Database::\"db-{i}\"\n)\n\
             when {{ context.risk_score < 60 }};\n\n"
        );
    }
    let staged = dir.with_extension("generated.cedar");
    std::fs::write(&staged, text).map_err(|e| format!("writing the pack: {e}"))?;
    std::fs::rename(&staged, dir.join("generated.cedar"))
        .map_err(|e| format!("writing the pack: {e}"))
}

async fn wait_ready(server: &mut Server, path: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", server.base);
    for _ in 0..300 {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("the server exited before it was ready: {status}"));
        }
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the server did not become ready within 15 s ({url})"
    ))
}

/// jitgate on a free port; the dev issuer that its config trusts; the pack directory when it
/// is a copy (to rewrite for reloads).
async fn start_jitgate(args: &Args) -> Result<(Server, DevIssuer, Option<PathBuf>), String> {
    let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let data = dir.path().join("data");
    let copied = args.extra_policies > 0 || args.reload_every.is_some();
    let policies = if copied {
        let pack = dir.path().join("pack");
        copy_pack(&args.policies, &pack, args.extra_policies)?;
        pack
    } else {
        absolute(&args.policies)?
    };
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nissuer = \"http://127.0.0.1:{port}\"\ndata_dir = {data:?}\n\
         [policy]\ndir = {policies:?}\nschemas = {schemas:?}\n\
         [identity.dev]\nenabled = true\n\
         [[identity.api_keys]]\nname = \"load\"\nhash = \"sha256:{hash}\"\n\
         principal = 'Service::\"deployer\"'\ngroups = ['Group::\"deployers\"']\n\
         [rate_limit]\nper_principal_per_minute = 1000000000\n{extra}\n",
        data = data.display().to_string(),
        policies = policies.display().to_string(),
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
    let mut command = Command::new(&binary);
    command.args(["serve", "--config"]).arg(&config_path);
    if args.target == Target::Stripped {
        command.arg("--bench-stripped-endpoint");
    }
    if args.discard_writes {
        command.arg("--bench-discard-writes");
    }
    command.env("JITGATE_LOG", "warn");
    let server = launch(command, dir, port, "/readyz").await?;
    let dev = DevIssuer::open(&data, now()).map_err(|e| e.to_string())?;
    Ok((server, dev, copied.then_some(policies)))
}

/// cedar-agent on a free port with the inputs' policies and data.
async fn start_cedar_agent(args: &Args, binary: &Path) -> Result<Server, String> {
    let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let inputs = absolute(&args.cedar_agent_inputs)?;
    let mut command = Command::new(binary);
    command
        .args(["--addr", "127.0.0.1", "--port", &port.to_string()])
        .arg("--policies")
        .arg(inputs.join("policies.json"))
        .arg("--data")
        .arg(inputs.join("data.json"))
        .args(["--log-level", "warn"])
        .current_dir(dir.path());
    launch(command, dir, port, "/health").await
}

/// Starts `command`, a server that will listen on `port`, and waits until `ready_path`
/// answers; `dir` lives as long as the server.
async fn launch(
    mut command: Command,
    dir: tempfile::TempDir,
    port: u16,
    ready_path: &str,
) -> Result<Server, String> {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", command.get_program().to_string_lossy()))?;
    let mut server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_ready(&mut server, ready_path).await?;
    Ok(server)
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

/// What one connection saw: latencies before the reloads began (or all) and during them.
#[derive(Debug, Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    reloading_ns: Vec<u64>,
    errors: Vec<String>,
}

/// When a connection measures, and what it shares with the others.
#[derive(Debug, Clone)]
struct Schedule {
    measure_from: Instant,
    until: Instant,
    /// Requests sent from then on count as "during reloads".
    reloads_from: Option<Instant>,
    budget: Arc<AtomicU64>,
    measured: Arc<AtomicU64>,
}

async fn drive(
    base: String,
    scenarios: Arc<Vec<Scenario>>,
    start: usize,
    schedule: Schedule,
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
    let urls: Vec<String> = scenarios
        .iter()
        .map(|s| format!("{base}{}", s.path))
        .collect();
    let total: u32 = scenarios.iter().map(|s| s.weight).sum();
    let mut i = start;
    while Instant::now() < schedule.until {
        // A fixed interleaving by weight: each connection walks the same cycle from its own
        // starting point.
        let mut slot = u32::try_from(i % usize::try_from(total).unwrap_or(1)).unwrap_or(0);
        i += 1;
        let Some((scenario, url)) = scenarios.iter().zip(&urls).find(|(s, _)| {
            if slot < s.weight {
                true
            } else {
                slot -= s.weight;
                false
            }
        }) else {
            continue;
        };
        let sent = Instant::now();
        let measured = sent >= schedule.measure_from;
        if measured
            && schedule
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_err()
        {
            break;
        }
        let mut request = http.post(url).json(&scenario.body);
        if let Some(credential) = &scenario.credential {
            request = request.bearer_auth(credential);
        }
        let outcome = request.send().await;
        let error = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let text_ok = scenario
                    .expected_text
                    .is_none_or(|text| body.windows(text.len()).any(|w| w == text.as_bytes()));
                (status != scenario.expected || !text_ok)
                    .then(|| format!("{}: HTTP {status}", scenario.name))
            }
            Err(e) => Some(format!("{}: {e}", scenario.name)),
        };
        let elapsed = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if measured {
            if schedule.reloads_from.is_some_and(|from| sent >= from) {
                tally.reloading_ns.push(elapsed);
            } else {
                tally.latencies_ns.push(elapsed);
            }
            schedule.measured.fetch_add(1, Ordering::Relaxed);
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

fn latency(sorted: &[u64]) -> Latency {
    Latency {
        p50: percentile(sorted, 50.0),
        p99: percentile(sorted, 99.0),
        p99_9: percentile(sorted, 99.9),
        max: percentile(sorted, 100.0),
    }
}

/// Rewrites the pack every `every` from `from` until `until`; how many rewrites it made.
async fn rewrite_pack(
    pack: PathBuf,
    extra: usize,
    every: Duration,
    from: Instant,
    until: Instant,
) -> Result<u64, String> {
    tokio::time::sleep_until(from.into()).await;
    let mut generation = 0;
    while Instant::now() + every <= until {
        generation += 1;
        write_generated(&pack, extra, generation)?;
        tokio::time::sleep(every).await;
    }
    Ok(generation)
}

/// The value of counter `name` (with its labels, as printed) on `/metrics`.
async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

async fn run(args: Args) -> Result<Report, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.reload_every.is_some() && args.extra_policies == 0 {
        return Err("--reload-every rewrites the generated policies: give --extra-policies".into());
    }
    let (server, scenarios, pack) = match args.target {
        Target::CedarAgent => {
            let binary = args
                .cedar_agent
                .as_deref()
                .ok_or("--target cedar-agent needs --cedar-agent <binary>")?;
            let server = start_cedar_agent(&args, binary).await?;
            (
                server,
                vec![cedar_agent_scenario(&args.cedar_agent_inputs)?],
                None,
            )
        }
        Target::Stripped => {
            let (server, _, pack) = start_jitgate(&args).await?;
            (server, vec![stripped_scenario()], pack)
        }
        Target::Jitgate => {
            let weights = parse_mix(&args.mix)?;
            let (server, dev, pack) = start_jitgate(&args).await?;
            let scenarios = jitgate_scenarios(&weights, &dev, now())?;
            (server, scenarios, pack)
        }
    };
    let pid = server.child.id();
    let scenarios = Arc::new(scenarios);
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
    let mut workers = Vec::new();
    for c in 0..args.connections.max(1) {
        workers.push(tokio::spawn(drive(
            server.base.clone(),
            Arc::clone(&scenarios),
            c * 7,
            schedule.clone(),
        )));
    }
    let rewrites = match (pack, args.reload_every, reloads_from) {
        (Some(pack), Some(every), Some(from)) => Some(tokio::spawn(rewrite_pack(
            pack,
            args.extra_policies,
            every,
            from,
            until,
        ))),
        _ => None,
    };
    let rss_at = args.rss_after.map(|count| {
        let measured = Arc::clone(&schedule.measured);
        tokio::spawn(async move {
            while measured.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            usage(pid).map(|(_, rss)| rss)
        })
    });
    tokio::time::sleep_until(measure_from.into()).await;
    let (cpu_before, _) = usage(pid).unwrap_or_default();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut reloading = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for worker in workers {
        let tally = worker.await.map_err(|e| e.to_string())?;
        latencies.extend(tally.latencies_ns);
        reloading.extend(tally.reloading_ns);
        errors.extend(tally.errors);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, rss) = usage(pid).unwrap_or_default();
    let rss_after = match rss_at {
        Some(task) if task.is_finished() => task.await.ok().flatten(),
        Some(task) => {
            task.abort();
            None
        }
        None => None,
    };
    let pack_rewrites = match rewrites {
        Some(task) => Some(task.await.map_err(|e| e.to_string())??),
        None => None,
    };
    let reloads = match pack_rewrites {
        Some(_) => metric(
            &server.base,
            "jitgate_policy_reloads_total{result=\"success\"}",
        )
        .await
        .map(|n| n as u64),
        None => None,
    };
    latencies.sort_unstable();
    reloading.sort_unstable();
    let mut by_kind = std::collections::BTreeMap::<String, u64>::new();
    for error in &errors {
        *by_kind.entry(error.clone()).or_default() += 1;
    }
    drop(server);
    let requests = latencies.len() + reloading.len();
    let cpu = cpu_after - cpu_before;
    let mut all = [latencies.as_slice(), reloading.as_slice()].concat();
    all.sort_unstable();
    Ok(Report {
        target: args.target,
        connections: args.connections,
        seconds: elapsed,
        requests,
        requests_per_second: requests as f64 / elapsed.max(f64::EPSILON),
        latency_ms: latency(&all),
        during_reloads: pack_rewrites.map(|rewrites| Reloads {
            before_ms: latency(&latencies),
            during_ms: latency(&reloading),
            pack_rewrites: rewrites,
            reloads_applied: reloads.unwrap_or(0),
        }),
        errors: errors.len(),
        errors_by_kind: by_kind,
        server_cpu_seconds: cpu,
        server_cpu_cores: cpu / elapsed.max(f64::EPSILON),
        server_rss_bytes: rss,
        server_rss_bytes_after: args.rss_after.zip(rss_after),
        mix: match args.target {
            Target::Jitgate => args.mix,
            Target::Stripped | Target::CedarAgent => "allow=100".into(),
        },
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
struct Reloads {
    before_ms: Latency,
    during_ms: Latency,
    pack_rewrites: u64,
    reloads_applied: u64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    target: Target,
    connections: usize,
    seconds: f64,
    requests: usize,
    requests_per_second: f64,
    latency_ms: Latency,
    during_reloads: Option<Reloads>,
    errors: usize,
    errors_by_kind: std::collections::BTreeMap<String, u64>,
    server_cpu_seconds: f64,
    server_cpu_cores: f64,
    server_rss_bytes: u64,
    /// (requests measured, RSS then)
    server_rss_bytes_after: Option<(u64, u64)>,
    mix: String,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn print(r: &Report) {
    println!(
        "{:?}: {} requests in {:.1} s over {} connections: {:.0} req/s\n\
         latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n\
         errors {} {:?}\n\
         server: {:.2} CPU s ({:.2} cores), RSS {:.1} MiB",
        r.target,
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
        mib(r.server_rss_bytes),
    );
    if let Some((count, rss)) = r.server_rss_bytes_after {
        println!(
            "server RSS after {count} requests {:.1} MiB; at the end {:.1} MiB ({:+.1}%)",
            mib(rss),
            mib(r.server_rss_bytes),
            (r.server_rss_bytes as f64 / rss.max(1) as f64 - 1.0) * 100.0,
        );
    }
    if let Some(reloads) = &r.during_reloads {
        println!(
            "before reloads: p50 {:.2} ms, p99 {:.2} ms; during {} rewrites ({} reloads applied): \
             p50 {:.2} ms, p99 {:.2} ms ({:.2}x)",
            reloads.before_ms.p50,
            reloads.before_ms.p99,
            reloads.pack_rewrites,
            reloads.reloads_applied,
            reloads.during_ms.p50,
            reloads.during_ms.p99,
            reloads.during_ms.p99 / reloads.before_ms.p99.max(f64::EPSILON),
        );
    }
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
        Ok(report) => {
            print(&report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
