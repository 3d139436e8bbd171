//! `/readyz`'s question — can the store take writes? — asked of the store at most once per
//! [`PROBE_EVERY`] of the app's clock: each probe takes the write lock the writer needs, so a
//! scraper polling readiness must not queue behind (or in front of) real writes.

use crate::access::{ApiError, App};

/// How long an answer of the store's probe is believed.
const PROBE_EVERY_MS: i64 = 1_000;

/// When the store was last probed (app-clock milliseconds) and what it answered.
#[derive(Debug, Default)]
pub struct Readiness {
    last_probe: tokio::sync::Mutex<Option<(i64, Result<(), String>)>>,
}

impl App {
    /// Ready when the store could take a write within the last [`PROBE_EVERY_MS`]; answers the
    /// policy version serving.
    pub async fn readiness(&self) -> Result<String, ApiError> {
        let now = self.now_ms();
        let mut last = self.readiness.last_probe.lock().await;
        let outcome = match &*last {
            Some((at, outcome)) if (0..PROBE_EVERY_MS).contains(&(now - at)) => outcome.clone(),
            _ => {
                let outcome = self.store.check_writable().await.map_err(|e| e.to_string());
                *last = Some((now, outcome.clone()));
                outcome
            }
        };
        outcome.map_err(|e| ApiError::Unavailable(format!("store not writable: {e}")))?;
        Ok(self.policies.current().version().to_owned())
    }
}
