//! Signed-in UI sessions (DESIGN §9.3): a sign-in starts at the identity provider and ends in
//! a server-side session, which the browser holds as an opaque cookie. The store keeps only
//! hashes of the values a browser presents (the `state` of a sign-in under way, the session
//! cookie), so a copy of the database signs nobody in. A session ends at sign-out, after
//! `[ui] session_idle` unused, `[ui] session_max` after sign-in, or when its principal is
//! revoked.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, App, AuditKind};
use crate::clock::stored_secs;
use crate::decision::EntityRef;
use crate::identity::Caller;
use crate::identity::sign_in::{Authorization, SignInError};
use crate::store::{AuditRecord, LoginRecord, SessionRecord, StoreError, Write};

/// A sign-in not finished this long after it started is refused.
const LOGIN_TTL_SECS: i64 = 600;
/// A session's last use is written down at most this often (or every half idle timeout, if
/// less): the idle timeout is this coarse.
const TOUCH_EVERY_SECS: i64 = 60;
/// Where a sign-in goes when it names nowhere (or somewhere it may not go).
pub const DEFAULT_NEXT: &str = "/ui/";
/// The path the identity provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/auth/callback";

/// A sign-in to start: where the browser goes, and the `state` the browser keeps to finish it.
pub struct LoginStart {
    pub authorization_url: String,
    pub state: String,
}

/// A finished sign-in: the new session's cookie value, and where the browser goes.
pub struct SignedIn {
    pub session: String,
    pub next: String,
    pub caller: Caller,
}

// The state and the session are credentials: never in a log line, even by accident.
impl std::fmt::Debug for LoginStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginStart").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (f.debug_struct("SignedIn"))
            .field("next", &self.next)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// The signed-in caller as a session keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct KeptCaller {
    principal: String,
    groups: Vec<String>,
    mfa: bool,
    auth_time: Option<u64>,
    client_id: String,
}

impl From<&Caller> for KeptCaller {
    fn from(caller: &Caller) -> Self {
        Self {
            principal: caller.principal.to_string(),
            groups: caller.groups.iter().map(ToString::to_string).collect(),
            mfa: caller.mfa,
            auth_time: caller.auth_time,
            client_id: caller.client_id.clone(),
        }
    }
}

impl KeptCaller {
    fn caller(&self) -> Option<Caller> {
        Some(Caller {
            principal: self.principal.parse().ok()?,
            groups: (self.groups.iter())
                .map(|g| g.parse::<EntityRef>().ok())
                .collect::<Option<_>>()?,
            mfa: self.mfa,
            api_key: false,
            auth_time: self.auth_time,
            client_id: self.client_id.clone(),
        })
    }
}

impl From<SignInError> for ApiError {
    fn from(error: SignInError) -> Self {
        match error {
            SignInError::Unreachable(_) => ApiError::Unavailable(error.to_string()),
            SignInError::Refused(_) | SignInError::InvalidIdToken(_) => {
                ApiError::SignInFailed(error.to_string())
            }
        }
    }
}

/// A fresh random value, 256 bits, base64url.
fn random_value() -> String {
    let mut bytes = [0u8; 32];
    crate::token::fill_unguessable(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256 of a value a browser presents: what the store keeps of it.
fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The CSRF token of the session whose cookie is `session`: a state-changing request without
/// an `Origin` must carry it. Derived, so it needs no storage, and not from anything stored,
/// so the database does not give it away.
pub fn csrf_token(session: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("jitgate-csrf:{session}")))
}

/// `next` if it is a path of this origin, else the UI's start page: a sign-in never sends the
/// browser elsewhere (no open redirect).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path.len() <= 1024 =>
        {
            path.to_owned()
        }
        _ => DEFAULT_NEXT.to_owned(),
    }
}

/// The callback the identity provider sends the browser back to.
fn redirect_uri(app: &App) -> String {
    format!("{}{CALLBACK_PATH}", app.config.ui_origin())
}

/// Starts a sign-in that returns to `next`; with `max_age`, the provider must have signed the
/// person in at most that many seconds ago.
pub async fn begin(
    app: &App,
    next: Option<&str>,
    max_age: Option<u64>,
) -> Result<LoginStart, ApiError> {
    let sign_in = app.auth.sign_in().ok_or_else(|| {
        ApiError::NotFound("signing in is not configured (no issuer has a client_id)".into())
    })?;
    // Always a `max_age`: the provider must then say when the person signed in (`auth_time`),
    // which `auth_age_secs` is computed from; by default no older than a session may last.
    let max_age = max_age.unwrap_or(app.config.ui.session_max.as_secs());
    let (state, nonce, verifier) = (random_value(), random_value(), random_value());
    let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = redirect_uri(app);
    let authorization_url = sign_in
        .authorization_url(&Authorization {
            redirect_uri: &redirect_uri,
            state: &state,
            nonce: &nonce,
            code_challenge: &code_challenge,
            max_age,
        })
        .await?;
    let now = app.now_stored();
    let login = LoginRecord {
        state_hash: digest(&state),
        nonce,
        verifier,
        next: local_path(next),
        max_age: stored_secs(max_age),
        created_at: now,
        expires_at: now.saturating_add(LOGIN_TTL_SECS),
    };
    app.store.write(vec![Write::Login(login)]).await?;
    Ok(LoginStart {
        authorization_url,
        state,
    })
}

/// Finishes the sign-in `state` names with the provider's `code`. `browser_state` is the state
/// the browser kept when the sign-in began: a sign-in finishes only in the browser that began
/// it, and only once.
pub async fn finish(
    app: &App,
    state: &str,
    browser_state: Option<&str>,
    code: &str,
) -> Result<SignedIn, ApiError> {
    let same_browser = browser_state.is_some_and(|kept| {
        use subtle::ConstantTimeEq as _;
        bool::from(kept.as_bytes().ct_eq(state.as_bytes()))
    });
    if !same_browser {
        return Err(ApiError::SignInFailed(
            "this sign-in was not started in this browser (or its cookie has expired): start again"
                .into(),
        ));
    }
    let state_hash = digest(state);
    let now = app.now_stored();
    let Some(login) = app.store.login(&state_hash).await? else {
        return Err(ApiError::SignInFailed(
            "no such sign-in under way: start again".into(),
        ));
    };
    let take = vec![Write::TakeLogin {
        state_hash,
        at: now,
    }];
    match app.store.write(take).await {
        Ok(()) => {}
        Err(StoreError::Conflict(why)) => return Err(ApiError::SignInFailed(why)),
        Err(e) => return Err(e.into()),
    }
    let sign_in = (app.auth.sign_in())
        .ok_or_else(|| ApiError::NotFound("signing in is not configured".into()))?;
    let id_token = sign_in
        .exchange(code, &login.verifier, &redirect_uri(app))
        .await?;
    let max_age = u64::try_from(login.max_age).unwrap_or(0);
    let caller = app
        .auth
        .signed_in(&id_token, &login.nonce, max_age, app.now())
        .await?;
    // A revoked person is not signed in again.
    super::refusal::refuse_blocked(app, &caller, super::refusal::Attempt::Operation("sign in"))
        .await?;
    let session = random_value();
    let kept = KeptCaller::from(&caller);
    let audit = session_event(
        &kept.principal,
        AuditKind::SessionStarted,
        now,
        json!({
            "client_id": kept.client_id, "mfa": kept.mfa, "auth_time": kept.auth_time,
            "groups": kept.groups,
        }),
    );
    let record = SessionRecord {
        id_hash: digest(&session),
        principal: kept.principal.clone(),
        caller: serde_json::to_string(&kept).map_err(|e| ApiError::Internal(e.to_string()))?,
        created_at: now,
        last_seen: now,
        expires_at: now.saturating_add(stored_secs(app.config.ui.session_max.as_secs())),
    };
    app.store.write(vec![Write::Session(record), audit]).await?;
    tracing::info!(principal = %caller.principal, "signed in to the UI");
    Ok(SignedIn {
        session,
        next: login.next,
        caller,
    })
}

/// The audit event of `subject`'s session starting or ending.
fn session_event(subject: &str, kind: AuditKind, at: i64, data: serde_json::Value) -> Write {
    Write::Audit(AuditRecord {
        at,
        kind: kind.into(),
        request_id: None,
        subject: Some(subject.to_owned()),
        data,
    })
}

/// `[ui] session_idle`, in the store's seconds.
fn idle_secs(app: &App) -> i64 {
    stored_secs(app.config.ui.session_idle.as_secs())
}

/// The caller signed in with the session cookie `session`; `SessionEnded` once it has ended
/// (signed out, idle, past its absolute end, or revoked).
pub async fn caller(app: &App, session: &str) -> Result<Caller, ApiError> {
    let id_hash = digest(session);
    let record = app
        .store
        .session(&id_hash)
        .await?
        .ok_or(ApiError::SessionEnded)?;
    let now = app.now_stored();
    let idle = idle_secs(app);
    if now >= record.expires_at || now.saturating_sub(record.last_seen) >= idle {
        return Err(ApiError::SessionEnded);
    }
    let caller = serde_json::from_str::<KeptCaller>(&record.caller)
        .ok()
        .and_then(|kept| kept.caller())
        .ok_or_else(|| ApiError::Internal("a stored session does not parse".into()))?;
    if now.saturating_sub(record.last_seen) >= TOUCH_EVERY_SECS.min(idle / 2) {
        app.store
            .write(vec![Write::TouchSession { id_hash, at: now }])
            .await?;
    }
    Ok(caller)
}

/// Ends the session `session` (sign-out). Ending one that has ended already is no error.
pub async fn end(app: &App, session: &str) -> Result<(), ApiError> {
    let id_hash = digest(session);
    let Some(record) = app.store.session(&id_hash).await? else {
        return Ok(());
    };
    let ended = session_event(
        &record.principal,
        AuditKind::SessionEnded,
        app.now_stored(),
        json!({"reason": "signed_out"}),
    );
    app.store
        .write(vec![Write::EndSession { id_hash }, ended])
        .await?;
    Ok(())
}

/// The write that forgets ended sessions and abandoned sign-ins at `now`.
pub fn prune(app: &App, now: i64) -> Write {
    Write::PruneSessions {
        now,
        idle_before: now.saturating_sub(idle_secs(app)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_only_returns_to_this_origin() {
        assert_eq!(local_path(Some("/ui/#request=req_1")), "/ui/#request=req_1");
        for elsewhere in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "ui/",
            "/ui/\r\nSet-Cookie: x=y",
        ] {
            assert_eq!(local_path(Some(elsewhere)), DEFAULT_NEXT, "{elsewhere}");
        }
        assert_eq!(local_path(None), DEFAULT_NEXT);
    }

    #[test]
    fn values_are_unguessable_and_the_csrf_token_is_not_the_stored_hash() {
        let (a, b) = (random_value(), random_value());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(csrf_token(&a), digest(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
    }
}
