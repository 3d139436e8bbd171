-- Each replica's request counts for the last minute, by limit (`kind`) and principal, so that
-- the per-principal rate limits hold for the cluster, not per replica.
CREATE TABLE rate_totals (
    replica    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    total      BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (replica, kind, principal)
);
CREATE INDEX rate_totals_by_principal ON rate_totals (kind, principal);
