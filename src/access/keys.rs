//! Signing keys kept in a shared database (replicas on PostgreSQL): opened with the
//! key-encryption key, generated and rotated there, and followed by every replica, so that all
//! serve one JWKS and sign with the newest key within [`FOLLOW_EVERY`] of a rotation.

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;

use super::AppState;
use crate::clock::stored_secs;
use crate::config::SigningAlg;
use crate::store::{Store, StoreError, StoredKey, Write};
use crate::token::{KeyEncryptionKey, KeyError, KeyRing, SealError, SigningKey, generate_pem};

/// How often a replica looks for keys another one added.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("signing key {kid} in the database: {message}")]
    Stored { kid: String, message: String },
}

fn stored_error(kid: &str, message: impl ToString) -> KeysError {
    KeysError::Stored {
        kid: kid.to_owned(),
        message: message.to_string(),
    }
}

/// The keys the database keeps, opened with `kek`.
pub async fn read(store: &Store, kek: &KeyEncryptionKey) -> Result<KeyRing, KeysError> {
    open_all(&store.signing_keys().await?, kek)
}

fn open_all(stored: &[StoredKey], kek: &KeyEncryptionKey) -> Result<KeyRing, KeysError> {
    let keys = stored
        .iter()
        .map(|key| open_key(key, kek))
        .collect::<Result<_, _>>()?;
    Ok(KeyRing::of(keys))
}

fn open_key(stored: &StoredKey, kek: &KeyEncryptionKey) -> Result<SigningKey, KeysError> {
    let alg = SigningAlg::parse(&stored.alg)
        .ok_or_else(|| stored_error(&stored.kid, format!("unknown algorithm {}", stored.alg)))?;
    let pem = kek.open(&stored.kid, &stored.sealed_private)?;
    let created = u64::try_from(stored.created).unwrap_or(0);
    let key = SigningKey::from_pem(&pem, alg, created).map_err(|e| stored_error(&stored.kid, e))?;
    // The kid is the public key's thumbprint: a row whose kid does not match its key was
    // not written by jitgate.
    if key.kid != stored.kid {
        return Err(stored_error(&stored.kid, "its key has another thumbprint"));
    }
    Ok(key)
}

/// The database's keys, with a first key of `alg` made when there is none (or when the newest
/// is of another algorithm).
pub async fn open(
    store: &Store,
    kek: &KeyEncryptionKey,
    alg: SigningAlg,
    now: u64,
) -> Result<KeyRing, KeysError> {
    let ring = read(store, kek).await?;
    if ring.active().is_some_and(|key| key.alg == alg) {
        return Ok(ring);
    }
    add_key(store, kek, &ring, alg, now).await
}

/// Adds a new key of `alg`, which every replica signs with once it has seen it; returns the
/// keys as the database then holds them.
pub async fn rotate(
    store: &Store,
    kek: &KeyEncryptionKey,
    alg: SigningAlg,
    now: u64,
) -> Result<KeyRing, KeysError> {
    let ring = read(store, kek).await?;
    add_key(store, kek, &ring, alg, now).await
}

/// Keeps a new key of `alg`, created after every key of `ring` (the database's), and returns
/// the keys the database then holds.
async fn add_key(
    store: &Store,
    kek: &KeyEncryptionKey,
    ring: &KeyRing,
    alg: SigningAlg,
    now: u64,
) -> Result<KeyRing, KeysError> {
    // After every key held, so that the newest is the one that signs.
    let created = ring
        .active()
        .map_or(now, |newest| now.max(newest.created.saturating_add(1)));
    let pem = generate_pem(alg)?;
    let key = SigningKey::from_pem(pem.as_bytes(), alg, created).map_err(|e| {
        KeysError::Key(KeyError::Generate {
            alg: alg.as_str(),
            message: e,
        })
    })?;
    let public_jwk = serde_json::to_string(&key.public).map_err(|e| stored_error(&key.kid, e))?;
    let stored = StoredKey {
        sealed_private: kek.seal(&key.kid, pem.as_bytes())?,
        kid: key.kid,
        alg: alg.as_str().to_owned(),
        created: stored_secs(created),
        public_jwk,
    };
    store.write(vec![Write::SigningKey(stored)]).await?;
    read(store, kek).await
}

/// Forgets the keys `dropped` (what [`KeyRing::prune`] let go).
pub async fn forget(store: &Store, dropped: Vec<String>) -> Result<(), KeysError> {
    if dropped.is_empty() {
        return Ok(());
    }
    let writes = dropped
        .into_iter()
        .map(|kid| Write::DropSigningKey { kid })
        .collect();
    Ok(store.write(writes).await?)
}

/// The public keys the database keeps, for commands that only verify (no key-encryption key
/// needed).
pub async fn public_keys(store: &Store) -> Result<Vec<(Jwk, u64)>, KeysError> {
    store
        .signing_keys()
        .await?
        .into_iter()
        .map(|stored| {
            let jwk = serde_json::from_str(&stored.public_jwk)
                .map_err(|e| stored_error(&stored.kid, e))?;
            Ok((jwk, u64::try_from(stored.created).unwrap_or(0)))
        })
        .collect()
}

/// Every [`FOLLOW_EVERY`], takes up the keys the database holds when they differ from those
/// the server signs with (a rotation on any replica), until aborted.
pub async fn follow(app: AppState, kek: std::sync::Arc<KeyEncryptionKey>) {
    let mut ticks = tokio::time::interval(FOLLOW_EVERY);
    loop {
        ticks.tick().await;
        if let Err(e) = refresh(&app, &kek).await {
            tracing::warn!(error = %e, "cannot read the signing keys from the database");
        }
    }
}

/// Swaps in the database's keys if they changed; whether they did. Keys are opened only
/// then: an unchanged set costs one read.
pub async fn refresh(app: &AppState, kek: &KeyEncryptionKey) -> Result<bool, KeysError> {
    let stored = app.store.signing_keys().await?;
    let kids: Vec<String> = stored.iter().map(|k| k.kid.clone()).collect();
    if stored.is_empty() || kids == app.tokens.kids() {
        return Ok(false);
    }
    let ring = open_all(&stored, kek)?;
    let issued_until = app.store.latest_expiry_by_kid().await?;
    tracing::info!(
        kid = ring.active().map(|k| k.kid.as_str()).unwrap_or_default(),
        "signing keys changed in the database: signing with the newest"
    );
    app.tokens.replace_keys(ring, issued_until);
    Ok(true)
}
