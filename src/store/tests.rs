use std::sync::Arc;

use super::*;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open("", dir.path()).await.unwrap();
    (dir, store)
}

fn request(id: &str) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        created_at: 1000,
        principal: "User::\"alice\"".into(),
        action: "read".into(),
        resource: "Database::\"orders\"".into(),
        scopes: vec![],
        duration_secs: 0,
        reason: String::new(),
        source_ip: "127.0.0.1".into(),
        decision: "deny".into(),
        status: "denied".into(),
        policies: vec![],
        policy_version: "v".into(),
        risk_score: 0,
        risk_signals: serde_json::json!([]),
        approvals_required: 0,
        expires_at: None,
        context: serde_json::json!({}),
        lifetime_secs: 0,
        granted_scopes: None,
        audience: None,
    }
}

fn audit(request_id: &str) -> AuditRecord {
    AuditRecord {
        at: 1000,
        kind: "decision".into(),
        request_id: Some(request_id.into()),
        subject: Some("alice".into()),
        data: serde_json::json!({"decision": "deny"}),
    }
}

#[tokio::test]
async fn writes_are_durable_and_read_back() {
    let (dir, store) = store().await;
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            Write::Audit(audit("r1")),
            Write::SourceSeen {
                principal: "User::\"alice\"".into(),
                source_ip: "10.0.0.1".into(),
                at: 1000,
            },
        ])
        .await
        .unwrap();
    let alice = "User::\"alice\"";
    let standing = store.standing(alice, 999, "10.0.0.1").await.unwrap();
    assert_eq!(
        standing,
        Standing {
            block: None,
            recent_denials: 1,
            seen_from: true
        }
    );
    let standing = store.standing(alice, 1001, "10.0.0.2").await.unwrap();
    assert_eq!((standing.recent_denials, standing.seen_from), (0, false));
    store
        .write(vec![Write::Revocation(RevocationRecord {
            id: "rev_1".into(),
            kind: "subject".into(),
            value: alice.into(),
            reason: "laptop stolen".into(),
            revoked_by: "bob".into(),
            revoked_at: 1000,
            expires_at: 5000,
            lifted_at: None,
        })])
        .await
        .unwrap();
    let standing = store.standing(alice, 999, "10.0.0.1").await.unwrap();
    assert_eq!(
        standing.block,
        Some(("rev_1".into(), "laptop stolen".into()))
    );
    assert_eq!((standing.recent_denials, standing.seen_from), (1, true));
    store
        .write(vec![Write::LiftRevocation {
            id: "rev_1".into(),
            at: 1001,
        }])
        .await
        .unwrap();
    let standing = store.standing(alice, 999, "10.0.0.1").await.unwrap();
    assert_eq!(standing.block, None);
    drop(store);
    let reopened = Store::open("", dir.path()).await.unwrap();
    let events = reopened.audit_events().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["decision"], "deny");
}

#[tokio::test]
async fn concurrent_writers_all_commit_and_a_bad_job_fails_alone() {
    let (_dir, store) = store().await;
    store
        .write(vec![Write::Request(Box::new(request("taken")))])
        .await
        .unwrap();
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = if i == 25 {
                "taken".to_owned()
            } else {
                format!("r{i}")
            };
            store
                .write(vec![
                    Write::Request(Box::new(request(&id))),
                    Write::Audit(audit(&id)),
                ])
                .await
        }));
    }
    let mut failed = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 25 {
            assert!(result.is_err(), "duplicate id must fail");
            failed += 1;
        } else {
            result.unwrap();
        }
    }
    assert_eq!(failed, 1);
    // The failed job's audit record was rolled back with its request.
    assert_eq!(store.audit_events().await.unwrap().len(), 49);
}

#[tokio::test]
async fn a_job_that_fails_after_auditing_leaves_the_chain_whole() {
    let (dir, store) = store().await;
    // Hold the write lock so that the jobs below queue up and commit as one batch.
    let lock = rusqlite::Connection::open(dir.path().join("jitgate.db")).unwrap();
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
    let (_dir, store) = store().await;
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            Write::Audit(audit("r1")),
        ])
        .await
        .unwrap();
    let update = sqlx::query("UPDATE audit_events SET type = 'x'")
        .execute(store.pool())
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_events")
        .execute(store.pool())
        .await;
    assert!(delete.is_err());
}

#[tokio::test]
async fn a_write_that_cannot_commit_is_an_error() {
    let (_dir, store) = store().await;
    store.check_writable().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER fail BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = store
        .write(vec![Write::Audit(audit("r1"))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[tokio::test]
async fn postgres_is_refused_with_a_clear_message() {
    let dir = tempfile::TempDir::new().unwrap();
    let err = Store::open("postgres://localhost/x", dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only SQLite"), "{err}");
}

/// Every part of the per-request standing query is an index lookup: the denial count reads
/// denials only, not every request of the principal in the window. Housekeeping's look for
/// expired requests reads pending ones only.
#[tokio::test]
async fn the_hot_queries_use_their_indexes() {
    let (_dir, store) = store().await;
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {STANDING}"))
            .bind("alice")
            .bind("User::\"alice\"")
            .bind(0)
            .bind("10.0.0.1")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("USING COVERING INDEX access_requests_denials")),
        "{plan:#?}"
    );
    assert!(
        plan.iter()
            .any(|step| step.contains("USING COVERING INDEX dry_run_denials_by_principal")),
        "{plan:#?}"
    );
    // The only scans are of the one-row `(SELECT 1)` the lookups hang off.
    assert!(
        plan.iter().all(|step| !step.starts_with("SCAN")
            || step == &"SCAN CONSTANT ROW"
            || step.starts_with("SCAN (subquery")),
        "{plan:#?}"
    );
    assert_eq!(
        plan.iter()
            .filter(|step| step.starts_with("SEARCH"))
            .count(),
        4,
        "{plan:#?}"
    );
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {EXPIRED_PENDING}"))
            .bind(0)
            .bind(500)
            .fetch_all(store.pool())
            .await
            .unwrap();
    let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
    assert_eq!(
        plan,
        ["SEARCH access_requests USING INDEX access_requests_pending (expires_at<?)"]
    );
}

/// Migration 0008: stored subjects become full principals. A subject block stored as a bare
/// id keeps blocking every principal that had that id, tokens name their request's principal,
/// duplicate revocations in force collapse to one, and revocations outlive the leeway.
#[tokio::test]
async fn migration_0008_makes_subjects_full_principals() {
    let dir = tempfile::TempDir::new().unwrap();
    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let name = entry.unwrap().file_name();
        if name.to_string_lossy().as_ref() < "0008" {
            std::fs::copy(shipped.join(&name), earlier.join(&name)).unwrap();
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("jitgate.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(earlier.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for (id, principal) in [
        ("r1", r#"User::"dep\"loyer""#),
        ("r2", r#"Service::"dep\"loyer""#),
        ("r3", r#"User::"carol""#),
    ] {
        sqlx::query(
            "INSERT INTO access_requests (id, created_at, principal, action, resource, scopes, \
             duration_secs, reason, source_ip, decision, status, policies, policy_version, \
             risk_score, risk_signals, approvals_required) \
             VALUES (?, 1, ?, 'read', 'Database::\"orders\"', '[]', 0, '', '127.0.0.1', \
             'allow', 'issued', '[]', 'v', 0, '[]', 0)",
        )
        .bind(id)
        .bind(principal)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO tokens (jti, request_id, subject, kid, scope, issued_at, expires_at) \
         VALUES ('j2', 'r2', 'dep\"loyer', 'k', '', 1, 100)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (id, kind, value, expires_at) in [
        ("rev_a", "subject", "dep\"loyer", 500),
        ("rev_b", "jti", "j2", 100),
        ("rev_c", "jti", "j2", 100),
        ("rev_d", "subject", "carol", 400),
        ("rev_e", "subject", "carol", 900),
    ] {
        sqlx::query(
            "INSERT INTO revocations (id, kind, value, reason, revoked_by, revoked_at, \
             expires_at) VALUES (?, ?, ?, 'r', 'User::\"sam\"', 1, ?)",
        )
        .bind(id)
        .bind(kind)
        .bind(value)
        .bind(expires_at)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = Store::open("", dir.path()).await.unwrap();
    let rows: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT id, kind, value, expires_at FROM revocations ORDER BY id")
            .fetch_all(store.pool())
            .await
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
