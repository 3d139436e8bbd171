//! The schema: the migrations in `migrations/postgres/`, embedded, applied at start under an
//! advisory lock so that replicas starting together do not both apply one, and recorded in
//! `jitgate_migrations` (checked as `store::migration` says).

use std::time::Instant;

use tokio_postgres::Client;

use crate::store::StoreError;
use crate::store::migration::{Migration, applied_versions, migration};

/// Every migration, in order.
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!("postgres", 1, "init", "0001_init.sql"),
    migration!("postgres", 2, "signing keys", "0002_signing_keys.sql"),
    migration!("postgres", 3, "replicas", "0003_replicas.sql"),
    migration!("postgres", 4, "rate totals", "0004_rate_totals.sql"),
    migration!("postgres", 5, "used once", "0005_used_once.sql"),
    migration!("postgres", 6, "approval stages", "0006_approval_stages.sql"),
    migration!("postgres", 7, "not before", "0007_not_before.sql"),
    migration!("postgres", 8, "extensions", "0008_extensions.sql"),
    migration!("postgres", 9, "ui sessions", "0009_ui_sessions.sql"),
];

/// The advisory lock migrations run under ("jitgate" in ASCII).
const LOCK: i64 = 0x006a_6974_6761_7465;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS jitgate_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// Applies the migrations the database lacks, each in a transaction of its own, holding the
/// advisory lock throughout.
pub(super) async fn run(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let applied = apply_missing(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    applied?;
    unlocked?;
    Ok(())
}

async fn apply_missing(client: &mut Client) -> Result<(), StoreError> {
    client.batch_execute(CREATE_TABLE).await?;
    let applied = applied(client).await?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        let started = Instant::now();
        let tx = client.transaction().await?;
        tx.batch_execute(migration.sql).await.map_err(|e| {
            StoreError::Migrate(format!(
                "migration {}: {}",
                migration.version,
                super::describe(&e)
            ))
        })?;
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO jitgate_migrations (version, description, success, checksum, \
             execution_time) VALUES ($1, $2, TRUE, $3, $4)",
            &[
                &migration.version,
                &migration.description,
                &migration.checksum(),
                &nanos,
            ],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Checks, without changing anything, that the database (at `location`) has every migration
/// applied and no other.
pub(super) async fn check(client: &Client, location: &str) -> Result<(), StoreError> {
    let recorded: bool = client
        .query_one("SELECT to_regclass('jitgate_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !recorded {
        return Err(StoreError::Missing(location.to_owned()));
    }
    if applied(client).await?.len() < MIGRATIONS.len() {
        return Err(StoreError::Outdated(location.to_owned()));
    }
    Ok(())
}

async fn applied(client: &Client) -> Result<Vec<i64>, StoreError> {
    let rows = client
        .query(
            "SELECT version, checksum, success FROM jitgate_migrations ORDER BY version",
            &[],
        )
        .await?;
    let recorded = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<Vec<(i64, Vec<u8>, bool)>, tokio_postgres::Error>>()?;
    applied_versions(recorded, MIGRATIONS)
}
