//! The backend conformance suite: what every store backend must do, through [`Store`] alone.
//!
//! Each case is a function of a fresh, empty store. [`suite!`] turns them into tests for a
//! backend, given an async function that opens a fresh store and returns it with whatever must
//! outlive it (a temporary directory, a schema to drop), or `None` when the backend cannot be
//! reached here (the test then passes having said so): `conformance::suite!(open)`.

use serde_json::json;

use super::*;

/// One `#[tokio::test]` per case of the suite, each on a store from `$open`.
macro_rules! suite {
    (@cases $open:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((_keep, store)) = $open().await else {
                    return;
                };
                $crate::store::conformance::$case(&store).await;
            }
        )+
    };
    ($open:path) => {
        $crate::store::conformance::suite!(@cases $open;
            write_groups_commit_together_or_not_at_all,
            concurrent_jobs_commit_and_a_bad_one_fails_alone,
            require_status_checks_the_effective_status,
            an_approver_answers_once,
            a_stage_takes_no_approval_past_its_quorum,
            the_approval_that_closes_a_stage_announces_the_next_once,
            approval_at_quorum_approves_and_announces_once,
            two_approvers_racing_for_the_last_approval_one_wins,
            expire_marks_only_pending_requests_past_expiry,
            revocations_are_one_in_force_and_refuse_tokens,
            lifting_a_subject_block_lets_tokens_through,
            the_feed_pages_by_position_and_drops_what_expired,
            the_chain_holds_after_many_concurrent_writes,
            standing_counts_denials_and_sources,
            tokens_are_found_by_jti_request_subject_and_key,
            pending_requests_page_by_position,
            requests_awaiting_review_page_by_position,
            audit_pages_filter_and_continue,
            expired_pending_lists_oldest_first,
            the_outbox_delivers_retries_and_forgets,
            a_head_is_signed_once_however_many_sign_it,
            a_delivery_is_claimed_once_until_its_lease_ends,
            heartbeats_list_the_replicas_seen_lately,
            rate_totals_sum_what_the_other_replicas_counted,
            a_value_is_used_once,
            a_sign_in_is_taken_once_and_sessions_end,
        );
    };
}
pub(crate) use suite;

mod reads;
mod writes;

pub(crate) use reads::*;
pub(crate) use writes::*;

pub(super) const ALICE: &str = "User::\"alice\"";

/// A denied request `id` by alice at 1000.
pub(crate) fn request(id: &str) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        created_at: 1000,
        principal: ALICE.into(),
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
        risk_signals: json!([]),
        approvals_required: 0,
        expires_at: None,
        context: json!({}),
        lifetime_secs: 0,
        granted_scopes: None,
        audience: None,
        stages: serde_json::Value::Null,
        not_before: None,
        extends: None,
        extended_secs: None,
    }
}

/// A request `id` waiting for `approvals` approvals until `expires_at`.
pub(super) fn pending(id: &str, approvals: i64, expires_at: i64) -> Write {
    Write::Request(Box::new(RequestRecord {
        decision: "escalate".into(),
        status: "pending".into(),
        approvals_required: approvals,
        expires_at: Some(expires_at),
        granted_scopes: Some(vec!["read".into()]),
        audience: Some(vec!["db-proxy".into()]),
        stages: serde_json::Value::Null,
        not_before: None,
        extends: None,
        extended_secs: None,
        ..request(id)
    }))
}

/// A decision event of request `id`.
pub(crate) fn audit(request_id: &str) -> AuditRecord {
    AuditRecord {
        at: 1000,
        kind: "decision".into(),
        request_id: Some(request_id.into()),
        subject: Some(ALICE.into()),
        data: json!({"decision": "deny"}),
    }
}

pub(super) fn approval(request_id: &str, approver: &str) -> Write {
    Write::Approval(ApprovalRecord {
        request_id: request_id.into(),
        approver: format!("User::\"{approver}\""),
        decision: "approve".into(),
        comment: String::new(),
        at: 1100,
        stage: "default".into(),
    })
}

pub(super) fn revocation(id: &str, kind: &str, value: &str, expires_at: i64) -> RevocationRecord {
    RevocationRecord {
        id: id.into(),
        kind: kind.into(),
        value: value.into(),
        reason: format!("reason {id}"),
        revoked_by: "User::\"sam\"".into(),
        revoked_at: 1000,
        expires_at,
        lifted_at: None,
    }
}

pub(super) fn token(jti: &str, request_id: &str, kid: &str, expires_at: i64) -> TokenRecord {
    TokenRecord {
        jti: jti.into(),
        request_id: request_id.into(),
        subject: ALICE.into(),
        kid: kid.into(),
        scope: "read".into(),
        issued_at: 1000,
        expires_at,
    }
}

pub(super) fn outbox(delivery_id: &str, created_ms: i64) -> OutboxRecord {
    OutboxRecord {
        delivery_id: delivery_id.into(),
        hook: "chat".into(),
        event: "request.pending".into(),
        request_id: Some("r1".into()),
        body: format!("{{\"id\":\"{delivery_id}\"}}"),
        created_ms,
    }
}

/// What an approver's answer that may complete the quorum of `id` writes (as the core does).
pub(crate) fn approving(id: &str, approver: &str) -> Vec<Write> {
    vec![
        require(id, "pending", 1100),
        approval(id, approver),
        Write::ApproveAtQuorum {
            id: id.into(),
            at: 1100,
            announce: vec![outbox(&format!("{id}-{approver}"), 10)],
        },
    ]
}

pub(super) fn require(id: &str, status: &str, at: i64) -> Write {
    Write::RequireStatus {
        id: id.into(),
        status: status.into(),
        at,
    }
}

/// The conflict `result` is, or a panic naming what it is instead.
pub(super) fn conflict(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(status)) => status,
        other => panic!("expected a conflict, got {other:?}"),
    }
}
