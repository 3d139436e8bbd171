-- The running replicas, each as its last heartbeat described it (GET /v1/cluster).
CREATE TABLE replicas (
    id              TEXT PRIMARY KEY,
    version         TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL
);
