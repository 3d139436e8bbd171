//! Assembling the application from its configuration: policies, store, keys, identity,
//! notifications and metrics, on one clock.

use std::sync::Arc;

use serde_json::json;

use super::{App, AppState, AuditKind};
use crate::clock::{SharedClock, stored_secs};
use crate::config::Config;
use crate::identity::{Authenticator, IdentityError};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyError};
use crate::policy::{LivePolicies, LoadErrors, ReloadListener, ReloadOutcome};
use crate::risk::RequestRates;
use crate::store::{AuditRecord, Store, StoreError, Write};
use crate::token::{KeyEncryptionKey, KeyError, KeyRing, SealError, TokenIssuer};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("policies:\n{0}")]
    Policies(#[from] LoadErrors),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("signing keys: {0}")]
    StoredKeys(#[from] super::keys::KeysError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
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

/// The shared state of a server for `config`, on `clock`.
pub async fn build(config: Config, clock: SharedClock) -> Result<AppState, StartError> {
    let now = clock.now();
    let time_zone = jiff::tz::TimeZone::get(&config.time_zone)
        .map_err(|e| StartError::TimeZone(e.to_string()))?;
    let policies = Arc::new(LivePolicies::load(config.pack_paths())?);
    let shadow = (config.shadow_pack_paths())
        .map(super::shadow::Shadow::load)
        .transpose()?
        .map(Arc::new);
    config
        .ensure_data_dir()
        .map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let store = Store::open_pooled(
        &config.database_url,
        &config.data_dir,
        config.database.max_connections,
    )
    .await?;
    #[cfg(feature = "bench")]
    let store = if config.bench.discard_writes {
        store.discarding_writes()
    } else {
        store
    };
    let kek = key_encryption_key(&config, &store)?;
    let mut ring = match &kek {
        Some(kek) => super::keys::open(&store, kek, config.signing_alg, now).await?,
        None => KeyRing::open(&config.data_dir.join("keys"), config.signing_alg, now)?,
    };
    let issued_until = store.latest_expiry_by_kid().await?;
    let dropped = ring.prune(now, config.max_ttl, &issued_until)?;
    for kid in &dropped {
        tracing::info!(key.kid = %kid, "dropped a retired signing key: every token it signed has expired");
    }
    if kek.is_some() {
        super::keys::forget(&store, dropped).await?;
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
            at: stored_secs(now),
            kind: AuditKind::PolicyLoaded.into(),
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
    policies.on_reload(reload_listener(&metrics, &store, &clock));
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
        readiness: Default::default(),
        replica: super::cluster::Replica::new(stored_secs(now)),
        key_encryption_key: kek.map(Arc::new),
        polls: Default::default(),
        shadow,
    }))
}

/// The key-encryption key a store that keeps the signing keys needs (a start without it
/// fails); `None` for a store whose keys are files in `data_dir`.
fn key_encryption_key(
    config: &Config,
    store: &Store,
) -> Result<Option<KeyEncryptionKey>, StartError> {
    if !store.is_shared() {
        return Ok(None);
    }
    let text = config.key_encryption_key_text()?.ok_or_else(|| {
        StartError::StoredKeys(super::keys::KeysError::Seal(SealError::BadKey(
            "none given: set key_encryption_key_file or JITGATE_KEY_ENCRYPTION_KEY; the signing \
             keys of replicas on PostgreSQL are sealed with it"
                .into(),
        )))
    })?;
    Ok(Some(KeyEncryptionKey::from_base64(text.expose()).map_err(
        |e| StartError::StoredKeys(super::keys::KeysError::Seal(e)),
    )?))
}

/// Counts every reload and records each that changed the pack in the audit trail.
fn reload_listener(metrics: &Metrics, store: &Store, clock: &SharedClock) -> ReloadListener {
    let listener_metrics = metrics.clone();
    let listener_store = store.clone();
    let reload_clock = Arc::clone(clock);
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |outcome| {
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
            kind: AuditKind::PolicyLoaded.into(),
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
    })
}
