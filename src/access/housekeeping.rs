//! The work a running server does on its own: expiring pending requests and pruning what no
//! longer matters.

use std::time::Duration;

use serde_json::json;

use super::{AppState, AuditKind};
use crate::clock::stored_secs;
use crate::notify::Event;
use crate::store::{AuditRecord, StoreError, Write};

/// Marks pending requests past `pending_ttl` expired and audits it (reads already treat them
/// as expired; this writes it down for the record, the metrics and the webhooks), and forgets
/// revocations whose tokens have all expired.
pub async fn run(state: AppState) {
    let every =
        (state.config.pending_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let now = state.now_stored();
        let denials_window = state
            .config
            .risk
            .recent_denials
            .as_ref()
            .map_or(0, |config| stored_secs(config.window.as_secs()));
        let prune = vec![
            Write::PruneRevocations { now },
            Write::PruneUsedOnce { now },
            super::session::prune(&state, now),
            Write::PruneDryRunDenials {
                before: now.saturating_sub(denials_window),
            },
        ];
        if let Err(e) = state.store.write(prune).await {
            tracing::warn!(error = %e, "cannot prune revocations and dry-run denials");
        }
        let ids = match state.store.expired_pending(now, 500).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for expired requests");
                continue;
            }
        };
        for id in ids {
            let request = match state.store.request(&id).await {
                Ok(Some(request)) => request,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read an expired request");
                    continue;
                }
            };
            let mut writes = vec![
                Write::Expire {
                    id: id.clone(),
                    at: now,
                },
                Write::Audit(AuditRecord {
                    at: now,
                    kind: AuditKind::RequestExpired.into(),
                    request_id: Some(id.clone()),
                    subject: None,
                    data: json!({}),
                }),
            ];
            writes.extend(
                state
                    .notifier
                    .outbox(&Event::Expired, &request.record, state.now_ms())
                    .into_iter()
                    .map(Write::Outbox),
            );
            match state.store.write(writes).await {
                Ok(()) => {
                    state.notifier.wake();
                    tracing::info!(request.id = %id, "pending request expired");
                }
                // Approved, denied or cancelled in the meantime: nothing to do.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => tracing::warn!(error = %e, "cannot record an expiry"),
            }
        }
    }
}
