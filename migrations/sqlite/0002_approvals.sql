-- What re-evaluating an escalated request at mint time needs, and the approvals themselves.
ALTER TABLE access_requests ADD COLUMN context TEXT NOT NULL DEFAULT '{}';  -- client context keys
ALTER TABLE access_requests ADD COLUMN lifetime_secs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE access_requests ADD COLUMN decided_at INTEGER;  -- approved, denied or cancelled

CREATE TABLE approvals (
    request_id  TEXT NOT NULL REFERENCES access_requests (id),
    approver    TEXT NOT NULL,
    decision    TEXT NOT NULL,          -- approve | deny
    comment     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
);
