//! A resource server that lets a route through only with a jitgate token carrying a scope.
//!
//! ```sh
//! JITGATE_SERVER=http://127.0.0.1:8080 JITGATE_FEED_KEY=jg_… \
//!   cargo run -p jitgate-verify --example protect_route
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:3000/orders
//! ```
//!
//! `JITGATE_FEED_KEY` (an API key jitgate accepts) turns on the revocation feed; without it,
//! revoked tokens pass until they expire.

#![allow(clippy::print_stdout, reason = "an example says where it listens")]

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jitgate_verify::{AccessClaims, ResourceConfig, ResourceVerifier, VerifyError, require_scopes};

/// What a route demands: jitgate's verifier and the scopes a token must carry.
#[derive(Clone)]
struct Guard {
    verifier: Arc<ResourceVerifier>,
    scopes: &'static [&'static str],
}

/// The layer: 401 without a valid token, 403 without the scopes; otherwise the verified
/// claims ride along in the request's extensions.
async fn require_token(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    };
    let claims = match guard.verifier.verify(token).await {
        Ok(claims) => claims,
        Err(e @ (VerifyError::StaleRevocations | VerifyError::StaleKeys)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    if let Err(e) = require_scopes(&claims, guard.scopes) {
        return (StatusCode::FORBIDDEN, e.to_string()).into_response();
    }
    request.extensions_mut().insert(claims);
    next.run(request).await
}

async fn orders(axum::Extension(claims): axum::Extension<AccessClaims>) -> String {
    format!(
        "orders for {} (request {})\n",
        claims.sub, claims.jit.request_id
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("JITGATE_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let mut config = ResourceConfig::new(&server, "db-proxy");
    config.feed_credential = std::env::var("JITGATE_FEED_KEY").ok();
    let verifier = ResourceVerifier::connect(config).await?;
    let _poll = verifier.spawn_revocation_poll();
    let guard = Guard {
        verifier,
        scopes: &["db:read:orders"],
    };
    let app = Router::new()
        .route("/orders", get(orders))
        .layer(middleware::from_fn_with_state(guard, require_token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
