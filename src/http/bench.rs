//! `POST /bench/stripped` (bench builds only): the work of an allowed request that no design
//! can remove — parse the body, decide with Cedar, sign a token — with everything else left
//! out: no caller authentication (the body names the principal), no rate limit, no risk
//! lookups, no store, no metrics. `jitgate-load --target stripped` measures the real endpoint
//! against this ceiling.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ClientIp, JsonBody};
use crate::access::AppState;
use crate::access::issue::grant_of;
use crate::decision::Engine as _;
use crate::decision::{
    DecisionContext, DecisionRequest, EntityRef, Outcome, RequestContext, RequestError,
};
use crate::identity::Caller;
use crate::risk::{self, Observations};
use crate::token::new_jti;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/bench/stripped",
        post(stripped).layer(axum::middleware::map_response(super::no_store)),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrippedBody {
    principal: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    mfa: bool,
    action: String,
    resource: String,
    #[serde(default)]
    reason: String,
}

fn entity(text: &str) -> Result<EntityRef, ApiError> {
    text.parse().map_err(ApiError::InvalidRequest)
}

async fn stripped(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<StrippedBody>,
) -> Result<Response, ApiError> {
    let principal = entity(&body.principal)?;
    let groups = body
        .groups
        .iter()
        .map(|g| entity(g))
        .collect::<Result<Vec<_>, _>>()?;
    let resource = entity(&body.resource)?;
    let now = state.now();
    let time = state.request_time(now);
    let risk = risk::assess(
        &state.config.risk,
        &Observations {
            source_ip: ip,
            mfa: body.mfa,
            hour: time.hour,
            recent_denials: 0,
            requests_last_minute: 1,
            seen_from_ip: true,
        },
    );
    let request = DecisionRequest {
        principal,
        groups,
        action: body.action,
        resource,
        context: DecisionContext::Access(RequestContext {
            source_ip: ip,
            risk_score: risk.score,
            mfa: body.mfa,
            reason: body.reason,
            time,
            dpop_bound: false,
            extension: None,
            extra: serde_json::Map::new(),
        }),
        scopes: Vec::new(),
        duration: None,
    };
    let pack = state.policies.current();
    if !pack.is_requestable(&request.action) {
        return Err(RequestError::UnknownAction {
            action: request.action,
            valid: pack.requestable_actions(),
        }
        .into());
    }
    let decision = crate::decision::decide(&pack, &request, &state.config.grant_defaults())?;
    if decision.outcome != Outcome::Allow {
        let body = json!({"decision": decision.outcome.as_str(), "policies": decision.policies});
        return Ok((StatusCode::FORBIDDEN, Json(body)).into_response());
    }
    let request_id = format!("req_{}", new_jti());
    let caller = Caller {
        principal: request.principal.clone(),
        groups: request.groups.clone(),
        mfa: body.mfa,
        api_key: false,
        auth_time: None,
        client_id: "bench".into(),
    };
    let resource = request.resource.to_string();
    let grant = grant_of(
        &caller,
        &request_id,
        (&request.action, &resource),
        &decision,
        Vec::new(),
    );
    let issued = state
        .tokens
        .mint(&grant, now)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let body = json!({
        "request_id": request_id,
        "decision": "allow",
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": decision.lifetime.as_secs(),
        "scope": issued.scope,
        "policies": decision.policies,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
