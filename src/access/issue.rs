//! Issuing a token, the same way for an allowed request, a break-glass one and a mint after
//! approval: the grant, the signed token, and what the store keeps of it (never the token),
//! written before the token leaves.

use serde_json::{Value, json};

use super::answer::IssuedAnswer;
use super::{ApiError, App, AuditKind, RequestStatus};
use crate::clock::{rfc3339, stored_secs};
use crate::decision::{Decision, Outcome};
use crate::identity::Caller;
use crate::risk::Risk;
use crate::store::{AuditRecord, TokenRecord, Write};
use crate::token::{IssuedToken, JitClaims, TokenGrant};

/// The token `caller` gets for `request_id` as `decision` grants it (scopes, audience and
/// lifetime as given, which a mint narrows first).
pub(crate) fn grant_of(
    caller: &Caller,
    request_id: &str,
    (action, resource): (&str, &str),
    decision: &Decision,
    approvers: Vec<String>,
) -> TokenGrant {
    TokenGrant {
        subject: caller.principal.id.clone(),
        client_id: caller.client_id.clone(),
        audience: decision.audience.clone(),
        scopes: decision.scopes.clone(),
        lifetime: decision.lifetime,
        jit: JitClaims {
            principal: caller.principal.to_string(),
            request_id: request_id.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            policies: decision.policies.clone(),
            policy_version: decision.policy_version.clone(),
            approvers,
        },
        bound_to: None,
    }
}

/// `grant` signed at `now`.
pub(super) fn sign(app: &App, grant: &TokenGrant, now: u64) -> Result<IssuedToken, ApiError> {
    app.tokens
        .mint(grant, now)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// What the store keeps of an issued token: that its subject is not revoked (checked in the
/// transaction), its record, and the audit event with `extra` fields merged in.
pub(super) fn token_writes(
    issued: &IssuedToken,
    grant: &TokenGrant,
    at: i64,
    extra: Value,
) -> [Write; 3] {
    let mut data = json!({
        "jti": issued.jti, "kid": issued.kid, "alg": issued.alg.as_str(),
        "exp": issued.expires_at, "scope": issued.scope, "aud": grant.audience,
    });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
        if let Some(jkt) = &grant.bound_to {
            data.insert("cnf_jkt".into(), Value::String(jkt.clone()));
        }
    }
    let principal = grant.jit.principal.clone();
    let request_id = grant.jit.request_id.clone();
    [
        Write::RequireNotRevoked {
            subject: principal.clone(),
            request_id: request_id.clone(),
        },
        Write::Token(TokenRecord {
            jti: issued.jti.clone(),
            request_id: request_id.clone(),
            subject: principal.clone(),
            kid: issued.kid.clone(),
            scope: issued.scope.clone(),
            issued_at: at,
            expires_at: stored_secs(issued.expires_at),
        }),
        Write::Audit(AuditRecord {
            at,
            kind: AuditKind::TokenIssued.into(),
            request_id: Some(request_id),
            subject: Some(principal),
            data,
        }),
    ]
}

/// Counts a token that left the server.
pub(super) fn count_issued(app: &App, issued: &IssuedToken) {
    app.metrics
        .tokens_issued
        .with_label_values(&[issued.alg.as_str()])
        .inc();
}

/// The answer that carries `issued`.
pub(super) fn issued_answer(
    issued: IssuedToken,
    grant: &TokenGrant,
    decision: &Decision,
    outcome: Outcome,
    risk: Risk,
) -> IssuedAnswer {
    IssuedAnswer {
        request_id: grant.jit.request_id.clone(),
        decision: outcome,
        status: RequestStatus::Issued,
        break_glass: None,
        expires_at: rfc3339(issued.expires_at),
        access_token: issued.token,
        token_type: if grant.bound_to.is_some() {
            "DPoP"
        } else {
            "Bearer"
        },
        expires_in: grant.lifetime.as_secs(),
        scope: issued.scope,
        policies: decision.policies.clone(),
        approvers: None,
        risk,
        advice: decision.advice.clone(),
    }
}
