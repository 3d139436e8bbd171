//! Writes: groups, preconditions, races, the audit chain.

use serde_json::json;

use super::*;

pub(crate) async fn write_groups_commit_together_or_not_at_all(store: &Store) {
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            Write::Audit(audit("r1")),
        ])
        .await
        .unwrap();
    // Writes, then a precondition that fails: nothing of the group stays.
    let failed = store
        .write(vec![
            Write::Request(Box::new(request("r2"))),
            Write::Audit(audit("r2")),
            require("r1", "pending", 1000),
        ])
        .await;
    assert_eq!(conflict(failed), "denied");
    assert!(store.request("r2").await.unwrap().is_none());
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["decision"], "deny");
    let stored = store.request("r1").await.unwrap().unwrap();
    assert_eq!(
        (stored.record.status.as_str(), stored.decided_at),
        ("denied", None)
    );
}

pub(crate) async fn concurrent_jobs_commit_and_a_bad_one_fails_alone(store: &Store) {
    store
        .write(vec![Write::Request(Box::new(request("taken")))])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let id = if i == 25 {
            "taken".to_owned()
        } else {
            format!("r{i}")
        };
        tasks.push(tokio::spawn(async move {
            let writes = vec![
                Write::Request(Box::new(request(&id))),
                Write::Audit(audit(&id)),
            ];
            store.write(writes).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        assert_eq!(result.is_err(), i == 25, "job {i}: {result:?}");
    }
    // The failed job's audit record was rolled back with its request.
    assert_eq!(store.audit_events().await.unwrap().len(), 49);
    assert!(store.verify_audit().await.unwrap().is_ok());
}

pub(crate) async fn require_status_checks_the_effective_status(store: &Store) {
    store.write(vec![pending("p", 1, 2000)]).await.unwrap();
    store
        .write(vec![require("p", "pending", 1999)])
        .await
        .unwrap();
    let past_expiry = store.write(vec![require("p", "pending", 2000)]).await;
    assert_eq!(conflict(past_expiry), "expired");
    store
        .write(vec![require("p", "expired", 2000)])
        .await
        .unwrap();
    let missing = store.write(vec![require("nope", "pending", 0)]).await;
    assert_eq!(conflict(missing), "no such request");
    store
        .write(vec![Write::SetStatus {
            id: "p".into(),
            status: "cancelled".into(),
            at: 1500,
        }])
        .await
        .unwrap();
    let cancelled = store.write(vec![require("p", "pending", 1600)]).await;
    assert_eq!(conflict(cancelled), "cancelled");
    assert_eq!(
        store.request("p").await.unwrap().unwrap().decided_at,
        Some(1500)
    );
}

pub(crate) async fn an_approver_answers_once(store: &Store) {
    store.write(vec![pending("p", 2, 5000)]).await.unwrap();
    store.write(vec![approval("p", "bob")]).await.unwrap();
    let again = store.write(vec![approval("p", "bob")]).await;
    assert_eq!(conflict(again), "already answered by this approver");
    store.write(vec![approval("p", "carol")]).await.unwrap();
    let approvers: Vec<String> = store
        .approvals("p")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.approver)
        .collect();
    assert_eq!(approvers, ["User::\"bob\"", "User::\"carol\""]);
}

/// [`Write::RequireStageOpen`] refuses an approval once its stage has the quorum, whoever
/// gives it, and leaves the other stages alone; the stage of each answer is kept.
pub(crate) async fn a_stage_takes_no_approval_past_its_quorum(store: &Store) {
    store.write(vec![pending("p", 2, 5000)]).await.unwrap();
    let in_stage = |approver: &str, stage: &str| {
        vec![
            Write::RequireStageOpen {
                id: "p".into(),
                stage: stage.into(),
                required: 1,
            },
            Write::Approval(ApprovalRecord {
                request_id: "p".into(),
                approver: format!("User::\"{approver}\""),
                decision: "approve".into(),
                comment: String::new(),
                at: 1100,
                stage: stage.into(),
            }),
        ]
    };
    store.write(in_stage("bob", "lead")).await.unwrap();
    let late = store.write(in_stage("carol", "lead")).await;
    assert_eq!(conflict(late), STAGE_COMPLETE);
    store.write(in_stage("carol", "security")).await.unwrap();
    let stages: Vec<(String, String)> = store
        .approvals("p")
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.approver, a.stage))
        .collect();
    assert_eq!(
        stages,
        [
            ("User::\"bob\"".to_owned(), "lead".to_owned()),
            ("User::\"carol\"".to_owned(), "security".to_owned()),
        ]
    );
}

/// [`Write::AnnounceAtStageQuorum`] queues its announcement with the approval that gives the
/// stage its quorum, and with no other.
pub(crate) async fn the_approval_that_closes_a_stage_announces_the_next_once(store: &Store) {
    store.write(vec![pending("p", 3, 5000)]).await.unwrap();
    let approve = |approver: &str| {
        vec![
            Write::Approval(ApprovalRecord {
                request_id: "p".into(),
                approver: format!("User::\"{approver}\""),
                decision: "approve".into(),
                comment: String::new(),
                at: 1100,
                stage: "lead".into(),
            }),
            Write::AnnounceAtStageQuorum {
                id: "p".into(),
                stage: "lead".into(),
                required: 2,
                announce: vec![outbox(&format!("d-{approver}"), 10)],
            },
        ]
    };
    store.write(approve("bob")).await.unwrap();
    assert!(store.due_deliveries(i64::MAX, 10).await.unwrap().is_empty());
    store.write(approve("carol")).await.unwrap();
    store.write(approve("dan")).await.unwrap();
    let due: Vec<String> = (store
        .due_deliveries(i64::MAX, 10)
        .await
        .unwrap()
        .into_iter())
    .map(|d| d.delivery_id)
    .collect();
    assert_eq!(due, ["d-carol"]);
}

/// [`Write::ApproveAtQuorum`] approves only at the quorum, and queues its announcement then.
pub(crate) async fn approval_at_quorum_approves_and_announces_once(store: &Store) {
    store.write(vec![pending("p", 2, 5000)]).await.unwrap();
    let approve = |approver: &str| {
        vec![
            require("p", "pending", 1100),
            approval("p", approver),
            Write::ApproveAtQuorum {
                id: "p".into(),
                at: 1100,
                announce: vec![outbox(&format!("d-{approver}"), 10)],
            },
        ]
    };
    store.write(approve("bob")).await.unwrap();
    let stored = store.request("p").await.unwrap().unwrap();
    assert_eq!(stored.record.status, "pending");
    assert!(store.due_deliveries(i64::MAX, 10).await.unwrap().is_empty());
    store.write(approve("carol")).await.unwrap();
    let stored = store.request("p").await.unwrap().unwrap();
    assert_eq!(
        (stored.record.status.as_str(), stored.decided_at),
        ("approved", Some(1100))
    );
    let due = store.due_deliveries(i64::MAX, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery_id, "d-carol");
}

pub(crate) async fn two_approvers_racing_for_the_last_approval_one_wins(store: &Store) {
    for round in 0..10 {
        let id = format!("p{round}");
        store.write(vec![pending(&id, 1, 5000)]).await.unwrap();
        let racers = ["bob", "carol"].map(|approver| {
            let store = store.clone();
            let writes = approving(&id, approver);
            tokio::spawn(async move { store.write(writes).await })
        });
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(()) => won += 1,
                lost => assert_eq!(conflict(lost), "approved"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert_eq!(store.approvals(&id).await.unwrap().len(), 1);
    }
    assert_eq!(store.due_deliveries(i64::MAX, 100).await.unwrap().len(), 10);
}

pub(crate) async fn expire_marks_only_pending_requests_past_expiry(store: &Store) {
    store.write(vec![pending("p", 1, 2000)]).await.unwrap();
    let early = store
        .write(vec![Write::Expire {
            id: "p".into(),
            at: 1999,
        }])
        .await;
    assert_eq!(conflict(early), "not pending");
    store
        .write(vec![Write::Expire {
            id: "p".into(),
            at: 2500,
        }])
        .await
        .unwrap();
    let stored = store.request("p").await.unwrap().unwrap();
    assert_eq!(
        (stored.record.status.as_str(), stored.decided_at),
        ("expired", Some(2000))
    );
    let again = store
        .write(vec![Write::Expire {
            id: "p".into(),
            at: 2500,
        }])
        .await;
    assert_eq!(conflict(again), "not pending");
}

pub(crate) async fn the_chain_holds_after_many_concurrent_writes(store: &Store) {
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("r{i}");
            let mut writes = vec![Write::Audit(audit(&id)), Write::Audit(audit(&id))];
            if i % 5 == 0 {
                // Audits, then fails: its events must leave the chain with it.
                writes.push(require("missing", "pending", 1000));
            }
            store.write(writes).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().is_err(), i % 5 == 0);
    }
    let report = store.verify_audit().await.unwrap().unwrap();
    assert_eq!((report.events, report.unchained), (160, 0));
    let (seq, hash, kind) = store.audit_head().await.unwrap().unwrap();
    assert_eq!((seq, kind.as_str()), (160, "decision"));
    assert_eq!(report.head, Some((seq, hash.clone())));
    assert_eq!(store.audit_hash_at(seq).await.unwrap(), Some(hash));
    assert_eq!(store.audit_hash_at(seq + 1).await.unwrap(), None);
    assert_eq!(store.latest_signed_head().await.unwrap(), None);
    let head = AuditRecord {
        kind: crate::audit::HEAD_EVENT.into(),
        data: json!({"jws": "a.b.c"}),
        ..audit("head")
    };
    store.write(vec![Write::Audit(head)]).await.unwrap();
    assert_eq!(
        store.latest_signed_head().await.unwrap().as_deref(),
        Some("a.b.c")
    );
}

pub(crate) async fn a_head_is_signed_once_however_many_sign_it(store: &Store) {
    let head = |over: i64| {
        vec![
            Write::RequireNoSignedHeadAfter { seq: over },
            Write::Audit(AuditRecord {
                kind: crate::audit::HEAD_EVENT.into(),
                ..audit("head")
            }),
        ]
    };
    store.write(vec![Write::Audit(audit("r1"))]).await.unwrap();
    store.write(head(1)).await.unwrap();
    assert_eq!(
        conflict(store.write(head(1)).await),
        "a signed head is at 2"
    );
    // Other events in between do not matter; heads racing over one seq write one.
    store.write(vec![Write::Audit(audit("r3"))]).await.unwrap();
    store.write(vec![Write::Audit(audit("r4"))]).await.unwrap();
    let racers: Vec<_> = (0..5)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.write(head(3)).await })
        })
        .collect();
    let mut written = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(()) => written += 1,
            lost => assert_eq!(conflict(lost), "a signed head is at 5"),
        }
    }
    assert_eq!(written, 1);
    let kinds: Vec<String> = (store.audit_events().await.unwrap())
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "decision",
            "audit.head",
            "decision",
            "decision",
            "audit.head"
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
}

/// A value used once is refused the second time, in any job and alongside other writes,
/// until it expired and was pruned; the same value of another kind is another value.
pub(crate) async fn a_value_is_used_once(store: &Store) {
    let once = |kind: &str, id: &str, expires_at| Write::UseOnce {
        kind: kind.into(),
        id: id.into(),
        expires_at,
    };
    store
        .write(vec![once("client assertion", "j1", 100)])
        .await
        .unwrap();
    let again = store
        .write(vec![
            Write::SourceSeen {
                principal: ALICE.into(),
                source_ip: "192.0.2.1".into(),
                at: 50,
            },
            once("client assertion", "j1", 200),
        ])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // The job failed whole: its other write did not happen.
    let standing = store.standing(ALICE, 0, "192.0.2.1").await.unwrap();
    assert!(!standing.seen_from);
    store
        .write(vec![once("dpop proof", "j1", 100)])
        .await
        .unwrap();
    store
        .write(vec![Write::PruneUsedOnce { now: 100 }])
        .await
        .unwrap();
    let kept = store.write(vec![once("client assertion", "j1", 300)]).await;
    assert!(
        matches!(kept, Err(StoreError::Conflict(_))),
        "not expired yet: {kept:?}"
    );
    store
        .write(vec![Write::PruneUsedOnce { now: 101 }])
        .await
        .unwrap();
    store
        .write(vec![once("client assertion", "j1", 300)])
        .await
        .unwrap();
}

/// A sign-in under way is taken once and not after it expired; a session is found by its hash,
/// touched (never backwards), ended alone or with all its principal's, and pruned when idle or
/// past its end.
pub(crate) async fn a_sign_in_is_taken_once_and_sessions_end(store: &Store) {
    let login = LoginRecord {
        state_hash: "s1".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        next: "/ui/".into(),
        max_age: 0,
        created_at: 100,
        expires_at: 700,
    };
    store
        .write(vec![Write::Login(login.clone())])
        .await
        .unwrap();
    assert_eq!(store.login("s1").await.unwrap(), Some(login.clone()));
    let take = |at| {
        vec![Write::TakeLogin {
            state_hash: "s1".into(),
            at,
        }]
    };
    store.write(take(200)).await.unwrap();
    let again = store.write(take(200)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let late = LoginRecord {
        state_hash: "s2".into(),
        ..login
    };
    store.write(vec![Write::Login(late)]).await.unwrap();
    let expired = store
        .write(vec![Write::TakeLogin {
            state_hash: "s2".into(),
            at: 700,
        }])
        .await;
    assert!(
        matches!(expired, Err(StoreError::Conflict(_))),
        "{expired:?}"
    );

    let session = |id: &str, principal: &str| SessionRecord {
        id_hash: id.into(),
        principal: principal.into(),
        caller: "{}".into(),
        created_at: 100,
        last_seen: 100,
        expires_at: 10_000,
    };
    store
        .write(vec![
            Write::Session(session("a", ALICE)),
            Write::Session(session("b", ALICE)),
            Write::Session(session("c", "User::\"bob\"")),
            Write::Session(session("d", "User::\"carol\"")),
        ])
        .await
        .unwrap();
    let touch = |at| Write::TouchSession {
        id_hash: "c".into(),
        at,
    };
    store.write(vec![touch(500), touch(300)]).await.unwrap();
    assert_eq!(store.session("c").await.unwrap().unwrap().last_seen, 500);
    store
        .write(vec![Write::EndSessionsOf {
            principal: ALICE.into(),
        }])
        .await
        .unwrap();
    assert_eq!(store.session("a").await.unwrap(), None);
    assert_eq!(store.session("b").await.unwrap(), None);
    store
        .write(vec![Write::EndSession {
            id_hash: "d".into(),
        }])
        .await
        .unwrap();
    assert_eq!(store.session("d").await.unwrap(), None);
    // Idle since before 400 goes; "c" was seen at 500 and stays until its end.
    store
        .write(vec![
            Write::Session(session("e", ALICE)),
            Write::PruneSessions {
                now: 1_000,
                idle_before: 400,
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.session("e").await.unwrap(), None);
    assert!(store.session("c").await.unwrap().is_some());
    store
        .write(vec![Write::PruneSessions {
            now: 10_000,
            idle_before: 0,
        }])
        .await
        .unwrap();
    assert_eq!(store.session("c").await.unwrap(), None);
    assert_eq!(store.login("s2").await.unwrap(), None, "pruned");
}
