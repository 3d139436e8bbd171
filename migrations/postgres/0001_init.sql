-- The PostgreSQL schema: the same tables as SQLite's migrations 0001–0009 leave, for several
-- replicas on one database. Times are Unix seconds (milliseconds where named _ms); JSON columns
-- are text, so that what was hashed into the audit chain is read back byte for byte.

-- Access requests: one row per decided request. `pos` pages the pending list in commit order
-- (every write transaction takes the chain head first, so sequences advance in commit order).
CREATE TABLE access_requests (
    id                 TEXT PRIMARY KEY,
    pos                BIGSERIAL NOT NULL UNIQUE,
    created_at         BIGINT NOT NULL,
    principal          TEXT NOT NULL,
    action             TEXT NOT NULL,
    resource           TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    duration_secs      BIGINT NOT NULL,
    reason             TEXT NOT NULL,
    source_ip          TEXT NOT NULL,
    decision           TEXT NOT NULL,
    status             TEXT NOT NULL,
    policies           TEXT NOT NULL,
    policy_version     TEXT NOT NULL,
    risk_score         BIGINT NOT NULL,
    risk_signals       TEXT NOT NULL,
    approvals_required BIGINT NOT NULL,
    expires_at         BIGINT,
    context            TEXT NOT NULL DEFAULT '{}',
    lifetime_secs      BIGINT NOT NULL DEFAULT 0,
    decided_at         BIGINT,
    granted_scopes     TEXT,
    audience           TEXT
);
CREATE INDEX access_requests_principal ON access_requests (principal, created_at);
CREATE INDEX access_requests_denials ON access_requests (principal, created_at)
    WHERE decision = 'deny';
CREATE INDEX access_requests_pending ON access_requests (expires_at) WHERE status = 'pending';

-- Issued tokens, never the token itself.
CREATE TABLE tokens (
    jti         TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES access_requests (id),
    subject     TEXT NOT NULL,
    kid         TEXT NOT NULL,
    scope       TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX tokens_request ON tokens (request_id);
CREATE INDEX tokens_subject ON tokens (subject, expires_at);

-- The audit trail: append-only, one hash chain for every replica.
CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    type        TEXT NOT NULL,
    request_id  TEXT,
    subject     TEXT,
    data        TEXT NOT NULL,
    prev_hash   TEXT,
    hash        TEXT
);
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE INDEX audit_events_subject ON audit_events (subject, type, at);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The chain's last event. Every write transaction locks this row first: appends from every
-- replica form one chain, and transactions never wait for each other's row locks in a cycle.
CREATE TABLE audit_chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Where each principal has been seen from, for the new-source-IP risk signal.
CREATE TABLE principal_sources (
    principal   TEXT NOT NULL,
    source_ip   TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    PRIMARY KEY (principal, source_ip)
);

CREATE TABLE approvals (
    request_id  TEXT NOT NULL REFERENCES access_requests (id),
    approver    TEXT NOT NULL,
    decision    TEXT NOT NULL,
    comment     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- Webhook notifications (a transactional outbox).
CREATE TABLE webhook_outbox (
    id               BIGSERIAL PRIMARY KEY,
    delivery_id      TEXT NOT NULL UNIQUE,
    hook             TEXT NOT NULL,
    event            TEXT NOT NULL,
    request_id       TEXT,
    body             TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    last_error       TEXT,
    finished_ms      BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_ms);

-- Revocations; `seq` is the feed's cursor (assigned in commit order, as `pos` above).
CREATE TABLE revocations (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL,
    revoked_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    lifted_at   BIGINT
);
CREATE INDEX revocations_value ON revocations (kind, value);
CREATE INDEX revocations_expiry ON revocations (expires_at);
CREATE UNIQUE INDEX revocations_in_force ON revocations (kind, value) WHERE lifted_at IS NULL;

-- Dry runs that would have been denied (they count as recent denials).
CREATE TABLE dry_run_denials (
    principal TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX dry_run_denials_by_principal ON dry_run_denials (principal, at);
