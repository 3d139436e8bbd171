//! The states an access request goes through and the kinds of audit event the core records,
//! as enums; the store keeps their text forms (`as_str`), which are part of the API and the
//! exported trail.

use serde::Serialize;

/// Where an access request stands (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Escalated, waiting for approvers.
    Pending,
    /// Approved; the requester may mint.
    Approved,
    Denied,
    /// A token was issued.
    Issued,
    Cancelled,
    /// Pending past `pending_ttl`.
    Expired,
    /// Issued by break-glass, waiting for an administrator's review.
    NeedsReview,
    Reviewed,
    /// Every token of the request was revoked; it mints no more.
    Revoked,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 9] = [
        RequestStatus::Pending,
        RequestStatus::Approved,
        RequestStatus::Denied,
        RequestStatus::Issued,
        RequestStatus::Cancelled,
        RequestStatus::Expired,
        RequestStatus::NeedsReview,
        RequestStatus::Reviewed,
        RequestStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Issued => "issued",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Expired => "expired",
            RequestStatus::NeedsReview => "needs_review",
            RequestStatus::Reviewed => "reviewed",
            RequestStatus::Revoked => "revoked",
        }
    }

    /// The status a stored text names; `None` for text no version of jitgate wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl From<RequestStatus> for String {
    fn from(status: RequestStatus) -> Self {
        status.as_str().to_owned()
    }
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// An access request decided.
    Decision,
    DryRun,
    TokenIssued,
    /// A token issued without approval, for review.
    BreakGlass,
    /// An approver's answer (`request.approve`, `request.deny`).
    Answered(Answer),
    RequestCancelled,
    RequestReviewed,
    RequestExpired,
    /// A revoked subject asked for access.
    RequestRefused,
    /// A privileged operation refused.
    AccessRefused,
    RevocationCreated,
    RevocationLifted,
    PolicyLoaded,
    WebhookFailed,
    /// A signed head of the chain.
    AuditHead,
    /// A person signed in to the UI.
    SessionStarted,
    /// A person signed out of the UI.
    SessionEnded,
    /// The shadow pack decided a request otherwise than the live one.
    ShadowDisagreement,
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Approve,
    Deny,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Approve => "approve",
            Answer::Deny => "deny",
        }
    }
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Decision => "decision",
            AuditKind::DryRun => "dry_run",
            AuditKind::TokenIssued => "token.issued",
            AuditKind::BreakGlass => "break_glass",
            AuditKind::Answered(Answer::Approve) => "request.approve",
            AuditKind::Answered(Answer::Deny) => "request.deny",
            AuditKind::RequestCancelled => "request.cancelled",
            AuditKind::RequestReviewed => "request.reviewed",
            AuditKind::RequestExpired => "request.expired",
            AuditKind::RequestRefused => "request.refused",
            AuditKind::AccessRefused => "access.refused",
            AuditKind::RevocationCreated => "revocation.created",
            AuditKind::RevocationLifted => "revocation.lifted",
            AuditKind::PolicyLoaded => "policy.loaded",
            AuditKind::WebhookFailed => "webhook.failed",
            AuditKind::AuditHead => crate::audit::HEAD_EVENT,
            AuditKind::SessionStarted => "session.started",
            AuditKind::SessionEnded => "session.ended",
            AuditKind::ShadowDisagreement => "shadow.disagreement",
        }
    }
}

impl From<AuditKind> for String {
    fn from(kind: AuditKind) -> Self {
        kind.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_text() {
        for status in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::from(status.as_str()))
            );
        }
        assert_eq!(RequestStatus::parse("approved "), None);
    }
}
