//! Reads: revocations and the feed, standing, tokens, pagination, expiry, the outbox.

use serde_json::json;

use super::*;
use crate::decision::EntityRef;

pub(crate) async fn revocations_are_one_in_force_and_refuse_tokens(store: &Store) {
    store.write(vec![pending("r1", 0, 9000)]).await.unwrap();
    let mint = || {
        vec![
            Write::RequireNotRevoked {
                subject: ALICE.into(),
                request_id: "r1".into(),
            },
            Write::Token(token("j1", "r1", "k1", 3000)),
        ]
    };
    let request_revoked = revocation("rev_r", "request_id", "r1", 3000);
    store
        .write(vec![Write::Revocation(request_revoked.clone())])
        .await
        .unwrap();
    match store.write(mint()).await {
        Err(StoreError::Revoked(reason)) => assert_eq!(reason, "reason rev_r"),
        other => panic!("expected revoked, got {other:?}"),
    }
    assert!(store.token("j1").await.unwrap().is_none());
    let repeat = store
        .write(vec![Write::Revocation(revocation(
            "rev_r2",
            "request_id",
            "r1",
            3000,
        ))])
        .await;
    assert_eq!(conflict(repeat), "already revoked");
    let in_force = store.revocation_in_force("request_id", "r1").await.unwrap();
    assert_eq!(in_force.unwrap().id, "rev_r");
    assert_eq!(
        store.revocation("rev_r").await.unwrap().unwrap().reason,
        "reason rev_r"
    );
    let covering = store
        .revocation_covering("j9", "r1", ALICE, 0)
        .await
        .unwrap();
    assert_eq!(covering.unwrap().id, "rev_r");
    assert!(
        store
            .revocation_covering("j9", "r9", ALICE, 0)
            .await
            .unwrap()
            .is_none()
    );
    store
        .write(vec![Write::Revocation(revocation(
            "rev_j", "jti", "j9", 3000,
        ))])
        .await
        .unwrap();
    assert!(
        store
            .revocation_covering("j9", "r9", ALICE, 0)
            .await
            .unwrap()
            .is_some()
    );
    // A subject block covers tokens issued up to it, not after.
    store
        .write(vec![Write::Revocation(revocation(
            "rev_s", "subject", ALICE, 3000,
        ))])
        .await
        .unwrap();
    let before = store
        .revocation_covering("j8", "r8", ALICE, 999)
        .await
        .unwrap();
    assert_eq!(before.unwrap().id, "rev_s");
    assert!(
        store
            .revocation_covering("j8", "r8", ALICE, 1001)
            .await
            .unwrap()
            .is_none()
    );
}

pub(crate) async fn lifting_a_subject_block_lets_tokens_through(store: &Store) {
    store
        .write(vec![Write::Revocation(revocation(
            "rev_s", "subject", ALICE, 3000,
        ))])
        .await
        .unwrap();
    let blocked = store
        .write(vec![Write::RequireNotRevoked {
            subject: ALICE.into(),
            request_id: "r1".into(),
        }])
        .await;
    assert!(
        matches!(blocked, Err(StoreError::Revoked(_))),
        "{blocked:?}"
    );
    assert_eq!(
        store.subject_block(ALICE).await.unwrap().unwrap().id,
        "rev_s"
    );
    let lift = || {
        vec![Write::LiftRevocation {
            id: "rev_s".into(),
            at: 1500,
        }]
    };
    store.write(lift()).await.unwrap();
    assert_eq!(
        conflict(store.write(lift()).await),
        "not an active subject revocation"
    );
    assert!(store.subject_block(ALICE).await.unwrap().is_none());
    assert_eq!(
        store.revocation("rev_s").await.unwrap().unwrap().lifted_at,
        Some(1500)
    );
    store
        .write(vec![Write::RequireNotRevoked {
            subject: ALICE.into(),
            request_id: "r1".into(),
        }])
        .await
        .unwrap();
    // Only subject blocks are lifted.
    store
        .write(vec![Write::Revocation(revocation(
            "rev_j", "jti", "j1", 3000,
        ))])
        .await
        .unwrap();
    let lift_jti = store
        .write(vec![Write::LiftRevocation {
            id: "rev_j".into(),
            at: 1500,
        }])
        .await;
    assert_eq!(conflict(lift_jti), "not an active subject revocation");
}

pub(crate) async fn the_feed_pages_by_position_and_drops_what_expired(store: &Store) {
    for (i, expires_at) in [3000, 1500, 3000, 3000].into_iter().enumerate() {
        let record = revocation(&format!("rev_{i}"), "jti", &format!("j{i}"), expires_at);
        store.write(vec![Write::Revocation(record)]).await.unwrap();
    }
    let ids = |page: &[(i64, RevocationRecord)]| -> Vec<String> {
        page.iter().map(|(_, r)| r.id.clone()).collect()
    };
    let all = store.revocations_after(0, 1000, 100).await.unwrap();
    assert_eq!(ids(&all), ["rev_0", "rev_1", "rev_2", "rev_3"]);
    assert!(all.windows(2).all(|pair| pair[0].0 < pair[1].0), "{all:?}");
    let first = store.revocations_after(0, 2000, 2).await.unwrap();
    assert_eq!(ids(&first), ["rev_0", "rev_2"]);
    let next = store.revocations_after(first[1].0, 2000, 2).await.unwrap();
    assert_eq!(ids(&next), ["rev_3"]);
    assert!(
        store
            .revocations_after(next[0].0, 2000, 2)
            .await
            .unwrap()
            .is_empty()
    );
    // Pruning forgets what expired, but not a subject block in force.
    store
        .write(vec![Write::Revocation(revocation(
            "rev_s", "subject", ALICE, 1500,
        ))])
        .await
        .unwrap();
    store
        .write(vec![Write::PruneRevocations { now: 2000 }])
        .await
        .unwrap();
    assert!(store.revocation("rev_1").await.unwrap().is_none());
    assert!(store.revocation("rev_s").await.unwrap().is_some());
    let after_prune = store.revocations_after(0, 0, 100).await.unwrap();
    assert_eq!(ids(&after_prune), ["rev_0", "rev_2", "rev_3", "rev_s"]);
    // New entries come after every position handed out.
    store
        .write(vec![Write::Revocation(revocation(
            "rev_4", "jti", "j4", 3000,
        ))])
        .await
        .unwrap();
    let newest = store.revocations_after(all[3].0, 2000, 10).await.unwrap();
    assert_eq!(ids(&newest), ["rev_4"]);
}

pub(crate) async fn standing_counts_denials_and_sources(store: &Store) {
    let seen = |ip: &str, at: i64| Write::SourceSeen {
        principal: ALICE.into(),
        source_ip: ip.into(),
        at,
    };
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            seen("10.0.0.1", 1000),
            seen("10.0.0.1", 1200),
            Write::DryRunDenied {
                principal: ALICE.into(),
                at: 1100,
            },
        ])
        .await
        .unwrap();
    let standing = store.standing(ALICE, 999, "10.0.0.1").await.unwrap();
    let expected = Standing {
        block: None,
        recent_denials: 2,
        seen_from: true,
    };
    assert_eq!(standing, expected);
    let later = store.standing(ALICE, 1001, "10.0.0.2").await.unwrap();
    assert_eq!((later.recent_denials, later.seen_from), (1, false));
    store
        .write(vec![Write::PruneDryRunDenials { before: 1101 }])
        .await
        .unwrap();
    assert_eq!(
        store.standing(ALICE, 0, "x").await.unwrap().recent_denials,
        1
    );
    store
        .write(vec![Write::Revocation(revocation(
            "rev_s", "subject", ALICE, 3000,
        ))])
        .await
        .unwrap();
    let blocked = store.standing(ALICE, 0, "10.0.0.1").await.unwrap();
    assert_eq!(blocked.block, Some(("rev_s".into(), "reason rev_s".into())));
    let bob = store
        .standing("User::\"bob\"", 0, "10.0.0.1")
        .await
        .unwrap();
    assert_eq!(
        bob,
        Standing {
            block: None,
            recent_denials: 0,
            seen_from: false
        }
    );
}

pub(crate) async fn tokens_are_found_by_jti_request_subject_and_key(store: &Store) {
    assert!(store.latest_expiry_by_kid().await.unwrap().is_empty());
    assert_eq!(
        store.latest_token_expiry(Some("r1"), None).await.unwrap(),
        None
    );
    store
        .write(vec![
            Write::Request(Box::new(request("r1"))),
            Write::Request(Box::new(request("r2"))),
            Write::Token(token("j1", "r1", "k1", 2000)),
            Write::Token(token("j2", "r1", "k2", 2500)),
            Write::Token(token("j3", "r2", "k1", 3000)),
        ])
        .await
        .unwrap();
    let j2 = store.token("j2").await.unwrap().unwrap();
    assert_eq!(
        (j2.request_id.as_str(), j2.kid.as_str(), j2.expires_at),
        ("r1", "k2", 2500)
    );
    assert!(store.token("j4").await.unwrap().is_none());
    let by_kid = store.latest_expiry_by_kid().await.unwrap();
    assert_eq!((by_kid["k1"], by_kid["k2"], by_kid.len()), (3000, 2500, 2));
    assert_eq!(
        store.latest_token_expiry(Some("r1"), None).await.unwrap(),
        Some(2500)
    );
    assert_eq!(
        store.latest_token_expiry(None, Some(ALICE)).await.unwrap(),
        Some(3000)
    );
    assert_eq!(
        store
            .latest_token_expiry(None, Some("User::\"bob\""))
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn pending_requests_page_by_position(store: &Store) {
    for (id, expires_at) in [("p1", 3000), ("p2", 1500), ("p3", 3000), ("p4", 3000)] {
        store.write(vec![pending(id, 1, expires_at)]).await.unwrap();
    }
    store
        .write(vec![Write::Request(Box::new(request("denied")))])
        .await
        .unwrap();
    store
        .write(vec![Write::SetStatus {
            id: "p4".into(),
            status: "cancelled".into(),
            at: 1200,
        }])
        .await
        .unwrap();
    assert_eq!(store.pending_requests(2000).await.unwrap(), 2);
    assert_eq!(store.pending_requests(1000).await.unwrap(), 3);
    let ids = |page: &[(i64, StoredRequest)]| -> Vec<String> {
        page.iter().map(|(_, r)| r.record.id.clone()).collect()
    };
    let first = store.pending_page(2000, 0, 1).await.unwrap();
    assert_eq!(ids(&first), ["p1"]);
    let rest = store.pending_page(2000, first[0].0, 10).await.unwrap();
    assert_eq!(ids(&rest), ["p3"]);
    assert!(rest[0].0 > first[0].0);
    let stored = &rest[0].1.record;
    assert_eq!(
        stored.granted_scopes.as_deref(),
        Some(&["read".to_owned()][..])
    );
    assert_eq!(
        stored.audience.as_deref(),
        Some(&["db-proxy".to_owned()][..])
    );
    assert!(
        store
            .pending_page(2000, rest[0].0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn requests_awaiting_review_page_by_position(store: &Store) {
    for id in ["b1", "b2", "b3"] {
        let mut record = request(id);
        record.status = "needs_review".into();
        store
            .write(vec![Write::Request(Box::new(record))])
            .await
            .unwrap();
    }
    store.write(vec![pending("p1", 1, 3000)]).await.unwrap();
    store
        .write(vec![Write::SetStatus {
            id: "b2".into(),
            status: "reviewed".into(),
            at: 1200,
        }])
        .await
        .unwrap();
    let ids = |page: &[(i64, StoredRequest)]| -> Vec<String> {
        page.iter().map(|(_, r)| r.record.id.clone()).collect()
    };
    let first = store.review_page(0, 1).await.unwrap();
    assert_eq!(ids(&first), ["b1"]);
    let rest = store.review_page(first[0].0, 10).await.unwrap();
    assert_eq!(ids(&rest), ["b3"]);
    assert!(store.review_page(rest[0].0, 10).await.unwrap().is_empty());
}

pub(crate) async fn audit_pages_filter_and_continue(store: &Store) {
    let event = |request_id: &str, subject: &str, kind: &str, at: i64| {
        Write::Audit(AuditRecord {
            at,
            kind: kind.into(),
            request_id: Some(request_id.into()),
            subject: Some(subject.into()),
            data: json!({}),
        })
    };
    store
        .write(vec![
            event("r1", ALICE, "decision", 100),
            event("r1", ALICE, "token.issued", 101),
            // Written before subjects were full principals: the bare id.
            event("r2", "alice", "decision", 102),
            event("r3", "Service::\"alice\"", "decision", 103),
            event("r4", "User::\"bob\"", "decision", 104),
        ])
        .await
        .unwrap();
    let page = |filter: AuditFilter, after: i64, limit: i64| async move {
        let events = store.audit_page(&filter, after, limit).await.unwrap();
        events.into_iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(page(AuditFilter::default(), 0, 10).await, [1, 2, 3, 4, 5]);
    assert_eq!(page(AuditFilter::default(), 2, 2).await, [3, 4]);
    let by_request = AuditFilter {
        request_id: Some("r1".into()),
        ..AuditFilter::default()
    };
    assert_eq!(page(by_request, 0, 10).await, [1, 2]);
    let by_subject = AuditFilter {
        subject: Some(EntityRef::new("User", "alice")),
        ..AuditFilter::default()
    };
    assert_eq!(page(by_subject, 0, 10).await, [1, 2, 3]);
    let by_kind_and_time = AuditFilter {
        kind: Some("decision".into()),
        since: Some(101),
        until: Some(104),
        ..AuditFilter::default()
    };
    assert_eq!(page(by_kind_and_time, 0, 10).await, [3, 4]);
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[2].subject.as_deref(), Some("alice"));
}

pub(crate) async fn expired_pending_lists_oldest_first(store: &Store) {
    for (id, expires_at) in [("p1", 1500), ("p2", 1200), ("p3", 3000), ("p4", 1300)] {
        store.write(vec![pending(id, 1, expires_at)]).await.unwrap();
    }
    store
        .write(vec![Write::SetStatus {
            id: "p4".into(),
            status: "denied".into(),
            at: 1100,
        }])
        .await
        .unwrap();
    assert_eq!(store.expired_pending(2000, 10).await.unwrap(), ["p2", "p1"]);
    assert_eq!(store.expired_pending(2000, 1).await.unwrap(), ["p2"]);
    assert!(store.expired_pending(1100, 10).await.unwrap().is_empty());
    let stored = store.request("p2").await.unwrap().unwrap().record;
    assert_eq!(
        effective_status(&stored.status, stored.expires_at, 1199),
        "pending"
    );
    assert_eq!(
        effective_status(&stored.status, stored.expires_at, 1200),
        "expired"
    );
    assert_eq!(effective_status("denied", Some(0), 1200), "denied");
}

pub(crate) async fn the_outbox_delivers_retries_and_forgets(store: &Store) {
    assert_eq!(store.next_delivery_ms().await.unwrap(), None);
    store
        .write(vec![
            Write::Outbox(outbox("d1", 100)),
            Write::Outbox(outbox("d2", 50)),
            Write::Outbox(outbox("d3", 200)),
        ])
        .await
        .unwrap();
    assert_eq!(store.next_delivery_ms().await.unwrap(), Some(50));
    let due = store.due_deliveries(150, 10).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, ["d2", "d1"]);
    assert_eq!(
        (due[0].attempts, due[0].body.as_str()),
        (0, "{\"id\":\"d2\"}")
    );
    let (d2, d1) = (due[0].id, due[1].id);
    store
        .write(vec![
            Write::DeliveryRetry {
                id: d2,
                next_attempt_ms: 500,
                error: "503".into(),
            },
            Write::DeliveryFinished {
                id: d1,
                failed: false,
                at_ms: 150,
                error: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.next_delivery_ms().await.unwrap(), Some(200));
    let due = store.due_deliveries(600, 10).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, ["d3", "d2"]);
    assert_eq!(due[1].attempts, 1);
    store
        .write(vec![
            Write::DeliveryFinished {
                id: d2,
                failed: true,
                at_ms: 700,
                error: Some("gave up".into()),
            },
            Write::PruneDeliveries { before_ms: 600 },
        ])
        .await
        .unwrap();
    assert_eq!(store.due_deliveries(i64::MAX, 10).await.unwrap().len(), 1);
    assert_eq!(store.next_delivery_ms().await.unwrap(), Some(200));
}

pub(crate) async fn a_delivery_is_claimed_once_until_its_lease_ends(store: &Store) {
    let queued: Vec<Write> = (0..20)
        .map(|i| Write::Outbox(outbox(&format!("d{i:02}"), 100)))
        .collect();
    store.write(queued).await.unwrap();
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_deliveries(150, 1_000, 8).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for claim in claims {
        let taken = claim.await.unwrap().unwrap();
        claimed.extend(taken.into_iter().map(|d| (d.delivery_id, d.id)));
    }
    claimed.sort();
    claimed.dedup();
    assert_eq!(
        claimed.len(),
        20,
        "each delivery to one claimant: {claimed:?}"
    );
    // Nothing is due again while the leases last; then everything not recorded is.
    assert!(
        store
            .claim_deliveries(1_149, 1_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_delivery_ms().await.unwrap(), Some(1_150));
    store
        .write(vec![Write::DeliveryFinished {
            id: claimed[0].1,
            failed: false,
            at_ms: 200,
            error: None,
        }])
        .await
        .unwrap();
    let again = store.claim_deliveries(1_150, 1_000, 100).await.unwrap();
    assert_eq!(again.len(), 19);
    assert!(again.iter().all(|d| d.delivery_id != claimed[0].0));
}

pub(crate) async fn heartbeats_list_the_replicas_seen_lately(store: &Store) {
    let replica = |id: &str, policy_version: &str, last_seen| ReplicaRecord {
        id: id.into(),
        version: "0.1.0".into(),
        policy_version: policy_version.into(),
        started_at: 100,
        last_seen,
    };
    let beat = |replica, forget_before| Write::Heartbeat {
        replica,
        forget_before,
    };
    store
        .write(vec![beat(replica("a", "v1", 1000), 0)])
        .await
        .unwrap();
    store
        .write(vec![beat(replica("b", "v1", 1010), 0)])
        .await
        .unwrap();
    store
        .write(vec![beat(replica("a", "v2", 1020), 0)])
        .await
        .unwrap();
    let seen = store.replicas(1005).await.unwrap();
    assert_eq!(seen, [replica("a", "v2", 1020), replica("b", "v1", 1010)]);
    assert_eq!(
        store.replicas(1015).await.unwrap(),
        [replica("a", "v2", 1020)]
    );
    store
        .write(vec![beat(replica("c", "v2", 2000), 1015)])
        .await
        .unwrap();
    let ids: Vec<String> = (store.replicas(0).await.unwrap())
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["a", "c"], "b, not seen since 1015, is forgotten");
}

pub(crate) async fn rate_totals_sum_what_the_other_replicas_counted(store: &Store) {
    let report = |replica: &str, totals: &[(&str, i64)], at: i64| Write::RateTotals {
        replica: replica.into(),
        kind: "requests".into(),
        totals: (totals.iter())
            .map(|(principal, total)| ((*principal).to_owned(), *total))
            .collect(),
        at,
        forget_before: at - 60,
    };
    let others = |replica: &'static str| {
        let store = store.clone();
        async move {
            store
                .rate_totals_of_others("requests", replica, 0)
                .await
                .unwrap()
        }
    };
    let pair = |principal: &str, total: i64| (principal.to_owned(), total);
    store
        .write(vec![report("a", &[("alice", 3), ("bob", 1)], 1000)])
        .await
        .unwrap();
    store
        .write(vec![report("b", &[("alice", 4)], 1001)])
        .await
        .unwrap();
    store
        .write(vec![report("c", &[("alice", 5)], 1001)])
        .await
        .unwrap();
    assert_eq!(others("a").await, [pair("alice", 9)]);
    assert_eq!(others("b").await, [pair("alice", 8), pair("bob", 1)]);
    let operations = store.rate_totals_of_others("operations", "a", 0).await;
    assert!(operations.unwrap().is_empty(), "each limit apart");
    // A zero removes the replica's count; reports not refreshed for a minute are forgotten.
    store
        .write(vec![report("b", &[("alice", 0)], 1002)])
        .await
        .unwrap();
    assert_eq!(others("a").await, [pair("alice", 5)]);
    store.write(vec![report("c", &[], 1070)]).await.unwrap();
    assert!(others("z").await.is_empty(), "{:?}", others("z").await);
}
