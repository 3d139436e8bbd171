//! Reading and printing the wall clock, in one place: Unix seconds and milliseconds as the store
//! and tokens keep them, and RFC 3339 as answers and messages print them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now (0 for a clock before 1970).
pub fn unix_now() -> u64 {
    unix_secs(SystemTime::now())
}

/// Unix milliseconds now, as the store keeps them.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix seconds of `at` (0 before 1970).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `unix` as RFC 3339 in UTC (`2026-12-01T04:40:00Z`); empty when out of range.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(String::new, |ts| ts.to_string())
}
