-- Access requests: one row per decided request (dry runs are audited, not stored here).
CREATE TABLE access_requests (
    id                 TEXT PRIMARY KEY,
    created_at         INTEGER NOT NULL,
    principal          TEXT NOT NULL,
    action             TEXT NOT NULL,
    resource           TEXT NOT NULL,
    scopes             TEXT NOT NULL,          -- JSON array asked for
    duration_secs      INTEGER NOT NULL,       -- 0 = none asked
    reason             TEXT NOT NULL,
    source_ip          TEXT NOT NULL,
    decision           TEXT NOT NULL,          -- allow | deny | escalate
    status             TEXT NOT NULL,          -- issued | denied | pending
    policies           TEXT NOT NULL,          -- JSON array
    policy_version     TEXT NOT NULL,
    risk_score         INTEGER NOT NULL,
    risk_signals       TEXT NOT NULL,          -- JSON array of {name, score}
    approvals_required INTEGER NOT NULL,
    expires_at         INTEGER                 -- pending requests: when they expire
);
CREATE INDEX access_requests_principal ON access_requests (principal, created_at);

-- Issued tokens, never the token itself: enough to introspect and revoke.
CREATE TABLE tokens (
    jti         TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES access_requests (id),
    subject     TEXT NOT NULL,
    kid         TEXT NOT NULL,
    scope       TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX tokens_request ON tokens (request_id);

-- The audit trail: append-only.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    request_id  TEXT,
    subject     TEXT,
    data        TEXT NOT NULL                  -- JSON
);
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE INDEX audit_events_subject ON audit_events (subject, type, at);

-- Where each principal has been seen from, for the new-source-IP risk signal.
CREATE TABLE principal_sources (
    principal   TEXT NOT NULL,
    source_ip   TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    PRIMARY KEY (principal, source_ip)
);

CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
