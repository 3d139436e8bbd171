//! The tamper-evident audit trail: every event carries `prev_hash` and `hash`, where
//! `hash = SHA-256(prev_hash "\n" canonical([seq, at, type, request_id, subject, data]))` and the
//! first event's `prev_hash` is [`GENESIS`]. Editing, deleting or reordering a stored event
//! breaks the chain at that event; [`verify`] names the first break.
//!
//! The chain alone cannot show that events were cut off the *end*, nor that someone with write
//! access to the database rebuilt it after deleting events. So the server signs the head
//! ([`HeadClaims`]) with its token signing key at a fixed interval and on shutdown, keeps each
//! signed head in the trail as an [`HEAD_EVENT`] event and serves the latest at
//! `GET /v1/audit/head`; [`check_head`] verifies one.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `typ` of a signed audit head.
pub const HEAD_TYP: &str = "jitgate-audit-head+jwt";

/// The kind of the event that keeps a signed head in the trail (`data`: `seq`, `hash`, `jws`).
pub const HEAD_EVENT: &str = "audit.head";

/// What a signed audit head says: the chain's last event at `iat` was `seq`, with `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadClaims {
    pub iss: String,
    pub iat: u64,
    pub seq: i64,
    pub hash: String,
}

/// Why a signed head is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Signed with a key `keys` does not hold (perhaps retired and deleted since).
    #[error("signed with key {0}, which the keys dir does not hold")]
    UnknownKey(String),
    #[error("not a valid signed audit head: {0}")]
    Invalid(String),
}

/// Verifies the compact JWS `jws` as an audit head signed by one of `keys` (the keys are what
/// say whose head it is; `iss` is informative).
pub fn check_head(jws: &str, keys: &JwkSet) -> Result<HeadClaims, HeadError> {
    use crate::identity::jwt;
    let invalid = |reason: &str| HeadError::Invalid(reason.to_owned());
    let expected = jwt::Expectations {
        issuer: "",
        audience: "",
        algorithms: &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
        typ: Some(HEAD_TYP),
    };
    let header = jwt::check_header(jws, &expected).map_err(|r| invalid(r.as_str()))?;
    let key = keys
        .find(&header.kid)
        .ok_or_else(|| HeadError::UnknownKey(header.kid.clone()))?;
    let payload =
        jwt::verify_signature(jws, key, &[header.alg]).map_err(|r| invalid(r.as_str()))?;
    serde_json::from_slice(&payload).map_err(|e| invalid(&e.to_string()))
}

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: Option<String>,
    pub subject: Option<String>,
    pub data: Value,
    /// `None` only for events written before the chain existed (migration 0004).
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// Which events to read; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub request_id: Option<String>,
    pub subject: Option<crate::decision::EntityRef>,
    pub kind: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

/// A time filter's bound: RFC 3339 or unix seconds, as unix seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(unix) = text.parse::<i64>() {
        return Ok(unix);
    }
    text.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_second())
        .map_err(|e| format!("`{text}` is neither RFC 3339 nor unix seconds: {e}"))
}

/// The hash of the event that follows `prev_hash`.
pub fn chain_hash(
    prev_hash: &str,
    seq: i64,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    subject: Option<&str>,
    data: &Value,
) -> String {
    // The canonical form of the array [seq, at, type, request_id, subject, data], written
    // without copying `data` into one.
    let mut canonical = String::with_capacity(1024);
    canonical.push('[');
    for field in [
        Value::from(seq),
        Value::from(at),
        Value::from(kind),
        request_id.map_or(Value::Null, Value::from),
        subject.map_or(Value::Null, Value::from),
    ] {
        write_canonical(&field, &mut canonical);
        canonical.push(',');
    }
    write_canonical(data, &mut canonical);
    canonical.push(']');
    let mut digest = Sha256::new();
    digest.update(prev_hash.as_bytes());
    digest.update(b"\n");
    digest.update(canonical.as_bytes());
    hex::encode(digest.finalize())
}

/// JSON with object keys sorted at every level and no whitespace, so the hash does not depend
/// on how a map happened to be ordered when it was written or read.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

impl AuditEvent {
    /// The hash this event should carry after `prev_hash`.
    pub fn expected_hash(&self, prev_hash: &str) -> String {
        chain_hash(
            prev_hash,
            self.seq,
            self.at,
            &self.kind,
            self.request_id.as_deref(),
            self.subject.as_deref(),
            &self.data,
        )
    }
}

/// A chain that holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainReport {
    /// Events checked.
    pub events: u64,
    /// Events from before the chain began, not covered by it.
    pub unchained: u64,
    /// The last event's `seq` and `hash`.
    pub head: Option<(i64, String)>,
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit chain breaks at seq {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Checks a chain, fed in `seq` order a batch at a time.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    report: ChainReport,
    last_seq: Option<i64>,
}

impl ChainVerifier {
    /// Checks the next events.
    pub fn feed(&mut self, events: &[AuditEvent]) -> Result<(), ChainBreak> {
        for event in events {
            let broken = |reason: String| ChainBreak {
                seq: event.seq,
                reason,
            };
            if let Some(last) = self.last_seq
                && event.seq != last + 1
            {
                return Err(broken(format!(
                    "it follows seq {last}: events were deleted or reordered"
                )));
            }
            self.last_seq = Some(event.seq);
            self.report.events += 1;
            let (Some(prev_hash), Some(hash)) = (&event.prev_hash, &event.hash) else {
                if self.report.head.is_none() {
                    self.report.unchained += 1;
                    continue;
                }
                return Err(broken("its hash is missing".into()));
            };
            let expected_prev = self
                .report
                .head
                .as_ref()
                .map_or(GENESIS, |(_, hash)| hash.as_str());
            if prev_hash != expected_prev {
                return Err(broken(
                    "prev_hash is not the hash of the event before it".into(),
                ));
            }
            if *hash != event.expected_hash(prev_hash) {
                return Err(broken("the event was changed after it was written".into()));
            }
            self.report.head = Some((event.seq, hash.clone()));
        }
        Ok(())
    }

    pub fn finish(self) -> ChainReport {
        self.report
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut event = AuditEvent {
                    seq,
                    at: 1_000 + seq,
                    kind: "decision".into(),
                    request_id: Some(format!("r{seq}")),
                    subject: Some("alice".into()),
                    data: json!({"b": [1, 2], "a": {"y": true, "x": null}}),
                    prev_hash: Some(prev.clone()),
                    hash: None,
                };
                let hash = event.expected_hash(&prev);
                event.hash = Some(hash.clone());
                prev = hash;
                event
            })
            .collect()
    }

    fn check(events: &[AuditEvent]) -> Result<ChainReport, ChainBreak> {
        let mut verifier = ChainVerifier::default();
        verifier.feed(events)?;
        Ok(verifier.finish())
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let events = chain(5);
        let report = check(&events).unwrap();
        assert_eq!(report.events, 5);
        assert_eq!(report.head, Some((5, events[4].hash.clone().unwrap())));
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = chain_hash(
            GENESIS,
            1,
            1,
            "t",
            None,
            None,
            &json!({"a": 1, "b": {"d": 2, "c": 3}}),
        );
        let b = chain_hash(
            GENESIS,
            1,
            1,
            "t",
            None,
            None,
            &json!({"b": {"c": 3, "d": 2}, "a": 1}),
        );
        assert_eq!(a, b);
        let c = chain_hash(
            GENESIS,
            1,
            1,
            "t",
            None,
            None,
            &json!({"a": 1, "b": {"d": 2, "c": 4}}),
        );
        assert_ne!(a, c);
    }

    #[test]
    fn edits_deletions_and_swaps_break_the_chain_where_they_happen() {
        let mut edited = chain(5);
        edited[2].data = json!({"decision": "allow"});
        assert_eq!(check(&edited).unwrap_err().seq, 3);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(check(&deleted).unwrap_err().seq, 3);

        let mut swapped = chain(5);
        swapped.swap(1, 3);
        assert_eq!(check(&swapped).unwrap_err().seq, 4);

        // Swapping the contents but keeping the seqs in order.
        let mut renumbered = chain(5);
        let (first, second) = (renumbered[1].clone(), renumbered[3].clone());
        renumbered[1] = AuditEvent { seq: 2, ..second };
        renumbered[3] = AuditEvent { seq: 4, ..first };
        assert_eq!(check(&renumbered).unwrap_err().seq, 2);

        let mut rehashed = chain(5);
        rehashed[4].hash = Some(GENESIS.into());
        assert_eq!(check(&rehashed).unwrap_err().seq, 5);
    }

    #[test]
    fn events_from_before_the_chain_are_counted_only_as_a_prefix() {
        let mut events = chain(3);
        let legacy = AuditEvent {
            seq: 0,
            prev_hash: None,
            hash: None,
            ..events[0].clone()
        };
        events.insert(0, legacy.clone());
        let report = check(&events).unwrap();
        assert_eq!((report.events, report.unchained), (4, 1));

        let mut late = chain(3);
        late[2].hash = None;
        late[2].prev_hash = None;
        assert_eq!(check(&late).unwrap_err().seq, 3);
    }
}
