//! Escalated requests (DESIGN §4): reading one, listing those a caller may approve, approving,
//! denying, cancelling, and an administrator's review of break-glass access. Who may approve is
//! Cedar's `approve` action; nobody approves, denies or reviews their own request.

use serde_json::{Map, Value, json};

use super::answer::{PendingPage, RequestView};
use super::refusal::forbidden;
use super::stages;
use super::{Answer, ApiError, App, AuditKind, RequestStatus};
use crate::decision::{DEFAULT_STAGE, DecisionContext, DecisionRequest, EntityRef, Outcome, Stage};
use crate::identity::Caller;
use crate::notify::Event;
use crate::policy::PolicyPack;
use crate::store::{ApprovalRecord, AuditRecord, STAGE_COMPLETE, StoreError, StoredRequest, Write};

const MAX_COMMENT_CHARS: usize = 1_000;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;
/// Pending rows read from the store at a time.
const SCAN_BATCH: i64 = 200;

/// The stored request `id`; 404 when there is none.
pub(super) async fn load(app: &App, id: &str) -> Result<StoredRequest, ApiError> {
    app.store
        .request(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no access request `{id}`")))
}

/// `request` with its answers, as it stands now.
async fn view(app: &App, request: &StoredRequest) -> Result<RequestView, ApiError> {
    let approvals = app.store.approvals(&request.record.id).await?;
    Ok(RequestView::new(request, approvals, app.now_stored()))
}

/// The stage of `request` approvers act in now, given its `approvals`: the first without its
/// quorum (the last one once all have it).
fn acting_stage(request: &StoredRequest, approvals: &[ApprovalRecord]) -> Stage {
    let plan = stages::plan(&request.record);
    stages::open_stage(&plan, approvals)
        .or(plan.last())
        .cloned()
        .unwrap_or_else(|| Stage {
            name: DEFAULT_STAGE.to_owned(),
            required: 1,
        })
}

/// Whether Cedar lets `caller` approve `request` in `stage` (never their own).
fn may_approve(
    pack: &PolicyPack,
    app: &App,
    caller: &Caller,
    (request, stage): (&StoredRequest, &str),
) -> bool {
    let r = &request.record;
    if caller.principal.to_string() == r.principal {
        return false;
    }
    let Ok(resource) = r.resource.parse::<EntityRef>() else {
        return false;
    };
    let mut context = Map::new();
    context.insert("request_id".into(), json!(r.id));
    context.insert("requester".into(), json!(r.principal));
    context.insert("requested_action".into(), json!(r.action));
    context.insert("risk_score".into(), json!(r.risk_score));
    context.insert("reason".into(), json!(r.reason));
    context.insert("stage".into(), json!(stage));
    // How long ago the approver signed in, so a policy may ask for a fresh sign-in.
    let now = app.now();
    let auth_age = caller.auth_time.map_or(0, |at| now.saturating_sub(at));
    context.insert(
        "auth_age_secs".into(),
        json!(i64::try_from(auth_age).unwrap_or(i64::MAX)),
    );
    let question = DecisionRequest {
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        action: "approve".into(),
        resource,
        context: DecisionContext::Other(context),
        scopes: Vec::new(),
        duration: None,
    };
    crate::decision::decide(pack, &question, &app.config.grant_defaults())
        .is_ok_and(|d| d.outcome == Outcome::Allow)
}

/// Request `id` for its requester, its approvers and administrators; 404 for anyone else
/// (whether a request exists is not for others to learn).
pub async fn get(app: &App, caller: &Caller, id: &str) -> Result<RequestView, ApiError> {
    let request = load(app, id).await?;
    let pack = app.policies.current();
    let approvals = app.store.approvals(id).await?;
    let me = caller.principal.to_string();
    let stage = acting_stage(&request, &approvals);
    let visible = me == request.record.principal
        || approvals.iter().any(|a| a.approver == me)
        || may_approve(&pack, app, caller, (&request, &stage.name))
        || app.may_administer(caller);
    if !visible {
        return Err(ApiError::NotFound(format!("no access request `{id}`")));
    }
    Ok(RequestView::new(&request, approvals, app.now_stored()))
}

/// Whether `caller` may follow `request` live: its requester, one who answered it, or while it
/// is pending one who may approve it in its open stage.
pub async fn may_follow(
    app: &App,
    caller: &Caller,
    request: &StoredRequest,
) -> Result<bool, ApiError> {
    let me = caller.principal.to_string();
    if me == request.record.principal {
        return Ok(true);
    }
    let approvals = app.store.approvals(&request.record.id).await?;
    if approvals.iter().any(|a| a.approver == me) {
        return Ok(true);
    }
    let pending = crate::store::effective_status(
        &request.record.status,
        request.record.expires_at,
        app.now_stored(),
    ) == RequestStatus::Pending.as_str();
    let stage = acting_stage(request, &approvals);
    Ok(pending && may_approve(&app.policies.current(), app, caller, (request, &stage.name)))
}

/// Which page of pending requests to list.
#[derive(Debug, Clone, Default)]
pub struct PendingQuery {
    pub limit: Option<usize>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// The pending requests `caller` may approve, oldest first, a page at a time. Which rows the
/// caller may approve is Cedar's to say, row by row; one call checks at most
/// `rate_limit.pending_list_scan` rows, so a page may be short (even empty) with a `next`.
pub async fn pending(
    app: &App,
    caller: &Caller,
    query: PendingQuery,
) -> Result<PendingPage, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut after: i64 = match &query.cursor {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| ApiError::InvalidRequest("malformed cursor".into()))?,
    };
    let now = app.now_stored();
    let pack = app.policies.current();
    let mut unscanned = i64::from(app.config.rate_limit.pending_list_scan);
    let mut page = Vec::new();
    let mut last_included = after;
    let mut next = None;
    'scan: loop {
        let batch_size = unscanned.min(SCAN_BATCH);
        let batch = app.store.pending_page(now, after, batch_size).await?;
        let exhausted = i64::try_from(batch.len()).map_or(true, |n| n < batch_size);
        for (position, request) in batch {
            let approvals = app.store.approvals(&request.record.id).await?;
            let stage = acting_stage(&request, &approvals);
            if may_approve(&pack, app, caller, (&request, &stage.name)) {
                if page.len() == limit {
                    next = Some(last_included.to_string());
                    break 'scan;
                }
                last_included = position;
                page.push(RequestView::new(&request, approvals, now));
            }
            after = position;
            unscanned -= 1;
        }
        if exhausted {
            break;
        }
        if unscanned == 0 {
            next = Some(after.to_string());
            break;
        }
    }
    Ok(PendingPage {
        requests: page,
        next,
    })
}

/// The page size `query` asks for (bounded) and its cursor, a store position.
fn page_of(query: &PendingQuery) -> Result<(i64, Option<i64>), ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let cursor = match &query.cursor {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse()
                .map_err(|_| ApiError::InvalidRequest("malformed cursor".into()))?,
        ),
    };
    Ok((i64::try_from(limit).unwrap_or(50), cursor))
}

/// A page of `limit` of `rows`, read one beyond the page to tell whether there is a next one
/// (whose cursor is the last row's position).
async fn viewed_page(
    app: &App,
    mut rows: Vec<(i64, StoredRequest)>,
    limit: i64,
) -> Result<PendingPage, ApiError> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(position, _)| position.to_string())
    } else {
        None
    };
    let mut requests = Vec::with_capacity(rows.len());
    for (_, request) in &rows {
        requests.push(view(app, request).await?);
    }
    Ok(PendingPage { requests, next })
}

/// The caller's own requests, newest first, a page at a time, whatever became of them.
pub async fn mine(
    app: &App,
    caller: &Caller,
    query: PendingQuery,
) -> Result<PendingPage, ApiError> {
    let (limit, cursor) = page_of(&query)?;
    let principal = caller.principal.to_string();
    let rows = app
        .store
        .requests_of(&principal, cursor.unwrap_or(i64::MAX), limit + 1)
        .await?;
    viewed_page(app, rows, limit).await
}

/// Break-glass requests waiting for the caller's review, oldest first, a page at a time: for
/// administrators every one, for anyone else none (as the pending list holds only what the
/// caller may approve).
pub async fn awaiting_review(
    app: &App,
    caller: &Caller,
    query: PendingQuery,
) -> Result<PendingPage, ApiError> {
    if !app.may_administer(caller) {
        return Ok(PendingPage {
            requests: Vec::new(),
            next: None,
        });
    }
    let (limit, cursor) = page_of(&query)?;
    let rows = app
        .store
        .review_page(cursor.unwrap_or(0), limit + 1)
        .await?;
    viewed_page(app, rows, limit).await
}

/// An approver's answer to request `id`. The writes check that the request is still pending
/// and commit after every earlier answer, so of two approvals racing for a quorum of one, one
/// moves the request and the other gets 409.
pub async fn answer(
    app: &App,
    caller: &Caller,
    id: &str,
    answer: Answer,
    comment: String,
) -> Result<RequestView, ApiError> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    let request = load(app, id).await?;
    let attempt = format!("{} {id}", answer.as_str());
    if caller.principal.to_string() == request.record.principal {
        let why = "nobody approves or denies their own request";
        return Err(forbidden(app, caller, &attempt, Some(id), why).await);
    }
    // Of two approvals racing for the last place of a stage, the second goes to the next.
    let mut races = 0;
    let (stage, now) = loop {
        let request = load(app, id).await?;
        let approvals = app.store.approvals(id).await?;
        let stage = acting_stage(&request, &approvals);
        if !may_approve(
            &app.policies.current(),
            app,
            caller,
            (&request, &stage.name),
        ) {
            let why = format!(
                "the policies do not let you approve this request in its stage `{}`",
                stage.name
            );
            let refusal = forbidden(app, caller, &attempt, Some(id), &why).await;
            let fresh = Caller {
                auth_time: caller.auth_time.map(|_| app.now()),
                ..caller.clone()
            };
            let fresh_would_do = caller.auth_time.is_some()
                && may_approve(
                    &app.policies.current(),
                    app,
                    &fresh,
                    (&request, &stage.name),
                );
            if fresh_would_do && matches!(refusal, ApiError::Forbidden(_)) {
                return Err(ApiError::ReauthenticationRequired(format!(
                    "the policies ask for a more recent sign-in to approve this request in its stage `{}`: sign in again, then approve",
                    stage.name
                )));
            }
            return Err(refusal);
        }
        let now = app.now_stored();
        let writes = answer_writes(
            app,
            caller,
            &request,
            answer,
            comment.clone(),
            (&stage, now),
        );
        match app.store.write(writes).await {
            Err(StoreError::Conflict(conflict)) if conflict == STAGE_COMPLETE && races < 3 => {
                races += 1;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => break (stage, now),
        }
    };
    let decided = load(app, id).await?;
    let approvals = app.store.approvals(id).await?;
    observe_stage_wait(app, &decided, &approvals, (&stage, now));
    app.notifier.wake();
    Ok(RequestView::new(&decided, approvals, app.now_stored()))
}

/// The wait of `stage`, when the answer given in it at `now` closed it.
fn observe_stage_wait(
    app: &App,
    request: &StoredRequest,
    approvals: &[ApprovalRecord],
    (stage, now): (&Stage, i64),
) {
    let plan = stages::plan(&request.record);
    let given = stages::approvals_by_stage(approvals);
    let closed = request.record.status != RequestStatus::Pending.as_str()
        || given.get(&stage.name).copied().unwrap_or(0)
            == usize::try_from(stage.required).unwrap_or(usize::MAX);
    if !closed {
        return;
    }
    // The stage opened when the one before it closed: at the last approval given in it.
    let position = plan.iter().position(|s| s.name == stage.name);
    let opened = match position
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| plan.get(i))
    {
        Some(before) => (approvals.iter())
            .filter(|a| a.stage == before.name)
            .map(|a| a.at)
            .max()
            .unwrap_or(request.record.created_at),
        None => request.record.created_at,
    };
    let waited = (now - opened).max(0);
    (app.metrics.approval_wait)
        .with_label_values(&[stage.name.as_str()])
        .observe(waited as f64);
}

/// The writes of `caller`'s `answer` to `request` at `now`, with the notifications they send.
fn answer_writes(
    app: &App,
    caller: &Caller,
    request: &StoredRequest,
    answer: Answer,
    comment: String,
    (stage, now): (&Stage, i64),
) -> Vec<Write> {
    let id = request.record.id.clone();
    let approver = caller.principal.to_string();
    let mut writes = vec![
        // A block that lands while this approval is on its way refuses it too.
        Write::RequireNotRevoked {
            subject: approver.clone(),
            request_id: id.clone(),
        },
        Write::RequireStatus {
            id: id.clone(),
            status: RequestStatus::Pending.into(),
            at: now,
        },
        Write::RequireStageOpen {
            id: id.clone(),
            stage: stage.name.clone(),
            required: i64::from(stage.required),
        },
        Write::Approval(ApprovalRecord {
            request_id: id.clone(),
            approver: approver.clone(),
            decision: answer.as_str().into(),
            comment: comment.clone(),
            at: now,
            stage: stage.name.clone(),
        }),
    ];
    let now_ms = app.now_ms();
    let by = approver.clone();
    match answer {
        Answer::Approve => {
            // Closing a stage that has a successor announces it, in this same transaction.
            let plan = stages::plan(&request.record);
            let after = plan.iter().skip_while(|s| s.name != stage.name).nth(1);
            if let Some(next) = after {
                let opened = Event::Pending {
                    stage: next.name.clone(),
                };
                writes.push(Write::AnnounceAtStageQuorum {
                    id: id.clone(),
                    stage: stage.name.clone(),
                    required: i64::from(stage.required),
                    announce: app.notifier.outbox(&opened, &request.record, now_ms),
                });
            }
            let approved = Event::Approved {
                by,
                comment: comment.clone(),
            };
            writes.push(Write::ApproveAtQuorum {
                id: id.clone(),
                at: now,
                announce: app.notifier.outbox(&approved, &request.record, now_ms),
            });
        }
        Answer::Deny => {
            writes.push(Write::SetStatus {
                id: id.clone(),
                status: RequestStatus::Denied.into(),
                at: now,
            });
            let denied = Event::Denied {
                by,
                comment: comment.clone(),
            };
            let queued = app.notifier.outbox(&denied, &request.record, now_ms);
            writes.extend(queued.into_iter().map(Write::Outbox));
        }
    }
    writes.push(Write::Audit(AuditRecord {
        at: now,
        kind: AuditKind::Answered(answer).into(),
        request_id: Some(id),
        subject: Some(approver.clone()),
        data: json!({"approver": approver, "comment": comment, "stage": stage.name}),
    }));
    writes
}

/// An administrator closes break-glass request `id` with a comment; never their own, as
/// nobody approves their own request.
pub async fn review(
    app: &App,
    caller: &Caller,
    id: &str,
    comment: String,
) -> Result<RequestView, ApiError> {
    if comment.trim().is_empty() || comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "a review needs a comment of 1 to {MAX_COMMENT_CHARS} characters"
        )));
    }
    let request = load(app, id).await?;
    let attempt = format!("review {id}");
    if !app.may_administer(caller) {
        let why = "only administrators review break-glass access";
        return Err(forbidden(app, caller, &attempt, Some(id), why).await);
    }
    if caller.principal.to_string() == request.record.principal {
        let why = "nobody reviews their own break-glass access";
        return Err(forbidden(app, caller, &attempt, Some(id), why).await);
    }
    let data = json!({"reviewer": caller.principal.to_string(), "comment": comment});
    let to = (RequestStatus::Reviewed, AuditKind::RequestReviewed);
    let from = RequestStatus::NeedsReview;
    transition(app, caller, id, from, to, (data, Vec::new())).await
}

/// The requester withdraws pending request `id`.
pub async fn cancel(
    app: &App,
    caller: &Caller,
    id: &str,
    comment: String,
) -> Result<RequestView, ApiError> {
    let request = load(app, id).await?;
    if caller.principal.to_string() != request.record.principal {
        return Err(ApiError::Forbidden(
            "only the requester cancels a request".into(),
        ));
    }
    let to = (RequestStatus::Cancelled, AuditKind::RequestCancelled);
    let data = json!({ "comment": comment });
    // Approvers who were told of the request learn that it is withdrawn.
    let cancelled = Event::Cancelled { comment };
    let announce = app
        .notifier
        .outbox(&cancelled, &request.record, app.now_ms());
    let announce = announce.into_iter().map(Write::Outbox).collect();
    transition(
        app,
        caller,
        id,
        RequestStatus::Pending,
        to,
        (data, announce),
    )
    .await
}

/// Moves request `id` from `from` to `to` (409 with the current status unless it is `from`),
/// with its audit event and the notifications `announce` queues, and shows the result.
async fn transition(
    app: &App,
    caller: &Caller,
    id: &str,
    from: RequestStatus,
    (to, kind): (RequestStatus, AuditKind),
    (data, announce): (Value, Vec<Write>),
) -> Result<RequestView, ApiError> {
    let now = app.now_stored();
    let mut writes = vec![
        Write::RequireStatus {
            id: id.to_owned(),
            status: from.into(),
            at: now,
        },
        Write::SetStatus {
            id: id.to_owned(),
            status: to.into(),
            at: now,
        },
        Write::Audit(AuditRecord {
            at: now,
            kind: kind.into(),
            request_id: Some(id.to_owned()),
            subject: Some(caller.principal.to_string()),
            data,
        }),
    ];
    writes.extend(announce);
    app.store.write(writes).await?;
    view(app, &load(app, id).await?).await
}
