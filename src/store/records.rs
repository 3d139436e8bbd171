//! What the store keeps and the unit of work that changes it: the records every backend reads
//! and writes, and [`Write`], whose preconditions each backend checks inside the transaction
//! that applies it.

use serde::Serialize;

/// The conflict of [`Write::RequireStageOpen`].
pub const STAGE_COMPLETE: &str = "stage complete";

/// A decided access request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub id: String,
    pub created_at: i64,
    /// Cedar form, e.g. `User::"alice"`.
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub duration_secs: i64,
    pub reason: String,
    pub source_ip: String,
    pub decision: String,
    pub status: String,
    pub policies: Vec<String>,
    pub policy_version: String,
    pub risk_score: i64,
    pub risk_signals: serde_json::Value,
    pub approvals_required: i64,
    pub expires_at: Option<i64>,
    /// Client context keys, kept to re-evaluate an escalated request.
    pub context: serde_json::Value,
    /// The lifetime the decision granted (for an approval: the approved window).
    pub lifetime_secs: i64,
    /// The scopes the decision granted (for an approval: what was approved); `None` for
    /// requests decided before jitgate recorded it.
    pub granted_scopes: Option<Vec<String>>,
    /// The audiences the decision granted, likewise.
    pub audience: Option<Vec<String>>,
    /// The approval stages an escalated request needs, `[{"name", "required"}, …]`; null for
    /// one `default` stage of `approvals_required`.
    pub stages: serde_json::Value,
    /// Unix seconds the request's window opens (scheduled access); `None`: when decided.
    pub not_before: Option<i64>,
    /// For an extension: the first request of the grant it extends.
    pub extends: Option<String>,
    /// For an extension: the total lifetime of its grant before it, in seconds.
    pub extended_secs: Option<i64>,
}

/// A request as stored, with what happened to it since.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRequest {
    #[serde(flatten)]
    pub record: RequestRecord,
    pub decided_at: Option<i64>,
}

/// One approver's answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApprovalRecord {
    pub request_id: String,
    /// Cedar form of the approver.
    pub approver: String,
    /// `approve` or `deny`.
    pub decision: String,
    pub comment: String,
    pub at: i64,
    /// The stage it was given in (`default` for a request of one stage).
    pub stage: String,
}

/// An issued token, by its `jti`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRecord {
    pub jti: String,
    pub request_id: String,
    /// The principal, Cedar form.
    pub subject: String,
    pub kid: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub at: i64,
    /// `decision`, `dry_run`, `token.issued`, `policy.loaded`, …
    pub kind: String,
    pub request_id: Option<String>,
    pub subject: Option<String>,
    pub data: serde_json::Value,
}

impl AuditRecord {
    /// This event's link in the chain as event `seq` after `prev_hash` (`audit::chain_hash`):
    /// what every backend stores with it.
    pub fn chain_hash(&self, prev_hash: &str, seq: i64) -> String {
        crate::audit::chain_hash(
            prev_hash,
            seq,
            self.at,
            &self.kind,
            self.request_id.as_deref(),
            self.subject.as_deref(),
            &self.data,
        )
    }
}

/// A revocation (see `migrations/sqlite/0005_revocations.sql` for what each kind covers).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RevocationRecord {
    pub id: String,
    /// `jti`, `request_id` or `subject`.
    pub kind: String,
    pub value: String,
    pub reason: String,
    /// Cedar form of who revoked.
    pub revoked_by: String,
    pub revoked_at: i64,
    /// When the last token it covers has expired.
    pub expires_at: i64,
    pub lifted_at: Option<i64>,
}

/// A signing key as a shared database keeps it: the private part sealed with the
/// key-encryption key, the public part (a JWK) in the clear for readers that only verify.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: String,
    /// Unix seconds it was created (and its predecessor retired).
    pub created: i64,
    /// The PKCS#8 (RS256: PKCS#1) PEM, sealed for `kid`.
    pub sealed_private: Vec<u8>,
    pub public_jwk: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A running replica, as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    /// jitgate's version.
    pub version: String,
    pub policy_version: String,
    /// Unix seconds.
    pub started_at: i64,
    pub last_seen: i64,
}

/// A sign-in to the UI under way: what the callback needs to finish it (DESIGN §9.3).
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRecord {
    /// Hex SHA-256 of the `state` sent to the identity provider.
    pub state_hash: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where the browser goes once signed in (a path of this origin).
    pub next: String,
    /// `max_age` asked of the identity provider (seconds).
    pub max_age: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
}

// The nonce and the PKCE verifier stay out of any log line.
impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (f.debug_struct("LoginRecord"))
            .field("state_hash", &self.state_hash)
            .field("next", &self.next)
            .field("max_age", &self.max_age)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A signed-in UI session (DESIGN §9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session cookie.
    pub id_hash: String,
    /// The principal, Cedar form (what a subject revocation names).
    pub principal: String,
    /// The signed-in caller, JSON (groups, MFA, sign-in time, client).
    pub caller: String,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen: i64,
    /// The absolute end (`created_at` + `[ui] session_max`).
    pub expires_at: i64,
}

/// A webhook notification to deliver (see [`crate::notify`]).
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    pub delivery_id: String,
    /// Which configured webhook, by [`crate::notify`]'s key for it.
    pub hook: String,
    pub event: String,
    pub request_id: Option<String>,
    /// The exact body to POST.
    pub body: String,
    pub created_ms: i64,
}

/// A notification waiting for delivery.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: i64,
    pub delivery_id: String,
    pub hook: String,
    pub event: String,
    pub request_id: Option<String>,
    pub body: String,
    pub created_ms: i64,
    pub attempts: i64,
}

/// See [`super::Store::standing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// (revocation id, reason) of the subject's active block.
    pub block: Option<(String, String)>,
    pub recent_denials: i64,
    pub seen_from: bool,
}

/// One write; a call's writes commit together or not at all.
#[derive(Debug, Clone)]
pub enum Write {
    Request(Box<RequestRecord>),
    Token(TokenRecord),
    Audit(AuditRecord),
    /// The principal was seen from this source IP (kept the first time).
    SourceSeen {
        principal: String,
        source_ip: String,
        at: i64,
    },
    /// A dry run of `principal` would have been denied (it counts as a recent denial).
    DryRunDenied {
        principal: String,
        at: i64,
    },
    /// Forgets dry-run denials older than `before` (out of every recent-denials window).
    PruneDryRunDenials {
        before: i64,
    },
    /// Fails the whole job with a conflict unless the request has this status (and, for
    /// `pending`, has not expired at `at`). Jobs run one after another, so what follows in the
    /// job sees the status checked here.
    RequireStatus {
        id: String,
        status: String,
        at: i64,
    },
    /// Fails the whole job with the conflict [`STAGE_COMPLETE`] once stage `stage` of request
    /// `id` has `required` approvals: of two approvals racing for a stage's last place, the
    /// second is refused and goes to the next stage.
    RequireStageOpen {
        id: String,
        stage: String,
        required: i64,
    },
    /// Records an approver's answer; a second answer by the same approver is a conflict.
    Approval(ApprovalRecord),
    /// Moves the request to `status`, noting when it was decided.
    SetStatus {
        id: String,
        status: String,
        at: i64,
    },
    /// Queues `announce` once stage `stage` of request `id` has exactly `required` approvals:
    /// the approval that closes a stage announces the next, once.
    AnnounceAtStageQuorum {
        id: String,
        stage: String,
        required: i64,
        announce: Vec<OutboxRecord>,
    },
    /// Moves a pending request to `approved` once its approvals reach the quorum, and only
    /// then queues `announce`.
    ApproveAtQuorum {
        id: String,
        at: i64,
        announce: Vec<OutboxRecord>,
    },
    /// Marks a pending request past its expiry `expired`; a conflict if it is not (any more).
    Expire {
        id: String,
        at: i64,
    },
    /// Queues a webhook notification.
    Outbox(OutboxRecord),
    /// Records a revocation; a conflict if one of the same kind and value is in force.
    Revocation(RevocationRecord),
    /// Fails the whole job with [`super::StoreError::Revoked`] if `subject` (a principal, Cedar
    /// form) is blocked or `request_id` revoked: checked in the transaction that records a token, so a token
    /// cannot slip past a revocation committed a moment before it.
    RequireNotRevoked {
        subject: String,
        request_id: String,
    },
    /// Lets new tokens be issued again for a revoked subject; a conflict unless `id` is a
    /// subject revocation not yet lifted.
    LiftRevocation {
        id: String,
        at: i64,
    },
    /// Forgets revocations whose tokens have all expired (a request or subject block stays:
    /// it lives in the request's status, or ends when lifted).
    PruneRevocations {
        now: i64,
    },
    /// A notification was delivered (`failed` false) or given up on (`failed` true).
    DeliveryFinished {
        id: i64,
        failed: bool,
        at_ms: i64,
        error: Option<String>,
    },
    /// A delivery attempt failed; try again at `next_attempt_ms`.
    DeliveryRetry {
        id: i64,
        next_attempt_ms: i64,
        error: String,
    },
    /// Forgets finished notifications older than `before_ms`.
    PruneDeliveries {
        before_ms: i64,
    },
    /// Fails the whole job with a conflict if a signed head (`audit.head`) was written after
    /// event `seq`: the head signing `seq` is written once, however many replicas sign it at
    /// once, while other events may come in between.
    RequireNoSignedHeadAfter {
        seq: i64,
    },
    /// Keeps a signing key (a conflict if one with its `kid` is kept).
    SigningKey(StoredKey),
    /// Forgets a signing key no token can need any more.
    DropSigningKey {
        kid: String,
    },
    /// A replica's request counts for the last minute (`kind`: which limit), by principal: a
    /// zero total removes the principal's row. Rows of any replica not written since
    /// `forget_before` are forgotten (their requests have left the window).
    RateTotals {
        replica: String,
        kind: String,
        totals: Vec<(String, i64)>,
        at: i64,
        forget_before: i64,
    },
    /// A value meant to be used once (`kind`: what it is, e.g. a client assertion's `jti`) is
    /// used, and kept until `expires_at`; a conflict if it was used before.
    UseOnce {
        kind: String,
        id: String,
        expires_at: i64,
    },
    /// Forgets used-once values that expired before `now` (their tokens are refused by
    /// their expiry alone).
    PruneUsedOnce {
        now: i64,
    },
    /// Keeps a sign-in under way.
    Login(LoginRecord),
    /// Uses up the sign-in with this `state_hash`; a conflict if it was used before or has
    /// expired at `at`.
    TakeLogin {
        state_hash: String,
        at: i64,
    },
    /// Starts a UI session.
    Session(SessionRecord),
    /// The session was used at `at`.
    TouchSession {
        id_hash: String,
        at: i64,
    },
    /// Ends a session (sign-out); nothing if it has ended already.
    EndSession {
        id_hash: String,
    },
    /// Ends every session of `principal` (a subject revocation).
    EndSessionsOf {
        principal: String,
    },
    /// Forgets sessions past their absolute end at `now` or idle since before `idle_before`,
    /// and sign-ins that were never finished.
    PruneSessions {
        now: i64,
        idle_before: i64,
    },
    /// A replica is alive (replaces what it said before), and replicas not seen since
    /// `forget_before` are forgotten.
    Heartbeat {
        replica: ReplicaRecord,
        forget_before: i64,
    },
}

/// The status a request has at `now`: a pending request past its expiry is expired, even
/// before anything has written that down.
pub fn effective_status(status: &str, expires_at: Option<i64>, now: i64) -> String {
    if status == "pending" && expires_at.is_some_and(|at| at <= now) {
        "expired".to_owned()
    } else {
        status.to_owned()
    }
}
