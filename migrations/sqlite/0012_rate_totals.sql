-- Each replica's request counts for the last minute, by limit and principal, so that the
-- rate limits hold for the cluster. A SQLite deployment (one replica) never writes it.
CREATE TABLE rate_totals (
    replica    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    total      INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (replica, kind, principal)
);
CREATE INDEX rate_totals_by_principal ON rate_totals (kind, principal);
