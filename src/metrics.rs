//! Prometheus metrics; the names and labels are contract (DESIGN §7). Label values are bounded:
//! decisions, actions and policy ids come from the pack, routes from the router, statuses are
//! HTTP codes, and no principal ever becomes a label.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub decisions: IntCounterVec,
    pub decision_duration: Histogram,
    pub tokens_issued: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub policies_loaded: IntGauge,
    pub approvals_pending: IntGauge,
    pub revocations: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub policy_matches: IntCounterVec,
    /// Seconds from a stage opening (the request, or the stage before it closing) to its
    /// closing, by stage.
    pub approval_wait: HistogramVec,
    /// Beyond the contract: webhook attempts by result (`delivered`, `retry`, `failed`).
    pub webhook_deliveries: IntCounterVec,
    /// Beyond the contract: jobs waiting for the store's writer, counted at scrape time.
    pub store_write_queue: IntGauge,
    /// Tokens issued by break-glass, without approval, by action: the alert operators want
    /// first.
    pub break_glass: IntCounterVec,
    /// Replicas seen in the last 30 s, by the policy version each serves.
    pub cluster_replicas: IntGaugeVec,
    /// Shadow-pack decisions by the live and the shadow outcome (they disagree where the
    /// labels differ).
    pub shadow_decisions: IntCounterVec,
    /// Shadow evaluations dropped because the queue was full (never delaying an answer).
    pub shadow_dropped: IntCounterVec,
}

const FAST_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];
const WAIT_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| -> Result<Histogram, prometheus::Error> {
                let metric =
                    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "jitgate_http_request_duration_seconds",
                "HTTP request duration by route.",
            )
            .buckets(FAST_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let approval_wait = HistogramVec::new(
            HistogramOpts::new(
                "jitgate_approval_wait_seconds",
                "Time from a stage of approvals opening to its decision, by stage.",
            )
            .buckets(WAIT_BUCKETS.to_vec()),
            &["stage"],
        )?;
        registry.register(Box::new(approval_wait.clone()))?;
        Ok(Self {
            decisions: counter(
                "jitgate_decisions_total",
                "Decisions by outcome and action.",
                &["decision", "action"],
            )?,
            shadow_decisions: counter(
                "jitgate_shadow_decisions_total",
                "Shadow-pack decisions by the live and the shadow outcome.",
                &["live", "shadow"],
            )?,
            shadow_dropped: counter(
                "jitgate_shadow_dropped_total",
                "Shadow evaluations dropped because their queue was full.",
                &[],
            )?,
            break_glass: counter(
                "jitgate_break_glass_total",
                "Tokens issued by break-glass, without approval, by action.",
                &["action"],
            )?,
            decision_duration: histogram(
                "jitgate_decision_duration_seconds",
                "Time to decide a request.",
                &FAST_BUCKETS,
            )?,
            tokens_issued: counter(
                "jitgate_tokens_issued_total",
                "Access tokens issued by signing algorithm.",
                &["alg"],
            )?,
            policy_reloads: counter(
                "jitgate_policy_reloads_total",
                "Policy reloads by result.",
                &["result"],
            )?,
            policies_loaded: gauge("jitgate_policies_loaded", "Policies in the serving pack.")?,
            approvals_pending: gauge(
                "jitgate_approvals_pending",
                "Requests waiting for approval.",
            )?,
            revocations: counter(
                "jitgate_revocations_total",
                "Revocations by kind.",
                &["kind"],
            )?,
            http_requests: counter(
                "jitgate_http_requests_total",
                "HTTP requests by route and status.",
                &["route", "status"],
            )?,
            http_duration,
            policy_matches: counter(
                "jitgate_policy_matches_total",
                "Decisions each policy took part in.",
                &["policy"],
            )?,
            approval_wait,
            webhook_deliveries: counter(
                "jitgate_webhook_deliveries_total",
                "Webhook delivery attempts by result.",
                &["result"],
            )?,
            store_write_queue: gauge(
                "jitgate_store_write_queue",
                "Jobs waiting for the store's writer.",
            )?,
            cluster_replicas: {
                let metric = IntGaugeVec::new(
                    Opts::new(
                        "jitgate_cluster_replicas",
                        "Replicas seen in the last 30 s by the policy version they serve.",
                    ),
                    &["policy_version"],
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            registry,
        })
    }

    /// Adds a metric kept elsewhere (the store's commit count) to the exposition.
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
