//! The backend conformance suite, and what only PostgreSQL does, against the real database
//! `JITGATE_TEST_DATABASE_URL` names, each test in a schema of its own (dropped after), so
//! that tests run in parallel. Without the variable the tests pass saying they were skipped;
//! with `JITGATE_TEST_REQUIRE_POSTGRES=1` (CI) a missing variable fails them instead.

use std::path::Path;

use tokio_postgres::NoTls;

use crate::store::conformance::{self, approval, approving, conflict, pending};
use crate::store::{Store, StoreError, Write};

/// A schema of the test database, dropped when this is.
pub(crate) struct Schema {
    url: String,
    name: String,
}

impl Schema {
    /// `database_url` with every connection's `search_path` set to this schema, and named
    /// after it (`application_name`) so that a test can find its own connections.
    pub(crate) fn url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{name}&application_name={name}",
            self.url,
            name = self.name
        )
    }

    /// Ends every connection of this schema's stores, as a database restart would.
    async fn drop_connections(&self) -> usize {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        let ended = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&self.name],
            )
            .await
            .unwrap();
        ended.len()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Dropped from inside a runtime: a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await.ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}

/// The test database's URL, or `None` (said on stderr) when none is configured.
pub(crate) fn test_database_url() -> Option<String> {
    match std::env::var("JITGATE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("JITGATE_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "JITGATE_TEST_REQUIRE_POSTGRES=1 but JITGATE_TEST_DATABASE_URL is not set"
            );
            // Straight to stderr, past the test harness's capture, once per run.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: the PostgreSQL store tests (set JITGATE_TEST_DATABASE_URL, e.g. \
                     postgres://postgres@127.0.0.1:5432/test, to run them)"
                );
            });
            None
        }
    }
}

/// A new, empty schema in the test database.
pub(crate) async fn fresh_schema() -> Option<Schema> {
    let url = test_database_url()?;
    let name = format!("jitgate_test_{}", crate::token::new_jti().to_lowercase());
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("JITGATE_TEST_DATABASE_URL: cannot connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    Some(Schema { url, name })
}

async fn fresh() -> Option<(Schema, Store)> {
    let schema = fresh_schema().await?;
    let store = Store::open(&schema.url(), Path::new("/nonexistent"))
        .await
        .unwrap();
    Some((schema, store))
}

conformance::suite!(fresh);

/// Replicas starting together migrate once: the advisory lock serialises them and the
/// second finds the schema in place.
#[tokio::test]
async fn replicas_opening_together_migrate_once() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let url = schema.url();
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url, Path::new("/nonexistent")).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    Store::migrate(&url, Path::new("/nonexistent"))
        .await
        .unwrap();
}

/// Read-only opening: an empty schema is an error, not a new database; a migrated one reads
/// and refuses writes.
#[tokio::test]
async fn reading_an_existing_database_never_creates_or_writes_one() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let url = schema.url();
    let missing = Store::open_existing(&url, Path::new("/nonexistent")).await;
    assert!(
        matches!(missing, Err(StoreError::Missing(_))),
        "{missing:?}"
    );
    let message = missing.unwrap_err().to_string();
    assert!(!message.contains("postgres://"), "no URL in {message}");
    let store = Store::open(&url, Path::new("/nonexistent")).await.unwrap();
    store
        .write(vec![Write::Audit(conformance::audit("r1"))])
        .await
        .unwrap();
    let reader = Store::open_existing(&url, Path::new("/nonexistent"))
        .await
        .unwrap();
    assert_eq!(reader.audit_events().await.unwrap().len(), 1);
    let write = reader
        .write(vec![Write::Audit(conformance::audit("r2"))])
        .await;
    assert!(matches!(write, Err(StoreError::ReadOnly)), "{write:?}");
    assert!(reader.verify_audit().await.unwrap().is_ok());
}

/// Two stores on one database (two replicas) append to one chain without forks or gaps.
#[tokio::test]
async fn two_replicas_append_to_one_chain() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let url = schema.url();
    let a = Store::open(&url, Path::new("/nonexistent")).await.unwrap();
    let b = Store::open(&url, Path::new("/nonexistent")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let id = format!("r{i}");
            store
                .write(vec![
                    Write::Request(Box::new(conformance::request(&id))),
                    Write::Audit(conformance::audit(&id)),
                ])
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let report = a.verify_audit().await.unwrap().expect("one unbroken chain");
    assert_eq!(report.events, 40, "{report:?}");
    assert_eq!(a.audit_head().await.unwrap().unwrap().0, 40);
}

/// Two replicas racing for the last approval of one request: one wins, the other hears the
/// request is approved (the request's row is locked by whichever checks it first).
#[tokio::test]
async fn two_replicas_racing_for_the_last_approval_one_wins() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let url = schema.url();
    let replicas = [
        Store::open(&url, Path::new("/nonexistent")).await.unwrap(),
        Store::open(&url, Path::new("/nonexistent")).await.unwrap(),
    ];
    for round in 0..20 {
        let id = format!("p{round}");
        replicas[0]
            .write(vec![pending(&id, 2, 5000), approval(&id, "dave")])
            .await
            .unwrap();
        let racers: Vec<_> = ["bob", "carol"]
            .iter()
            .zip(&replicas)
            .map(|(approver, store)| {
                let store = store.clone();
                let writes = approving(&id, approver);
                tokio::spawn(async move { store.write(writes).await })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(()) => won += 1,
                lost => assert_eq!(conflict(lost), "approved"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert_eq!(replicas[1].approvals(&id).await.unwrap().len(), 2);
    }
    let announced = replicas[1].due_deliveries(i64::MAX, 100).await.unwrap();
    assert_eq!(announced.len(), 20, "one announcement per approved request");
}

/// The database dropping every connection (a restart, a failover): writes fail while it is
/// gone — nothing is acknowledged that did not commit — and the same store recovers by itself.
#[tokio::test]
async fn the_store_recovers_by_itself_when_its_connections_drop() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let store = Store::open(&schema.url(), Path::new("/nonexistent"))
        .await
        .unwrap();
    let write = |id: &str| {
        vec![
            Write::Request(Box::new(conformance::request(id))),
            Write::Audit(conformance::audit(id)),
        ]
    };
    store.write(write("before")).await.unwrap();
    assert!(store.request("before").await.unwrap().is_some());
    assert!(
        schema.drop_connections().await >= 2,
        "the writer's and a reader's"
    );
    let mut failed = 0;
    let mut recovered = false;
    for attempt in 0..50 {
        let id = format!("after{attempt}");
        match store.write(write(&id)).await {
            Ok(()) => {
                recovered = store.request(&id).await.is_ok_and(|r| r.is_some());
                if recovered {
                    break;
                }
            }
            Err(e) => {
                assert!(matches!(e, StoreError::Database(_)), "{e:?}");
                assert!(store.request(&id).await.unwrap_or(None).is_none());
                failed += 1;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(recovered, "the store answers again without being reopened");
    assert!(failed <= 2, "{failed} writes failed after the drop");
    let report = store
        .verify_audit()
        .await
        .unwrap()
        .expect("the chain holds");
    assert_eq!(report.events, 2, "before, and the write that recovered");
}
