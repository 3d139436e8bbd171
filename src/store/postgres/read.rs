//! Reads, on the pool: the same questions as SQLite's, in PostgreSQL's SQL.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::Postgres;
use crate::audit::{AuditEvent, AuditFilter};
use crate::store::{
    ApprovalRecord, AuditRecord, LoginRecord, PendingDelivery, ReplicaRecord, RequestRecord,
    RevocationRecord, SessionRecord, Standing, StoreError, StoredKey, StoredRequest, TokenRecord,
};

/// The columns of a [`RevocationRecord`], for every query that reads one.
macro_rules! revocation_columns {
    () => {
        "id, kind, value, reason, revoked_by, revoked_at, expires_at, lifted_at"
    };
}

/// The columns of a [`StoredRequest`], in [`stored_request`]'s order.
macro_rules! request_columns {
    () => {
        "id, created_at, principal, action, resource, scopes, duration_secs, reason, source_ip, \
         decision, status, policies, policy_version, risk_score, risk_signals, \
         approvals_required, expires_at, context, lifetime_secs, granted_scopes, audience, \
         decided_at, stages, not_before, extends, extended_secs"
    };
}

/// Events matching a filter: $1 after seq, $2 request id, $3 subject, $4 the subject's bare
/// id, $5 type, $6 since, $7 until, $8 limit (see SQLite's for the bare ids).
const AUDIT_PAGE: &str = "SELECT seq, at, type, request_id, subject, data, prev_hash, hash \
     FROM audit_events WHERE seq > $1 AND ($2::text IS NULL OR request_id = $2) \
     AND ($3::text IS NULL OR subject = $3 \
          OR (subject = $4 AND strpos(subject, '::\"') = 0)) \
     AND ($5::text IS NULL OR type = $5) AND ($6::bigint IS NULL OR at >= $6) \
     AND ($7::bigint IS NULL OR at < $7) ORDER BY seq LIMIT $8";

/// What the store knows of a caller for one request: $1 principal, $2 denials since, $3
/// source IP.
const STANDING: &str = "SELECT r.id, r.reason, \
     (SELECT COUNT(*) FROM access_requests \
      WHERE principal = $1 AND created_at >= $2 AND decision = 'deny') \
     + (SELECT COUNT(*) FROM dry_run_denials WHERE principal = $1 AND at >= $2), \
     EXISTS (SELECT 1 FROM principal_sources WHERE principal = $1 AND source_ip = $3) \
     FROM (SELECT 1) AS one LEFT JOIN revocations r \
     ON r.kind = 'subject' AND r.value = $1 AND r.lifted_at IS NULL LIMIT 1";

impl Postgres {
    pub(in crate::store) async fn pending_requests(&self, now: i64) -> Result<i64, StoreError> {
        let row = self
            .row(
                "SELECT COUNT(*) FROM access_requests \
                 WHERE status = 'pending' AND expires_at > $1",
                &[&now],
            )
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.unwrap_or(0))
    }

    pub(in crate::store) async fn latest_expiry_by_kid(
        &self,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let rows = self
            .rows("SELECT kid, MAX(expires_at) FROM tokens GROUP BY kid", &[])
            .await?;
        rows.iter()
            .map(|row| {
                let expires: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, u64::try_from(expires).unwrap_or(0)))
            })
            .collect()
    }

    pub(in crate::store) async fn audit_events(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = self
            .rows(
                "SELECT at, type, request_id, subject, data FROM audit_events ORDER BY seq",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    at: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    request_id: row.try_get(2)?,
                    subject: row.try_get(3)?,
                    data: serde_json::from_str(row.try_get(4)?).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    pub(in crate::store) async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let subject = filter.subject.as_ref().map(ToString::to_string);
        let bare_id = filter.subject.as_ref().map(|p| p.id.clone());
        let rows = self
            .rows(
                AUDIT_PAGE,
                &[
                    &after,
                    &filter.request_id,
                    &subject,
                    &bare_id,
                    &filter.kind,
                    &filter.since,
                    &filter.until,
                    &limit,
                ],
            )
            .await?;
        rows.iter().map(audit_event).collect()
    }

    pub(in crate::store) async fn audit_head(
        &self,
    ) -> Result<Option<(i64, String, String)>, StoreError> {
        let row = self
            .row(
                "SELECT seq, hash, type FROM audit_events WHERE hash IS NOT NULL \
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .transpose()
    }

    pub(in crate::store) async fn audit_hash_at(
        &self,
        seq: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .row("SELECT hash FROM audit_events WHERE seq = $1", &[&seq])
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
    }

    pub(in crate::store) async fn latest_signed_head(&self) -> Result<Option<String>, StoreError> {
        let row = self
            .row(
                "SELECT data::jsonb ->> 'jws' FROM audit_events WHERE type = $1 \
                 ORDER BY seq DESC LIMIT 1",
                &[&crate::audit::HEAD_EVENT],
            )
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
    }

    pub(in crate::store) async fn token(
        &self,
        jti: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = self
            .row(
                "SELECT jti, request_id, subject, kid, scope, issued_at, expires_at \
                 FROM tokens WHERE jti = $1",
                &[&jti],
            )
            .await?;
        row.map(|row| {
            Ok(TokenRecord {
                jti: row.try_get(0)?,
                request_id: row.try_get(1)?,
                subject: row.try_get(2)?,
                kid: row.try_get(3)?,
                scope: row.try_get(4)?,
                issued_at: row.try_get(5)?,
                expires_at: row.try_get(6)?,
            })
        })
        .transpose()
    }

    pub(in crate::store) async fn latest_token_expiry(
        &self,
        request_id: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let row = self
            .row(
                "SELECT MAX(expires_at) FROM tokens \
                 WHERE ($1::text IS NOT NULL AND request_id = $1) \
                 OR ($2::text IS NOT NULL AND subject = $2)",
                &[&request_id, &subject],
            )
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
    }

    pub(in crate::store) async fn revocation_covering(
        &self,
        jti: &str,
        request_id: &str,
        principal: &str,
        issued_at: i64,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        let row = self
            .row(
                concat!(
                    "SELECT ",
                    revocation_columns!(),
                    " FROM revocations WHERE (kind = 'jti' AND value = $1) \
                     OR (kind = 'request_id' AND value = $2) \
                     OR (kind = 'subject' AND value = $3 AND revoked_at >= $4) LIMIT 1"
                ),
                &[&jti, &request_id, &principal, &issued_at],
            )
            .await?;
        row.map(|row| revocation(&row, 0)).transpose()
    }

    pub(in crate::store) async fn standing(
        &self,
        principal: &str,
        denials_since: i64,
        source_ip: &str,
    ) -> Result<Standing, StoreError> {
        let row = self
            .row(STANDING, &[&principal, &denials_since, &source_ip])
            .await?
            .ok_or_else(|| StoreError::Database("the standing query found no row".into()))?;
        let block_id: Option<String> = row.try_get(0)?;
        let block_reason: Option<String> = row.try_get(1)?;
        Ok(Standing {
            block: block_id.zip(block_reason),
            recent_denials: row.try_get(2)?,
            seen_from: row.try_get(3)?,
        })
    }

    pub(in crate::store) async fn revocation_in_force(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        let row = self
            .row(
                concat!(
                    "SELECT ",
                    revocation_columns!(),
                    " FROM revocations WHERE kind = $1 AND value = $2 AND lifted_at IS NULL"
                ),
                &[&kind, &value],
            )
            .await?;
        row.map(|row| revocation(&row, 0)).transpose()
    }

    pub(in crate::store) async fn revocation(
        &self,
        id: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        let row = self
            .row(
                concat!(
                    "SELECT ",
                    revocation_columns!(),
                    " FROM revocations WHERE id = $1"
                ),
                &[&id],
            )
            .await?;
        row.map(|row| revocation(&row, 0)).transpose()
    }

    pub(in crate::store) async fn revocations_after(
        &self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(i64, RevocationRecord)>, StoreError> {
        let rows = self
            .rows(
                concat!(
                    "SELECT seq, ",
                    revocation_columns!(),
                    " FROM revocations WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3"
                ),
                &[&after, &now, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, revocation(row, 1)?)))
            .collect()
    }

    pub(in crate::store) async fn expired_pending(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .rows(
                "SELECT id FROM access_requests WHERE status = 'pending' AND expires_at <= $1 \
                 ORDER BY expires_at LIMIT $2",
                &[&now, &limit],
            )
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    pub(in crate::store) async fn pending_page(
        &self,
        now: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        let rows = self
            .rows(
                concat!(
                    "SELECT ",
                    request_columns!(),
                    ", pos FROM access_requests WHERE status = 'pending' AND expires_at > $1 \
                     AND pos > $2 ORDER BY pos LIMIT $3"
                ),
                &[&now, &after, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(26)?, stored_request(row)?)))
            .collect()
    }

    pub(in crate::store) async fn requests_of(
        &self,
        principal: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        let rows = self
            .rows(
                concat!(
                    "SELECT ",
                    request_columns!(),
                    ", pos FROM access_requests WHERE principal = $1 AND pos < $2 \
                     ORDER BY pos DESC LIMIT $3"
                ),
                &[&principal, &before, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(26)?, stored_request(row)?)))
            .collect()
    }

    pub(in crate::store) async fn review_page(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        let rows = self
            .rows(
                concat!(
                    "SELECT ",
                    request_columns!(),
                    ", pos FROM access_requests WHERE status = 'needs_review' \
                     AND pos > $1 ORDER BY pos LIMIT $2"
                ),
                &[&after, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(26)?, stored_request(row)?)))
            .collect()
    }

    pub(in crate::store) async fn request(
        &self,
        id: &str,
    ) -> Result<Option<StoredRequest>, StoreError> {
        let row = self
            .row(
                concat!(
                    "SELECT ",
                    request_columns!(),
                    " FROM access_requests WHERE id = $1"
                ),
                &[&id],
            )
            .await?;
        row.map(|row| stored_request(&row)).transpose()
    }

    pub(in crate::store) async fn approvals(
        &self,
        request_id: &str,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows = self
            .rows(
                "SELECT request_id, approver, decision, comment, at, stage FROM approvals \
                 WHERE request_id = $1 ORDER BY at, approver",
                &[&request_id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ApprovalRecord {
                    request_id: row.try_get(0)?,
                    approver: row.try_get(1)?,
                    decision: row.try_get(2)?,
                    comment: row.try_get(3)?,
                    at: row.try_get(4)?,
                    stage: row.try_get(5)?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let rows = self
            .rows(
                "SELECT id, delivery_id, hook, event, request_id, body, created_ms, attempts \
                 FROM webhook_outbox WHERE state = 'pending' AND next_attempt_ms <= $1 \
                 ORDER BY next_attempt_ms, id LIMIT $2",
                &[&now_ms, &limit],
            )
            .await?;
        rows.iter().map(pending_delivery).collect()
    }

    /// Due deliveries at `now_ms`, each moved to `until_ms` in the statement that reads it;
    /// rows another replica is claiming at the same moment are skipped, not waited for.
    pub(in crate::store) async fn claim_deliveries(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        if self.writer.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        let rows = self
            .rows(
                "UPDATE webhook_outbox SET next_attempt_ms = $2 WHERE id IN \
                 (SELECT id FROM webhook_outbox WHERE state = 'pending' \
                  AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $3 \
                  FOR UPDATE SKIP LOCKED) \
                 RETURNING id, delivery_id, hook, event, request_id, body, created_ms, attempts",
                &[&now_ms, &until_ms, &limit],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(pending_delivery)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|delivery| delivery.id);
        Ok(claimed)
    }

    pub(in crate::store) async fn replicas(
        &self,
        since: i64,
    ) -> Result<Vec<ReplicaRecord>, StoreError> {
        let rows = self
            .rows(
                "SELECT id, version, policy_version, started_at, last_seen FROM replicas \
                 WHERE last_seen >= $1 ORDER BY id",
                &[&since],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicaRecord {
                    id: row.try_get(0)?,
                    version: row.try_get(1)?,
                    policy_version: row.try_get(2)?,
                    started_at: row.try_get(3)?,
                    last_seen: row.try_get(4)?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn rate_totals_of_others(
        &self,
        kind: &str,
        replica: &str,
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .rows(
                "SELECT principal, SUM(total)::bigint FROM rate_totals \
                 WHERE kind = $1 AND replica != $2 AND at >= $3 \
                 GROUP BY principal ORDER BY principal",
                &[&kind, &replica, &since],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    pub(in crate::store) async fn login(
        &self,
        state_hash: &str,
    ) -> Result<Option<LoginRecord>, StoreError> {
        let row = self
            .row(
                "SELECT state_hash, nonce, verifier, next, max_age, created_at, expires_at \
                 FROM sso_logins WHERE state_hash = $1",
                &[&state_hash],
            )
            .await?;
        row.map(|row| {
            Ok(LoginRecord {
                state_hash: row.try_get(0)?,
                nonce: row.try_get(1)?,
                verifier: row.try_get(2)?,
                next: row.try_get(3)?,
                max_age: row.try_get(4)?,
                created_at: row.try_get(5)?,
                expires_at: row.try_get(6)?,
            })
        })
        .transpose()
    }

    pub(in crate::store) async fn session(
        &self,
        id_hash: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .row(
                "SELECT id_hash, principal, caller, created_at, last_seen, expires_at \
                 FROM ui_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await?;
        row.map(|row| {
            Ok(SessionRecord {
                id_hash: row.try_get(0)?,
                principal: row.try_get(1)?,
                caller: row.try_get(2)?,
                created_at: row.try_get(3)?,
                last_seen: row.try_get(4)?,
                expires_at: row.try_get(5)?,
            })
        })
        .transpose()
    }

    pub(in crate::store) async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = self
            .rows(
                "SELECT kid, alg, created, sealed_private, public_jwk FROM signing_keys \
                 ORDER BY created, kid",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredKey {
                    kid: row.try_get(0)?,
                    alg: row.try_get(1)?,
                    created: row.try_get(2)?,
                    sealed_private: row.try_get(3)?,
                    public_jwk: row.try_get(4)?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn next_delivery_ms(&self) -> Result<Option<i64>, StoreError> {
        let row = self
            .row(
                "SELECT MIN(next_attempt_ms) FROM webhook_outbox WHERE state = 'pending'",
                &[],
            )
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
    }
}

/// A delivery in the columns `id, delivery_id, hook, event, request_id, body, created_ms,
/// attempts`.
fn pending_delivery(row: &Row) -> Result<PendingDelivery, StoreError> {
    Ok(PendingDelivery {
        id: row.try_get(0)?,
        delivery_id: row.try_get(1)?,
        hook: row.try_get(2)?,
        event: row.try_get(3)?,
        request_id: row.try_get(4)?,
        body: row.try_get(5)?,
        created_ms: row.try_get(6)?,
        attempts: row.try_get(7)?,
    })
}

/// The revocation in the columns of [`revocation_columns`] from column `first` on.
fn revocation(row: &Row, first: usize) -> Result<RevocationRecord, StoreError> {
    Ok(RevocationRecord {
        id: row.try_get(first)?,
        kind: row.try_get(first + 1)?,
        value: row.try_get(first + 2)?,
        reason: row.try_get(first + 3)?,
        revoked_by: row.try_get(first + 4)?,
        revoked_at: row.try_get(first + 5)?,
        expires_at: row.try_get(first + 6)?,
        lifted_at: row.try_get(first + 7)?,
    })
}

/// The request in the columns of [`request_columns`].
fn stored_request(row: &Row) -> Result<StoredRequest, StoreError> {
    let json = |index: usize| -> Result<serde_json::Value, StoreError> {
        Ok(serde_json::from_str(row.try_get(index)?).unwrap_or(serde_json::Value::Null))
    };
    let list = |index: usize| -> Result<Vec<String>, StoreError> {
        Ok(serde_json::from_str(row.try_get(index)?).unwrap_or_default())
    };
    // Unreadable counts as not recorded: nothing is minted under it.
    let granted = |index: usize| -> Result<Option<Vec<String>>, StoreError> {
        let text: Option<&str> = row.try_get(index)?;
        Ok(text.and_then(|text| serde_json::from_str(text).ok()))
    };
    Ok(StoredRequest {
        record: RequestRecord {
            id: row.try_get(0)?,
            created_at: row.try_get(1)?,
            principal: row.try_get(2)?,
            action: row.try_get(3)?,
            resource: row.try_get(4)?,
            scopes: list(5)?,
            duration_secs: row.try_get(6)?,
            reason: row.try_get(7)?,
            source_ip: row.try_get(8)?,
            decision: row.try_get(9)?,
            status: row.try_get(10)?,
            policies: list(11)?,
            policy_version: row.try_get(12)?,
            risk_score: row.try_get(13)?,
            risk_signals: json(14)?,
            approvals_required: row.try_get(15)?,
            expires_at: row.try_get(16)?,
            context: json(17)?,
            lifetime_secs: row.try_get(18)?,
            granted_scopes: granted(19)?,
            audience: granted(20)?,
            stages: {
                let text: Option<&str> = row.try_get(22)?;
                text.and_then(|text| serde_json::from_str(text).ok())
                    .unwrap_or(serde_json::Value::Null)
            },
            not_before: row.try_get(23)?,
            extends: row.try_get(24)?,
            extended_secs: row.try_get(25)?,
        },
        decided_at: row.try_get(21)?,
    })
}

/// An event of the chain, as [`AUDIT_PAGE`] reads it.
fn audit_event(row: &Row) -> Result<AuditEvent, StoreError> {
    let data: String = row.try_get(5)?;
    Ok(AuditEvent {
        seq: row.try_get(0)?,
        at: row.try_get(1)?,
        kind: row.try_get(2)?,
        request_id: row.try_get(3)?,
        subject: row.try_get(4)?,
        // Unparsable data cannot hash as written: the chain check reports that event.
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
        prev_hash: row.try_get(6)?,
        hash: row.try_get(7)?,
    })
}
