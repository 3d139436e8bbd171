//! Durable state: access requests, issued tokens (never the tokens themselves) and the
//! append-only audit trail, in SQLite (a file in `data_dir`, WAL mode, migrations embedded).
//!
//! Every write goes through one writer (a thread with its own connection, see `writer`) that
//! commits whatever callers have queued in a single transaction and then answers each caller,
//! so a caller's `write` returns only once its records are durable (`synchronous=FULL`: an
//! fsync per commit) and the cost of a commit is shared under load. Reads go through a small
//! sqlx pool. PostgreSQL, for several replicas, is a later backend behind the same API.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use serde::Serialize;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditEvent, AuditFilter, ChainBreak, ChainReport, ChainVerifier};

mod writer;

/// The columns of a [`RevocationRecord`], for every query that reads one.
macro_rules! revocation_columns {
    () => {
        "id, kind, value, reason, revoked_by, revoked_at, expires_at, lifted_at"
    };
}

/// How long `/readyz` believes the last probe of the store's writability.
const WRITABLE_PROBE_EVERY: Duration = Duration::from_secs(1);

/// When the store was probed for `/readyz`, and what the probe found.
type WritableProbe = (Instant, Result<(), String>);

/// Creates the database file at `path`, if missing, readable and writable by its owner only
/// (SQLite gives its `-wal` and `-shm` files the same mode): it holds the audit trail and
/// requests' reasons.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 256;
const QUEUE: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The writer's own connection (see `writer`).
    #[error("database: {0}")]
    Writer(#[from] rusqlite::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// A write's precondition did not hold (e.g. the request is no longer pending).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot create {path}: {source}")]
    Create {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A command that reads an existing store found none.
    #[error("no database at {0}: nothing to read (is the configuration the server's?)")]
    Missing(std::path::PathBuf),
    /// The last probe for `/readyz` could not start a write transaction.
    #[error("{0}")]
    NotWritable(String),
    /// A revocation refuses the write (its reason).
    #[error("revoked: {0}")]
    Revoked(String),
}

/// A decided access request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub id: String,
    pub created_at: i64,
    /// Cedar form, e.g. `User::"alice"`.
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub duration_secs: i64,
    pub reason: String,
    pub source_ip: String,
    pub decision: String,
    pub status: String,
    pub policies: Vec<String>,
    pub policy_version: String,
    pub risk_score: i64,
    pub risk_signals: serde_json::Value,
    pub approvals_required: i64,
    pub expires_at: Option<i64>,
    /// Client context keys, kept to re-evaluate an escalated request.
    pub context: serde_json::Value,
    /// The lifetime the decision granted (for an approval: the approved window).
    pub lifetime_secs: i64,
    /// The scopes the decision granted (for an approval: what was approved); `None` for
    /// requests decided before jitgate recorded it.
    pub granted_scopes: Option<Vec<String>>,
    /// The audiences the decision granted, likewise.
    pub audience: Option<Vec<String>>,
}

/// A request as stored, with what happened to it since.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRequest {
    #[serde(flatten)]
    pub record: RequestRecord,
    pub decided_at: Option<i64>,
}

/// One approver's answer.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRecord {
    pub request_id: String,
    /// Cedar form of the approver.
    pub approver: String,
    /// `approve` or `deny`.
    pub decision: String,
    pub comment: String,
    pub at: i64,
}

/// An issued token, by its `jti`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenRecord {
    pub jti: String,
    pub request_id: String,
    /// The principal, Cedar form.
    pub subject: String,
    pub kid: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub at: i64,
    /// `decision`, `dry_run`, `token.issued`, `policy.loaded`, …
    pub kind: String,
    pub request_id: Option<String>,
    pub subject: Option<String>,
    pub data: serde_json::Value,
}

/// A revocation (see `migrations/sqlite/0005_revocations.sql` for what each kind covers).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RevocationRecord {
    pub id: String,
    /// `jti`, `request_id` or `subject`.
    pub kind: String,
    pub value: String,
    pub reason: String,
    /// Cedar form of who revoked.
    pub revoked_by: String,
    pub revoked_at: i64,
    /// When the last token it covers has expired.
    pub expires_at: i64,
    pub lifted_at: Option<i64>,
}

/// A webhook notification to deliver (see [`crate::notify`]).
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    pub delivery_id: String,
    /// Which configured webhook, by [`crate::notify`]'s key for it.
    pub hook: String,
    pub event: String,
    pub request_id: Option<String>,
    /// The exact body to POST.
    pub body: String,
    pub created_ms: i64,
}

/// A notification waiting for delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingDelivery {
    pub id: i64,
    pub delivery_id: String,
    pub hook: String,
    pub event: String,
    pub request_id: Option<String>,
    pub body: String,
    pub created_ms: i64,
    pub attempts: i64,
}

/// [`Store::expired_pending`]'s query: ?1 now, ?2 limit.
const EXPIRED_PENDING: &str = "SELECT id FROM access_requests WHERE status = 'pending' \
     AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2";

/// [`Store::standing`]'s query: ?1 principal, ?2 denials since, ?3 source IP.
/// Denials are those of access requests and of dry runs.
const STANDING: &str = "SELECT r.id, r.reason, \
     (SELECT COUNT(*) FROM access_requests \
      WHERE principal = ?1 AND created_at >= ?2 AND decision = 'deny') \
     + (SELECT COUNT(*) FROM dry_run_denials WHERE principal = ?1 AND at >= ?2), \
     EXISTS (SELECT 1 FROM principal_sources WHERE principal = ?1 AND source_ip = ?3) \
     FROM (SELECT 1) LEFT JOIN revocations r \
     ON r.kind = 'subject' AND r.value = ?1 AND r.lifted_at IS NULL LIMIT 1";

/// See [`Store::standing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// (revocation id, reason) of the subject's active block.
    pub block: Option<(String, String)>,
    pub recent_denials: i64,
    pub seen_from: bool,
}

/// One write; a call's writes commit together or not at all.
#[derive(Debug, Clone)]
pub enum Write {
    Request(Box<RequestRecord>),
    Token(TokenRecord),
    Audit(AuditRecord),
    /// The principal was seen from this source IP (kept the first time).
    SourceSeen {
        principal: String,
        source_ip: String,
        at: i64,
    },
    /// A dry run of `principal` would have been denied (it counts as a recent denial).
    DryRunDenied {
        principal: String,
        at: i64,
    },
    /// Forgets dry-run denials older than `before` (out of every recent-denials window).
    PruneDryRunDenials {
        before: i64,
    },
    /// Fails the whole job with a conflict unless the request has this status (and, for
    /// `pending`, has not expired at `at`). Jobs run one after another, so what follows in the
    /// job sees the status checked here.
    RequireStatus {
        id: String,
        status: String,
        at: i64,
    },
    /// Records an approver's answer; a second answer by the same approver is a conflict.
    Approval(ApprovalRecord),
    /// Moves the request to `status`, noting when it was decided.
    SetStatus {
        id: String,
        status: String,
        at: i64,
    },
    /// Moves a pending request to `approved` once its approvals reach the quorum, and only
    /// then queues `announce`.
    ApproveAtQuorum {
        id: String,
        at: i64,
        announce: Vec<OutboxRecord>,
    },
    /// Marks a pending request past its expiry `expired`; a conflict if it is not (any more).
    Expire {
        id: String,
        at: i64,
    },
    /// Queues a webhook notification.
    Outbox(OutboxRecord),
    /// Records a revocation; a conflict if one of the same kind and value is in force.
    Revocation(RevocationRecord),
    /// Fails the whole job with [`StoreError::Revoked`] if `subject` (a principal, Cedar
    /// form) is blocked or `request_id` revoked: checked in the transaction that records a token, so a token
    /// cannot slip past a revocation committed a moment before it.
    RequireNotRevoked {
        subject: String,
        request_id: String,
    },
    /// Lets new tokens be issued again for a revoked subject; a conflict unless `id` is a
    /// subject revocation not yet lifted.
    LiftRevocation {
        id: String,
        at: i64,
    },
    /// Forgets revocations whose tokens have all expired (a request or subject block stays:
    /// it lives in the request's status, or ends when lifted).
    PruneRevocations {
        now: i64,
    },
    /// A notification was delivered (`failed` false) or given up on (`failed` true).
    DeliveryFinished {
        id: i64,
        failed: bool,
        at_ms: i64,
        error: Option<String>,
    },
    /// A delivery attempt failed; try again at `next_attempt_ms`.
    DeliveryRetry {
        id: i64,
        next_attempt_ms: i64,
        error: String,
    },
    /// Forgets finished notifications older than `before_ms`.
    PruneDeliveries {
        before_ms: i64,
    },
}

struct Job {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), Failure>>,
}

/// Why a job did not commit.
#[derive(Debug, Clone)]
enum Failure {
    Conflict(String),
    Revoked(String),
    Database(String),
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Conflict(message) => StoreError::Conflict(message),
            Failure::Revoked(message) => StoreError::Revoked(message),
            Failure::Database(message) => StoreError::Database(sqlx::Error::Protocol(message)),
        }
    }
}

/// The store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: mpsc::Sender<Job>,
    /// Transactions the writer committed (each an fsync), for `/metrics`.
    commits: IntCounter,
    /// When [`Store::check_writable`] last probed, and what it found.
    writable_probe: Arc<tokio::sync::Mutex<Option<WritableProbe>>>,
    #[cfg(feature = "bench")]
    discard_writes: bool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("writes", &self.writes.len())
            .finish()
    }
}

/// The SQLite file `database_url` names ("" = `jitgate.db` in `data_dir`).
fn sqlite_options(database_url: &str, data_dir: &Path) -> Result<SqliteConnectOptions, StoreError> {
    let options = if database_url.is_empty() {
        SqliteConnectOptions::new().filename(data_dir.join("jitgate.db"))
    } else if database_url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(database_url)?
    } else {
        return Err(StoreError::Unsupported(
            "database_url: only SQLite is supported so far; PostgreSQL comes with multi-replica support".into(),
        ));
    };
    if options.get_filename() == Path::new(":memory:") {
        return Err(StoreError::Unsupported(
            "database_url: an in-memory database would lose the audit trail; name a file".into(),
        ));
    }
    Ok(options)
}

impl Store {
    /// Opens the database `database_url` names ("" = `jitgate.db` in `data_dir`), creating
    /// and migrating it as needed, and starts the writer task.
    pub async fn open(database_url: &str, data_dir: &Path) -> Result<Self, StoreError> {
        let options = sqlite_options(database_url, data_dir)?;
        create_private(options.get_filename())?;
        Self::open_with(options).await
    }

    /// Opens the store of a deployment that exists, for commands that read it (`audit verify`,
    /// `audit export`): a missing database is an error, never a new empty one that reads as a
    /// whole trail.
    pub async fn open_existing(database_url: &str, data_dir: &Path) -> Result<Self, StoreError> {
        let options = sqlite_options(database_url, data_dir)?;
        if !options.get_filename().exists() {
            return Err(StoreError::Missing(options.get_filename().to_path_buf()));
        }
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let connection = writer::open(options.get_filename())?;
        let (sender, jobs) = mpsc::channel(QUEUE);
        let commits = IntCounter::new(
            "jitgate_store_commits_total",
            "Store transactions committed, each an fsync.",
        )
        .map_err(|e| StoreError::Unsupported(format!("cannot count store commits: {e}")))?;
        let writer_commits = commits.clone();
        std::thread::Builder::new()
            .name("jitgate-store-writer".into())
            .spawn(move || writer::run(connection, jobs, &writer_commits))
            .map_err(|e| StoreError::Unsupported(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            pool,
            writer: sender,
            commits,
            writable_probe: Arc::default(),
            #[cfg(feature = "bench")]
            discard_writes: false,
        })
    }

    /// This store, acknowledging every write without making it (bench builds only).
    #[cfg(feature = "bench")]
    #[must_use]
    pub fn discarding_writes(self) -> Self {
        Self {
            discard_writes: true,
            ..self
        }
    }

    /// Commits `writes` together; returns once they are durable.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        #[cfg(feature = "bench")]
        if self.discard_writes {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        self.writer
            .send(Job { writes, done })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        committed
            .await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::from)
    }

    /// The writer's count of committed transactions (to register with the metrics).
    pub fn commit_counter(&self) -> IntCounter {
        self.commits.clone()
    }

    /// Jobs waiting for the writer.
    pub fn queued_writes(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    /// Whether a write transaction could be started (for `/readyz`), probed at most once per
    /// [`WRITABLE_PROBE_EVERY`]: each probe takes the write lock the writer needs, so callers
    /// in between get the last answer. A transaction sqlx tracks is rolled back even if the
    /// caller goes away half-way.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let mut last = self.writable_probe.lock().await;
        let outcome = match &*last {
            Some((at, outcome)) if at.elapsed() < WRITABLE_PROBE_EVERY => outcome.clone(),
            _ => {
                let outcome = self.probe_writable().await.map_err(|e| e.to_string());
                *last = Some((Instant::now(), outcome.clone()));
                outcome
            }
        };
        outcome.map_err(StoreError::NotWritable)
    }

    async fn probe_writable(&self) -> Result<(), StoreError> {
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Requests waiting for approval and not yet expired at `now`.
    pub async fn pending_requests(&self, now: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM access_requests WHERE status = 'pending' AND expires_at > ?",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// For each signing key, the latest expiry of a token it signed.
    pub async fn latest_expiry_by_kid(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT kid, MAX(expires_at) FROM tokens GROUP BY kid")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(kid, exp)| (kid, u64::try_from(exp).unwrap_or(0)))
            .collect())
    }

    /// The audit trail, oldest first (for tests and, later, export).
    pub async fn audit_events(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT at, type, request_id, subject, data FROM audit_events ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, request_id, subject, data)| AuditRecord {
                at,
                kind,
                request_id,
                subject,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    /// Audit events matching `filter` after `seq` `after` (0 for the start), in order.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // Events written before subjects were full principals (migration 0008) name the bare
        // id: those match by id.
        let subject = filter.subject.as_ref().map(ToString::to_string);
        let rows: Vec<AuditEventRow> = sqlx::query_as(
            "SELECT seq, at, type, request_id, subject, data, prev_hash, hash FROM audit_events \
             WHERE seq > ? AND (? IS NULL OR request_id = ?) \
             AND (? IS NULL OR subject = ? OR (subject = ? AND instr(subject, '::\"') = 0)) \
             AND (? IS NULL OR type = ?) AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?) \
             ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(&filter.request_id)
        .bind(&filter.request_id)
        .bind(&subject)
        .bind(&subject)
        .bind(filter.subject.as_ref().map(|p| &p.id))
        .bind(&filter.kind)
        .bind(&filter.kind)
        .bind(filter.since)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AuditEventRow::into_event).collect())
    }

    /// The last chained event: its `seq`, `hash` and type.
    pub async fn audit_head(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, hash, type FROM audit_events WHERE hash IS NOT NULL \
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The `hash` the event at `seq` carries.
    pub async fn audit_hash_at(&self, seq: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = ?")
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// The JWS of the latest signed audit head kept in the trail. Heads are written every
    /// `audit_head_every`, so walking back from the end finds one after a few events.
    pub async fn latest_signed_head(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT json_extract(data, '$.jws') FROM audit_events WHERE type = ? \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(crate::audit::HEAD_EVENT)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Walks the whole audit chain, a page at a time.
    pub async fn verify_audit(&self) -> Result<Result<ChainReport, ChainBreak>, StoreError> {
        let mut verifier = ChainVerifier::default();
        let mut after = i64::MIN;
        loop {
            let page = self
                .audit_page(&AuditFilter::default(), after, 1_000)
                .await?;
            let Some(last) = page.last() else {
                return Ok(Ok(verifier.finish()));
            };
            after = last.seq;
            if let Err(broken) = verifier.feed(&page) {
                return Ok(Err(broken));
            }
        }
    }

    /// An issued token's record.
    pub async fn token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT jti, request_id, subject, kid, scope, issued_at, expires_at FROM tokens \
             WHERE jti = ?",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The latest expiry of the tokens issued for `request_id` or to `subject`.
    pub async fn latest_token_expiry(
        &self,
        request_id: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(expires_at) FROM tokens WHERE (? IS NOT NULL AND request_id = ?) \
             OR (? IS NOT NULL AND subject = ?)",
        )
        .bind(request_id)
        .bind(request_id)
        .bind(subject)
        .bind(subject)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The revocation that covers the token `jti` of `request_id`, issued to `principal`
    /// (Cedar form) at `issued_at`, if any.
    pub async fn revocation_covering(
        &self,
        jti: &str,
        request_id: &str,
        principal: &str,
        issued_at: i64,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            revocation_columns!(),
            " FROM revocations WHERE (kind = 'jti' AND value = ?) \
                 OR (kind = 'request_id' AND value = ?) \
                 OR (kind = 'subject' AND value = ? AND revoked_at >= ?) LIMIT 1"
        ))
        .bind(jti)
        .bind(request_id)
        .bind(principal)
        .bind(issued_at)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// What the store knows of a caller for one request, in one query: the active block of
    /// `principal` (Cedar form), if any; its denials since `denials_since`; whether it was seen
    /// from `source_ip` before.
    pub async fn standing(
        &self,
        principal: &str,
        denials_since: i64,
        source_ip: &str,
    ) -> Result<Standing, StoreError> {
        let (block_id, block_reason, recent_denials, seen_from): (
            Option<String>,
            Option<String>,
            i64,
            bool,
        ) = sqlx::query_as(STANDING)
            .bind(principal)
            .bind(denials_since)
            .bind(source_ip)
            .fetch_one(&self.pool)
            .await?;
        Ok(Standing {
            block: block_id.zip(block_reason),
            recent_denials,
            seen_from,
        })
    }

    /// The subject revocation that refuses `principal` (Cedar form), if one is in force.
    pub async fn subject_block(
        &self,
        principal: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        self.revocation_in_force("subject", principal).await
    }

    /// The revocation of `kind` for `value` in force (not lifted), if any: there is at most one.
    pub async fn revocation_in_force(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            revocation_columns!(),
            " FROM revocations WHERE kind = ? AND value = ? AND lifted_at IS NULL"
        ))
        .bind(kind)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn revocation(&self, id: &str) -> Result<Option<RevocationRecord>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            revocation_columns!(),
            " FROM revocations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The feed: revocations after position `after` whose tokens may still be live at `now`,
    /// each with its position (the cursor of the next page).
    pub async fn revocations_after(
        &self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(i64, RevocationRecord)>, StoreError> {
        let rows: Vec<PositionedRevocation> = sqlx::query_as(concat!(
            "SELECT seq, ",
            revocation_columns!(),
            " FROM revocations WHERE seq > ? AND expires_at > ? ORDER BY seq LIMIT ?"
        ))
        .bind(after)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.seq, r.record)).collect())
    }

    /// Ids of pending requests past their expiry at `now`, oldest first.
    pub async fn expired_pending(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(EXPIRED_PENDING)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Pending, unexpired requests stored after position `after` (0 for the start), oldest
    /// first, each with its position (the row's insertion order, a cursor for the next page).
    pub async fn pending_page(
        &self,
        now: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        let rows: Vec<PositionedRow> = sqlx::query_as(
            "SELECT rowid AS position, id, created_at, principal, action, resource, scopes, \
             duration_secs, reason, source_ip, decision, status, policies, policy_version, \
             risk_score, risk_signals, approvals_required, expires_at, context, lifetime_secs, \
             granted_scopes, audience, decided_at FROM access_requests WHERE status = 'pending' AND expires_at > ? \
             AND rowid > ? ORDER BY rowid LIMIT ?",
        )
        .bind(now)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.position, r.row.into_stored()))
            .collect())
    }

    /// One request, as stored.
    pub async fn request(&self, id: &str) -> Result<Option<StoredRequest>, StoreError> {
        let row: Option<RequestRow> = sqlx::query_as(
            "SELECT id, created_at, principal, action, resource, scopes, duration_secs, reason, \
             source_ip, decision, status, policies, policy_version, risk_score, risk_signals, \
             approvals_required, expires_at, context, lifetime_secs, granted_scopes, audience, \
             decided_at \
             FROM access_requests WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(RequestRow::into_stored))
    }

    /// The answers given on a request, oldest first.
    pub async fn approvals(&self, request_id: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT request_id, approver, decision, comment, at FROM approvals \
             WHERE request_id = ? ORDER BY at, approver",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(request_id, approver, decision, comment, at)| ApprovalRecord {
                    request_id,
                    approver,
                    decision,
                    comment,
                    at,
                },
            )
            .collect())
    }

    /// Notifications due for a delivery attempt at `now_ms`, oldest first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, delivery_id, hook, event, request_id, body, created_ms, attempts \
             FROM webhook_outbox WHERE state = 'pending' AND next_attempt_ms <= ? \
             ORDER BY next_attempt_ms, id LIMIT ?",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// When the next notification falls due, if any waits.
    pub async fn next_delivery_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM webhook_outbox WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The underlying pool, for tests that need to reach into the database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[derive(sqlx::FromRow)]
struct PositionedRevocation {
    seq: i64,
    #[sqlx(flatten)]
    record: RevocationRecord,
}

#[derive(sqlx::FromRow)]
struct PositionedRow {
    position: i64,
    #[sqlx(flatten)]
    row: RequestRow,
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: String,
    created_at: i64,
    principal: String,
    action: String,
    resource: String,
    scopes: String,
    duration_secs: i64,
    reason: String,
    source_ip: String,
    decision: String,
    status: String,
    policies: String,
    policy_version: String,
    risk_score: i64,
    risk_signals: String,
    approvals_required: i64,
    expires_at: Option<i64>,
    context: String,
    lifetime_secs: i64,
    granted_scopes: Option<String>,
    audience: Option<String>,
    decided_at: Option<i64>,
}

impl RequestRow {
    fn into_stored(self) -> StoredRequest {
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        let list = |text: &str| serde_json::from_str::<Vec<String>>(text).unwrap_or_default();
        StoredRequest {
            record: RequestRecord {
                scopes: list(&self.scopes),
                policies: list(&self.policies),
                risk_signals: parse(&self.risk_signals),
                context: parse(&self.context),
                id: self.id,
                created_at: self.created_at,
                principal: self.principal,
                action: self.action,
                resource: self.resource,
                duration_secs: self.duration_secs,
                reason: self.reason,
                source_ip: self.source_ip,
                decision: self.decision,
                status: self.status,
                policy_version: self.policy_version,
                risk_score: self.risk_score,
                approvals_required: self.approvals_required,
                expires_at: self.expires_at,
                lifetime_secs: self.lifetime_secs,
                // Unreadable counts as not recorded: nothing is minted under it.
                granted_scopes: self
                    .granted_scopes
                    .and_then(|text| serde_json::from_str(&text).ok()),
                audience: self
                    .audience
                    .and_then(|text| serde_json::from_str(&text).ok()),
            },
            decided_at: self.decided_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditEventRow {
    seq: i64,
    at: i64,
    #[sqlx(rename = "type")]
    kind: String,
    request_id: Option<String>,
    subject: Option<String>,
    data: String,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl AuditEventRow {
    fn into_event(self) -> AuditEvent {
        AuditEvent {
            seq: self.seq,
            at: self.at,
            kind: self.kind,
            request_id: self.request_id,
            subject: self.subject,
            // Unparsable data cannot hash as written: the chain check reports that event.
            data: serde_json::from_str(&self.data).unwrap_or(serde_json::Value::String(self.data)),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

/// `at, type, request_id, subject, data` of `audit_events`.
type AuditRow = (i64, String, Option<String>, Option<String>, String);

/// The status a request has at `now`: a pending request past its expiry is expired, even
/// before anything has written that down.
pub fn effective_status(status: &str, expires_at: Option<i64>, now: i64) -> String {
    if status == "pending" && expires_at.is_some_and(|at| at <= now) {
        "expired".to_owned()
    } else {
        status.to_owned()
    }
}

/// A JSON column's text.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests;
