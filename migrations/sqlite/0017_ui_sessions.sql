-- Sign-in to the UI (OIDC authorization code + PKCE): a sign-in under way, by the SHA-256 of
-- its `state`, until the identity provider sends the browser back; and a signed-in session,
-- by the SHA-256 of its cookie. Neither keeps a value a browser presents, only its hash.
CREATE TABLE sso_logins (
    state_hash  TEXT PRIMARY KEY,
    nonce       TEXT NOT NULL,
    verifier    TEXT NOT NULL,
    next        TEXT NOT NULL,
    max_age     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sso_logins_by_expiry ON sso_logins (expires_at);
CREATE TABLE ui_sessions (
    id_hash     TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    caller      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX ui_sessions_by_principal ON ui_sessions (principal);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);
