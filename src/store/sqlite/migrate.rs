//! The schema: the migrations in `migrations/sqlite/`, embedded, and the runner that applies
//! those a database lacks.
//!
//! Databases made before this runner were migrated by sqlx, which records each migration in
//! `_sqlx_migrations` (version, description, SHA-384 checksum of its SQL, …). This runner keeps
//! that table and its format, so such a database opens unchanged: what is recorded is neither
//! lost nor applied again (the checks are `store::migration`'s).

use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::store::StoreError;
use crate::store::migration::{Migration, applied_versions, migration};

/// Every migration, in order (a test checks this against the directory).
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!("sqlite", 1, "init", "0001_init.sql"),
    migration!("sqlite", 2, "approvals", "0002_approvals.sql"),
    migration!("sqlite", 3, "webhook outbox", "0003_webhook_outbox.sql"),
    migration!("sqlite", 4, "audit chain", "0004_audit_chain.sql"),
    migration!("sqlite", 5, "revocations", "0005_revocations.sql"),
    migration!("sqlite", 6, "hot path indexes", "0006_hot_path_indexes.sql"),
    migration!("sqlite", 7, "approved grant", "0007_approved_grant.sql"),
    migration!("sqlite", 8, "full principals", "0008_full_principals.sql"),
    migration!("sqlite", 9, "dry run denials", "0009_dry_run_denials.sql"),
    migration!("sqlite", 10, "signing keys", "0010_signing_keys.sql"),
    migration!("sqlite", 11, "replicas", "0011_replicas.sql"),
    migration!("sqlite", 12, "rate totals", "0012_rate_totals.sql"),
    migration!("sqlite", 13, "used once", "0013_used_once.sql"),
    migration!("sqlite", 14, "approval stages", "0014_approval_stages.sql"),
    migration!("sqlite", 15, "not before", "0015_not_before.sql"),
    migration!("sqlite", 16, "extensions", "0016_extensions.sql"),
    migration!("sqlite", 17, "ui sessions", "0017_ui_sessions.sql"),
];

/// The table of applied migrations, as sqlx creates it.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);";

/// Applies the `migrations` the database lacks, in one transaction that holds the write lock
/// (so that two processes opening one database at once do not both apply one).
pub(super) fn run(connection: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(CREATE_TABLE)?;
    let applied = applied(&tx, migrations)?;
    for migration in migrations {
        if applied.contains(&migration.version) {
            continue;
        }
        let started = Instant::now();
        tx.execute_batch(migration.sql)
            .map_err(|e| StoreError::Migrate(format!("migration {}: {e}", migration.version)))?;
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?1, ?2, TRUE, ?3, ?4)",
            params![
                migration.version,
                migration.description,
                migration.checksum(),
                nanos
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Checks, without changing anything, that the database at `path` has every one of
/// `migrations` applied and no other.
pub(super) fn check(
    connection: &Connection,
    migrations: &[Migration],
    path: &Path,
) -> Result<(), StoreError> {
    let recorded: Option<String> = connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if recorded.is_none() {
        return Err(StoreError::Unsupported(format!(
            "{} holds no jitgate database",
            path.display()
        )));
    }
    let applied = applied(connection, migrations)?;
    if applied.len() < migrations.len() {
        return Err(StoreError::Outdated(path.display().to_string()));
    }
    Ok(())
}

/// The versions of `migrations` the database has applied (see [`applied_versions`]).
fn applied(connection: &Connection, migrations: &[Migration]) -> Result<Vec<i64>, StoreError> {
    let mut statement = connection
        .prepare("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")?;
    let recorded = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<Vec<(i64, Vec<u8>, bool)>, _>>()?;
    applied_versions(recorded, migrations)
}
