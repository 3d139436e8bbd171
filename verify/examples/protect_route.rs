//! A resource server that lets a route through only with a jitgate token carrying a scope.
//!
//! ```sh
//! JITGATE_SERVER=http://127.0.0.1:8080 JITGATE_FEED_KEY=jg_… \
//!   cargo run -p jitgate-verify --example protect_route
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:3000/orders
//! ```
//!
//! A DPoP-bound token goes as `Authorization: DPoP $ACCESS_TOKEN` with a `DPoP` proof for
//! `GET http://127.0.0.1:3000/orders` carrying the token's hash (`ath`).
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

/// Where this example listens: a DPoP proof names the URL it was made for.
const ORIGIN: &str = "http://127.0.0.1:3000";

/// The layer: 401 without a valid token (a DPoP-bound one with its proof), 403 without the
/// scopes; otherwise the verified claims ride along in the request's extensions.
async fn require_token(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    let Some((scheme, token)) = text(header::AUTHORIZATION).and_then(|v| v.split_once(' ')) else {
        return (StatusCode::UNAUTHORIZED, "an access token is required").into_response();
    };
    let url = format!("{ORIGIN}{}", request.uri().path());
    let verified = match (scheme, text(header::HeaderName::from_static("dpop"))) {
        ("DPoP", Some(proof)) => {
            let method = request.method().as_str();
            guard
                .verifier
                .verify_dpop(token, proof, (method, &url))
                .await
        }
        ("DPoP", None) => Err(VerifyError::DpopRequired),
        _ => guard.verifier.verify(token).await,
    };
    let claims = match verified {
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
    let listener = tokio::net::TcpListener::bind(ORIGIN.trim_start_matches("http://")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
