-- Revocations (DESIGN §5). `seq` is the feed's cursor. An entry covers, by kind:
--   jti:        the token with that jti;
--   request_id: every token of that request (and the request can mint no more);
--   subject:    every token of that `sub` issued at or before revoked_at, and no new token for
--               the subject until lifted_at is set.
-- expires_at is when the last token an entry covers has expired: the feed drops it then.
CREATE TABLE revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    lifted_at   INTEGER
);
CREATE INDEX revocations_value ON revocations (kind, value);
CREATE INDEX revocations_expiry ON revocations (expires_at);
CREATE INDEX tokens_subject ON tokens (subject, expires_at);
