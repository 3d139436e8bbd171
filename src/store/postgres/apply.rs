//! What each [`Write`] does to the database, inside the writer's transaction: the same inserts,
//! updates and preconditions as SQLite's, in PostgreSQL's SQL.
//!
//! A job's statements are sent together (pipelined: [`run_job`]) rather than one round trip
//! each, so every statement is prepared once per connection up front ([`STATEMENTS`]) and none
//! waits on another's answer except the outbox rows an approval announces. A failing write
//! fails the job, whose savepoint the writer then rolls back; statements sent after it either
//! fail too (the transaction is in error until the rollback) or are undone with it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement, Transaction};

use crate::audit;
use crate::store::batch::Failure;
use crate::store::{
    ApprovalRecord, AuditRecord, OutboxRecord, RequestRecord, RevocationRecord, STAGE_COMPLETE,
    TokenRecord, Write, effective_status,
};

/// The last event of the audit chain, (seq, hash): locked by the transaction, moved by its
/// appends.
pub(super) type ChainHead = (i64, String);

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

const INSERT_SOURCE: &str = "INSERT INTO principal_sources (principal, source_ip, first_seen) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const INSERT_DRY_RUN_DENIAL: &str = "INSERT INTO dry_run_denials (principal, at) VALUES ($1, $2)";
const PRUNE_DRY_RUN_DENIALS: &str = "DELETE FROM dry_run_denials WHERE at < $1";
const SET_STATUS: &str = "UPDATE access_requests SET status = $1, decided_at = $2 WHERE id = $3";
const EXPIRE: &str = "UPDATE access_requests SET status = 'expired', decided_at = expires_at \
     WHERE id = $1 AND status = 'pending' AND expires_at <= $2";
const LIFT_REVOCATION: &str = "UPDATE revocations SET lifted_at = $1 \
     WHERE id = $2 AND kind = 'subject' AND lifted_at IS NULL";
const PRUNE_REVOCATIONS: &str = "DELETE FROM revocations WHERE expires_at <= $1 \
     AND (kind != 'subject' OR lifted_at IS NOT NULL)";
const DELIVERY_FINISHED: &str = "UPDATE webhook_outbox SET state = $1, attempts = attempts + 1, \
     finished_ms = $2, last_error = COALESCE($3, last_error) WHERE id = $4";
const DELIVERY_RETRY: &str = "UPDATE webhook_outbox SET attempts = attempts + 1, \
     next_attempt_ms = $1, last_error = $2 WHERE id = $3";
const PRUNE_DELIVERIES: &str =
    "DELETE FROM webhook_outbox WHERE state != 'pending' AND finished_ms < $1";
const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (kid, alg, created, sealed_private, public_jwk) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT DO NOTHING";
const DROP_SIGNING_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";
const DROP_RATE_TOTAL: &str =
    "DELETE FROM rate_totals WHERE replica = $1 AND kind = $2 AND principal = $3";
const SET_RATE_TOTAL: &str = "INSERT INTO rate_totals (replica, kind, principal, total, at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (replica, kind, principal) \
     DO UPDATE SET total = $4, at = $5";
const FORGET_RATE_TOTALS: &str = "DELETE FROM rate_totals WHERE at < $1";
const USE_ONCE: &str = "INSERT INTO used_once (kind, id, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT DO NOTHING";
const PRUNE_USED_ONCE: &str = "DELETE FROM used_once WHERE expires_at < $1";
const INSERT_LOGIN: &str = "INSERT INTO sso_logins (state_hash, nonce, verifier, next, max_age, \
     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const TAKE_LOGIN: &str = "DELETE FROM sso_logins WHERE state_hash = $1 AND expires_at > $2";
const INSERT_SESSION: &str = "INSERT INTO ui_sessions (id_hash, principal, caller, created_at, \
     last_seen, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
const TOUCH_SESSION: &str =
    "UPDATE ui_sessions SET last_seen = GREATEST(last_seen, $1) WHERE id_hash = $2";
const END_SESSION: &str = "DELETE FROM ui_sessions WHERE id_hash = $1";
const END_SESSIONS_OF: &str = "DELETE FROM ui_sessions WHERE principal = $1";
const PRUNE_SESSIONS: &str = "DELETE FROM ui_sessions WHERE expires_at <= $1 OR last_seen < $2";
const PRUNE_LOGINS: &str = "DELETE FROM sso_logins WHERE expires_at <= $1";
const FORGET_REPLICAS: &str = "DELETE FROM replicas WHERE last_seen < $1";
const HEARTBEAT: &str = "INSERT INTO replicas (id, version, policy_version, started_at, \
     last_seen) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
     version = $2, policy_version = $3, started_at = $4, last_seen = $5";
const INSERT_REQUEST: &str = "INSERT INTO access_requests (id, created_at, principal, action, \
     resource, scopes, duration_secs, reason, source_ip, decision, status, policies, \
     policy_version, risk_score, risk_signals, approvals_required, expires_at, context, \
     lifetime_secs, granted_scopes, audience, stages, not_before, extends, extended_secs) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24, $25)";
const INSERT_TOKEN: &str = "INSERT INTO tokens (jti, request_id, subject, kid, scope, issued_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const APPEND_AUDIT: &str = "INSERT INTO audit_events (seq, at, type, request_id, subject, data, \
     prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// Locks the request's row: a replica checking the same request waits for this transaction,
/// then sees what it did.
const REQUEST_STATUS: &str =
    "SELECT status, expires_at FROM access_requests WHERE id = $1 FOR UPDATE";
const INSERT_APPROVAL: &str = "INSERT INTO approvals (request_id, approver, decision, comment, \
     at, stage) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
const STAGE_APPROVALS: &str = "SELECT COUNT(*) FROM approvals \
     WHERE request_id = $1 AND stage = $2 AND decision = 'approve'";
const APPROVE_AT_QUORUM: &str = "UPDATE access_requests SET status = 'approved', \
     decided_at = $1 WHERE id = $2 AND status = 'pending' AND approvals_required <= \
     (SELECT COUNT(*) FROM approvals WHERE request_id = $2 AND decision = 'approve')";
const INSERT_REVOCATION: &str = "INSERT INTO revocations (id, kind, value, reason, revoked_by, \
     revoked_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
const BLOCKING_REVOCATION: &str = "SELECT reason FROM revocations WHERE (kind = 'subject' \
     AND value = $1 AND lifted_at IS NULL) OR (kind = 'request_id' AND value = $2) LIMIT 1";
const QUEUE: &str = "INSERT INTO webhook_outbox (delivery_id, hook, event, request_id, body, \
     created_ms, next_attempt_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)";
const SIGNED_HEAD_AFTER: &str =
    "SELECT seq FROM audit_events WHERE seq > $1 AND type = $2 ORDER BY seq LIMIT 1";
pub(super) const LOCK_HEAD: &str = "SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE";
pub(super) const MOVE_HEAD: &str = "UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1";

/// Every statement the writer runs.
const STATEMENTS: &[&str] = &[
    USE_ONCE,
    INSERT_LOGIN,
    TAKE_LOGIN,
    INSERT_SESSION,
    TOUCH_SESSION,
    END_SESSION,
    END_SESSIONS_OF,
    PRUNE_SESSIONS,
    PRUNE_LOGINS,
    PRUNE_USED_ONCE,
    INSERT_SOURCE,
    INSERT_DRY_RUN_DENIAL,
    PRUNE_DRY_RUN_DENIALS,
    SET_STATUS,
    EXPIRE,
    LIFT_REVOCATION,
    PRUNE_REVOCATIONS,
    DELIVERY_FINISHED,
    DELIVERY_RETRY,
    PRUNE_DELIVERIES,
    INSERT_SIGNING_KEY,
    DROP_SIGNING_KEY,
    DROP_RATE_TOTAL,
    SET_RATE_TOTAL,
    FORGET_RATE_TOTALS,
    FORGET_REPLICAS,
    HEARTBEAT,
    INSERT_REQUEST,
    INSERT_TOKEN,
    APPEND_AUDIT,
    REQUEST_STATUS,
    INSERT_APPROVAL,
    STAGE_APPROVALS,
    APPROVE_AT_QUORUM,
    INSERT_REVOCATION,
    BLOCKING_REVOCATION,
    QUEUE,
    SIGNED_HEAD_AFTER,
    LOCK_HEAD,
    MOVE_HEAD,
];

/// The writer's statements, prepared on its connection.
#[derive(Debug)]
pub(super) struct Statements {
    prepared: HashMap<&'static str, Statement>,
}

impl Statements {
    /// Prepares every statement on `client` (one round trip each, once per connection).
    pub(super) async fn prepare(client: &Client) -> Result<Self, Failure> {
        let mut prepared = HashMap::with_capacity(STATEMENTS.len());
        for sql in STATEMENTS {
            prepared.insert(*sql, client.prepare(sql).await?);
        }
        Ok(Self { prepared })
    }

    pub(super) fn get(&self, sql: &'static str) -> Result<&Statement, Failure> {
        self.prepared
            .get(sql)
            .ok_or_else(|| Failure::Database(format!("statement not prepared: {sql}")))
    }
}

/// One job's view of the transaction.
struct Tx<'t, 'c> {
    tx: &'t Transaction<'c>,
    statements: &'t Statements,
    head: &'t Mutex<ChainHead>,
}

impl Tx<'_, '_> {
    /// Runs `sql`; the number of rows it changed.
    async fn changes(&self, sql: &'static str, params: Params<'_>) -> Result<u64, Failure> {
        let statement = self.statements.get(sql)?;
        Ok(self.tx.execute(statement, params).await?)
    }

    async fn execute(&self, sql: &'static str, params: Params<'_>) -> Result<(), Failure> {
        self.changes(sql, params).await.map(drop)
    }

    /// Runs `sql`, a conditional change: a conflict (`otherwise`) unless it changed a row.
    async fn changed_one(
        &self,
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
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, Failure> {
        let statement = self.statements.get(sql)?;
        Ok(self.tx.query_opt(statement, params).await?)
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// Runs `prefix` (savepoint commands) and then `writes` in `tx` with their statements
/// pipelined: each write's first statement is sent, in order, before any answer is awaited (a
/// tokio-postgres query goes out on the first poll of its future). Returns the first failure.
pub(super) async fn run_job(
    tx: &Transaction<'_>,
    statements: &Statements,
    head: &Mutex<ChainHead>,
    prefix: &'static str,
    writes: &[Write],
) -> Result<(), Failure> {
    let job = Tx {
        tx,
        statements,
        head,
    };
    let savepoint = async move { Ok::<_, Failure>(tx.batch_execute(prefix).await?) };
    let mut pending: Vec<Pending<'_>> = std::iter::once(Box::pin(savepoint) as Pending<'_>)
        .chain(
            writes
                .iter()
                .map(|w| Box::pin(apply(&job, w)) as Pending<'_>),
        )
        .collect();
    let outcomes: Vec<Option<Result<(), Failure>>> = {
        let mut context = Context::from_waker(Waker::noop());
        pending
            .iter_mut()
            .map(|write| match write.as_mut().poll(&mut context) {
                Poll::Ready(outcome) => Some(outcome),
                Poll::Pending => None,
            })
            .collect()
    };
    let mut first_failure = None;
    for (write, outcome) in pending.iter_mut().zip(outcomes) {
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => write.await,
        };
        if let Err(failure) = outcome {
            first_failure.get_or_insert(failure);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// Applies `write`. Whatever it does to the chain's head happens before its first await, so
/// writes sent in order append in order.
async fn apply(tx: &Tx<'_, '_>, write: &Write) -> Result<(), Failure> {
    match write {
        Write::Request(record) => insert_request(tx, record).await,
        Write::Token(record) => insert_token(tx, record).await,
        Write::Audit(record) => append_audit(tx, record).await,
        Write::SourceSeen {
            principal,
            source_ip,
            at,
        } => tx.execute(INSERT_SOURCE, &[principal, source_ip, at]).await,
        Write::DryRunDenied { principal, at } => {
            tx.execute(INSERT_DRY_RUN_DENIAL, &[principal, at]).await
        }
        Write::PruneDryRunDenials { before } => tx.execute(PRUNE_DRY_RUN_DENIALS, &[before]).await,
        Write::RequireStatus { id, status, at } => require_status(tx, id, status, *at).await,
        Write::RequireStageOpen {
            id,
            stage,
            required,
        } => {
            if stage_approvals(tx, id, stage).await? >= *required {
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
            if stage_approvals(tx, id, stage).await? == *required {
                for record in announce {
                    queue(tx, record).await?;
                }
            }
            Ok(())
        }
        Write::Approval(record) => insert_approval(tx, record).await,
        Write::SetStatus { id, status, at } => tx.execute(SET_STATUS, &[status, at, id]).await,
        Write::ApproveAtQuorum { id, at, announce } => {
            approve_at_quorum(tx, id, *at, announce).await
        }
        Write::Expire { id, at } => tx.changed_one(EXPIRE, &[id, at], "not pending").await,
        Write::Outbox(record) => queue(tx, record).await,
        Write::Revocation(record) => insert_revocation(tx, record).await,
        Write::RequireNotRevoked {
            subject,
            request_id,
        } => require_not_revoked(tx, subject, request_id).await,
        Write::LiftRevocation { id, at } => {
            let otherwise = "not an active subject revocation";
            tx.changed_one(LIFT_REVOCATION, &[at, id], otherwise).await
        }
        // A subject block that is not lifted stays, whatever its tokens did.
        Write::PruneRevocations { now } => tx.execute(PRUNE_REVOCATIONS, &[now]).await,
        Write::DeliveryFinished {
            id,
            failed,
            at_ms,
            error,
        } => {
            let state = if *failed { "failed" } else { "delivered" };
            tx.execute(DELIVERY_FINISHED, &[&state, at_ms, error, id])
                .await
        }
        Write::DeliveryRetry {
            id,
            next_attempt_ms,
            error,
        } => {
            tx.execute(DELIVERY_RETRY, &[next_attempt_ms, error, id])
                .await
        }
        Write::PruneDeliveries { before_ms } => tx.execute(PRUNE_DELIVERIES, &[before_ms]).await,
        Write::SigningKey(key) => {
            let params: Params<'_> = &[
                &key.kid,
                &key.alg,
                &key.created,
                &key.sealed_private,
                &key.public_jwk,
            ];
            let otherwise = "a signing key with this kid is kept";
            tx.changed_one(INSERT_SIGNING_KEY, params, otherwise).await
        }
        Write::DropSigningKey { kid } => tx.execute(DROP_SIGNING_KEY, &[kid]).await,
        Write::RateTotals {
            replica,
            kind,
            totals,
            at,
            forget_before,
        } => rate_totals(tx, replica, kind, totals, *at, *forget_before).await,
        Write::Heartbeat {
            replica: r,
            forget_before,
        } => {
            tx.execute(FORGET_REPLICAS, &[forget_before]).await?;
            let params: Params<'_> = &[
                &r.id,
                &r.version,
                &r.policy_version,
                &r.started_at,
                &r.last_seen,
            ];
            tx.execute(HEARTBEAT, params).await
        }
        Write::UseOnce {
            kind,
            id,
            expires_at,
        } => {
            let otherwise = format!("this {kind} was used before");
            tx.changed_one(USE_ONCE, &[kind, id, expires_at], &otherwise)
                .await
        }
        Write::PruneUsedOnce { now } => tx.execute(PRUNE_USED_ONCE, &[now]).await,
        Write::Login(l) => {
            let params: Params<'_> = &[
                &l.state_hash,
                &l.nonce,
                &l.verifier,
                &l.next,
                &l.max_age,
                &l.created_at,
                &l.expires_at,
            ];
            tx.execute(INSERT_LOGIN, params).await
        }
        Write::TakeLogin { state_hash, at } => {
            let otherwise = "this sign-in was finished before or has expired";
            tx.changed_one(TAKE_LOGIN, &[state_hash, at], otherwise)
                .await
        }
        Write::Session(s) => {
            let params: Params<'_> = &[
                &s.id_hash,
                &s.principal,
                &s.caller,
                &s.created_at,
                &s.last_seen,
                &s.expires_at,
            ];
            tx.execute(INSERT_SESSION, params).await
        }
        Write::TouchSession { id_hash, at } => tx.execute(TOUCH_SESSION, &[at, id_hash]).await,
        Write::EndSession { id_hash } => tx.execute(END_SESSION, &[id_hash]).await,
        Write::EndSessionsOf { principal } => tx.execute(END_SESSIONS_OF, &[principal]).await,
        Write::PruneSessions { now, idle_before } => {
            tx.execute(PRUNE_SESSIONS, &[now, idle_before]).await?;
            tx.execute(PRUNE_LOGINS, &[now]).await
        }
        Write::RequireNoSignedHeadAfter { seq } => {
            match tx
                .row(SIGNED_HEAD_AFTER, &[seq, &audit::HEAD_EVENT])
                .await?
            {
                Some(row) => {
                    let at: i64 = row.try_get(0)?;
                    Err(Failure::Conflict(format!("a signed head is at {at}")))
                }
                None => Ok(()),
            }
        }
    }
}

/// A JSON column's text.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

async fn rate_totals(
    tx: &Tx<'_, '_>,
    replica: &String,
    kind: &String,
    totals: &[(String, i64)],
    at: i64,
    forget_before: i64,
) -> Result<(), Failure> {
    for (principal, total) in totals {
        if *total == 0 {
            tx.execute(DROP_RATE_TOTAL, &[replica, kind, principal])
                .await?;
        } else {
            tx.execute(SET_RATE_TOTAL, &[replica, kind, principal, total, &at])
                .await?;
        }
    }
    tx.execute(FORGET_RATE_TOTALS, &[&forget_before]).await
}

async fn insert_request(tx: &Tx<'_, '_>, r: &RequestRecord) -> Result<(), Failure> {
    let (scopes, policies, signals, context) = (
        json(&r.scopes),
        json(&r.policies),
        json(&r.risk_signals),
        json(&r.context),
    );
    let granted = r.granted_scopes.as_ref().map(json);
    let audience = r.audience.as_ref().map(json);
    let stages = (!r.stages.is_null()).then(|| json(&r.stages));
    tx.execute(
        INSERT_REQUEST,
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
            &stages,
            &r.not_before,
            &r.extends,
            &r.extended_secs,
        ],
    )
    .await
}

async fn insert_token(tx: &Tx<'_, '_>, t: &TokenRecord) -> Result<(), Failure> {
    tx.execute(
        INSERT_TOKEN,
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

/// Appends `a` to the audit trail after the head the transaction holds locked, moving the
/// head at once (before anything is awaited).
async fn append_audit(tx: &Tx<'_, '_>, a: &AuditRecord) -> Result<(), Failure> {
    let (seq, prev_hash, hash) = {
        let mut head = tx.head.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = head.0 + 1;
        let prev_hash = head.1.clone();
        let hash = a.chain_hash(&prev_hash, seq);
        *head = (seq, hash.clone());
        (seq, prev_hash, hash)
    };
    let data = json(&a.data);
    tx.execute(
        APPEND_AUDIT,
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
    .await
}

/// A conflict (naming the status there is) unless request `id` has `status` at `at`.
async fn require_status(tx: &Tx<'_, '_>, id: &str, status: &str, at: i64) -> Result<(), Failure> {
    let Some(row) = tx.row(REQUEST_STATUS, &[&id]).await? else {
        return Err(Failure::Conflict("no such request".into()));
    };
    let current = effective_status(&row.try_get::<_, String>(0)?, row.try_get(1)?, at);
    if current == status {
        Ok(())
    } else {
        Err(Failure::Conflict(current))
    }
}

/// Approvals given in stage `stage` of request `id`.
async fn stage_approvals(tx: &Tx<'_, '_>, id: &str, stage: &str) -> Result<i64, Failure> {
    Ok(match tx.row(STAGE_APPROVALS, &[&id, &stage]).await? {
        Some(row) => row.try_get(0)?,
        None => 0,
    })
}

async fn insert_approval(tx: &Tx<'_, '_>, a: &ApprovalRecord) -> Result<(), Failure> {
    tx.changed_one(
        INSERT_APPROVAL,
        &[
            &a.request_id,
            &a.approver,
            &a.decision,
            &a.comment,
            &a.at,
            &a.stage,
        ],
        "already answered by this approver",
    )
    .await
}

/// Approves request `id` if its approvals reach the quorum, and only then queues `announce`.
async fn approve_at_quorum(
    tx: &Tx<'_, '_>,
    id: &str,
    at: i64,
    announce: &[OutboxRecord],
) -> Result<(), Failure> {
    let approved = tx.changes(APPROVE_AT_QUORUM, &[&at, &id]).await?;
    if approved == 1 {
        for record in announce {
            queue(tx, record).await?;
        }
    }
    Ok(())
}

/// Records a revocation; at most one of a target is in force (a unique index): a repeat is a
/// conflict, and the caller answers with the one there is.
async fn insert_revocation(tx: &Tx<'_, '_>, r: &RevocationRecord) -> Result<(), Failure> {
    tx.changed_one(
        INSERT_REVOCATION,
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
    tx: &Tx<'_, '_>,
    subject: &str,
    request_id: &str,
) -> Result<(), Failure> {
    match tx
        .row(BLOCKING_REVOCATION, &[&subject, &request_id])
        .await?
    {
        Some(row) => Err(Failure::Revoked(row.try_get(0)?)),
        None => Ok(()),
    }
}

async fn queue(tx: &Tx<'_, '_>, record: &OutboxRecord) -> Result<(), Failure> {
    tx.execute(
        QUEUE,
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
