-- Webhook notifications (a transactional outbox): each row is written in the same transaction
-- as the state change it announces, then delivered and retried by a background task, so a
-- notification is neither lost on a crash nor sent for a change that did not commit.
CREATE TABLE webhook_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT NOT NULL UNIQUE,   -- sent as X-Jitgate-Delivery; receivers dedupe on it
    hook             TEXT NOT NULL,          -- which [[webhooks]] entry (a hash of its url)
    event            TEXT NOT NULL,
    request_id       TEXT,
    body             TEXT NOT NULL,          -- exactly the bytes POSTed
    created_ms       INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    finished_ms      INTEGER
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_ms);
