//! What the core answers, one serde shape per kind of answer: the HTTP API's bodies (DESIGN §3,
//! §5), and what the coming OAuth and UI entry points translate from.

use serde::Serialize;
use serde_json::Value;

use super::stages::StageProgress;
use super::{App, RequestStatus};
use crate::audit::AuditEvent;
use crate::clock::rfc3339;
use crate::decision::{Decision, DenyReason, Outcome, Stage};
use crate::risk::Risk;
use crate::store::{ApprovalRecord, RevocationRecord, StoredRequest, effective_status};
use crate::token::AccessClaims;

/// A token issued: at once (allow, break-glass) or minted after approval. 201.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedAnswer {
    pub request_id: String,
    /// `allow`, or `escalate` when break-glass skipped the approvals.
    pub decision: Outcome,
    pub status: RequestStatus,
    /// Whether break-glass issued it (answers to an access request only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<bool>,
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    /// RFC 3339.
    pub expires_at: String,
    pub scope: String,
    pub policies: Vec<String>,
    /// Who approved (minted tokens only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
    pub risk: Risk,
    pub advice: Vec<String>,
}

/// An escalated request waiting for approvers. 202.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingAnswer {
    pub request_id: String,
    pub decision: Outcome,
    pub status: RequestStatus,
    pub approvals_required: u32,
    /// The stages of those approvals, in order.
    pub stages: Vec<Stage>,
    /// When the window of access opens, for a scheduled request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// When the request expires unless approved; for one allowed ahead of its window, when
    /// that window closes (RFC 3339).
    pub expires_at: String,
    pub policies: Vec<String>,
    pub risk: Risk,
    pub advice: Vec<String>,
}

/// A denial by the policies (of a request, or of a mint decided again). 403.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeniedAnswer {
    pub request_id: String,
    pub decision: Outcome,
    /// The request's status: `denied` for a request, what it still is for a refused mint.
    pub status: RequestStatus,
    pub reasons: Vec<DenyReason>,
    pub policies: Vec<String>,
    pub risk: Risk,
    pub advice: Vec<String>,
    pub error: ErrorBody,
}

/// `{"code", "message"}`, as every error body carries it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl DeniedAnswer {
    pub fn new(request_id: &str, status: RequestStatus, decision: Decision, risk: Risk) -> Self {
        let codes: Vec<&str> = decision.reasons.iter().map(DenyReason::code).collect();
        let message = if status == RequestStatus::Denied {
            format!("access denied ({})", codes.join(", "))
        } else {
            "the request no longer passes the policies".to_owned()
        };
        Self {
            request_id: request_id.to_owned(),
            decision: Outcome::Deny,
            status,
            reasons: decision.reasons,
            policies: decision.policies,
            risk,
            advice: decision.advice,
            error: ErrorBody {
                code: "denied",
                message,
            },
        }
    }
}

/// The dry run's answer: the decision, nothing issued.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DryRunAnswer {
    pub request_id: String,
    pub decision: Outcome,
    pub dry_run: bool,
    pub policies: Vec<String>,
    pub reasons: Vec<DenyReason>,
    pub scope: String,
    pub expires_in: u64,
    pub audience: Vec<String>,
    pub approvals_required: u32,
    pub stages: Vec<Stage>,
    pub break_glass_allowed: bool,
    pub risk: Risk,
    pub advice: Vec<String>,
    pub policy_version: String,
    /// With `?explain=true`: each policy for the action, whether its principal and resource
    /// matched and whether its condition held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<crate::policy::explain::PolicyTrace>>,
}

impl DryRunAnswer {
    pub fn new(request_id: String, decision: Decision, risk: Risk) -> Self {
        Self {
            request_id,
            decision: decision.outcome,
            dry_run: true,
            scope: decision.scopes.join(" "),
            expires_in: decision.lifetime.as_secs(),
            policies: decision.policies,
            reasons: decision.reasons,
            audience: decision.audience,
            approvals_required: decision.approvals_required,
            stages: decision.stages,
            break_glass_allowed: decision.break_glass_allowed,
            risk,
            advice: decision.advice,
            policy_version: decision.policy_version,
            explanation: None,
        }
    }
}

/// A stored request as its requester, approvers and administrators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub request_id: String,
    /// What the request is now (a pending request past its time reads `expired`).
    pub status: String,
    pub requester: String,
    pub action: String,
    pub resource: String,
    /// The scopes asked for; empty when the requester left them to the policies.
    pub scopes: Vec<String>,
    /// The lifetime asked for, in seconds; `None` when left to the policies.
    pub duration_secs: Option<i64>,
    /// What a token minted for this request carries (for a pending request: what approving
    /// grants); `None` for requests decided before jitgate recorded it.
    pub granted_scopes: Option<Vec<String>>,
    /// The lifetime, in seconds, of a token minted for this request.
    pub lifetime_secs: i64,
    pub audience: Option<Vec<String>>,
    pub reason: String,
    pub decision: String,
    pub policies: Vec<String>,
    pub approvals_required: i64,
    /// Each stage of the approvals, with those given in it so far.
    pub stages: Vec<StageProgress>,
    pub approvals: Vec<ApprovalRecord>,
    pub risk: StoredRisk,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
    /// When the window of access opens, for a scheduled request (RFC 3339).
    pub not_before: Option<String>,
}

/// The risk a request was decided with, as recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredRisk {
    pub score: i64,
    pub signals: Value,
}

impl RequestView {
    /// `request` with `approvals`, as it stands at `now`.
    pub fn new(request: &StoredRequest, approvals: Vec<ApprovalRecord>, now: i64) -> Self {
        let r = &request.record;
        let time = |at: i64| rfc3339(u64::try_from(at).unwrap_or(0));
        Self {
            request_id: r.id.clone(),
            status: effective_status(&r.status, r.expires_at, now),
            requester: r.principal.clone(),
            action: r.action.clone(),
            resource: r.resource.clone(),
            scopes: r.scopes.clone(),
            duration_secs: (r.duration_secs > 0).then_some(r.duration_secs),
            granted_scopes: r.granted_scopes.clone(),
            lifetime_secs: r.lifetime_secs,
            audience: r.audience.clone(),
            reason: r.reason.clone(),
            decision: r.decision.clone(),
            policies: r.policies.clone(),
            approvals_required: r.approvals_required,
            stages: super::stages::progress(&super::stages::plan(r), &approvals),
            approvals,
            risk: StoredRisk {
                score: r.risk_score,
                signals: r.risk_signals.clone(),
            },
            created_at: time(r.created_at),
            expires_at: r.expires_at.map(time),
            not_before: r.not_before.map(time),
        }
    }
}

/// A page of the requests a caller may approve.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingPage {
    pub requests: Vec<RequestView>,
    /// The cursor of the following page.
    pub next: Option<String>,
}

/// A revocation made (201) or already in force (200).
#[derive(Debug, Clone)]
pub enum Revoked {
    Created(RevocationRecord),
    Existing(RevocationRecord),
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeedEntry {
    pub id: String,
    pub kind: String,
    pub value: String,
    pub revoked_at: i64,
    pub expires_at: i64,
}

/// A page of the revocation feed; `next` is the cursor to poll with.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    pub revocations: Vec<FeedEntry>,
    pub next: String,
}

/// RFC 7662's answer: `{"active": false}` alone, or the claims of a live token (its OpenAPI
/// schema is written in `http::openapi`).
#[derive(Debug, Clone, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claims: Option<AccessClaims>,
}

impl Introspection {
    pub const INACTIVE: Self = Self {
        active: false,
        token_type: None,
        claims: None,
    };

    pub fn active(claims: AccessClaims) -> Self {
        Self {
            active: true,
            token_type: Some(if claims.cnf.is_some() {
                "DPoP"
            } else {
                "Bearer"
            }),
            claims: Some(claims),
        }
    }
}

/// A page of the audit trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<String>,
}

/// The policy pack serving, and why the last reload failed if it did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyStatus {
    pub version: String,
    /// RFC 3339.
    pub loaded_at: String,
    pub files: Vec<String>,
    pub policies: Vec<crate::policy::PolicyInfo>,
    pub warnings: Vec<String>,
    pub last_error: Option<ReloadFailure>,
    /// The shadow pack, when `[policy.shadow]` names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
}

/// The shadow pack and what it found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowStatus {
    pub version: String,
    /// RFC 3339.
    pub loaded_at: String,
    pub policies: usize,
    pub last_error: Option<ReloadFailure>,
    #[serde(flatten)]
    pub counts: super::shadow::ShadowCounts,
}

/// A reload that was refused: the previous pack kept serving.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReloadFailure {
    /// RFC 3339.
    pub at: String,
    pub errors: Vec<String>,
}

impl From<crate::policy::ReloadFailure> for ReloadFailure {
    fn from(failure: crate::policy::ReloadFailure) -> Self {
        Self {
            at: rfc3339(crate::clock::unix_secs(failure.at)),
            errors: failure.errors.0.iter().map(ToString::to_string).collect(),
        }
    }
}

impl PolicyStatus {
    pub fn of(app: &App) -> Self {
        let pack = app.policies.current();
        let status = app.policies.status();
        let time = |at| rfc3339(crate::clock::unix_secs(at));
        Self {
            version: pack.version().to_owned(),
            loaded_at: time(status.loaded_at),
            files: pack.files().to_vec(),
            policies: pack.policies().cloned().collect(),
            warnings: pack.warnings().iter().map(ToString::to_string).collect(),
            last_error: status.last_error.map(ReloadFailure::from),
            shadow: app.shadow.as_ref().map(|shadow| {
                let pack = shadow.policies.current();
                let status = shadow.policies.status();
                ShadowStatus {
                    version: pack.version().to_owned(),
                    loaded_at: time(status.loaded_at),
                    policies: pack.policy_count(),
                    last_error: status.last_error.map(ReloadFailure::from),
                    counts: shadow.counts(),
                }
            }),
        }
    }
}

/// `GET /v1/cluster`: the replicas seen in the last 30 s.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub replicas: Vec<ReplicaView>,
}

/// One replica, as its last heartbeat described it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplicaView {
    pub id: String,
    /// jitgate's version.
    pub version: String,
    pub policy_version: String,
    /// RFC 3339.
    pub started_at: String,
    pub last_seen: String,
}
