//! Extending a live grant (DESIGN §9.3): the requester asks for more time on a request whose
//! token is still live. The extension is a new request for the same action, resource and scopes,
//! linked to the first of the grant and decided by the policies like any other, with the context
//! keys `extends` (the first request's id) and `extended_secs` (the grant's lifetime so far), so
//! that policies can cap how long a grant lasts.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::approval::load;
use super::ask::{self, AccessRequest, Asked};
use super::{ApiError, App, RequestStatus};
use crate::decision::{EntityRef, Extension};
use crate::identity::Caller;
use crate::store::effective_status;

/// What the requester asks for more of.
#[derive(Debug, Clone, Default)]
pub struct ExtendRequest {
    /// `None` asks for the policies' default lifetime.
    pub duration: Option<Duration>,
    /// `None` keeps the first request's reason.
    pub reason: Option<String>,
    /// The DPoP key the new token is to be bound to.
    pub dpop_jkt: Option<String>,
}

/// `caller` extends its live request `id`: decided and answered as a new access request.
pub async fn extend(
    app: &App,
    caller: Caller,
    source_ip: IpAddr,
    id: &str,
    ask_for: ExtendRequest,
) -> Result<Asked, ApiError> {
    let live = load(app, id).await?;
    let r = &live.record;
    if caller.principal.to_string() != r.principal {
        return Err(ApiError::Forbidden(
            "only the requester extends a grant".into(),
        ));
    }
    let now = app.now_stored();
    let status = effective_status(&r.status, r.expires_at, now);
    let issued = matches!(
        RequestStatus::parse(&status),
        Some(RequestStatus::Issued | RequestStatus::NeedsReview | RequestStatus::Reviewed)
    );
    if !issued {
        return Err(ApiError::Conflict { status });
    }
    // The window a token of this request lives in: from its decision (or its scheduled start).
    let opens = live
        .decided_at
        .unwrap_or(r.created_at)
        .max(r.not_before.unwrap_or(0));
    if now >= opens.saturating_add(r.lifetime_secs) {
        return Err(ApiError::Conflict {
            status: "no longer live: its window ended; ask again".into(),
        });
    }
    let resource: EntityRef = r.resource.parse().map_err(ApiError::Internal)?;
    let context = match &r.context {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let extension = Extension {
        extends: r.extends.clone().unwrap_or_else(|| r.id.clone()),
        extended_secs: r.extended_secs.unwrap_or(0).saturating_add(r.lifetime_secs),
    };
    let request = AccessRequest {
        action: r.action.clone(),
        resource,
        scopes: r.scopes.clone(),
        duration: ask_for.duration,
        reason: ask_for.reason.unwrap_or_else(|| r.reason.clone()),
        context,
        break_glass: false,
        dpop_jkt: ask_for.dpop_jkt,
        not_before: None,
        extension: Some(extension),
    };
    ask::ask(app, caller, source_ip, request).await
}
