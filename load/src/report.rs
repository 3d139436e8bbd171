//! What a run measured: the report, as JSON (`--json`) or text.

use std::collections::BTreeMap;
use std::fmt;

use crate::Target;

/// Latency percentiles, in milliseconds.
#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    /// The percentiles of `sorted` (nanoseconds, ascending).
    pub(crate) fn of(sorted: &[u64]) -> Self {
        Self {
            p50: percentile(sorted, 50.0),
            p99: percentile(sorted, 99.0),
            p99_9: percentile(sorted, 99.9),
            max: percentile(sorted, 100.0),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank).copied().unwrap_or(0) as f64 / 1e6
}

/// Latency before and during the pack rewrites of `--reload-every`.
#[derive(Debug, serde::Serialize)]
pub struct Reloads {
    pub before_ms: Latency,
    pub during_ms: Latency,
    pub pack_rewrites: u64,
    pub reloads_applied: u64,
}

/// The result of a run.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub target: Target,
    pub connections: usize,
    pub seconds: f64,
    pub requests: usize,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    pub during_reloads: Option<Reloads>,
    pub errors: usize,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub server_cpu_seconds: f64,
    pub server_cpu_cores: f64,
    pub server_rss_bytes: u64,
    /// (requests measured, RSS then)
    pub server_rss_bytes_after: Option<(u64, u64)>,
    /// With `--shadow`: the shadow pack's decisions and drops, warm-up included.
    pub shadow: Option<Shadow>,
    pub mix: String,
}

/// What the shadow pack did during a run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Shadow {
    pub evaluated: u64,
    pub dropped: u64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// The report as the harness prints it without `--json`.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} requests in {:.1} s over {} connections: {:.0} req/s\n\
             latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n\
             errors {} {:?}\n\
             server: {:.2} CPU s ({:.2} cores), RSS {:.1} MiB",
            self.target,
            self.requests,
            self.seconds,
            self.connections,
            self.requests_per_second,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.p99_9,
            self.latency_ms.max,
            self.errors,
            self.errors_by_kind,
            self.server_cpu_seconds,
            self.server_cpu_cores,
            mib(self.server_rss_bytes),
        )?;
        if let Some((count, rss)) = self.server_rss_bytes_after {
            write!(
                f,
                "\nserver RSS after {count} requests {:.1} MiB; at the end {:.1} MiB ({:+.1}%)",
                mib(rss),
                mib(self.server_rss_bytes),
                (self.server_rss_bytes as f64 / rss.max(1) as f64 - 1.0) * 100.0,
            )?;
        }
        if let Some(reloads) = &self.during_reloads {
            write!(
                f,
                "\nbefore reloads: p50 {:.2} ms, p99 {:.2} ms; during {} rewrites ({} reloads \
                 applied): p50 {:.2} ms, p99 {:.2} ms ({:.2}x)",
                reloads.before_ms.p50,
                reloads.before_ms.p99,
                reloads.pack_rewrites,
                reloads.reloads_applied,
                reloads.during_ms.p50,
                reloads.during_ms.p99,
                reloads.during_ms.p99 / reloads.before_ms.p99.max(f64::EPSILON),
            )?;
        }
        Ok(())
    }
}
