//! Reads: each runs whole on one of [`READERS`] threads of the store's own, each with its own
//! connection (WAL lets them read beside the writer) and cached prepared statements.
//!
//! Why threads of its own, not tokio's blocking pool as before: a read handed to `spawn_blocking`
//! just as another finished (its permit released at the end of the closure, before that thread was
//! back among the pool's idle ones) found no idle thread, so tokio started one more. Under load the
//! pool grew by a thread now and then (the server had 22 threads after 10,000 requests at 32
//! connections, 36 after 1,000,000; with these readers, 10 throughout) and, with reads always
//! about, none stayed idle the 10 s it takes to be reaped. Each kept its stack, its malloc thread
//! cache and, up to glibc's eight per core, an arena of its own: the server's RSS grew 15–17%
//! between 10,000 and 1,000,000 requests where sqlx's fixed threads had grown 1%. [`READERS`]
//! threads that each keep one connection cost the same one hand-off a read and hold memory flat.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use super::{READERS, Sqlite, connect};
use crate::audit::{AuditEvent, AuditFilter};
use crate::store::batch::QUEUE;
use crate::store::{
    ApprovalRecord, AuditRecord, LoginRecord, PendingDelivery, ReplicaRecord, RequestRecord,
    RevocationRecord, SessionRecord, Standing, StoreError, StoredKey, StoredRequest, TokenRecord,
};

/// Prepared statements each connection keeps (every read and write statement, with room).
pub(super) const STATEMENT_CACHE: usize = 64;

/// A read as its thread runs it: given the thread's connection (or why it could not open one),
/// it answers its caller itself.
type Read = Box<dyn FnOnce(Result<&Connection, rusqlite::Error>) + Send>;

/// The threads reads run on: [`READERS`] of them, each with a connection opened at its first
/// read and kept; they stop once every clone of this is gone.
#[derive(Debug, Clone)]
pub(super) struct Readers {
    reads: mpsc::Sender<Read>,
}

impl Readers {
    pub(super) fn new(path: PathBuf, read_only: bool) -> Result<Self, StoreError> {
        let (reads, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..READERS {
            let (path, queue) = (path.clone(), Arc::clone(&queue));
            std::thread::Builder::new()
                .name("jitgate-store-reader".into())
                .spawn(move || serve(&path, read_only, &queue))
                .map_err(|e| {
                    StoreError::Unsupported(format!("cannot start a store reader: {e}"))
                })?;
        }
        Ok(Self { reads })
    }

    /// Runs `read` on a reader's connection, on that reader's thread. The read runs to its end
    /// even if the caller stops waiting, so the connection is never left halfway.
    pub(super) async fn run<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Read = Box::new(move |connection| {
            let _ = answer.send(connection.map_err(StoreError::from).and_then(read));
        });
        self.reads
            .send(job)
            .await
            .map_err(|_| StoreError::Database("the store's readers are closed".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Database("a read stopped".into()))?
    }
}

/// A reader thread: runs the reads of `queue` one at a time until it closes.
fn serve(path: &Path, read_only: bool, queue: &Mutex<mpsc::Receiver<Read>>) {
    let mut kept: Option<Connection> = None;
    loop {
        // One thread waits on the queue at a time; the others wait for the lock.
        let next = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        let Some(read) = next else { return };
        let connection = match kept.take() {
            Some(connection) => Ok(connection),
            None => connect(path, read_only).inspect(|connection| {
                connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            }),
        };
        match connection {
            Ok(connection) => {
                // A read that panics drops its answer (its caller gets "a read stopped") and
                // the connection, and leaves this thread serving.
                let ran = catch_unwind(AssertUnwindSafe(|| read(Ok(&connection))));
                // One left inside a transaction (a probe that could not roll back) is dropped.
                if ran.is_ok() && connection.is_autocommit() {
                    kept = Some(connection);
                }
            }
            Err(e) => {
                let _ = catch_unwind(AssertUnwindSafe(|| read(Err(e))));
            }
        }
    }
}

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

/// [`Sqlite::expired_pending`]'s query: ?1 now, ?2 limit.
pub(super) const EXPIRED_PENDING: &str = "SELECT id FROM access_requests \
     WHERE status = 'pending' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2";

/// [`Sqlite::standing`]'s query: ?1 principal, ?2 denials since, ?3 source IP.
/// Denials are those of access requests and of dry runs.
pub(super) const STANDING: &str = "SELECT r.id, r.reason, \
     (SELECT COUNT(*) FROM access_requests \
      WHERE principal = ?1 AND created_at >= ?2 AND decision = 'deny') \
     + (SELECT COUNT(*) FROM dry_run_denials WHERE principal = ?1 AND at >= ?2), \
     EXISTS (SELECT 1 FROM principal_sources WHERE principal = ?1 AND source_ip = ?3) \
     FROM (SELECT 1) LEFT JOIN revocations r \
     ON r.kind = 'subject' AND r.value = ?1 AND r.lifted_at IS NULL LIMIT 1";

/// Events matching a filter: ?1 after seq, ?2 request id, ?3 subject, ?4 the subject's bare
/// id, ?5 type, ?6 since, ?7 until, ?8 limit. Events written before subjects were full
/// principals (migration 0008) name the bare id: those match by id.
const AUDIT_PAGE: &str = "SELECT seq, at, type, request_id, subject, data, prev_hash, hash \
     FROM audit_events WHERE seq > ?1 AND (?2 IS NULL OR request_id = ?2) \
     AND (?3 IS NULL OR subject = ?3 OR (subject = ?4 AND instr(subject, '::\"') = 0)) \
     AND (?5 IS NULL OR type = ?5) AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) \
     ORDER BY seq LIMIT ?8";

impl Sqlite {
    /// Runs the query `sql` with `params` and maps each row with `map`.
    async fn rows<T, P>(
        &self,
        sql: &'static str,
        params: P,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        P: rusqlite::Params + Send + 'static,
    {
        self.readers
            .run(move |connection| {
                let mut statement = connection.prepare_cached(sql)?;
                let rows = statement.query_map(params, map)?;
                Ok(rows.collect::<Result<Vec<T>, _>>()?)
            })
            .await
    }

    /// Runs the query `sql` with `params` and maps its first row, if any, with `map`.
    async fn row<T, P>(
        &self,
        sql: &'static str,
        params: P,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError>
    where
        T: Send + 'static,
        P: rusqlite::Params + Send + 'static,
    {
        self.readers
            .run(move |connection| {
                let mut statement = connection.prepare_cached(sql)?;
                Ok(statement.query_row(params, map).optional()?)
            })
            .await
    }

    pub(in crate::store) async fn pending_requests(&self, now: i64) -> Result<i64, StoreError> {
        let count = self
            .row(
                "SELECT COUNT(*) FROM access_requests WHERE status = 'pending' AND expires_at > ?",
                [now],
                |row| row.get(0),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }

    pub(in crate::store) async fn latest_expiry_by_kid(
        &self,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let rows = self
            .rows(
                "SELECT kid, MAX(expires_at) FROM tokens GROUP BY kid",
                (),
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(kid, exp)| (kid, u64::try_from(exp).unwrap_or(0)))
            .collect())
    }

    pub(in crate::store) async fn audit_events(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.rows(
            "SELECT at, type, request_id, subject, data FROM audit_events ORDER BY seq",
            (),
            |row| {
                Ok(AuditRecord {
                    at: row.get(0)?,
                    kind: row.get(1)?,
                    request_id: row.get(2)?,
                    subject: row.get(3)?,
                    data: serde_json::from_str(&row.get::<_, String>(4)?)
                        .unwrap_or(serde_json::Value::Null),
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let subject = filter.subject.as_ref().map(ToString::to_string);
        let bare_id = filter.subject.as_ref().map(|p| p.id.clone());
        let params = (
            after,
            filter.request_id.clone(),
            subject,
            bare_id,
            filter.kind.clone(),
            filter.since,
            filter.until,
            limit,
        );
        self.rows(AUDIT_PAGE, params, audit_event).await
    }

    pub(in crate::store) async fn audit_head(
        &self,
    ) -> Result<Option<(i64, String, String)>, StoreError> {
        self.row(
            "SELECT seq, hash, type FROM audit_events WHERE hash IS NOT NULL \
             ORDER BY seq DESC LIMIT 1",
            (),
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .await
    }

    pub(in crate::store) async fn audit_hash_at(
        &self,
        seq: i64,
    ) -> Result<Option<String>, StoreError> {
        let hash = self
            .row(
                "SELECT hash FROM audit_events WHERE seq = ?",
                [seq],
                |row| row.get::<_, Option<String>>(0),
            )
            .await?;
        Ok(hash.flatten())
    }

    pub(in crate::store) async fn latest_signed_head(&self) -> Result<Option<String>, StoreError> {
        let jws = self
            .row(
                "SELECT json_extract(data, '$.jws') FROM audit_events WHERE type = ? \
                 ORDER BY seq DESC LIMIT 1",
                [crate::audit::HEAD_EVENT],
                |row| row.get::<_, Option<String>>(0),
            )
            .await?;
        Ok(jws.flatten())
    }

    pub(in crate::store) async fn token(
        &self,
        jti: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.row(
            "SELECT jti, request_id, subject, kid, scope, issued_at, expires_at FROM tokens \
             WHERE jti = ?",
            [jti.to_owned()],
            |row| {
                Ok(TokenRecord {
                    jti: row.get(0)?,
                    request_id: row.get(1)?,
                    subject: row.get(2)?,
                    kid: row.get(3)?,
                    scope: row.get(4)?,
                    issued_at: row.get(5)?,
                    expires_at: row.get(6)?,
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn latest_token_expiry(
        &self,
        request_id: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let latest = self
            .row(
                "SELECT MAX(expires_at) FROM tokens WHERE (?1 IS NOT NULL AND request_id = ?1) \
                 OR (?2 IS NOT NULL AND subject = ?2)",
                (request_id.map(str::to_owned), subject.map(str::to_owned)),
                |row| row.get::<_, Option<i64>>(0),
            )
            .await?;
        Ok(latest.flatten())
    }

    pub(in crate::store) async fn revocation_covering(
        &self,
        jti: &str,
        request_id: &str,
        principal: &str,
        issued_at: i64,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        self.row(
            concat!(
                "SELECT ",
                revocation_columns!(),
                " FROM revocations WHERE (kind = 'jti' AND value = ?) \
                 OR (kind = 'request_id' AND value = ?) \
                 OR (kind = 'subject' AND value = ? AND revoked_at >= ?) LIMIT 1"
            ),
            (
                jti.to_owned(),
                request_id.to_owned(),
                principal.to_owned(),
                issued_at,
            ),
            |row| revocation(row, 0),
        )
        .await
    }

    pub(in crate::store) async fn standing(
        &self,
        principal: &str,
        denials_since: i64,
        source_ip: &str,
    ) -> Result<Standing, StoreError> {
        let standing = self
            .row(
                STANDING,
                (principal.to_owned(), denials_since, source_ip.to_owned()),
                |row| {
                    let block_id: Option<String> = row.get(0)?;
                    let block_reason: Option<String> = row.get(1)?;
                    Ok(Standing {
                        block: block_id.zip(block_reason),
                        recent_denials: row.get(2)?,
                        seen_from: row.get(3)?,
                    })
                },
            )
            .await?;
        standing.ok_or_else(|| StoreError::Database("the standing query found no row".into()))
    }

    pub(in crate::store) async fn revocation_in_force(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        self.row(
            concat!(
                "SELECT ",
                revocation_columns!(),
                " FROM revocations WHERE kind = ? AND value = ? AND lifted_at IS NULL"
            ),
            [kind.to_owned(), value.to_owned()],
            |row| revocation(row, 0),
        )
        .await
    }

    pub(in crate::store) async fn revocation(
        &self,
        id: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        self.row(
            concat!(
                "SELECT ",
                revocation_columns!(),
                " FROM revocations WHERE id = ?"
            ),
            [id.to_owned()],
            |row| revocation(row, 0),
        )
        .await
    }

    pub(in crate::store) async fn revocations_after(
        &self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(i64, RevocationRecord)>, StoreError> {
        self.rows(
            concat!(
                "SELECT seq, ",
                revocation_columns!(),
                " FROM revocations WHERE seq > ? AND expires_at > ? ORDER BY seq LIMIT ?"
            ),
            [after, now, limit],
            |row| Ok((row.get(0)?, revocation(row, 1)?)),
        )
        .await
    }

    pub(in crate::store) async fn expired_pending(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.rows(EXPIRED_PENDING, [now, limit], |row| row.get(0))
            .await
    }

    pub(in crate::store) async fn pending_page(
        &self,
        now: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        self.rows(
            concat!(
                "SELECT ",
                request_columns!(),
                ", rowid FROM access_requests WHERE status = 'pending' AND expires_at > ? \
                 AND rowid > ? ORDER BY rowid LIMIT ?"
            ),
            [now, after, limit],
            |row| Ok((row.get(26)?, stored_request(row)?)),
        )
        .await
    }

    pub(in crate::store) async fn requests_of(
        &self,
        principal: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        self.rows(
            concat!(
                "SELECT ",
                request_columns!(),
                ", rowid FROM access_requests WHERE principal = ? AND rowid < ? \
                 ORDER BY rowid DESC LIMIT ?"
            ),
            (principal.to_owned(), before, limit),
            |row| Ok((row.get(26)?, stored_request(row)?)),
        )
        .await
    }

    pub(in crate::store) async fn review_page(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        self.rows(
            concat!(
                "SELECT ",
                request_columns!(),
                ", rowid FROM access_requests WHERE status = 'needs_review' \
                 AND rowid > ? ORDER BY rowid LIMIT ?"
            ),
            [after, limit],
            |row| Ok((row.get(26)?, stored_request(row)?)),
        )
        .await
    }

    pub(in crate::store) async fn request(
        &self,
        id: &str,
    ) -> Result<Option<StoredRequest>, StoreError> {
        self.row(
            concat!(
                "SELECT ",
                request_columns!(),
                " FROM access_requests WHERE id = ?"
            ),
            [id.to_owned()],
            stored_request,
        )
        .await
    }

    pub(in crate::store) async fn approvals(
        &self,
        request_id: &str,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.rows(
            "SELECT request_id, approver, decision, comment, at, stage FROM approvals \
             WHERE request_id = ? ORDER BY at, approver",
            [request_id.to_owned()],
            |row| {
                Ok(ApprovalRecord {
                    request_id: row.get(0)?,
                    approver: row.get(1)?,
                    decision: row.get(2)?,
                    comment: row.get(3)?,
                    at: row.get(4)?,
                    stage: row.get(5)?,
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        self.rows(
            "SELECT id, delivery_id, hook, event, request_id, body, created_ms, attempts \
             FROM webhook_outbox WHERE state = 'pending' AND next_attempt_ms <= ? \
             ORDER BY next_attempt_ms, id LIMIT ?",
            [now_ms, limit],
            pending_delivery,
        )
        .await
    }

    /// Due deliveries at `now_ms`, each moved to `until_ms` in the statement that reads it.
    pub(in crate::store) async fn claim_deliveries(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        if self.read_only() {
            return Err(StoreError::ReadOnly);
        }
        let mut claimed = self
            .rows(
                "UPDATE webhook_outbox SET next_attempt_ms = ?2 WHERE id IN \
                 (SELECT id FROM webhook_outbox WHERE state = 'pending' \
                  AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?3) \
                 RETURNING id, delivery_id, hook, event, request_id, body, created_ms, attempts",
                [now_ms, until_ms, limit],
                pending_delivery,
            )
            .await?;
        claimed.sort_by_key(|delivery| delivery.id);
        Ok(claimed)
    }

    pub(in crate::store) async fn replicas(
        &self,
        since: i64,
    ) -> Result<Vec<ReplicaRecord>, StoreError> {
        self.rows(
            "SELECT id, version, policy_version, started_at, last_seen FROM replicas \
             WHERE last_seen >= ? ORDER BY id",
            [since],
            |row| {
                Ok(ReplicaRecord {
                    id: row.get(0)?,
                    version: row.get(1)?,
                    policy_version: row.get(2)?,
                    started_at: row.get(3)?,
                    last_seen: row.get(4)?,
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn rate_totals_of_others(
        &self,
        kind: &str,
        replica: &str,
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.rows(
            "SELECT principal, SUM(total) FROM rate_totals \
             WHERE kind = ? AND replica != ? AND at >= ? GROUP BY principal ORDER BY principal",
            (kind.to_owned(), replica.to_owned(), since),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .await
    }

    pub(in crate::store) async fn login(
        &self,
        state_hash: &str,
    ) -> Result<Option<LoginRecord>, StoreError> {
        self.row(
            "SELECT state_hash, nonce, verifier, next, max_age, created_at, expires_at \
             FROM sso_logins WHERE state_hash = ?",
            [state_hash.to_owned()],
            |row| {
                Ok(LoginRecord {
                    state_hash: row.get(0)?,
                    nonce: row.get(1)?,
                    verifier: row.get(2)?,
                    next: row.get(3)?,
                    max_age: row.get(4)?,
                    created_at: row.get(5)?,
                    expires_at: row.get(6)?,
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn session(
        &self,
        id_hash: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.row(
            "SELECT id_hash, principal, caller, created_at, last_seen, expires_at \
             FROM ui_sessions WHERE id_hash = ?",
            [id_hash.to_owned()],
            |row| {
                Ok(SessionRecord {
                    id_hash: row.get(0)?,
                    principal: row.get(1)?,
                    caller: row.get(2)?,
                    created_at: row.get(3)?,
                    last_seen: row.get(4)?,
                    expires_at: row.get(5)?,
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.rows(
            "SELECT kid, alg, created, sealed_private, public_jwk FROM signing_keys \
             ORDER BY created, kid",
            (),
            |row| {
                Ok(StoredKey {
                    kid: row.get(0)?,
                    alg: row.get(1)?,
                    created: row.get(2)?,
                    sealed_private: row.get(3)?,
                    public_jwk: row.get(4)?,
                })
            },
        )
        .await
    }

    pub(in crate::store) async fn next_delivery_ms(&self) -> Result<Option<i64>, StoreError> {
        let next = self
            .row(
                "SELECT MIN(next_attempt_ms) FROM webhook_outbox WHERE state = 'pending'",
                (),
                |row| row.get::<_, Option<i64>>(0),
            )
            .await?;
        Ok(next.flatten())
    }
}

/// A delivery in the columns `id, delivery_id, hook, event, request_id, body, created_ms,
/// attempts`.
fn pending_delivery(row: &Row<'_>) -> rusqlite::Result<PendingDelivery> {
    Ok(PendingDelivery {
        id: row.get(0)?,
        delivery_id: row.get(1)?,
        hook: row.get(2)?,
        event: row.get(3)?,
        request_id: row.get(4)?,
        body: row.get(5)?,
        created_ms: row.get(6)?,
        attempts: row.get(7)?,
    })
}

/// The revocation in the columns of [`revocation_columns`] from column `first` on.
fn revocation(row: &Row<'_>, first: usize) -> rusqlite::Result<RevocationRecord> {
    Ok(RevocationRecord {
        id: row.get(first)?,
        kind: row.get(first + 1)?,
        value: row.get(first + 2)?,
        reason: row.get(first + 3)?,
        revoked_by: row.get(first + 4)?,
        revoked_at: row.get(first + 5)?,
        expires_at: row.get(first + 6)?,
        lifted_at: row.get(first + 7)?,
    })
}

/// The request in the columns of [`request_columns`].
fn stored_request(row: &Row<'_>) -> rusqlite::Result<StoredRequest> {
    let json = |index: usize| -> rusqlite::Result<serde_json::Value> {
        let text: String = row.get(index)?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    };
    let list = |index: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(index)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    // Unreadable counts as not recorded: nothing is minted under it.
    let granted = |index: usize| -> rusqlite::Result<Option<Vec<String>>> {
        let text: Option<String> = row.get(index)?;
        Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
    };
    Ok(StoredRequest {
        record: RequestRecord {
            id: row.get(0)?,
            created_at: row.get(1)?,
            principal: row.get(2)?,
            action: row.get(3)?,
            resource: row.get(4)?,
            scopes: list(5)?,
            duration_secs: row.get(6)?,
            reason: row.get(7)?,
            source_ip: row.get(8)?,
            decision: row.get(9)?,
            status: row.get(10)?,
            policies: list(11)?,
            policy_version: row.get(12)?,
            risk_score: row.get(13)?,
            risk_signals: json(14)?,
            approvals_required: row.get(15)?,
            expires_at: row.get(16)?,
            context: json(17)?,
            lifetime_secs: row.get(18)?,
            granted_scopes: granted(19)?,
            audience: granted(20)?,
            stages: {
                let text: Option<String> = row.get(22)?;
                text.and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(serde_json::Value::Null)
            },
            not_before: row.get(23)?,
            extends: row.get(24)?,
            extended_secs: row.get(25)?,
        },
        decided_at: row.get(21)?,
    })
}

/// An event of the chain, as [`AUDIT_PAGE`] reads it.
fn audit_event(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let data: String = row.get(5)?;
    Ok(AuditEvent {
        seq: row.get(0)?,
        at: row.get(1)?,
        kind: row.get(2)?,
        request_id: row.get(3)?,
        subject: row.get(4)?,
        // Unparsable data cannot hash as written: the chain check reports that event.
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
        prev_hash: row.get(6)?,
        hash: row.get(7)?,
    })
}
