//! The replicas serving one database: each says it is alive every [`HEARTBEAT_EVERY`], with
//! its version and the policy version it serves; administrators list those seen within
//! [`SEEN_WITHIN_SECS`] (`GET /v1/cluster`); `jitgate_cluster_replicas{policy_version}` counts
//! them, and a replica serving another policy version than the others says so in its log.

use std::collections::BTreeMap;
use std::time::Duration;

use super::answer::{ClusterView, ReplicaView};
use super::refusal::forbidden;
use super::{ApiError, App, AppState};
use crate::clock::rfc3339;
use crate::identity::Caller;
use crate::store::{ReplicaRecord, StoreError, Write};

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How often replicas on a shared database exchange their request counts: the lag, and so
/// the most a burst can overshoot a limit by, is about this long.
pub const SHARE_RATES_EVERY: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is not listed.
pub const SEEN_WITHIN_SECS: i64 = 30;
/// A replica not heard from for a day is forgotten.
const FORGET_AFTER_SECS: i64 = 24 * 3_600;

/// This process among the replicas: a random id and when it started.
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: String,
    pub started_at: i64,
}

impl Replica {
    /// `host-xxxxxxxx`: the host name, so a person can find the process, and random hex, so
    /// two processes on one host differ.
    pub fn new(started_at: i64) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "jitgate".into());
        let mut random = [0u8; 4];
        // Without randomness the id is still the host's; a second process there would share it.
        let _ = aws_lc_rs::rand::fill(&mut random);
        Self {
            id: format!("{host}-{}", hex::encode(random)),
            started_at,
        }
    }
}

/// Beats every [`HEARTBEAT_EVERY`] until aborted.
pub async fn heartbeats(app: AppState) {
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        ticks.tick().await;
        if let Err(e) = beat(&app).await {
            tracing::warn!(error = %e, "cannot record this replica's heartbeat");
        }
    }
}

/// Records that this replica is alive, and counts the replicas seen by policy version.
pub async fn beat(app: &App) -> Result<Vec<ReplicaRecord>, StoreError> {
    let now = app.now_stored();
    let policy_version = app.policies.current().version().to_owned();
    let me = ReplicaRecord {
        id: app.replica.id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        policy_version: policy_version.clone(),
        started_at: app.replica.started_at,
        last_seen: now,
    };
    let forget_before = now.saturating_sub(FORGET_AFTER_SECS);
    app.store
        .write(vec![Write::Heartbeat {
            replica: me,
            forget_before,
        }])
        .await?;
    let seen = app.store.replicas(now - SEEN_WITHIN_SECS).await?;
    let mut by_version: BTreeMap<&str, i64> = BTreeMap::new();
    for replica in &seen {
        *by_version.entry(&replica.policy_version).or_default() += 1;
    }
    app.metrics.cluster_replicas.reset();
    for (version, count) in &by_version {
        app.metrics
            .cluster_replicas
            .with_label_values(&[version])
            .set(*count);
    }
    if let Some(other) = seen.iter().find(|r| r.policy_version != policy_version) {
        tracing::warn!(
            policy_version,
            other.replica = %other.id,
            other.policy_version = %other.policy_version,
            "replicas serve different policy versions: check that every replica reads the same policy files"
        );
    }
    Ok(seen)
}

/// Tells the other replicas this one's request counts and takes up theirs, every
/// [`SHARE_RATES_EVERY`], until aborted: the per-principal limits hold for the cluster.
pub async fn share_rates(app: AppState) {
    let mut ticks = tokio::time::interval(SHARE_RATES_EVERY);
    loop {
        ticks.tick().await;
        if let Err(e) = exchange_rates(&app).await {
            tracing::warn!(error = %e, "cannot exchange request counts with the other replicas");
        }
    }
}

/// One exchange. A report that fails is not repeated: the counts it carried are told again
/// when they next change, and rows no replica refreshes leave within a minute.
pub async fn exchange_rates(app: &App) -> Result<(), StoreError> {
    let now_ms = app.now_ms();
    let now = now_ms.div_euclid(1_000);
    let since = now - 60;
    let limits = [
        ("requests", &app.rates),
        ("operations", &app.operation_rates),
    ];
    let reports = limits
        .iter()
        .map(|(kind, rates)| Write::RateTotals {
            replica: app.replica.id.clone(),
            kind: (*kind).to_owned(),
            totals: (rates.changed_totals(now_ms).into_iter())
                .map(|(principal, total)| (principal, i64::try_from(total).unwrap_or(i64::MAX)))
                .collect(),
            at: now,
            forget_before: since,
        })
        .collect();
    app.store.write(reports).await?;
    for (kind, rates) in limits {
        let others = app
            .store
            .rate_totals_of_others(kind, &app.replica.id, since)
            .await?;
        rates.set_others(
            others
                .into_iter()
                .map(|(principal, total)| (principal, usize::try_from(total).unwrap_or(0)))
                .collect(),
        );
    }
    Ok(())
}

/// `GET /v1/cluster`: the replicas seen lately, for administrators.
pub async fn cluster(app: &App, caller: &Caller) -> Result<ClusterView, ApiError> {
    if !app.may_administer(caller) {
        let why = "only administrators see the cluster";
        return Err(forbidden(app, caller, "read the cluster", None, why).await);
    }
    let since = app.now_stored() - SEEN_WITHIN_SECS;
    let time = |at: i64| rfc3339(u64::try_from(at).unwrap_or(0));
    let replicas = app
        .store
        .replicas(since)
        .await?
        .into_iter()
        .map(|r| ReplicaView {
            started_at: time(r.started_at),
            last_seen: time(r.last_seen),
            id: r.id,
            version: r.version,
            policy_version: r.policy_version,
        })
        .collect();
    Ok(ClusterView { replicas })
}
