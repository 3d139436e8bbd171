//! The request context the server computes (`source_ip`, `risk_score`, `mfa`, `reason`,
//! `duration_secs`, `time`) plus the keys a client may add. Engines turn it into their own
//! form (Cedar's `Context`).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::RequestError;

/// Context keys only the server sets; a client's `context` may not use them.
pub const SERVER_CONTEXT_KEYS: [&str; 9] = [
    "source_ip",
    "risk_score",
    "mfa",
    "reason",
    "duration_secs",
    "time",
    "dpop_bound",
    "extends",
    "extended_secs",
];

/// What an extension of a live grant tells the policies (context `extends`, `extended_secs`;
/// present only on an extension, so the schema declares them optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The first request of the grant.
    pub extends: String,
    /// The grant's total lifetime so far, in seconds.
    pub extended_secs: i64,
}

/// The context of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionContext {
    /// An access request: the context every requestable action declares.
    Access(RequestContext),
    /// Any other action (`approve`, `administer`): the keys as given, read and checked against
    /// the schema's context for the action.
    Other(serde_json::Map<String, serde_json::Value>),
}

/// The context of an access request, as declared in the schema for every requestable action.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestContext {
    pub source_ip: IpAddr,
    /// 0–100, computed by the server.
    pub risk_score: i64,
    pub mfa: bool,
    /// The requester's reason, "" when none.
    pub reason: String,
    pub time: RequestTime,
    /// The token will be bound to a DPoP key the client proved it holds.
    pub dpop_bound: bool,
    /// For an extension of a live grant, which and how long so far.
    pub extension: Option<Extension>,
    /// Client-supplied keys, checked against the schema with the rest of the context.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl RequestContext {
    /// A context at `time` with every server key at its neutral value: 127.0.0.1, risk 0, no MFA,
    /// no reason, no extra keys.
    pub fn neutral(time: RequestTime) -> Self {
        Self {
            source_ip: IpAddr::from([127, 0, 0, 1]),
            risk_score: 0,
            mfa: false,
            reason: String::new(),
            time,
            dpop_bound: false,
            extension: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Refuses client keys that only the server may set.
    pub fn check_client_keys(&self) -> Result<(), RequestError> {
        match SERVER_CONTEXT_KEYS
            .iter()
            .find(|key| self.extra.contains_key(**key))
        {
            Some(key) => Err(RequestError::ReservedContextKey((*key).to_owned())),
            None => Ok(()),
        }
    }
}

/// The request time as policies see it: `{unix, hour, weekday}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTime {
    pub unix: i64,
    /// 0–23.
    pub hour: i64,
    pub weekday: Weekday,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }
}

impl RequestTime {
    /// The time `unix` seconds after the epoch, in a zone `offset_secs` east of UTC.
    pub fn from_unix(unix: i64, offset_secs: i64) -> Self {
        let local = unix + offset_secs;
        let days = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday.
        let weekday = Weekday::ALL
            .get((days + 3).rem_euclid(7) as usize)
            .copied()
            .unwrap_or(Weekday::Mon);
        Self {
            unix,
            hour: local.rem_euclid(86_400) / 3_600,
            weekday,
        }
    }

    /// Now, in UTC.
    pub fn now_utc() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self::from_unix(unix, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_has_hour_and_weekday_in_the_zone() {
        // 2026-11-23T20:48:40Z, a Monday.
        let t = RequestTime::from_unix(1_795_466_920, 0);
        assert_eq!((t.hour, t.weekday), (20, Weekday::Mon));
        // Five hours east, it is already Tuesday 01:48.
        let t = RequestTime::from_unix(1_795_466_920, 5 * 3_600);
        assert_eq!((t.hour, t.weekday), (1, Weekday::Tue));
        assert_eq!(t.unix, 1_795_466_920);
        let t = RequestTime::from_unix(-1, 0);
        assert_eq!((t.hour, t.weekday), (23, Weekday::Wed));
    }
}
