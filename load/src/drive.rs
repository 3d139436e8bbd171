//! One keep-alive connection sending the mix until the schedule ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::scenario::Scenario;

/// What one connection saw: latencies before the reloads began (or all) and during them.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) reloading_ns: Vec<u64>,
    pub(crate) errors: Vec<String>,
}

/// When a connection measures, and what it shares with the others.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) measure_from: Instant,
    pub(crate) until: Instant,
    /// Requests sent from then on count as "during reloads".
    pub(crate) reloads_from: Option<Instant>,
    pub(crate) budget: Arc<AtomicU64>,
    pub(crate) measured: Arc<AtomicU64>,
}

/// The scenario at position `i` of the cycle every connection walks: a fixed interleaving by
/// weight.
fn pick<'a>(
    scenarios: &'a [Scenario],
    urls: &'a [String],
    i: usize,
) -> Option<(&'a Scenario, &'a String)> {
    let total: u32 = scenarios.iter().map(|s| s.weight).sum();
    let mut slot = u32::try_from(i % usize::try_from(total).unwrap_or(1).max(1)).unwrap_or(0);
    scenarios.iter().zip(urls).find(|(s, _)| {
        if slot < s.weight {
            true
        } else {
            slot -= s.weight;
            false
        }
    })
}

/// Sends `scenario` once; what was wrong with the answer, if anything.
async fn send(http: &reqwest::Client, scenario: &Scenario, url: &str) -> Option<String> {
    let mut request = http.post(url).json(&scenario.body);
    if let Some(credential) = &scenario.credential {
        request = request.bearer_auth(credential);
    }
    match request.send().await {
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
    }
}

/// Drives one connection to `base`, each connection walking the cycle from its own `start`.
pub(crate) async fn drive(
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
    let mut i = start;
    while Instant::now() < schedule.until {
        let Some((scenario, url)) = pick(&scenarios, &urls, i) else {
            break;
        };
        i += 1;
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
        let error = send(&http, scenario, url).await;
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
