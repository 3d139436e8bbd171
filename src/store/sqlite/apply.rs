//! What each [`Write`] does to the database, inside the writer's transaction (under the
//! job's savepoint): inserts, updates, and the preconditions that fail the whole job.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::audit;
use crate::store::batch::Failure;
use crate::store::{
    ApprovalRecord, AuditRecord, OutboxRecord, RequestRecord, RevocationRecord, STAGE_COMPLETE,
    TokenRecord, Write, effective_status,
};

/// The last event of the audit chain, (seq, hash), once this transaction has read or written
/// it.
pub(super) type ChainHead = Option<(i64, String)>;

/// Applies `write`.
pub(super) fn apply(tx: &Connection, head: &mut ChainHead, write: &Write) -> Result<(), Failure> {
    match write {
        Write::Request(record) => insert_request(tx, record),
        Write::Token(record) => insert_token(tx, record),
        Write::Audit(record) => append_audit(tx, head, record),
        Write::SourceSeen {
            principal,
            source_ip,
            at,
        } => execute(
            tx,
            "INSERT OR IGNORE INTO principal_sources (principal, source_ip, first_seen) \
             VALUES (?, ?, ?)",
            params![principal, source_ip, at],
        ),
        Write::DryRunDenied { principal, at } => execute(
            tx,
            "INSERT INTO dry_run_denials (principal, at) VALUES (?, ?)",
            params![principal, at],
        ),
        Write::PruneDryRunDenials { before } => execute(
            tx,
            "DELETE FROM dry_run_denials WHERE at < ?",
            params![before],
        ),
        Write::RequireStatus { id, status, at } => require_status(tx, id, status, *at),
        Write::RequireStageOpen {
            id,
            stage,
            required,
        } => {
            if stage_approvals(tx, id, stage)? >= *required {
                Err(Failure::Conflict(STAGE_COMPLETE.into()))
            } else {
                Ok(())
            }
        }
        Write::AnnounceAtStageQuorum {
            id,
            stage,
            required,
            announce,
        } => {
            if stage_approvals(tx, id, stage)? == *required {
                announce.iter().try_for_each(|record| queue(tx, record))?;
            }
            Ok(())
        }
        Write::Approval(record) => insert_approval(tx, record),
        Write::SetStatus { id, status, at } => execute(
            tx,
            "UPDATE access_requests SET status = ?, decided_at = ? WHERE id = ?",
            params![status, at, id],
        ),
        Write::ApproveAtQuorum { id, at, announce } => approve_at_quorum(tx, id, *at, announce),
        Write::Expire { id, at } => changed_one(
            tx,
            "UPDATE access_requests SET status = 'expired', decided_at = expires_at \
             WHERE id = ? AND status = 'pending' AND expires_at <= ?",
            params![id, at],
            "not pending",
        ),
        Write::Outbox(record) => queue(tx, record),
        Write::Revocation(record) => insert_revocation(tx, record),
        Write::RequireNotRevoked {
            subject,
            request_id,
        } => require_not_revoked(tx, subject, request_id),
        Write::LiftRevocation { id, at } => changed_one(
            tx,
            "UPDATE revocations SET lifted_at = ? \
             WHERE id = ? AND kind = 'subject' AND lifted_at IS NULL",
            params![at, id],
            "not an active subject revocation",
        ),
        // A subject block that is not lifted stays, whatever its tokens did.
        Write::PruneRevocations { now } => execute(
            tx,
            "DELETE FROM revocations WHERE expires_at <= ? \
             AND (kind != 'subject' OR lifted_at IS NOT NULL)",
            params![now],
        ),
        Write::DeliveryFinished {
            id,
            failed,
            at_ms,
            error,
        } => execute(
            tx,
            "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, finished_ms = ?, \
             last_error = COALESCE(?, last_error) WHERE id = ?",
            params![
                if *failed { "failed" } else { "delivered" },
                at_ms,
                error,
                id
            ],
        ),
        Write::DeliveryRetry {
            id,
            next_attempt_ms,
            error,
        } => execute(
            tx,
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?, \
             last_error = ? WHERE id = ?",
            params![next_attempt_ms, error, id],
        ),
        Write::PruneDeliveries { before_ms } => execute(
            tx,
            "DELETE FROM webhook_outbox WHERE state != 'pending' AND finished_ms < ?",
            params![before_ms],
        ),
        Write::SigningKey(key) => changed_one(
            tx,
            "INSERT OR IGNORE INTO signing_keys (kid, alg, created, sealed_private, public_jwk) \
             VALUES (?, ?, ?, ?, ?)",
            params![
                key.kid,
                key.alg,
                key.created,
                key.sealed_private,
                key.public_jwk
            ],
            "a signing key with this kid is kept",
        ),
        Write::DropSigningKey { kid } => {
            execute(tx, "DELETE FROM signing_keys WHERE kid = ?", params![kid])
        }
        Write::RateTotals {
            replica,
            kind,
            totals,
            at,
            forget_before,
        } => {
            for (principal, total) in totals {
                if *total == 0 {
                    execute(
                        tx,
                        "DELETE FROM rate_totals WHERE replica = ? AND kind = ? AND principal = ?",
                        params![replica, kind, principal],
                    )?;
                } else {
                    execute(
                        tx,
                        "INSERT OR REPLACE INTO rate_totals (replica, kind, principal, total, at) \
                         VALUES (?, ?, ?, ?, ?)",
                        params![replica, kind, principal, total, at],
                    )?;
                }
            }
            execute(
                tx,
                "DELETE FROM rate_totals WHERE at < ?",
                params![forget_before],
            )
        }
        Write::Heartbeat {
            replica: r,
            forget_before,
        } => {
            execute(
                tx,
                "DELETE FROM replicas WHERE last_seen < ?",
                params![forget_before],
            )?;
            execute(
                tx,
                "INSERT OR REPLACE INTO replicas (id, version, policy_version, started_at, \
                 last_seen) VALUES (?, ?, ?, ?, ?)",
                params![r.id, r.version, r.policy_version, r.started_at, r.last_seen],
            )
        }
        Write::UseOnce {
            kind,
            id,
            expires_at,
        } => match changes(
            tx,
            "INSERT OR IGNORE INTO used_once (kind, id, expires_at) VALUES (?, ?, ?)",
            params![kind, id, expires_at],
        )? {
            0 => Err(Failure::Conflict(format!("this {kind} was used before"))),
            _ => Ok(()),
        },
        Write::PruneUsedOnce { now } => execute(
            tx,
            "DELETE FROM used_once WHERE expires_at < ?",
            params![now],
        ),
        Write::Login(l) => execute(
            tx,
            "INSERT INTO sso_logins (state_hash, nonce, verifier, next, max_age, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                l.state_hash,
                l.nonce,
                l.verifier,
                l.next,
                l.max_age,
                l.created_at,
                l.expires_at
            ],
        ),
        Write::TakeLogin { state_hash, at } => match changes(
            tx,
            "DELETE FROM sso_logins WHERE state_hash = ? AND expires_at > ?",
            params![state_hash, at],
        )? {
            0 => Err(Failure::Conflict(
                "this sign-in was finished before or has expired".into(),
            )),
            _ => Ok(()),
        },
        Write::Session(s) => execute(
            tx,
            "INSERT INTO ui_sessions (id_hash, principal, caller, created_at, last_seen, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            params![
                s.id_hash,
                s.principal,
                s.caller,
                s.created_at,
                s.last_seen,
                s.expires_at
            ],
        ),
        Write::TouchSession { id_hash, at } => execute(
            tx,
            "UPDATE ui_sessions SET last_seen = MAX(last_seen, ?) WHERE id_hash = ?",
            params![at, id_hash],
        ),
        Write::EndSession { id_hash } => execute(
            tx,
            "DELETE FROM ui_sessions WHERE id_hash = ?",
            params![id_hash],
        ),
        Write::EndSessionsOf { principal } => execute(
            tx,
            "DELETE FROM ui_sessions WHERE principal = ?",
            params![principal],
        ),
        Write::PruneSessions { now, idle_before } => {
            execute(
                tx,
                "DELETE FROM ui_sessions WHERE expires_at <= ? OR last_seen < ?",
                params![now, idle_before],
            )?;
            execute(
                tx,
                "DELETE FROM sso_logins WHERE expires_at <= ?",
                params![now],
            )
        }
        Write::RequireNoSignedHeadAfter { seq } => {
            let signed: Option<i64> = tx
                .prepare_cached(
                    "SELECT seq FROM audit_events WHERE seq > ? AND type = ? \
                     ORDER BY seq LIMIT 1",
                )?
                .query_row(params![seq, audit::HEAD_EVENT], |row| row.get(0))
                .optional()?;
            match signed {
                Some(at) => Err(Failure::Conflict(format!("a signed head is at {at}"))),
                None => Ok(()),
            }
        }
    }
}

/// Runs the cached statement `sql`; the number of rows it changed.
fn changes(
    tx: &Connection,
    sql: &'static str,
    params: impl rusqlite::Params,
) -> Result<usize, Failure> {
    Ok(tx.prepare_cached(sql)?.execute(params)?)
}

fn execute(
    tx: &Connection,
    sql: &'static str,
    params: impl rusqlite::Params,
) -> Result<(), Failure> {
    changes(tx, sql, params).map(drop)
}

/// Runs `sql`, a conditional change: a conflict (`otherwise`) unless it changed a row.
fn changed_one(
    tx: &Connection,
    sql: &'static str,
    params: impl rusqlite::Params,
    otherwise: &str,
) -> Result<(), Failure> {
    match changes(tx, sql, params)? {
        0 => Err(Failure::Conflict(otherwise.into())),
        _ => Ok(()),
    }
}

/// A JSON column's text.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn insert_request(tx: &Connection, r: &RequestRecord) -> Result<(), Failure> {
    execute(
        tx,
        "INSERT INTO access_requests (id, created_at, principal, action, resource, scopes, \
         duration_secs, reason, source_ip, decision, status, policies, policy_version, \
         risk_score, risk_signals, approvals_required, expires_at, context, lifetime_secs, \
         granted_scopes, audience, stages, not_before, extends, extended_secs) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            r.id,
            r.created_at,
            r.principal,
            r.action,
            r.resource,
            json(&r.scopes),
            r.duration_secs,
            r.reason,
            r.source_ip,
            r.decision,
            r.status,
            json(&r.policies),
            r.policy_version,
            r.risk_score,
            json(&r.risk_signals),
            r.approvals_required,
            r.expires_at,
            json(&r.context),
            r.lifetime_secs,
            r.granted_scopes.as_ref().map(json),
            r.audience.as_ref().map(json),
            (!r.stages.is_null()).then(|| json(&r.stages)),
            r.not_before,
            r.extends,
            r.extended_secs,
        ],
    )
}

fn insert_token(tx: &Connection, t: &TokenRecord) -> Result<(), Failure> {
    execute(
        tx,
        "INSERT INTO tokens (jti, request_id, subject, kid, scope, issued_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            t.jti,
            t.request_id,
            t.subject,
            t.kid,
            t.scope,
            t.issued_at,
            t.expires_at
        ],
    )
}

/// The chain's last event (seq, hash) as this transaction sees it: read once, then kept in
/// `head`.
fn chain_head(tx: &Connection, head: &mut ChainHead) -> Result<(i64, String), Failure> {
    if let Some(last) = head {
        return Ok(last.clone());
    }
    let last: Option<(i64, Option<String>)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let last = match last {
        Some((seq, hash)) => (seq, hash.unwrap_or_else(|| audit::GENESIS.into())),
        None => (0, audit::GENESIS.into()),
    };
    *head = Some(last.clone());
    Ok(last)
}

/// Appends `a` to the audit trail, chained to the last event; the one writer keeps the chain
/// linear.
fn append_audit(tx: &Connection, head: &mut ChainHead, a: &AuditRecord) -> Result<(), Failure> {
    let (last_seq, prev_hash) = chain_head(tx, head)?;
    let seq = last_seq + 1;
    let hash = a.chain_hash(&prev_hash, seq);
    execute(
        tx,
        "INSERT INTO audit_events (seq, at, type, request_id, subject, data, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            seq,
            a.at,
            a.kind,
            a.request_id,
            a.subject,
            json(&a.data),
            prev_hash,
            hash
        ],
    )?;
    *head = Some((seq, hash));
    Ok(())
}

/// A conflict (naming the status there is) unless request `id` has `status` at `at`.
fn require_status(tx: &Connection, id: &str, status: &str, at: i64) -> Result<(), Failure> {
    let row: Option<(String, Option<i64>)> = tx
        .prepare_cached("SELECT status, expires_at FROM access_requests WHERE id = ?")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((current, expires_at)) = row else {
        return Err(Failure::Conflict("no such request".into()));
    };
    let current = effective_status(&current, expires_at, at);
    if current == status {
        Ok(())
    } else {
        Err(Failure::Conflict(current))
    }
}

/// Approvals given in stage `stage` of request `id`.
fn stage_approvals(tx: &Connection, id: &str, stage: &str) -> Result<i64, Failure> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(*) FROM approvals \
             WHERE request_id = ? AND stage = ? AND decision = 'approve'",
        )?
        .query_row(params![id, stage], |row| row.get(0))?)
}

fn insert_approval(tx: &Connection, a: &ApprovalRecord) -> Result<(), Failure> {
    changed_one(
        tx,
        "INSERT OR IGNORE INTO approvals (request_id, approver, decision, comment, at, stage) \
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            a.request_id,
            a.approver,
            a.decision,
            a.comment,
            a.at,
            a.stage
        ],
        "already answered by this approver",
    )
}

/// Approves request `id` if its approvals reach the quorum, and only then queues `announce`.
fn approve_at_quorum(
    tx: &Connection,
    id: &str,
    at: i64,
    announce: &[OutboxRecord],
) -> Result<(), Failure> {
    let approved = changes(
        tx,
        "UPDATE access_requests SET status = 'approved', decided_at = ? \
         WHERE id = ? AND status = 'pending' AND approvals_required <= \
         (SELECT COUNT(*) FROM approvals WHERE request_id = ? AND decision = 'approve')",
        params![at, id, id],
    )?;
    if approved == 1 {
        announce.iter().try_for_each(|record| queue(tx, record))?;
    }
    Ok(())
}

/// Records a revocation. At most one revocation of a target is in force (a unique index): a
/// repeat is a conflict, and the caller answers with the one there is.
fn insert_revocation(tx: &Connection, r: &RevocationRecord) -> Result<(), Failure> {
    changed_one(
        tx,
        "INSERT OR IGNORE INTO revocations (id, kind, value, reason, revoked_by, \
         revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            r.id,
            r.kind,
            r.value,
            r.reason,
            r.revoked_by,
            r.revoked_at,
            r.expires_at
        ],
        "already revoked",
    )
}

/// Fails with the reason of the block of `subject` or the revocation of `request_id`, if any.
fn require_not_revoked(tx: &Connection, subject: &str, request_id: &str) -> Result<(), Failure> {
    let reason: Option<String> = tx
        .prepare_cached(
            "SELECT reason FROM revocations WHERE (kind = 'subject' AND value = ? \
             AND lifted_at IS NULL) OR (kind = 'request_id' AND value = ?) LIMIT 1",
        )?
        .query_row(params![subject, request_id], |row| row.get(0))
        .optional()?;
    match reason {
        Some(reason) => Err(Failure::Revoked(reason)),
        None => Ok(()),
    }
}

fn queue(tx: &Connection, record: &OutboxRecord) -> Result<(), Failure> {
    execute(
        tx,
        "INSERT INTO webhook_outbox (delivery_id, hook, event, request_id, body, created_ms, \
         next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            record.delivery_id,
            record.hook,
            record.event,
            record.request_id,
            record.body,
            record.created_ms,
            record.created_ms
        ],
    )
}
