-- The running replicas, each as its last heartbeat described it (GET /v1/cluster). A SQLite
-- deployment has one.
CREATE TABLE replicas (
    id              TEXT PRIMARY KEY,
    version         TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL
);
