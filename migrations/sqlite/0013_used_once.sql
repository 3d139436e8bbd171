-- Values a client may use once (the `jti` of a client assertion, later of a DPoP proof), kept
-- until they expire so that a replay is refused.
CREATE TABLE used_once (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX used_once_by_expiry ON used_once (expires_at);
