//! Durable state: access requests, issued tokens (never the tokens themselves) and the
//! append-only audit trail.
//!
//! [`Store`] is the one interface the rest of the program uses. It dispatches to a backend:
//! SQLite by default (`sqlite`: a file in `data_dir`, WAL mode, migrations embedded), or
//! PostgreSQL for several replicas on one database (`postgres`). Every backend keeps the same
//! contract: a caller's
//! [`Write`]s commit together or not at all, their preconditions are checked inside the
//! transaction that applies them, and `write` returns only once they are durable. The
//! backend conformance suite (`conformance`) holds each backend to it.

use std::path::{Path, PathBuf};

use prometheus::IntCounter;

use crate::audit::{AuditEvent, AuditFilter, ChainBreak, ChainReport, ChainVerifier};

mod batch;
mod migration;
mod postgres;
mod records;
mod sqlite;

pub use records::{
    ApprovalRecord, AuditRecord, LoginRecord, OutboxRecord, PendingDelivery, ReplicaRecord,
    RequestRecord, RevocationRecord, STAGE_COMPLETE, SessionRecord, Standing, StoredKey,
    StoredRequest, TokenRecord, Write, effective_status,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (its message).
    #[error("database: {0}")]
    Database(String),
    #[error("migrations: {0}")]
    Migrate(String),
    /// The database's schema is older than this binary's, and the store was opened read-only.
    #[error(
        "the database at {0} was written by an older jitgate: start the server once (it migrates \
         the database), then run this command again"
    )]
    Outdated(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The store was opened read-only (`audit verify`, `audit export`).
    #[error("the store is open read-only")]
    ReadOnly,
    /// A write's precondition did not hold (e.g. the request is no longer pending).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A command that reads an existing store found none.
    #[error("no database at {0}: nothing to read (is the configuration the server's?)")]
    Missing(String),
    /// A probe for `/readyz` could not start a write transaction.
    #[error("{0}")]
    NotWritable(String),
    /// A revocation refuses the write (its reason).
    #[error("revoked: {0}")]
    Revoked(String),
}

/// Where the records live, and what becomes of writes.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
    /// Reads from the database, acknowledges every write without making it: what the store
    /// costs, measured by taking it away (bench builds only).
    #[cfg(feature = "bench")]
    DiscardWrites(sqlite::Sqlite),
}

/// `$body` with `$db` bound to the database behind `$store`: whatever a backend does with
/// writes, reads go to its database.
macro_rules! on_database {
    ($store:expr, |$db:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($db) => $body,
            Backend::Postgres($db) => $body,
            #[cfg(feature = "bench")]
            Backend::DiscardWrites($db) => $body,
        }
    };
}

/// Where `database_url` points.
enum Location {
    Sqlite(PathBuf),
    Postgres(Box<tokio_postgres::Config>),
}

impl Location {
    fn of(database_url: &str, data_dir: &Path) -> Result<Self, StoreError> {
        if Store::is_shared_url(database_url) {
            Ok(Self::Postgres(Box::new(postgres::config(database_url)?)))
        } else {
            sqlite::database_path(database_url, data_dir).map(Self::Sqlite)
        }
    }
}

/// The store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

impl Store {
    fn with(backend: Backend) -> Self {
        Self { backend }
    }

    /// Opens the database `database_url` names ("" = `jitgate.db` in `data_dir`;
    /// `sqlite://PATH`; `postgres://…`), creating and migrating it as needed, and starts its
    /// writer.
    pub async fn open(database_url: &str, data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_pooled(database_url, data_dir, postgres::DEFAULT_READERS).await
    }

    /// [`Store::open`] with a read pool of `readers` connections (PostgreSQL; SQLite reads
    /// on a few connections of its own).
    pub async fn open_pooled(
        database_url: &str,
        data_dir: &Path,
        readers: usize,
    ) -> Result<Self, StoreError> {
        let backend = match Location::of(database_url, data_dir)? {
            Location::Sqlite(path) => Backend::Sqlite(sqlite::Sqlite::open(path).await?),
            Location::Postgres(config) => {
                Backend::Postgres(postgres::Postgres::open(*config, readers).await?)
            }
        };
        Ok(Self::with(backend))
    }

    /// Opens the store of a deployment that exists, read-only, for commands that read it
    /// (`audit verify`, `audit export`): a missing database is an error, never a new empty one
    /// that reads as a whole trail, and nothing is migrated (a database an older jitgate wrote
    /// is an error saying so).
    pub async fn open_existing(database_url: &str, data_dir: &Path) -> Result<Self, StoreError> {
        let backend = match Location::of(database_url, data_dir)? {
            Location::Sqlite(path) => Backend::Sqlite(sqlite::Sqlite::open_read_only(path).await?),
            Location::Postgres(config) => Backend::Postgres(
                postgres::Postgres::open_read_only(*config, postgres::DEFAULT_READERS).await?,
            ),
        };
        Ok(Self::with(backend))
    }

    /// Brings the schema of the database `database_url` names up to this binary's and returns
    /// (`jitgate migrate`; the server also migrates when it starts).
    pub async fn migrate(database_url: &str, data_dir: &Path) -> Result<(), StoreError> {
        match Location::of(database_url, data_dir)? {
            Location::Sqlite(path) => sqlite::Sqlite::open(path).await.map(drop),
            Location::Postgres(config) => postgres::Postgres::migrate(&config).await,
        }
    }

    /// This store, acknowledging every write without making it (bench builds only).
    #[cfg(feature = "bench")]
    #[must_use]
    pub fn discarding_writes(self) -> Self {
        let backend = match self.backend {
            Backend::Sqlite(db) | Backend::DiscardWrites(db) => Backend::DiscardWrites(db),
            Backend::Postgres(db) => {
                tracing::warn!("writes are discarded on SQLite only; PostgreSQL keeps them");
                Backend::Postgres(db)
            }
        };
        Self::with(backend)
    }

    /// Commits `writes` together; returns once they are durable.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.write(writes).await,
            Backend::Postgres(db) => db.write(writes).await,
            #[cfg(feature = "bench")]
            Backend::DiscardWrites(_) => Ok(()),
        }
    }

    /// The count of committed transactions (to register with the metrics).
    pub fn commit_counter(&self) -> IntCounter {
        on_database!(self, |db| db.commit_counter())
    }

    /// Jobs waiting for the writer.
    pub fn queued_writes(&self) -> usize {
        on_database!(self, |db| db.queued_writes())
    }

    /// Whether a write transaction could be started (for `/readyz`). Each call takes the write
    /// lock the writer needs, so callers ask seldom (the core remembers the answer for a while).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        on_database!(self, |db| db.probe_writable().await)
            .map_err(|e| StoreError::NotWritable(e.to_string()))
    }

    /// Requests waiting for approval and not yet expired at `now`.
    pub async fn pending_requests(&self, now: i64) -> Result<i64, StoreError> {
        on_database!(self, |db| db.pending_requests(now).await)
    }

    /// For each signing key, the latest expiry of a token it signed.
    pub async fn latest_expiry_by_kid(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        on_database!(self, |db| db.latest_expiry_by_kid().await)
    }

    /// The audit trail, oldest first (for tests and, later, export).
    pub async fn audit_events(&self) -> Result<Vec<AuditRecord>, StoreError> {
        on_database!(self, |db| db.audit_events().await)
    }

    /// Audit events matching `filter` after `seq` `after` (0 for the start), in order.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        on_database!(self, |db| db.audit_page(filter, after, limit).await)
    }

    /// The last chained event: its `seq`, `hash` and type.
    pub async fn audit_head(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        on_database!(self, |db| db.audit_head().await)
    }

    /// The `hash` the event at `seq` carries.
    pub async fn audit_hash_at(&self, seq: i64) -> Result<Option<String>, StoreError> {
        on_database!(self, |db| db.audit_hash_at(seq).await)
    }

    /// The JWS of the latest signed audit head kept in the trail. Heads are written every
    /// `audit_head_every`, so walking back from the end finds one after a few events.
    pub async fn latest_signed_head(&self) -> Result<Option<String>, StoreError> {
        on_database!(self, |db| db.latest_signed_head().await)
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
        on_database!(self, |db| db.token(jti).await)
    }

    /// The latest expiry of the tokens issued for `request_id` or to `subject`.
    pub async fn latest_token_expiry(
        &self,
        request_id: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        on_database!(self, |db| db.latest_token_expiry(request_id, subject).await)
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
        on_database!(self, |db| db
            .revocation_covering(jti, request_id, principal, issued_at)
            .await)
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
        on_database!(self, |db| db
            .standing(principal, denials_since, source_ip)
            .await)
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
        on_database!(self, |db| db.revocation_in_force(kind, value).await)
    }

    pub async fn revocation(&self, id: &str) -> Result<Option<RevocationRecord>, StoreError> {
        on_database!(self, |db| db.revocation(id).await)
    }

    /// The feed: revocations after position `after` whose tokens may still be live at `now`,
    /// each with its position (the cursor of the next page).
    pub async fn revocations_after(
        &self,
        after: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(i64, RevocationRecord)>, StoreError> {
        on_database!(self, |db| db.revocations_after(after, now, limit).await)
    }

    /// Ids of pending requests past their expiry at `now`, oldest first.
    pub async fn expired_pending(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        on_database!(self, |db| db.expired_pending(now, limit).await)
    }

    /// Pending, unexpired requests stored after position `after` (0 for the start), oldest
    /// first, each with its position (the row's insertion order, a cursor for the next page).
    pub async fn pending_page(
        &self,
        now: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        on_database!(self, |db| db.pending_page(now, after, limit).await)
    }

    /// Break-glass requests waiting for an administrator's review, oldest first, after
    /// position `after`; each with its position, the cursor of the next page.
    pub async fn review_page(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        on_database!(self, |db| db.review_page(after, limit).await)
    }

    /// `principal`'s requests, newest first, before position `before` (`i64::MAX` for the
    /// newest); each with its position, the cursor of the next page.
    pub async fn requests_of(
        &self,
        principal: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, StoredRequest)>, StoreError> {
        on_database!(self, |db| db.requests_of(principal, before, limit).await)
    }

    /// One request, as stored.
    pub async fn request(&self, id: &str) -> Result<Option<StoredRequest>, StoreError> {
        on_database!(self, |db| db.request(id).await)
    }

    /// The answers given on a request, oldest first.
    pub async fn approvals(&self, request_id: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        on_database!(self, |db| db.approvals(request_id).await)
    }

    /// Notifications due for a delivery attempt at `now_ms`, oldest first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        on_database!(self, |db| db.due_deliveries(now_ms, limit).await)
    }

    /// Takes up to `limit` notifications due at `now_ms` for a delivery attempt: each is
    /// handed to one caller only (across replicas too) until `lease_ms` has passed, after
    /// which an attempt that never recorded its outcome (a replica that died) is due again.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        on_database!(self, |db| db
            .claim_deliveries(now_ms, now_ms.saturating_add(lease_ms), limit)
            .await)
    }

    /// The sign-in under way whose `state` hashes to `state_hash`.
    pub async fn login(&self, state_hash: &str) -> Result<Option<LoginRecord>, StoreError> {
        on_database!(self, |db| db.login(state_hash).await)
    }

    /// The UI session whose cookie hashes to `id_hash`, however old (the caller judges).
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        on_database!(self, |db| db.session(id_hash).await)
    }

    /// The signing keys kept in the database, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        on_database!(self, |db| db.signing_keys().await)
    }

    /// The replicas whose last heartbeat is at `since` or later, by id.
    pub async fn replicas(&self, since: i64) -> Result<Vec<ReplicaRecord>, StoreError> {
        on_database!(self, |db| db.replicas(since).await)
    }

    /// What replicas other than `replica` counted of `kind` in their last reports since
    /// `since`, summed by principal.
    pub async fn rate_totals_of_others(
        &self,
        kind: &str,
        replica: &str,
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        on_database!(self, |db| db
            .rate_totals_of_others(kind, replica, since)
            .await)
    }

    /// Whether `database_url` names a database replicas share (PostgreSQL), as [`Store::open`]
    /// reads it.
    pub fn is_shared_url(database_url: &str) -> bool {
        database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
    }

    /// Whether replicas share this store (PostgreSQL): they then keep their signing keys in it
    /// rather than each in its `data_dir`, and exchange their request counts through it.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// When the next notification falls due, if any waits.
    pub async fn next_delivery_ms(&self) -> Result<Option<i64>, StoreError> {
        on_database!(self, |db| db.next_delivery_ms().await)
    }
}

#[cfg(test)]
mod conformance;
/// A schema of the PostgreSQL test database, for tests of several replicas.
#[cfg(test)]
pub(crate) use postgres::tests::{Schema, fresh_schema};
