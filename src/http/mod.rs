//! The HTTP service (DESIGN §3, §5, §7): routes, request ids, metrics per route, and `run`,
//! which assembles everything and serves until shutdown.

mod access;
mod approval;
mod audit;
#[cfg(feature = "bench")]
mod bench;
mod error;
mod extract;
mod guard;
mod meta;
mod revocation;
mod serve;
mod state;
mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::Instrument;

pub use error::ApiError;
pub use state::{App, AppState};

use crate::clock::{SharedClock, SystemClock, stored_secs};
use crate::config::Config;
use crate::identity::{Authenticator, IdentityError};
use crate::metrics::Metrics;
use crate::notify::{Event, Notifier, NotifyError};
use crate::policy::{LivePolicies, LoadErrors, ReloadOutcome};
use crate::risk::RequestRates;
use crate::store::{AuditRecord, Store, StoreError, Write};
use crate::token::{KeyError, KeyRing, TokenIssuer, new_jti};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("policies:\n{0}")]
    Policies(#[from] LoadErrors),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Notify(#[from] NotifyError),
    #[error("watching policies: {0}")]
    Watch(#[from] notify::Error),
    #[error("time zone: {0}")]
    TimeZone(String),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// The routes, on `state`.
pub fn router(state: AppState) -> Router {
    // Outside the observing layer: the stripped endpoint measures the work that cannot go.
    #[cfg(feature = "bench")]
    let bench = if state.config.bench.stripped_endpoint {
        bench::routes().with_state(state.clone())
    } else {
        Router::new()
    };
    let app = Router::new()
        .route(
            "/v1/access-requests",
            post(access::create)
                .layer(middleware::map_response(no_store))
                .get(approval::list),
        )
        .route("/v1/access-requests/{id}", get(approval::get))
        .route("/v1/access-requests/{id}/approve", post(approval::approve))
        .route("/v1/access-requests/{id}/deny", post(approval::deny))
        .route("/v1/access-requests/{id}/cancel", post(approval::cancel))
        .route("/v1/access-requests/{id}/review", post(approval::review))
        .route(
            "/v1/access-requests/{id}/token",
            post(approval::mint).layer(middleware::map_response(no_store)),
        )
        .route("/v1/decisions", post(access::dry_run))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/head", get(audit::head))
        .route("/v1/tokens/revoke", post(revocation::revoke_token))
        .route("/v1/tokens/introspect", post(revocation::introspect))
        .route(
            "/v1/revocations",
            post(revocation::create).get(revocation::feed),
        )
        .route("/v1/revocations/{id}", delete(revocation::lift))
        .route("/v1/policies", get(meta::policies))
        .route("/.well-known/jwks.json", get(meta::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(meta::metadata),
        )
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .merge(ui::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    #[cfg(feature = "bench")]
    let app = app.merge(bench);
    app
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
) -> Result<(), ServeError> {
    run_with_clock(config, SystemClock::shared(), listener, shutdown).await
}

/// [`run`], reading the time from `clock` (tests move a manual clock instead of sleeping).
pub async fn run_with_clock(
    config: Config,
    clock: SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let state = build(config, clock).await?;
    let _watch = state.policies.watch()?;
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let delivery = tokio::spawn(
        Arc::clone(&state.notifier).deliver(state.store.clone(), state.metrics.clone()),
    );
    if state.auth.dev_enabled() {
        tracing::warn!(
            "DEV ISSUER ENABLED: tokens minted by `jitgate dev-token` are trusted. Never run this in production; set [identity.dev] enabled = false"
        );
    }
    tracing::info!(listen = %listener.local_addr()?, issuer = %state.config.issuer, "jitgate serving");
    // The audit head is signed at an interval and once more on shutdown (issue 11 finding 6).
    let heads = tokio::spawn(audit::sign_heads(state.clone()));
    let last_head = state.clone();
    serve::serve(
        listener,
        router(state.clone()),
        &state.config.http,
        shutdown,
    )
    .await;
    housekeeping.abort();
    delivery.abort();
    heads.abort();
    if let Err(e) = audit::sign_head(&last_head).await {
        tracing::warn!(error = %e, "cannot sign the audit head on shutdown");
    }
    tracing::info!("jitgate stopped");
    Ok(())
}

/// Marks pending requests past `pending_ttl` expired and audits it (reads already treat them
/// as expired; this writes it down for the record, the metrics and the webhooks), and forgets
/// revocations whose tokens have all expired.
async fn housekeeping(state: AppState) {
    let every =
        (state.config.pending_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let now = i64::try_from(state.now()).unwrap_or(i64::MAX);
        let denials_window = state
            .config
            .risk
            .recent_denials
            .as_ref()
            .map_or(0, |config| {
                i64::try_from(config.window.as_secs()).unwrap_or(i64::MAX)
            });
        let prune = vec![
            Write::PruneRevocations { now },
            Write::PruneDryRunDenials {
                before: now.saturating_sub(denials_window),
            },
        ];
        if let Err(e) = state.store.write(prune).await {
            tracing::warn!(error = %e, "cannot prune revocations and dry-run denials");
        }
        let ids = match state.store.expired_pending(now, 500).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for expired requests");
                continue;
            }
        };
        for id in ids {
            let request = match state.store.request(&id).await {
                Ok(Some(request)) => request,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read an expired request");
                    continue;
                }
            };
            let mut writes = vec![
                Write::Expire {
                    id: id.clone(),
                    at: now,
                },
                Write::Audit(AuditRecord {
                    at: now,
                    kind: "request.expired".into(),
                    request_id: Some(id.clone()),
                    subject: None,
                    data: json!({}),
                }),
            ];
            writes.extend(
                state
                    .notifier
                    .outbox(&Event::Expired, &request.record, state.now_ms())
                    .into_iter()
                    .map(Write::Outbox),
            );
            match state.store.write(writes).await {
                Ok(()) => {
                    state.notifier.wake();
                    tracing::info!(request.id = %id, "pending request expired");
                }
                // Approved, denied or cancelled in the meantime: nothing to do.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => tracing::warn!(error = %e, "cannot record an expiry"),
            }
        }
    }
}

/// The shared state of a server for `config`, on `clock`.
pub async fn build(config: Config, clock: SharedClock) -> Result<AppState, ServeError> {
    let now = clock.now();
    let time_zone = jiff::tz::TimeZone::get(&config.time_zone)
        .map_err(|e| ServeError::TimeZone(e.to_string()))?;
    let policies = Arc::new(LivePolicies::load(config.pack_paths())?);
    config
        .ensure_data_dir()
        .map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let store = Store::open(&config.database_url, &config.data_dir).await?;
    #[cfg(feature = "bench")]
    let store = if config.bench.discard_writes {
        store.discarding_writes()
    } else {
        store
    };
    let mut ring = KeyRing::open(&config.data_dir.join("keys"), config.signing_alg, now)?;
    let issued_until = store.latest_expiry_by_kid().await?;
    for kid in ring.prune(now, config.max_ttl, &issued_until)? {
        tracing::info!(key.kid = %kid, "dropped a retired signing key: every token it signed has expired");
    }
    let tokens = TokenIssuer::new(config.issuer.clone(), ring, config.max_ttl, issued_until);
    let auth = Authenticator::from_config(&config, now).await?;
    let notifier = Notifier::from_config(&config)?;
    let metrics = Metrics::new()?;
    metrics.register(Box::new(store.commit_counter()))?;
    let pack = policies.current();
    metrics
        .policies_loaded
        .set(i64::try_from(pack.policy_count()).unwrap_or(i64::MAX));
    store
        .write(vec![Write::Audit(AuditRecord {
            at: i64::try_from(now).unwrap_or(i64::MAX),
            kind: "policy.loaded".into(),
            request_id: None,
            subject: None,
            data: json!({
                "version": pack.version(),
                "files": pack.files(),
                "policies": pack.policies().map(|p| p.id.clone()).collect::<Vec<_>>(),
                "reason": "start",
            }),
        })])
        .await?;
    let listener_metrics = metrics.clone();
    let listener_store = store.clone();
    let reload_clock = Arc::clone(&clock);
    let runtime = tokio::runtime::Handle::current();
    policies.on_reload(Box::new(move |outcome| {
        let result = match outcome {
            ReloadOutcome::Reloaded { .. } => "success",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Rejected(_) => "error",
        };
        listener_metrics
            .policy_reloads
            .with_label_values(&[result])
            .inc();
        let ReloadOutcome::Reloaded {
            from,
            to,
            files,
            added,
            removed,
        } = outcome
        else {
            return;
        };
        listener_metrics.policies_loaded.add(
            i64::try_from(added.len()).unwrap_or(0) - i64::try_from(removed.len()).unwrap_or(0),
        );
        let event = AuditRecord {
            at: stored_secs(reload_clock.now()),
            kind: "policy.loaded".into(),
            request_id: None,
            subject: None,
            data: json!({"version": to, "previous_version": from, "files": files, "added": added, "removed": removed, "reason": "reload"}),
        };
        let store = listener_store.clone();
        runtime.spawn(async move {
            if let Err(e) = store.write(vec![Write::Audit(event)]).await {
                tracing::error!(error = %e, "could not record a policy reload in the audit trail");
            }
        });
    }));
    Ok(Arc::new(App {
        config,
        policies,
        auth,
        tokens,
        store,
        metrics,
        notifier,
        rates: RequestRates::default(),
        operation_rates: RequestRates::default(),
        last_signed_head: std::sync::Mutex::default(),
        time_zone,
        clock,
    }))
}
