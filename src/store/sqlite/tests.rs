//! The SQLite backend: the conformance suite, and what only SQLite has (the file, its
//! migrations from sqlx's time, its query plans, its triggers). Tests that open the file
//! themselves play someone with access to it.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use super::migrate::{self, MIGRATIONS};
use super::read::{EXPIRED_PENDING, STANDING};
use crate::store::conformance::{self, audit, request};
use crate::store::{Store, StoreError, Write};

async fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open("", dir.path()).await.unwrap();
    (dir, store)
}

async fn conformant() -> Option<(tempfile::TempDir, Store)> {
    Some(fresh().await)
}

conformance::suite!(conformant);

/// The database file, opened directly.
fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join("jitgate.db")).unwrap()
}

#[tokio::test]
async fn writes_outlive_the_store() {
    let (dir, store) = fresh().await;
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            Write::Audit(audit("r1")),
        ])
        .await
        .unwrap();
    drop(store);
    let reopened = Store::open("", dir.path()).await.unwrap();
    let events = reopened.audit_events().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["decision"], "deny");
    assert!(reopened.request("r1").await.unwrap().is_some());
}

#[tokio::test]
async fn a_job_that_fails_after_auditing_leaves_the_chain_whole() {
    let (dir, store) = fresh().await;
    // Hold the write lock so that the jobs below queue up and commit as one batch.
    let lock = raw(dir.path());
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let id = format!("r{i}");
        let mut writes = vec![Write::Audit(audit(&id))];
        if i % 2 == 1 {
            // Audits, then fails: its event must leave the chain with it.
            writes.push(Write::RequireStatus {
                id: "missing".into(),
                status: "pending".into(),
                at: 1000,
            });
        }
        tasks.push(tokio::spawn(async move { store.write(writes).await }));
    }
    // On this single-threaded runtime every task has queued its job once this one yields.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    lock.execute_batch("ROLLBACK").unwrap();
    let mut failed = 0;
    for task in tasks {
        if task.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 3);
    // One batch, or the job the writer took first and then the rest: a failing job is
    // followed by a good one in the same transaction either way.
    assert!(store.commit_counter().get() <= 2);
    store
        .write(vec![Write::Audit(audit("after"))])
        .await
        .unwrap();
    let report = store.verify_audit().await.unwrap().unwrap();
    assert_eq!(store.audit_events().await.unwrap().len(), 4, "{report:?}");
}

#[tokio::test]
async fn the_audit_trail_is_append_only() {
    let (dir, store) = fresh().await;
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            Write::Audit(audit("r1")),
        ])
        .await
        .unwrap();
    let file = raw(dir.path());
    let update = file.execute("UPDATE audit_events SET type = 'x'", []);
    assert!(update.unwrap_err().to_string().contains("append-only"));
    assert!(file.execute("DELETE FROM audit_events", []).is_err());
}

#[tokio::test]
async fn a_write_that_cannot_commit_is_an_error() {
    let (dir, store) = fresh().await;
    store.check_writable().await.unwrap();
    raw(dir.path())
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        )
        .unwrap();
    let err = store
        .write(vec![Write::Audit(audit("r1"))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[tokio::test]
async fn database_urls_name_a_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let err = Store::open("mysql://localhost/x", dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
    for memory in ["sqlite::memory:", "sqlite://:memory:", "sqlite:"] {
        let err = Store::open(memory, dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("in-memory"), "{memory}: {err}");
    }
    let err = Store::open("sqlite://x.db?mode=ro", dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without ?options"), "{err}");
    let named = dir.path().join("named.db");
    for url in [
        format!("sqlite://{}", named.display()),
        format!("sqlite:{}", named.display()),
    ] {
        let store = Store::open(&url, Path::new("/nonexistent")).await.unwrap();
        store.write(vec![Write::Audit(audit("r1"))]).await.unwrap();
    }
    assert_eq!(
        Store::open_existing(&format!("sqlite:{}", named.display()), dir.path())
            .await
            .unwrap()
            .audit_events()
            .await
            .unwrap()
            .len(),
        2
    );
}

/// The steps of `sql`'s query plan with `params`.
fn plan(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    statement
        .query_map(params, |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every part of the per-request standing query is an index lookup: the denial count reads
/// denials only, not every request of the principal in the window. Housekeeping's look for
/// expired requests reads pending ones only.
#[tokio::test]
async fn the_hot_queries_use_their_indexes() {
    let (dir, _store) = fresh().await;
    let file = raw(dir.path());
    let plan_of_standing = plan(&file, STANDING, ("User::\"alice\"", 0, "10.0.0.1"));
    let has = |step: &str| plan_of_standing.iter().any(|s| s.contains(step));
    assert!(
        has("USING COVERING INDEX access_requests_denials"),
        "{plan_of_standing:#?}"
    );
    assert!(
        has("USING COVERING INDEX dry_run_denials_by_principal"),
        "{plan_of_standing:#?}"
    );
    // The only scans are of the one-row `(SELECT 1)` the lookups hang off.
    assert!(
        plan_of_standing.iter().all(|step| !step.starts_with("SCAN")
            || step == "SCAN CONSTANT ROW"
            || step.starts_with("SCAN (subquery")),
        "{plan_of_standing:#?}"
    );
    let searches = plan_of_standing
        .iter()
        .filter(|step| step.starts_with("SEARCH"))
        .count();
    assert_eq!(searches, 4, "{plan_of_standing:#?}");
    assert_eq!(
        plan(&file, EXPIRED_PENDING, (0, 500)),
        ["SEARCH access_requests USING INDEX access_requests_pending (expires_at<?)"]
    );
}

/// [`MIGRATIONS`] is the directory, named as sqlx named them (a file added there and not to
/// the list would never run).
#[test]
fn every_migration_file_is_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let embedded: Vec<String> = MIGRATIONS
        .iter()
        .map(|m| format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_")))
        .collect();
    assert_eq!(files, embedded);
    for (file, migration) in files.iter().zip(MIGRATIONS) {
        let sql = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(sql, migration.sql, "{file}");
    }
}

/// `(version, description, installed_on, checksum, execution_time)` of each recorded
/// migration.
type Recorded = Vec<(i64, String, String, Vec<u8>, i64)>;

fn recorded(file: &Connection) -> Recorded {
    let mut statement = file
        .prepare(
            "SELECT version, description, installed_on, checksum, execution_time \
             FROM _sqlx_migrations ORDER BY version",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A database as the sqlx build of jitgate left it, migrated up to `through`: the schema of
/// those migrations and `_sqlx_migrations` as sqlx wrote it (`fixtures/sqlx_migrations.sql`).
fn made_by_sqlx(dir: &Path, through: i64) -> Connection {
    let file = raw(dir);
    for migration in MIGRATIONS.iter().filter(|m| m.version <= through) {
        file.execute_batch(migration.sql).unwrap();
    }
    file.execute_batch(include_str!("fixtures/sqlx_migrations.sql"))
        .unwrap();
    file.execute("DELETE FROM _sqlx_migrations WHERE version > ?", [through])
        .unwrap();
    file
}

#[tokio::test]
async fn a_database_sqlx_migrated_opens_unchanged() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = made_by_sqlx(dir.path(), 9);
    file.execute(
        "INSERT INTO audit_events (seq, at, type, data) VALUES (1, 5, 'old', '{}')",
        [],
    )
    .unwrap();
    let before = recorded(&file);
    assert_eq!(before.len(), 9);
    let store = Store::open("", dir.path()).await.unwrap();
    let after = recorded(&file);
    assert_eq!(after[..9], before[..], "nothing re-applied or lost");
    assert_eq!(
        after.len(),
        MIGRATIONS.len(),
        "the migrations after sqlx's applied"
    );
    assert_eq!(store.audit_events().await.unwrap()[0].kind, "old");
    drop(store);
    let read_only = Store::open_existing("", dir.path()).await.unwrap();
    assert_eq!(read_only.audit_events().await.unwrap().len(), 1);
}

/// A database sqlx migrated through 0007 gets the later migrations, recorded as sqlx would
/// have: the same checksums as the fixture's.
#[tokio::test]
async fn a_database_sqlx_migrated_part_way_gets_the_rest() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = made_by_sqlx(dir.path(), 7);
    let before = recorded(&file);
    Store::open("", dir.path()).await.unwrap();
    let after = recorded(&file);
    assert_eq!(after[..7], before[..]);
    let fixture = Connection::open_in_memory().unwrap();
    fixture
        .execute_batch(include_str!("fixtures/sqlx_migrations.sql"))
        .unwrap();
    let by_sqlx = recorded(&fixture);
    for (ours, theirs) in after.iter().zip(&by_sqlx).skip(7) {
        assert_eq!((ours.0, &ours.1, &ours.3), (theirs.0, &theirs.1, &theirs.3));
    }
    assert_eq!(after.len(), MIGRATIONS.len());
}

#[tokio::test]
async fn a_migration_whose_sql_changed_stops_the_open() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = made_by_sqlx(dir.path(), 9);
    file.execute(
        "UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 3",
        [],
    )
    .unwrap();
    let err = Store::open("", dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("migration 3"), "{err}");
    file.execute(
        "UPDATE _sqlx_migrations SET version = 99 WHERE version = 3",
        [],
    )
    .unwrap();
    let err = Store::open("", dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("newer jitgate"), "{err}");
}

#[tokio::test]
async fn reading_an_existing_store_creates_and_migrates_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let err = Store::open_existing("", dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err:?}");
    assert!(!dir.path().join("jitgate.db").exists());

    let file = made_by_sqlx(dir.path(), 8);
    let err = Store::open_existing("", dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Outdated(_)), "{err:?}");
    assert!(err.to_string().contains("start the server once"), "{err}");
    assert_eq!(recorded(&file).len(), 8, "nothing migrated");

    Store::open("", dir.path()).await.unwrap();
    let store = Store::open_existing("", dir.path()).await.unwrap();
    assert!(store.audit_events().await.unwrap().is_empty());
    let write = store.write(vec![Write::Audit(audit("r1"))]).await;
    assert!(matches!(write, Err(StoreError::ReadOnly)), "{write:?}");
    assert!(store.check_writable().await.is_err());
}

/// Migration 0008: stored subjects become full principals. A subject block stored as a bare
/// id keeps blocking every principal that had that id, tokens name their request's principal,
/// duplicate revocations in force collapse to one, and revocations outlive the leeway.
#[tokio::test]
async fn migration_0008_makes_subjects_full_principals() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut file = raw(dir.path());
    migrate::run(&mut file, &MIGRATIONS[..7]).unwrap();
    for (id, principal) in [
        ("r1", r#"User::"dep\"loyer""#),
        ("r2", r#"Service::"dep\"loyer""#),
        ("r3", r#"User::"carol""#),
    ] {
        file.execute(
            "INSERT INTO access_requests (id, created_at, principal, action, resource, scopes, \
             duration_secs, reason, source_ip, decision, status, policies, policy_version, \
             risk_score, risk_signals, approvals_required) \
             VALUES (?, 1, ?, 'read', 'Database::\"orders\"', '[]', 0, '', '127.0.0.1', \
             'allow', 'issued', '[]', 'v', 0, '[]', 0)",
            [id, principal],
        )
        .unwrap();
    }
    file.execute(
        "INSERT INTO tokens (jti, request_id, subject, kid, scope, issued_at, expires_at) \
         VALUES ('j2', 'r2', 'dep\"loyer', 'k', '', 1, 100)",
        [],
    )
    .unwrap();
    for (id, kind, value, expires_at) in [
        ("rev_a", "subject", "dep\"loyer", 500),
        ("rev_b", "jti", "j2", 100),
        ("rev_c", "jti", "j2", 100),
        ("rev_d", "subject", "carol", 400),
        ("rev_e", "subject", "carol", 900),
    ] {
        file.execute(
            "INSERT INTO revocations (id, kind, value, reason, revoked_by, revoked_at, \
             expires_at) VALUES (?, ?, ?, 'r', 'User::\"sam\"', 1, ?)",
            rusqlite::params![id, kind, value, expires_at],
        )
        .unwrap();
    }

    let store = Store::open("", dir.path()).await.unwrap();
    let mut statement = file
        .prepare("SELECT id, kind, value, expires_at FROM revocations ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String, String, i64)> = statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        ("rev_a", "subject", r#"User::"dep\"loyer""#, 505),
        ("rev_a-Service", "subject", r#"Service::"dep\"loyer""#, 505),
        ("rev_b", "jti", "j2", 105),
        ("rev_d", "subject", r#"User::"carol""#, 905),
    ]
    .map(|(id, kind, value, exp)| (id.to_owned(), kind.to_owned(), value.to_owned(), exp));
    assert_eq!(rows, expected);
    let token = store.token("j2").await.unwrap().unwrap();
    assert_eq!(token.subject, r#"Service::"dep\"loyer""#);
    for principal in [r#"Service::"dep\"loyer""#, r#"User::"carol""#] {
        assert!(store.subject_block(principal).await.unwrap().is_some());
    }
}
