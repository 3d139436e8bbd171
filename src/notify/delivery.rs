//! The delivery task: posts queued notifications, retries failures with exponential backoff,
//! gives up after a day, and forgets finished ones after a week.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use super::{Format, Notifier, signature, target};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::store::{AuditRecord, PendingDelivery, Store, Write};

/// How long one attempt may take.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY_MS: i64 = 1_000;
const MAX_RETRY_MS: i64 = 10 * 60 * 1_000;
const GIVE_UP_AFTER_MS: i64 = 24 * 3_600 * 1_000;
const KEEP_FINISHED_MS: i64 = 7 * 24 * 3_600 * 1_000;
const PRUNE_EVERY_MS: i64 = 3_600 * 1_000;
/// Longest sleep between looks at the outbox when nothing wakes the task.
const IDLE_MS: i64 = 5_000;
const BATCH: i64 = 32;
/// How long a claimed delivery is this replica's to attempt and record; past it, a delivery
/// whose outcome was never recorded (the replica died) is due again for any replica.
const LEASE_MS: i64 = 60_000;

/// The wait before attempt `attempts + 1` after `attempts` failures: doubling from a second,
/// capped at ten minutes, with up to a fifth more at random so receivers coming back are not
/// hit by every sender at once.
fn backoff_ms(attempts: i64) -> i64 {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = FIRST_RETRY_MS
        .saturating_mul(2_i64.saturating_pow(exponent))
        .min(MAX_RETRY_MS);
    base + jitter_ms(base / 5)
}

/// A random wait from 0 to `max` ms; none when the system has no randomness to give.
fn jitter_ms(max: i64) -> i64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0;
    }
    let span = u64::try_from(max).unwrap_or(0).saturating_add(1);
    i64::try_from(u64::from_le_bytes(bytes) % span).unwrap_or(0)
}

impl Notifier {
    /// Delivers what the outbox holds, as it falls due on `clock` (the one the outbox's
    /// times were written by), until the task is dropped.
    pub async fn deliver(self: Arc<Self>, store: Store, metrics: Metrics, clock: SharedClock) {
        let mut last_prune = i64::MIN;
        loop {
            let now = clock.now_ms();
            if now.saturating_sub(last_prune) >= PRUNE_EVERY_MS {
                last_prune = now;
                let prune = Write::PruneDeliveries {
                    before_ms: now - KEEP_FINISHED_MS,
                };
                if let Err(e) = store.write(vec![prune]).await {
                    tracing::warn!(error = %e, "cannot prune delivered notifications");
                }
            }
            match store.claim_deliveries(now, LEASE_MS, BATCH).await {
                Ok(due) if !due.is_empty() => {
                    let mut attempts = JoinSet::new();
                    for delivery in due {
                        let notifier = Arc::clone(&self);
                        attempts.spawn(async move {
                            let result = notifier.attempt(&delivery, now).await;
                            (delivery, result)
                        });
                    }
                    let mut recorded = true;
                    while let Some(joined) = attempts.join_next().await {
                        if let Ok((delivery, result)) = joined {
                            let now = clock.now_ms();
                            recorded &= self.record(&store, &metrics, &delivery, result, now).await;
                        }
                    }
                    if recorded {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the webhook outbox"),
            }
            let wait = match store.next_delivery_ms().await {
                Ok(Some(at)) => (at - clock.now_ms()).clamp(0, IDLE_MS),
                _ => IDLE_MS,
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(clock.real_wait(wait)) => {}
            }
        }
    }

    /// One POST of `delivery` at `now_ms`; the error says why it did not count as delivered.
    async fn attempt(&self, delivery: &PendingDelivery, now_ms: i64) -> Result<(), String> {
        let Some(hook) = self.hooks.iter().find(|h| h.key == delivery.hook) else {
            return Err("the webhook is no longer configured".into());
        };
        let mut post = self
            .client
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        if hook.format == Format::Json {
            let timestamp = now_ms.div_euclid(1000).to_string();
            post = post
                .header("x-jitgate-event", &delivery.event)
                .header("x-jitgate-delivery", &delivery.delivery_id)
                .header(
                    "x-jitgate-signature",
                    signature(&hook.secret, &timestamp, delivery.body.as_bytes()),
                )
                .header("x-jitgate-timestamp", timestamp);
        }
        match post.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "{} answered HTTP {}",
                target(&hook.url),
                response.status().as_u16()
            )),
            // Without the URL: a Slack webhook's path is its secret.
            Err(e) => Err(format!("{}: {}", target(&hook.url), e.without_url())),
        }
    }

    /// Writes down how an attempt went, at `now`; false if the store refused.
    async fn record(
        &self,
        store: &Store,
        metrics: &Metrics,
        delivery: &PendingDelivery,
        result: Result<(), String>,
        now: i64,
    ) -> bool {
        let hook_gone = !self.hooks.iter().any(|h| h.key == delivery.hook);
        let (outcome, writes) = match result {
            Ok(()) => (
                "delivered",
                vec![Write::DeliveryFinished {
                    id: delivery.id,
                    failed: false,
                    at_ms: now,
                    error: None,
                }],
            ),
            Err(error) if hook_gone || now - delivery.created_ms >= GIVE_UP_AFTER_MS => {
                tracing::error!(delivery.id = %delivery.delivery_id, event = %delivery.event, error = %error, "webhook notification given up");
                (
                    "failed",
                    vec![
                        Write::DeliveryFinished {
                            id: delivery.id,
                            failed: true,
                            at_ms: now,
                            error: Some(error.clone()),
                        },
                        Write::Audit(AuditRecord {
                            at: now / 1000,
                            kind: "webhook.failed".into(),
                            request_id: delivery.request_id.clone(),
                            subject: None,
                            data: json!({
                                "delivery_id": delivery.delivery_id,
                                "event": delivery.event,
                                "attempts": delivery.attempts + 1,
                                "error": error,
                            }),
                        }),
                    ],
                )
            }
            Err(error) => {
                let attempts = delivery.attempts + 1;
                tracing::warn!(delivery.id = %delivery.delivery_id, event = %delivery.event, attempts, error = %error, "webhook delivery failed; will retry");
                (
                    "retry",
                    vec![Write::DeliveryRetry {
                        id: delivery.id,
                        next_attempt_ms: now + backoff_ms(attempts),
                        error,
                    }],
                )
            }
        };
        metrics
            .webhook_deliveries
            .with_label_values(&[outcome])
            .inc();
        match store.write(writes).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a webhook delivery attempt");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_ten_minutes() {
        for (attempts, base) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (11, 600_000),
            (40, 600_000),
        ] {
            let wait = backoff_ms(attempts);
            assert!(
                (base..=base + base / 5).contains(&wait),
                "after {attempts} failures waited {wait} ms, expected {base} ms + up to 20%"
            );
        }
    }
}
