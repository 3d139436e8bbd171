//! Risk (DESIGN §6): a score from 0 to 100, the sum of the weights of the signals that fire,
//! each configured in `[risk]` and off when unset. The signals that fired travel with the
//! decision into the response and the audit trail.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::RiskConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub name: &'static str,
    pub score: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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

/// Requests per principal over the last minute, counted per second: the request-rate signal
/// and the rate limit. A principal costs sixty counters whatever its rate or limit; a log of
/// request times would cost an entry per request in the window (megabytes for a busy service).
#[derive(Debug)]
pub struct RequestRates {
    origin: Instant,
    recent: Mutex<HashMap<String, Window>>,
}

impl Default for RequestRates {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            recent: Mutex::default(),
        }
    }
}

/// The window, in seconds.
const WINDOW_SECS: u64 = 60;
/// Principals tracked at most; past that, idle ones are forgotten.
const MAX_PRINCIPALS: usize = 100_000;

/// One principal's requests in each second of the window.
#[derive(Debug)]
struct Window {
    /// The newest second counted, in seconds since [`RequestRates::origin`].
    newest: u64,
    /// Requests in second `s` at `counts[s % 60]`, for the sixty seconds up to `newest`.
    counts: [u32; WINDOW_SECS as usize],
}

impl Default for Window {
    fn default() -> Self {
        Self {
            newest: 0,
            counts: [0; WINDOW_SECS as usize],
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
    /// Counts a request of `principal` at `now` unless `limit` requests already fell in the
    /// last minute; then returns how long until one leaves the window (whole seconds).
    pub fn admit(&self, principal: &str, limit: usize, now: Instant) -> Result<usize, Duration> {
        let second = now.saturating_duration_since(self.origin).as_secs();
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= MAX_PRINCIPALS {
            recent.retain(|_, window| window.newest + WINDOW_SECS > second);
        }
        let window = recent.entry(principal.to_owned()).or_default();
        // A caller that read the clock a moment before another counts in the newer second.
        let second = second.max(window.newest);
        window.advance(second);
        if window.total() >= limit {
            let oldest = window.oldest().unwrap_or(second);
            return Err(Duration::from_secs(oldest + WINDOW_SECS - second));
        }
        if let Some(count) = window.slot(second) {
            *count = count.saturating_add(1);
        }
        Ok(window.total())
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

    #[test]
    fn the_rate_window_slides() {
        let rates = RequestRates::default();
        let t0 = Instant::now();
        assert_eq!(rates.admit("a", 2, t0), Ok(1));
        assert_eq!(rates.admit("a", 2, t0 + Duration::from_secs(10)), Ok(2));
        assert_eq!(
            rates.admit("a", 2, t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        assert_eq!(rates.admit("b", 2, t0 + Duration::from_secs(20)), Ok(1));
        assert_eq!(rates.admit("a", 2, t0 + Duration::from_secs(60)), Ok(2));
        // A minute and more of silence empties the window.
        assert_eq!(rates.admit("a", 2, t0 + Duration::from_secs(200)), Ok(1));
    }

    #[test]
    fn a_busy_principal_costs_sixty_counters_and_is_still_limited() {
        let rates = RequestRates::default();
        let t0 = Instant::now();
        for i in 0..100_000u64 {
            let at = t0 + Duration::from_micros(i * 500);
            assert_eq!(
                rates.admit("busy", 1_000_000, at),
                Ok(usize::try_from(i + 1).unwrap())
            );
        }
        // 50 s in: every request is still in the window.
        let at = t0 + Duration::from_secs(50);
        assert_eq!(
            rates.admit("busy", 100_000, at),
            Err(Duration::from_secs(10))
        );
        // 70 s in, the window is seconds 11 to 70: seconds 0 to 10 (22,000 requests) left it.
        let at = t0 + Duration::from_secs(70);
        assert_eq!(rates.admit("busy", 1_000_000, at), Ok(78_001));
    }
}
