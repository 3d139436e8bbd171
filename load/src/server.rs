//! The server under test: jitgate (or cedar-agent) started on a free loopback port with a
//! generated configuration, and what the harness reads of the process.

use std::collections::VecDeque;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Args, Target};

/// The API key the generated configuration gives `Service::"deployer"`.
pub(crate) const API_KEY: &str = "jg_load-harness-key";

/// The key-encryption key the replicas on a database seal their signing keys with (a bench
/// run's own database; never a deployment's).
const BENCH_KEY_ENCRYPTION_KEY: &str = "YmVuY2gtb25seS1rZXktZW5jcnlwdGlvbi1rZXktMzI=";

/// How many of the server's last stderr lines an early exit reports.
const TAIL_LINES: usize = 20;

/// A running server (with the other replicas on its database, if any); killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    stderr: StderrTail,
    _dir: tempfile::TempDir,
    others: Vec<Server>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where each replica listens.
    pub(crate) fn bases(&self) -> Vec<String> {
        std::iter::once(self.base.clone())
            .chain(self.others.iter().map(|other| other.base.clone()))
            .collect()
    }

    /// CPU seconds and RSS bytes of every replica, summed.
    pub(crate) fn usage(&self) -> (f64, u64) {
        std::iter::once(self.pid())
            .chain(self.others.iter().map(Server::pid))
            .filter_map(usage)
            .fold((0.0, 0), |(cpu, rss), (c, r)| (cpu + c, rss + r))
    }
}

/// The server's stderr, passed through to the harness's as it comes, its last lines kept so
/// that a server that exits early says why in the harness's error.
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl StderrTail {
    fn forward(stderr: Option<std::process::ChildStderr>) -> Self {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let kept = Arc::clone(&lines);
        let reader = stderr.map(|stderr| {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    eprintln!("{line}");
                    if let Ok(mut kept) = kept.lock() {
                        if kept.len() == TAIL_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(line);
                    }
                }
            })
        });
        Self { lines, reader }
    }

    /// The last lines, once the server has exited (its stderr read to the end).
    fn after_exit(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines
            .lock()
            .map(|lines| lines.iter().map(|l| format!("\n  {l}")).collect())
            .unwrap_or_default()
    }
}

/// Mints dev identity tokens with `jitgate dev-token` against the configuration the server
/// runs with.
#[derive(Debug)]
pub(crate) struct DevTokens {
    binary: PathBuf,
    config: PathBuf,
}

impl DevTokens {
    /// A dev identity token for `sub`, valid for a day.
    pub(crate) fn mint(&self, sub: &str, groups: &[&str], mfa: bool) -> Result<String, String> {
        let mut command = Command::new(&self.binary);
        command
            .args(["dev-token", "--config"])
            .arg(&self.config)
            .args(["--sub", sub, "--ttl", "24h"]);
        if !groups.is_empty() {
            command.args(["--groups", &groups.join(",")]);
        }
        if mfa {
            command.arg("--mfa");
        }
        let output = command
            .output()
            .map_err(|e| format!("{} dev-token: {e}", self.binary.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} dev-token: {}",
                self.binary.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(probe.local_addr().map_err(|e| e.to_string())?.port())
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// jitgate on a free port; the dev tokens its config trusts; the pack directory when it is a
/// copy (to rewrite for reloads).
pub(crate) async fn start_jitgate(
    args: &Args,
) -> Result<(Server, DevTokens, Option<PathBuf>), String> {
    let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let first_port = free_port()?;
    let data = dir.path().join("data");
    let schemas = absolute(&args.schemas)?;
    let copied = args.extra_policies > 0 || args.reload_every.is_some();
    let policies = if copied {
        let pack = dir.path().join("pack");
        crate::pack::copy_pack(&args.policies, &pack, args.extra_policies)?;
        pack
    } else {
        absolute(&args.policies)?
    };
    let shadow = if args.shadow {
        let copy = dir.path().join("shadow");
        crate::pack::copy_pack(&args.policies, &copy, args.extra_policies)?;
        format!("[policy.shadow]\ndir = {:?}\n", copy.display().to_string())
    } else {
        String::new()
    };
    let database = match &args.database_url {
        Some(url) => format!("database_url = {url:?}\n"),
        None => String::new(),
    };
    // Every replica names the same issuer: the first one's address.
    let config = |port: u16| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nissuer = \"http://127.0.0.1:{issuer}\"\n\
             data_dir = {data:?}\n{database}\
             [policy]\ndir = {policies:?}\nschemas = {schemas:?}\n\
             [identity.dev]\nenabled = true\n\
             [[identity.api_keys]]\nname = \"load\"\nhash = \"sha256:{hash}\"\n\
             principal = 'Service::\"deployer\"'\ngroups = ['Group::\"deployers\"']\n\
             [rate_limit]\nper_principal_per_minute = 1000000000\n{shadow}{extra}\n",
            issuer = first_port,
            data = data.display().to_string(),
            policies = policies.display().to_string(),
            schemas = schemas.display().to_string(),
            hash = hex::encode(Sha256::digest(API_KEY.as_bytes())),
            extra = args.config,
        )
    };
    let binary = match &args.server_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("jitgate"),
    };
    let command = |config_path: &Path| {
        let mut command = Command::new(&binary);
        command.args(["serve", "--config"]).arg(config_path);
        if args.target == Target::Stripped {
            command.arg("--bench-stripped-endpoint");
        }
        if args.discard_writes {
            command.arg("--bench-discard-writes");
        }
        command
            .env("JITGATE_LOG", "warn")
            .env("JITGATE_KEY_ENCRYPTION_KEY", BENCH_KEY_ENCRYPTION_KEY);
        command
    };
    let config_path = dir.path().join("jitgate.toml");
    std::fs::write(&config_path, config(first_port)).map_err(|e| e.to_string())?;
    let mut others = Vec::new();
    for replica in 1..args.replicas {
        // One replica at a time: the first creates the dev issuer's key the others share.
        let port = free_port()?;
        let path = dir.path().join(format!("jitgate-{replica}.toml"));
        std::fs::write(&path, config(port)).map_err(|e| e.to_string())?;
        let own_dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
        others.push((path, port, own_dir));
    }
    let mut server = launch(command(&config_path), dir, first_port, "/readyz").await?;
    for (path, port, own_dir) in others {
        let other = launch(command(&path), own_dir, port, "/readyz").await?;
        server.others.push(other);
    }
    let dev = DevTokens {
        binary,
        config: config_path,
    };
    Ok((server, dev, copied.then_some(policies)))
}

/// cedar-agent on a free port with the inputs' policies and data.
pub(crate) async fn start_cedar_agent(args: &Args, binary: &Path) -> Result<Server, String> {
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
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", command.get_program().to_string_lossy()))?;
    let stderr = StderrTail::forward(child.stderr.take());
    let mut server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        stderr,
        _dir: dir,
        others: Vec::new(),
    };
    wait_ready(&mut server, ready_path).await?;
    Ok(server)
}

async fn wait_ready(server: &mut Server, path: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", server.base);
    for _ in 0..300 {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "the server exited before it was ready: {status}{}",
                server.stderr.after_exit()
            ));
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

/// CPU seconds (user + system) and RSS bytes of process `pid`, from /proc.
pub(crate) fn usage(pid: u32) -> Option<(f64, u64)> {
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

/// The value of counter `name` (with its labels, as printed) on the server's `/metrics`.
pub(crate) async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}
