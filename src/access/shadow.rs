//! The shadow pack (DESIGN §9.4): a candidate pack decided beside the live one on every
//! decision, off the answer path. A decision hands the request to a bounded queue and goes on;
//! a worker decides it under the shadow pack, counts the pair of outcomes
//! (`jitgate_shadow_decisions_total{live,shadow}`) and audits a disagreement
//! (`shadow.disagreement`). A full queue drops the evaluation and counts it: the shadow never
//! slows or blocks an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{App, AppState, AuditKind};
use crate::decision::{Decision, DecisionRequest};
use crate::policy::{LivePolicies, LoadErrors, PackPaths};
use crate::store::{AuditRecord, Write};

/// Evaluations waiting at most; more are dropped.
const QUEUE: usize = 1_024;

/// A decision to make again under the shadow pack.
#[derive(Debug)]
pub struct Job {
    request_id: String,
    subject: String,
    at: i64,
    request: DecisionRequest,
    live_outcome: &'static str,
    live_policies: Vec<String>,
    live_version: String,
}

/// The shadow pack, its queue and its counts.
#[derive(Debug)]
pub struct Shadow {
    pub policies: Arc<LivePolicies>,
    queue: mpsc::Sender<Job>,
    jobs: std::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    evaluated: AtomicU64,
    disagreements: AtomicU64,
    dropped: AtomicU64,
}

/// What `/v1/policies` says of the shadow pack.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowCounts {
    pub evaluated: u64,
    pub disagreements: u64,
    pub dropped: u64,
}

impl Shadow {
    /// Loads and validates the shadow pack at `paths`, as the live one is.
    pub fn load(paths: PackPaths) -> Result<Self, LoadErrors> {
        let policies = Arc::new(LivePolicies::load(paths)?);
        let (queue, jobs) = mpsc::channel(QUEUE);
        Ok(Self {
            policies,
            queue,
            jobs: std::sync::Mutex::new(Some(jobs)),
            evaluated: AtomicU64::new(0),
            disagreements: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn counts(&self) -> ShadowCounts {
        ShadowCounts {
            evaluated: self.evaluated.load(Ordering::Relaxed),
            disagreements: self.disagreements.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Queues `request`, decided live as `decision`, for the shadow pack; never waits.
    pub fn offer(
        &self,
        state: &App,
        (request_id, subject): (&str, String),
        request: &DecisionRequest,
        decision: &Decision,
    ) {
        let job = Job {
            request_id: request_id.to_owned(),
            subject,
            at: state.now_stored(),
            request: request.clone(),
            live_outcome: decision.outcome.as_str(),
            live_policies: decision.policies.clone(),
            live_version: decision.policy_version.clone(),
        };
        if self.queue.try_send(job).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            state
                .metrics
                .shadow_dropped
                .with_label_values(&[] as &[&str])
                .inc();
        }
    }
}

/// Decides queued requests under the shadow pack until the server stops.
pub async fn run(state: AppState) {
    let Some(shadow) = state.shadow.clone() else {
        return;
    };
    let taken = shadow
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(mut jobs) = taken else {
        return;
    };
    while let Some(job) = jobs.recv().await {
        let pack = shadow.policies.current();
        let decided = crate::decision::decide(&pack, &job.request, &state.config.grant_defaults());
        let (outcome, policies) = match &decided {
            Ok(decision) => (decision.outcome.as_str(), decision.policies.clone()),
            // A request the candidate cannot decide (an action or resource it lacks).
            Err(_) => ("error", Vec::new()),
        };
        shadow.evaluated.fetch_add(1, Ordering::Relaxed);
        state
            .metrics
            .shadow_decisions
            .with_label_values(&[job.live_outcome, outcome])
            .inc();
        if outcome == job.live_outcome {
            continue;
        }
        shadow.disagreements.fetch_add(1, Ordering::Relaxed);
        let event = AuditRecord {
            at: job.at,
            kind: AuditKind::ShadowDisagreement.into(),
            request_id: Some(job.request_id),
            subject: Some(job.subject),
            data: json!({
                "live": {"decision": job.live_outcome, "policies": job.live_policies, "version": job.live_version},
                "shadow": {
                    "decision": outcome,
                    "policies": policies,
                    "version": pack.version(),
                    "error": decided.err().map(|e| e.to_string()),
                },
            }),
        };
        if let Err(e) = state.store.write(vec![Write::Audit(event)]).await {
            tracing::warn!(error = %e, "cannot record a shadow disagreement");
        }
    }
}
