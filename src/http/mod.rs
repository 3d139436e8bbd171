//! The HTTP service (DESIGN §3, §5, §7): routes, request ids, metrics per route, and `run`,
//! which assembles everything and serves until shutdown.

mod access;
mod approval;
mod audit;
mod auth;
#[cfg(feature = "bench")]
mod bench;
mod cookie;
mod error;
mod events;
mod extract;
mod guard;
mod meta;
mod oauth;
mod openapi;
mod revocation;
mod serve;

mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tracing::Instrument;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use crate::access::{App, AppState, StartError};
pub use error::ApiError;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::token::new_jti;

/// The routes, on `state`.
pub fn router(state: AppState) -> Router {
    // Outside the observing layer: the stripped endpoint measures the work that cannot go.
    #[cfg(feature = "bench")]
    let bench = if state.config.bench.stripped_endpoint {
        bench::routes().with_state(state.clone())
    } else {
        Router::new()
    };
    let (api, document) = api().split_for_parts();
    let document = openapi::Document(document.to_json().unwrap_or_default().into());
    let app = api
        .merge(ui::routes())
        .merge(auth::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(Extension(document))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    #[cfg(feature = "bench")]
    let app = app.merge(bench);
    app
}

/// Every API endpoint with its OpenAPI operation: one registration makes both the route and
/// its entry in `GET /openapi.json`.
fn api() -> OpenApiRouter<AppState> {
    let no_store = || middleware::map_response(no_store);
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(access::create, approval::list).layer(no_store()))
        .routes(routes!(approval::get))
        .routes(routes!(events::events))
        .routes(routes!(approval::approve))
        .routes(routes!(approval::deny))
        .routes(routes!(approval::cancel))
        .routes(routes!(approval::review))
        .routes(routes!(approval::mint).layer(no_store()))
        .routes(routes!(access::extend).layer(no_store()))
        .routes(routes!(access::dry_run))
        .routes(routes!(access::requestable))
        .routes(routes!(oauth::token).layer(no_store()))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(audit::head))
        .routes(routes!(revocation::revoke_token))
        .routes(routes!(revocation::introspect))
        .routes(routes!(revocation::create, revocation::feed))
        .routes(routes!(revocation::lift))
        .routes(routes!(meta::me).layer(no_store()))
        .routes(routes!(meta::policies))
        .routes(routes!(meta::cluster))
        .routes(routes!(meta::jwks))
        .routes(routes!(meta::metadata))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(openapi::document))
}

/// The OpenAPI document `GET /openapi.json` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// For the endpoints whose answer may carry an access token: no cache, shared or private,
/// keeps it (RFC 6749 §5.1).
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Request id (echoed, or made up), a span carrying it, and the per-route metrics.
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_jti, str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!("http", http.request_id = %request_id, http.method = %request.method(), http.route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Starts everything `config` describes and serves on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    run_with_clock(config, SystemClock::shared(), listener, shutdown).await
}

/// [`run`], reading the time from `clock` (tests move a manual clock instead of sleeping).
pub async fn run_with_clock(
    config: Config,
    clock: SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = crate::access::build(config, clock).await?;
    let _watch = state.policies.watch()?;
    let _shadow_watch = match &state.shadow {
        Some(shadow) => Some(shadow.policies.watch()?),
        None => None,
    };
    let shadow = tokio::spawn(crate::access::shadow::run(state.clone()));
    let housekeeping = tokio::spawn(crate::access::housekeeping::run(state.clone()));
    let delivery = tokio::spawn(Arc::clone(&state.notifier).deliver(
        state.store.clone(),
        state.metrics.clone(),
        Arc::clone(&state.clock),
    ));
    let heartbeats = tokio::spawn(crate::access::cluster::heartbeats(state.clone()));
    let share_rates = state
        .store
        .is_shared()
        .then(|| tokio::spawn(crate::access::cluster::share_rates(state.clone())));
    let follow_keys = state
        .key_encryption_key
        .clone()
        .map(|kek| tokio::spawn(crate::access::keys::follow(state.clone(), kek)));
    if state.auth.dev_enabled() {
        tracing::warn!(
            "DEV ISSUER ENABLED: tokens minted by `jitgate dev-token` are trusted. Never run this in production; set [identity.dev] enabled = false"
        );
    }
    tracing::info!(listen = %listener.local_addr()?, issuer = %state.config.issuer, "jitgate serving");
    // The audit head is signed at an interval and once more on shutdown (issue 11 finding 6).
    let heads = tokio::spawn(crate::access::trail::sign_heads(state.clone()));
    let last_head = state.clone();
    serve::serve(
        listener,
        router(state.clone()),
        &state.config.http,
        shutdown,
    )
    .await;
    housekeeping.abort();
    shadow.abort();
    delivery.abort();
    heads.abort();
    heartbeats.abort();
    if let Some(share_rates) = share_rates {
        share_rates.abort();
    }
    if let Some(follow_keys) = follow_keys {
        follow_keys.abort();
    }
    if let Err(e) = crate::access::trail::sign_head(&last_head).await {
        tracing::warn!(error = %e, "cannot sign the audit head on shutdown");
    }
    tracing::info!("jitgate stopped");
    Ok(())
}
