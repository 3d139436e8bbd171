//! The one writer: a thread of its own with its own SQLite connection, committing whatever
//! callers have queued in one transaction (group commit), each caller's job under a savepoint
//! so that one failing job never splits the batch, and then answering each of them.
//!
//! Why not sqlx here, as for reads: every statement sqlx runs on SQLite is a round trip
//! between the async task and sqlx's connection thread. The writer is serial, so those round
//! trips (nine statements for an allowed request) bounded throughput far below what one fsync
//! per batch allows, worst when the cores are busy and each wake-up waits for one. On its own
//! thread, with cached prepared statements, a statement costs microseconds and a batch costs
//! about its fsync.

use std::path::Path;
use std::time::Duration;

use prometheus::IntCounter;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc;

use super::{Failure, Job, MAX_BATCH, OutboxRecord, Write, effective_status, json};
use crate::audit;

/// Opens the writer's connection to the database at `path` (migrated by then).
pub(super) fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    // Per connection: a commit returns once it survives a power cut, not just a crash.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    Ok(connection)
}

/// Serves `jobs` until every sender is gone, counting each transaction it commits.
pub(super) fn run(mut connection: Connection, mut jobs: mpsc::Receiver<Job>, commits: &IntCounter) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = match commit(&mut connection, &batch) {
            Ok(results) => {
                commits.inc();
                results
            }
            Err(failure) => vec![Err(failure); batch.len()],
        };
        for (job, result) in batch.into_iter().zip(results) {
            if let Err(Failure::Database(message)) = &result {
                tracing::error!(error = %message, "store write failed");
            }
            let _ = job.done.send(result);
        }
    }
}

fn database(e: rusqlite::Error) -> Failure {
    Failure::Database(e.to_string())
}

/// Applies every job of `batch` in one transaction, each under a savepoint of its own: a job
/// that fails rolls back alone and its neighbours still commit together, in one fsync. Returns
/// each job's result, or why the transaction as a whole failed.
fn commit(connection: &mut Connection, batch: &[Job]) -> Result<Vec<Result<(), Failure>>, Failure> {
    // IMMEDIATE takes the write lock first: a deferred transaction that reads and then writes
    // is answered BUSY at once when another connection holds the lock.
    let mut tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(database)?;
    let mut head = None;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let head_before = head.clone();
        let savepoint = tx.savepoint().map_err(database)?;
        let result = job
            .writes
            .iter()
            .try_for_each(|write| apply(&savepoint, &mut head, write));
        if result.is_ok() {
            savepoint.commit().map_err(database)?;
        } else {
            // Rolls back to the savepoint and releases it (its drop behaviour); the chain's
            // head goes back with it.
            savepoint.finish().map_err(database)?;
            head = head_before;
        }
        results.push(result);
    }
    tx.commit().map_err(database)?;
    Ok(results)
}

/// The last event of the audit chain: (seq, hash).
type ChainHead = Option<(i64, String)>;

/// Applies `write`; `head` is the chain's last event once this transaction has read or written
/// it.
fn apply(tx: &Connection, head: &mut ChainHead, write: &Write) -> Result<(), Failure> {
    match write {
        Write::Request(r) => {
            tx.prepare_cached(
                "INSERT INTO access_requests (id, created_at, principal, action, resource, scopes, \
                 duration_secs, reason, source_ip, decision, status, policies, policy_version, \
                 risk_score, risk_signals, approvals_required, expires_at, context, lifetime_secs, \
                 granted_scopes, audience) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
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
                ])
            })
            .map_err(database)?;
        }
        Write::Token(t) => {
            tx.prepare_cached(
                "INSERT INTO tokens (jti, request_id, subject, kid, scope, issued_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    t.jti,
                    t.request_id,
                    t.subject,
                    t.kid,
                    t.scope,
                    t.issued_at,
                    t.expires_at
                ])
            })
            .map_err(database)?;
        }
        Write::Audit(a) => {
            // Chained to the last event; the one writer keeps the chain linear.
            let (last_seq, prev_hash) = match head.take() {
                Some(last) => last,
                None => {
                    let last: Option<(i64, Option<String>)> = tx
                        .prepare_cached(
                            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                        )
                        .and_then(|mut select| {
                            select
                                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                                .optional()
                        })
                        .map_err(database)?;
                    match last {
                        Some((seq, hash)) => (seq, hash.unwrap_or_else(|| audit::GENESIS.into())),
                        None => (0, audit::GENESIS.into()),
                    }
                }
            };
            let seq = last_seq + 1;
            let hash = audit::chain_hash(
                &prev_hash,
                seq,
                a.at,
                &a.kind,
                a.request_id.as_deref(),
                a.subject.as_deref(),
                &a.data,
            );
            tx.prepare_cached(
                "INSERT INTO audit_events (seq, at, type, request_id, subject, data, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    seq,
                    a.at,
                    a.kind,
                    a.request_id,
                    a.subject,
                    json(&a.data),
                    prev_hash,
                    hash
                ])
            })
            .map_err(database)?;
            *head = Some((seq, hash));
        }
        Write::SourceSeen {
            principal,
            source_ip,
            at,
        } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO principal_sources (principal, source_ip, first_seen) \
                 VALUES (?, ?, ?)",
            )
            .and_then(|mut insert| insert.execute(params![principal, source_ip, at]))
            .map_err(database)?;
        }
        Write::DryRunDenied { principal, at } => {
            tx.prepare_cached("INSERT INTO dry_run_denials (principal, at) VALUES (?, ?)")
                .and_then(|mut insert| insert.execute(params![principal, at]))
                .map_err(database)?;
        }
        Write::PruneDryRunDenials { before } => {
            tx.prepare_cached("DELETE FROM dry_run_denials WHERE at < ?")
                .and_then(|mut delete| delete.execute([before]))
                .map_err(database)?;
        }
        Write::RequireStatus { id, status, at } => {
            let row: Option<(String, Option<i64>)> = tx
                .prepare_cached("SELECT status, expires_at FROM access_requests WHERE id = ?")
                .and_then(|mut select| {
                    select
                        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()
                })
                .map_err(database)?;
            let Some((current, expires_at)) = row else {
                return Err(Failure::Conflict("no such request".into()));
            };
            let current = effective_status(&current, expires_at, *at);
            if current != *status {
                return Err(Failure::Conflict(current));
            }
        }
        Write::Approval(a) => {
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO approvals (request_id, approver, decision, comment, at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        a.request_id,
                        a.approver,
                        a.decision,
                        a.comment,
                        a.at
                    ])
                })
                .map_err(database)?;
            if inserted == 0 {
                return Err(Failure::Conflict(
                    "already answered by this approver".into(),
                ));
            }
        }
        Write::SetStatus { id, status, at } => {
            tx.prepare_cached("UPDATE access_requests SET status = ?, decided_at = ? WHERE id = ?")
                .and_then(|mut update| update.execute(params![status, at, id]))
                .map_err(database)?;
        }
        Write::Expire { id, at } => {
            let expired = tx
                .prepare_cached(
                    "UPDATE access_requests SET status = 'expired', decided_at = expires_at \
                     WHERE id = ? AND status = 'pending' AND expires_at <= ?",
                )
                .and_then(|mut update| update.execute(params![id, at]))
                .map_err(database)?;
            if expired == 0 {
                return Err(Failure::Conflict("not pending".into()));
            }
        }
        Write::ApproveAtQuorum { id, at, announce } => {
            let approved = tx
                .prepare_cached(
                    "UPDATE access_requests SET status = 'approved', decided_at = ? \
                     WHERE id = ? AND status = 'pending' AND approvals_required <= \
                     (SELECT COUNT(*) FROM approvals WHERE request_id = ? AND decision = 'approve')",
                )
                .and_then(|mut update| update.execute(params![at, id, id]))
                .map_err(database)?;
            if approved == 1 {
                for record in announce {
                    queue(tx, record)?;
                }
            }
        }
        Write::Outbox(record) => queue(tx, record)?,
        Write::Revocation(r) => {
            // At most one revocation of a target is in force (a unique index): a repeat is a
            // conflict, and the caller answers with the one there is.
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO revocations (id, kind, value, reason, revoked_by, \
                     revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        r.id,
                        r.kind,
                        r.value,
                        r.reason,
                        r.revoked_by,
                        r.revoked_at,
                        r.expires_at
                    ])
                })
                .map_err(database)?;
            if inserted == 0 {
                return Err(Failure::Conflict("already revoked".into()));
            }
        }
        Write::RequireNotRevoked {
            subject,
            request_id,
        } => {
            let reason: Option<String> = tx
                .prepare_cached(
                    "SELECT reason FROM revocations WHERE (kind = 'subject' AND value = ? \
                     AND lifted_at IS NULL) OR (kind = 'request_id' AND value = ?) LIMIT 1",
                )
                .and_then(|mut select| {
                    select
                        .query_row(params![subject, request_id], |row| row.get(0))
                        .optional()
                })
                .map_err(database)?;
            if let Some(reason) = reason {
                return Err(Failure::Revoked(reason));
            }
        }
        Write::LiftRevocation { id, at } => {
            let lifted = tx
                .prepare_cached(
                    "UPDATE revocations SET lifted_at = ? \
                     WHERE id = ? AND kind = 'subject' AND lifted_at IS NULL",
                )
                .and_then(|mut update| update.execute(params![at, id]))
                .map_err(database)?;
            if lifted == 0 {
                return Err(Failure::Conflict("not an active subject revocation".into()));
            }
        }
        Write::PruneRevocations { now } => {
            // A subject block that is not lifted stays, whatever its tokens did.
            tx.prepare_cached(
                "DELETE FROM revocations WHERE expires_at <= ? \
                 AND (kind != 'subject' OR lifted_at IS NOT NULL)",
            )
            .and_then(|mut delete| delete.execute([now]))
            .map_err(database)?;
        }
        Write::DeliveryFinished {
            id,
            failed,
            at_ms,
            error,
        } => {
            tx.prepare_cached(
                "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, finished_ms = ?, \
                 last_error = COALESCE(?, last_error) WHERE id = ?",
            )
            .and_then(|mut update| {
                let state = if *failed { "failed" } else { "delivered" };
                update.execute(params![state, at_ms, error, id])
            })
            .map_err(database)?;
        }
        Write::DeliveryRetry {
            id,
            next_attempt_ms,
            error,
        } => {
            tx.prepare_cached(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?, \
                 last_error = ? WHERE id = ?",
            )
            .and_then(|mut update| update.execute(params![next_attempt_ms, error, id]))
            .map_err(database)?;
        }
        Write::PruneDeliveries { before_ms } => {
            tx.prepare_cached(
                "DELETE FROM webhook_outbox WHERE state != 'pending' AND finished_ms < ?",
            )
            .and_then(|mut delete| delete.execute([before_ms]))
            .map_err(database)?;
        }
    }
    Ok(())
}

fn queue(tx: &Connection, record: &OutboxRecord) -> Result<(), Failure> {
    tx.prepare_cached(
        "INSERT INTO webhook_outbox (delivery_id, hook, event, request_id, body, created_ms, \
         next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            record.delivery_id,
            record.hook,
            record.event,
            record.request_id,
            record.body,
            record.created_ms,
            record.created_ms
        ])
    })
    .map_err(database)?;
    Ok(())
}
