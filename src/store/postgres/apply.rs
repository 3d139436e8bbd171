//! What each [`Write`] does to the database, inside the writer's transaction (under the job's
//! savepoint): the same inserts, updates and preconditions as SQLite's, in PostgreSQL's SQL.

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use crate::audit;
use crate::store::batch::Failure;
use crate::store::{
    ApprovalRecord, AuditRecord, OutboxRecord, RequestRecord, RevocationRecord, TokenRecord, Write,
    effective_status,
};

/// The last event of the audit chain, (seq, hash): locked by the transaction, moved by its
/// appends.
pub(super) type ChainHead = (i64, String);

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The writer's prepared statements, by their SQL (one connection's: a new connection starts
/// a new set).
#[derive(Debug, Default)]
pub(super) struct Statements {
    prepared: HashMap<&'static str, Statement>,
}

impl Statements {
    pub(super) async fn get(
        &mut self,
        tx: &Transaction<'_>,
        sql: &'static str,
    ) -> Result<Statement, Failure> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = tx.prepare(sql).await?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// One job's view of the transaction: where to run statements, and the statements prepared.
struct Tx<'t, 'c> {
    tx: &'t Transaction<'c>,
    statements: &'t mut Statements,
}

impl Tx<'_, '_> {
    /// Runs `sql`; the number of rows it changed.
    async fn changes(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, Failure> {
        let statement = self.statements.get(self.tx, sql).await?;
        Ok(self.tx.execute(&statement, params).await?)
    }

    async fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<(), Failure> {
        self.changes(sql, params).await.map(drop)
    }

    /// Runs `sql`, a conditional change: a conflict (`otherwise`) unless it changed a row.
    async fn changed_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        otherwise: &str,
    ) -> Result<(), Failure> {
        match self.changes(sql, params).await? {
            0 => Err(Failure::Conflict(otherwise.into())),
            _ => Ok(()),
        }
    }

    async fn row(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, Failure> {
        let statement = self.statements.get(self.tx, sql).await?;
        Ok(self.tx.query_opt(&statement, params).await?)
    }
}

/// Applies `write`.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    statements: &mut Statements,
    head: &mut ChainHead,
    write: &Write,
) -> Result<(), Failure> {
    let mut tx = Tx { tx, statements };
    let tx = &mut tx;
    match write {
        Write::Request(record) => insert_request(tx, record).await,
        Write::Token(record) => insert_token(tx, record).await,
        Write::Audit(record) => append_audit(tx, head, record).await,
        Write::SourceSeen {
            principal,
            source_ip,
            at,
        } => {
            tx.execute(
                "INSERT INTO principal_sources (principal, source_ip, first_seen) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[principal, source_ip, at],
            )
            .await
        }
        Write::DryRunDenied { principal, at } => {
            tx.execute(
                "INSERT INTO dry_run_denials (principal, at) VALUES ($1, $2)",
                &[principal, at],
            )
            .await
        }
        Write::PruneDryRunDenials { before } => {
            tx.execute("DELETE FROM dry_run_denials WHERE at < $1", &[before])
                .await
        }
        Write::RequireStatus { id, status, at } => require_status(tx, id, status, *at).await,
        Write::Approval(record) => insert_approval(tx, record).await,
        Write::SetStatus { id, status, at } => {
            tx.execute(
                "UPDATE access_requests SET status = $1, decided_at = $2 WHERE id = $3",
                &[status, at, id],
            )
            .await
        }
        Write::ApproveAtQuorum { id, at, announce } => {
            approve_at_quorum(tx, id, *at, announce).await
        }
        Write::Expire { id, at } => {
            tx.changed_one(
                "UPDATE access_requests SET status = 'expired', decided_at = expires_at \
                 WHERE id = $1 AND status = 'pending' AND expires_at <= $2",
                &[id, at],
                "not pending",
            )
            .await
        }
        Write::Outbox(record) => queue(tx, record).await,
        Write::Revocation(record) => insert_revocation(tx, record).await,
        Write::RequireNotRevoked {
            subject,
            request_id,
        } => require_not_revoked(tx, subject, request_id).await,
        Write::LiftRevocation { id, at } => {
            tx.changed_one(
                "UPDATE revocations SET lifted_at = $1 \
                 WHERE id = $2 AND kind = 'subject' AND lifted_at IS NULL",
                &[at, id],
                "not an active subject revocation",
            )
            .await
        }
        // A subject block that is not lifted stays, whatever its tokens did.
        Write::PruneRevocations { now } => {
            tx.execute(
                "DELETE FROM revocations WHERE expires_at <= $1 \
                 AND (kind != 'subject' OR lifted_at IS NOT NULL)",
                &[now],
            )
            .await
        }
        Write::DeliveryFinished {
            id,
            failed,
            at_ms,
            error,
        } => {
            let state = if *failed { "failed" } else { "delivered" };
            tx.execute(
                "UPDATE webhook_outbox SET state = $1, attempts = attempts + 1, \
                 finished_ms = $2, last_error = COALESCE($3, last_error) WHERE id = $4",
                &[&state, at_ms, error, id],
            )
            .await
        }
        Write::DeliveryRetry {
            id,
            next_attempt_ms,
            error,
        } => {
            tx.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = $1, \
                 last_error = $2 WHERE id = $3",
                &[next_attempt_ms, error, id],
            )
            .await
        }
        Write::PruneDeliveries { before_ms } => {
            tx.execute(
                "DELETE FROM webhook_outbox WHERE state != 'pending' AND finished_ms < $1",
                &[before_ms],
            )
            .await
        }
        Write::SigningKey(key) => {
            tx.changed_one(
                "INSERT INTO signing_keys (kid, alg, created, sealed_private, public_jwk) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &key.kid,
                    &key.alg,
                    &key.created,
                    &key.sealed_private,
                    &key.public_jwk,
                ],
                "a signing key with this kid is kept",
            )
            .await
        }
        Write::DropSigningKey { kid } => {
            tx.execute("DELETE FROM signing_keys WHERE kid = $1", &[kid])
                .await
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
                    tx.execute(
                        "DELETE FROM rate_totals \
                         WHERE replica = $1 AND kind = $2 AND principal = $3",
                        &[replica, kind, principal],
                    )
                    .await?;
                } else {
                    tx.execute(
                        "INSERT INTO rate_totals (replica, kind, principal, total, at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (replica, kind, principal) \
                         DO UPDATE SET total = $4, at = $5",
                        &[replica, kind, principal, total, at],
                    )
                    .await?;
                }
            }
            tx.execute("DELETE FROM rate_totals WHERE at < $1", &[forget_before])
                .await
        }
        Write::Heartbeat {
            replica: r,
            forget_before,
        } => {
            tx.execute(
                "DELETE FROM replicas WHERE last_seen < $1",
                &[forget_before],
            )
            .await?;
            tx.execute(
                "INSERT INTO replicas (id, version, policy_version, started_at, last_seen) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                 version = $2, policy_version = $3, started_at = $4, last_seen = $5",
                &[
                    &r.id,
                    &r.version,
                    &r.policy_version,
                    &r.started_at,
                    &r.last_seen,
                ],
            )
            .await
        }
        Write::RequireChainHead { seq } => match head.0 {
            last if last == *seq => Ok(()),
            last => Err(Failure::Conflict(format!("the chain's head is {last}"))),
        },
    }
}

/// A JSON column's text.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

async fn insert_request(tx: &mut Tx<'_, '_>, r: &RequestRecord) -> Result<(), Failure> {
    let (scopes, policies, signals, context) = (
        json(&r.scopes),
        json(&r.policies),
        json(&r.risk_signals),
        json(&r.context),
    );
    let granted = r.granted_scopes.as_ref().map(json);
    let audience = r.audience.as_ref().map(json);
    tx.execute(
        "INSERT INTO access_requests (id, created_at, principal, action, resource, scopes, \
         duration_secs, reason, source_ip, decision, status, policies, policy_version, \
         risk_score, risk_signals, approvals_required, expires_at, context, lifetime_secs, \
         granted_scopes, audience) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        &[
            &r.id,
            &r.created_at,
            &r.principal,
            &r.action,
            &r.resource,
            &scopes,
            &r.duration_secs,
            &r.reason,
            &r.source_ip,
            &r.decision,
            &r.status,
            &policies,
            &r.policy_version,
            &r.risk_score,
            &signals,
            &r.approvals_required,
            &r.expires_at,
            &context,
            &r.lifetime_secs,
            &granted,
            &audience,
        ],
    )
    .await
}

async fn insert_token(tx: &mut Tx<'_, '_>, t: &TokenRecord) -> Result<(), Failure> {
    tx.execute(
        "INSERT INTO tokens (jti, request_id, subject, kid, scope, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &t.jti,
            &t.request_id,
            &t.subject,
            &t.kid,
            &t.scope,
            &t.issued_at,
            &t.expires_at,
        ],
    )
    .await
}

/// Appends `a` to the audit trail after `head`, which the transaction holds locked.
async fn append_audit(
    tx: &mut Tx<'_, '_>,
    head: &mut ChainHead,
    a: &AuditRecord,
) -> Result<(), Failure> {
    let seq = head.0 + 1;
    let prev_hash = head.1.clone();
    let hash = audit::chain_hash(
        &prev_hash,
        seq,
        a.at,
        &a.kind,
        a.request_id.as_deref(),
        a.subject.as_deref(),
        &a.data,
    );
    let data = json(&a.data);
    tx.execute(
        "INSERT INTO audit_events (seq, at, type, request_id, subject, data, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &seq,
            &a.at,
            &a.kind,
            &a.request_id,
            &a.subject,
            &data,
            &prev_hash,
            &hash,
        ],
    )
    .await?;
    *head = (seq, hash);
    Ok(())
}

/// A conflict (naming the status there is) unless request `id` has `status` at `at`. Locks
/// the request's row: a replica checking the same request waits for this transaction, then
/// sees what it did.
async fn require_status(
    tx: &mut Tx<'_, '_>,
    id: &str,
    status: &str,
    at: i64,
) -> Result<(), Failure> {
    let row = tx
        .row(
            "SELECT status, expires_at FROM access_requests WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Err(Failure::Conflict("no such request".into()));
    };
    let current = effective_status(&row.try_get::<_, String>(0)?, row.try_get(1)?, at);
    if current == status {
        Ok(())
    } else {
        Err(Failure::Conflict(current))
    }
}

async fn insert_approval(tx: &mut Tx<'_, '_>, a: &ApprovalRecord) -> Result<(), Failure> {
    tx.changed_one(
        "INSERT INTO approvals (request_id, approver, decision, comment, at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[&a.request_id, &a.approver, &a.decision, &a.comment, &a.at],
        "already answered by this approver",
    )
    .await
}

/// Approves request `id` if its approvals reach the quorum, and only then queues `announce`.
async fn approve_at_quorum(
    tx: &mut Tx<'_, '_>,
    id: &str,
    at: i64,
    announce: &[OutboxRecord],
) -> Result<(), Failure> {
    let approved = tx
        .changes(
            "UPDATE access_requests SET status = 'approved', decided_at = $1 \
             WHERE id = $2 AND status = 'pending' AND approvals_required <= \
             (SELECT COUNT(*) FROM approvals WHERE request_id = $2 AND decision = 'approve')",
            &[&at, &id],
        )
        .await?;
    if approved == 1 {
        for record in announce {
            queue(tx, record).await?;
        }
    }
    Ok(())
}

/// Records a revocation; at most one of a target is in force (a unique index): a repeat is a
/// conflict, and the caller answers with the one there is.
async fn insert_revocation(tx: &mut Tx<'_, '_>, r: &RevocationRecord) -> Result<(), Failure> {
    tx.changed_one(
        "INSERT INTO revocations (id, kind, value, reason, revoked_by, revoked_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &[
            &r.id,
            &r.kind,
            &r.value,
            &r.reason,
            &r.revoked_by,
            &r.revoked_at,
            &r.expires_at,
        ],
        "already revoked",
    )
    .await
}

/// Fails with the reason of the block of `subject` or the revocation of `request_id`, if any.
async fn require_not_revoked(
    tx: &mut Tx<'_, '_>,
    subject: &str,
    request_id: &str,
) -> Result<(), Failure> {
    let row = tx
        .row(
            "SELECT reason FROM revocations WHERE (kind = 'subject' AND value = $1 \
             AND lifted_at IS NULL) OR (kind = 'request_id' AND value = $2) LIMIT 1",
            &[&subject, &request_id],
        )
        .await?;
    match row {
        Some(row) => Err(Failure::Revoked(row.try_get(0)?)),
        None => Ok(()),
    }
}

async fn queue(tx: &mut Tx<'_, '_>, record: &OutboxRecord) -> Result<(), Failure> {
    tx.execute(
        "INSERT INTO webhook_outbox (delivery_id, hook, event, request_id, body, created_ms, \
         next_attempt_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[
            &record.delivery_id,
            &record.hook,
            &record.event,
            &record.request_id,
            &record.body,
            &record.created_ms,
        ],
    )
    .await
}
