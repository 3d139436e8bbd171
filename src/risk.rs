//! Risk (DESIGN §6): a score from 0 to 100, the sum of the weights of the signals that fire,
//! each configured in `[risk]` and off when unset. The signals that fired travel with the
//! decision into the response and the audit trail.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::config::RiskConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Signal {
    pub name: &'static str,
    pub score: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Risk {
    pub score: i64,
    pub signals: Vec<Signal>,
}

/// What the signals look at, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Observations {
    pub source_ip: IpAddr,
    pub mfa: bool,
    /// Hour of the request in the configured zone.
    pub hour: i64,
    /// Denied requests of this principal within `recent_denials.window`.
    pub recent_denials: i64,
    /// Requests of this principal in the last minute, this one included.
    pub requests_last_minute: usize,
    /// Whether the principal was seen from this IP before.
    pub seen_from_ip: bool,
}

pub fn assess(config: &RiskConfig, seen: &Observations) -> Risk {
    let mut signals = Vec::new();
    let mut fire = |name: &'static str, score: u32| {
        if score > 0 {
            signals.push(Signal { name, score });
        }
    };
    if let Some(weight) = config.outside_network
        && !config
            .trusted_networks
            .iter()
            .any(|net| net.contains(&seen.source_ip))
    {
        fire("outside_network", weight);
    }
    if let Some(weight) = config.no_mfa
        && !seen.mfa
    {
        fire("no_mfa", weight);
    }
    if let Some(off) = &config.off_hours {
        let (start, end) = (i64::from(off.start), i64::from(off.end));
        let off_hours = if start <= end {
            seen.hour >= start && seen.hour < end
        } else {
            seen.hour >= start || seen.hour < end
        };
        if off_hours {
            fire("off_hours", off.weight);
        }
    }
    if let Some(denials) = &config.recent_denials {
        let count = u32::try_from(seen.recent_denials.max(0)).unwrap_or(u32::MAX);
        fire(
            "recent_denials",
            denials.each.saturating_mul(count).min(denials.max),
        );
    }
    if let Some(rate) = &config.request_rate
        && seen.requests_last_minute > rate.per_minute as usize
    {
        fire("request_rate", rate.weight);
    }
    if let Some(weight) = config.new_source_ip
        && !seen.seen_from_ip
    {
        fire("new_source_ip", weight);
    }
    let total: i64 = signals.iter().map(|s| i64::from(s.score)).sum();
    Risk {
        score: total.min(100),
        signals,
    }
}

/// Requests per principal over the last minute, counted per second of the app's clock: the
/// request-rate signal and the rate limit. A principal costs sixty counters whatever its rate
/// or limit; a log of request times would cost an entry per request in the window (megabytes
/// for a busy service). With several replicas, each also holds what the others counted (as of
/// their last exchange, about a second old): the limit is the cluster's.
#[derive(Debug, Default)]
pub struct RequestRates {
    recent: Mutex<HashMap<String, Window>>,
    /// The other replicas' totals for the last minute, by principal.
    others: Mutex<HashMap<String, usize>>,
}

/// The window, in seconds.
const WINDOW_SECS: u64 = 60;
/// Principals tracked at most; past that, idle ones are forgotten.
const MAX_PRINCIPALS: usize = 100_000;
/// Retry-After when the other replicas' requests fill the window: when theirs leave it is
/// not known here.
const OTHERS_RETRY_SECS: u64 = 5;

/// One principal's requests in each second of the window.
#[derive(Debug)]
struct Window {
    /// The newest second counted (Unix seconds).
    newest: u64,
    /// Requests in second `s` at `counts[s % 60]`, for the sixty seconds up to `newest`.
    counts: [u32; WINDOW_SECS as usize],
    /// The total last told to the other replicas.
    shared: usize,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            newest: 0,
            counts: [0; WINDOW_SECS as usize],
            shared: 0,
        }
    }
}

impl Window {
    fn slot(&mut self, second: u64) -> Option<&mut u32> {
        self.counts
            .get_mut(usize::try_from(second % WINDOW_SECS).unwrap_or(0))
    }

    /// Ends the window at `second`, forgetting the seconds that leave it.
    fn advance(&mut self, second: u64) {
        if second <= self.newest {
            return;
        }
        let left = (second - self.newest).min(WINDOW_SECS);
        for gone in second + 1 - left..=second {
            if let Some(count) = self.slot(gone) {
                *count = 0;
            }
        }
        self.newest = second;
    }

    fn total(&self) -> usize {
        self.counts.iter().map(|c| *c as usize).sum()
    }

    /// The oldest second of the window with a request in it.
    fn oldest(&mut self) -> Option<u64> {
        let first = self.newest.saturating_sub(WINDOW_SECS - 1);
        (first..=self.newest).find(|s| self.slot(*s).is_some_and(|c| *c > 0))
    }
}

impl RequestRates {
    /// Counts a request of `principal` at `now_ms` (Unix milliseconds) unless `limit` requests
    /// already fell in the last minute, here and on the other replicas; then returns how long
    /// until one leaves the window (whole seconds). Counted, it returns the minute's total.
    pub fn admit(&self, principal: &str, limit: usize, now_ms: i64) -> Result<usize, Duration> {
        let second = u64::try_from(now_ms.div_euclid(1_000)).unwrap_or(0);
        let elsewhere = self
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(principal)
            .copied()
            .unwrap_or(0);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= MAX_PRINCIPALS {
            recent.retain(|_, window| window.newest + WINDOW_SECS > second || window.shared > 0);
        }
        let window = recent.entry(principal.to_owned()).or_default();
        // A caller that read the clock a moment before another counts in the newer second.
        let second = second.max(window.newest);
        window.advance(second);
        if window.total() + elsewhere >= limit {
            let wait = match window.oldest() {
                Some(oldest) if window.total() >= limit => oldest + WINDOW_SECS - second,
                _ => OTHERS_RETRY_SECS,
            };
            return Err(Duration::from_secs(wait));
        }
        if let Some(count) = window.slot(second) {
            *count = count.saturating_add(1);
        }
        Ok(window.total() + elsewhere)
    }

    /// This replica's totals at `now_ms` for the principals whose total changed since the last
    /// call (zero: nothing left in its window), to tell the other replicas.
    pub fn changed_totals(&self, now_ms: i64) -> Vec<(String, usize)> {
        let second = u64::try_from(now_ms.div_euclid(1_000)).unwrap_or(0);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed = Vec::new();
        for (principal, window) in recent.iter_mut() {
            window.advance(second);
            let total = window.total();
            if total != window.shared {
                window.shared = total;
                changed.push((principal.clone(), total));
            }
        }
        changed
    }

    /// Replaces what the other replicas counted in the last minute, by principal.
    pub fn set_others(&self, others: HashMap<String, usize>) {
        *self.others.lock().unwrap_or_else(PoisonError::into_inner) = others;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OffHoursConfig, RecentDenialsConfig, RequestRateConfig};

    fn seen() -> Observations {
        Observations {
            source_ip: "203.0.113.9".parse().unwrap(),
            mfa: false,
            hour: 22,
            recent_denials: 2,
            requests_last_minute: 31,
            seen_from_ip: false,
        }
    }

    #[test]
    fn every_signal_is_off_when_unset() {
        assert_eq!(assess(&RiskConfig::default(), &seen()), Risk::default());
    }

    #[test]
    fn signals_add_up_and_cap_at_100() {
        let config = RiskConfig {
            trusted_networks: vec!["10.0.0.0/8".parse().unwrap()],
            outside_network: Some(30),
            no_mfa: Some(20),
            no_mfa_for_api_keys: false,
            off_hours: Some(OffHoursConfig {
                start: 20,
                end: 7,
                weight: 15,
            }),
            recent_denials: Some(RecentDenialsConfig {
                window: Duration::from_secs(600),
                each: 10,
                max: 15,
            }),
            request_rate: Some(RequestRateConfig {
                per_minute: 30,
                weight: 20,
            }),
            new_source_ip: Some(10),
        };
        let risk = assess(&config, &seen());
        let names: Vec<&str> = risk.signals.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "outside_network",
                "no_mfa",
                "off_hours",
                "recent_denials",
                "request_rate",
                "new_source_ip"
            ]
        );
        assert_eq!(
            risk.signals[3].score, 15,
            "recent denials are capped at max"
        );
        assert_eq!(risk.score, 100);

        let calm = Observations {
            source_ip: "10.1.2.3".parse().unwrap(),
            mfa: true,
            hour: 10,
            recent_denials: 0,
            requests_last_minute: 1,
            seen_from_ip: true,
        };
        assert_eq!(assess(&config, &calm), Risk::default());
        let early = Observations {
            hour: 6,
            ..calm.clone()
        };
        assert_eq!(assess(&config, &early).score, 15);
        let seven = Observations { hour: 7, ..calm };
        assert_eq!(assess(&config, &seven).score, 0);
    }

    /// Unix milliseconds `by` after a fixed start.
    fn at(by: Duration) -> i64 {
        1_800_000_000_000 + i64::try_from(by.as_millis()).unwrap()
    }

    #[test]
    fn the_rate_window_slides() {
        let rates = RequestRates::default();
        let t0 = Duration::ZERO;
        assert_eq!(rates.admit("a", 2, at(t0)), Ok(1));
        assert_eq!(rates.admit("a", 2, at(t0 + Duration::from_secs(10))), Ok(2));
        assert_eq!(
            rates.admit("a", 2, at(t0 + Duration::from_secs(20))),
            Err(Duration::from_secs(40))
        );
        assert_eq!(rates.admit("b", 2, at(t0 + Duration::from_secs(20))), Ok(1));
        assert_eq!(rates.admit("a", 2, at(t0 + Duration::from_secs(60))), Ok(2));
        // A minute and more of silence empties the window.
        assert_eq!(
            rates.admit("a", 2, at(t0 + Duration::from_secs(200))),
            Ok(1)
        );
    }

    #[test]
    fn a_busy_principal_costs_sixty_counters_and_is_still_limited() {
        let rates = RequestRates::default();
        for i in 0..100_000u64 {
            let now = at(Duration::from_micros(i * 500));
            assert_eq!(
                rates.admit("busy", 1_000_000, now),
                Ok(usize::try_from(i + 1).unwrap())
            );
        }
        // 50 s in: every request is still in the window.
        assert_eq!(
            rates.admit("busy", 100_000, at(Duration::from_secs(50))),
            Err(Duration::from_secs(10))
        );
        // 70 s in, the window is seconds 11 to 70: seconds 0 to 10 (22,000 requests) left it.
        let now = at(Duration::from_secs(70));
        assert_eq!(rates.admit("busy", 1_000_000, now), Ok(78_001));
    }

    #[test]
    fn the_limit_counts_what_other_replicas_counted() {
        let rates = RequestRates::default();
        let now = at(Duration::ZERO);
        assert_eq!(rates.admit("a", 10, now), Ok(1));
        assert_eq!(rates.admit("a", 10, now), Ok(2));
        assert_eq!(rates.changed_totals(now), [("a".to_owned(), 2)]);
        assert!(rates.changed_totals(now).is_empty(), "told once");
        rates.set_others(HashMap::from([("a".to_owned(), 7)]));
        assert_eq!(rates.admit("a", 10, now), Ok(10));
        assert_eq!(
            rates.admit("a", 10, now),
            Err(Duration::from_secs(OTHERS_RETRY_SECS)),
            "the others' requests fill the window"
        );
        for count in 1..=10 {
            assert_eq!(rates.admit("b", 10, now), Ok(count));
        }
        assert_eq!(
            rates.admit("b", 10, now),
            Err(Duration::from_secs(60)),
            "full here alone: free when the oldest leaves"
        );
        let mut told = rates.changed_totals(now);
        told.sort();
        assert_eq!(told, [("a".to_owned(), 3), ("b".to_owned(), 10)]);
        // A minute on, this replica's requests have left: it says its total is now zero.
        let later = at(Duration::from_secs(61));
        let mut changed = rates.changed_totals(later);
        changed.sort();
        assert_eq!(changed, [("a".to_owned(), 0), ("b".to_owned(), 0)]);
    }
}
