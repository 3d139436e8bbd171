//! The wall clock, in one place: a [`Clock`] the application core and its tasks read (the system
//! clock in service, a [`ManualClock`] that tests move instead of sleeping), and the Unix and
//! RFC 3339 forms the store, tokens and answers use.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What time it is, for everything that decides by the wall clock: expiry, pending lifetimes,
/// schedules, cache lifetimes.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds now.
    fn now_ms(&self) -> i64;

    /// Unix seconds now (0 before 1970).
    fn now(&self) -> u64 {
        u64::try_from(self.now_ms().div_euclid(1_000)).unwrap_or(0)
    }

    /// How long to wait, in real time, before looking again at something due `ms` from now on
    /// this clock.
    fn real_wait(&self, ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

/// The clock every part of a running server shares.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        unix_now_ms()
    }
}

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock that stands still until it is moved: tests of expiry and lifetimes move it instead of
/// sleeping.
#[derive(Debug)]
pub struct ManualClock {
    unix_ms: AtomicI64,
}

impl ManualClock {
    /// A clock standing at the system's time now.
    pub fn now() -> Arc<Self> {
        Self::at_ms(unix_now_ms())
    }

    /// A clock standing at `unix_ms`.
    pub fn at_ms(unix_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            unix_ms: AtomicI64::new(unix_ms),
        })
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.unix_ms.fetch_add(by, Ordering::SeqCst);
    }
}

/// A manual clock moves only when a test moves it, so whoever waits on one looks again soon
/// rather than sleeping the clock's time in real time.
const MANUAL_CLOCK_LOOKS_EVERY: Duration = Duration::from_millis(20);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.unix_ms.load(Ordering::SeqCst)
    }

    fn real_wait(&self, ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(MANUAL_CLOCK_LOOKS_EVERY)
    }
}

/// Unix seconds now on the system clock (0 for a clock before 1970).
pub fn unix_now() -> u64 {
    unix_secs(SystemTime::now())
}

/// Unix milliseconds now on the system clock, as the store keeps them.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix seconds of `at` (0 before 1970).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds as the store keeps them (a signed column): saturates rather than wraps.
pub fn stored_secs(unix: u64) -> i64 {
    i64::try_from(unix).unwrap_or(i64::MAX)
}

/// `unix` as RFC 3339 in UTC (`2026-12-01T04:40:00Z`); empty when out of range.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(String::new, |ts| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_moved() {
        let clock = ManualClock::at_ms(1_000_500);
        assert_eq!(clock.now(), 1_000);
        clock.advance(Duration::from_millis(600));
        assert_eq!(clock.now_ms(), 1_001_100);
        assert_eq!(clock.now(), 1_001);
    }

    #[test]
    fn times_before_1970_read_as_zero() {
        assert_eq!(ManualClock::at_ms(-5_000).now(), 0);
        assert_eq!(stored_secs(u64::MAX), i64::MAX);
    }
}
