//! The schema: the migrations in `migrations/sqlite/`, embedded, and the runner that applies
//! those a database lacks.
//!
//! Databases made before this runner were migrated by sqlx, which records each migration in
//! `_sqlx_migrations` (version, description, SHA-384 checksum of its SQL, …). This runner keeps
//! that table and its format, so such a database opens unchanged: what is recorded is neither
//! lost nor applied again, and an applied migration whose SQL has since changed, a migration
//! left half-applied, or one this binary does not know (a newer jitgate's) stops the open.

use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha384};

use crate::store::StoreError;

/// One migration: `migrations/sqlite/{version:04}_{description with _ for spaces}.sql`.
#[derive(Debug)]
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) description: &'static str,
    pub(super) sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $description:literal, $file:literal) => {
        Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../../../migrations/sqlite/", $file)),
        }
    };
}

/// Every migration, in order (a test checks this against the directory).
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!(1, "init", "0001_init.sql"),
    migration!(2, "approvals", "0002_approvals.sql"),
    migration!(3, "webhook outbox", "0003_webhook_outbox.sql"),
    migration!(4, "audit chain", "0004_audit_chain.sql"),
    migration!(5, "revocations", "0005_revocations.sql"),
    migration!(6, "hot path indexes", "0006_hot_path_indexes.sql"),
    migration!(7, "approved grant", "0007_approved_grant.sql"),
    migration!(8, "full principals", "0008_full_principals.sql"),
    migration!(9, "dry run denials", "0009_dry_run_denials.sql"),
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

impl Migration {
    fn checksum(&self) -> Vec<u8> {
        Sha384::digest(self.sql.as_bytes()).to_vec()
    }
}

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
        return Err(StoreError::Outdated(path.to_path_buf()));
    }
    Ok(())
}

/// The versions of `migrations` the database has applied; an error for a recorded migration
/// that failed half-way, is not among `migrations`, or whose SQL has changed since.
fn applied(connection: &Connection, migrations: &[Migration]) -> Result<Vec<i64>, StoreError> {
    let mut statement = connection
        .prepare("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, Vec<u8>>(1)?,
            row.get::<_, bool>(2)?,
        ))
    })?;
    let mut applied = Vec::new();
    for row in rows {
        let (version, checksum, success) = row?;
        if !success {
            return Err(StoreError::Migrate(format!(
                "migration {version} was left half-applied; restore the database from a backup"
            )));
        }
        let Some(migration) = migrations.iter().find(|m| m.version == version) else {
            return Err(StoreError::Migrate(format!(
                "the database has migration {version}, which this jitgate does not know: it \
                 was written by a newer jitgate"
            )));
        };
        if migration.checksum() != checksum {
            return Err(StoreError::Migrate(format!(
                "migration {version} was applied from SQL that differs from this jitgate's"
            )));
        }
        applied.push(version);
    }
    Ok(applied)
}
