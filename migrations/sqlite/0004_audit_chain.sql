-- The audit trail becomes a hash chain (see src/audit.rs). Events written before this
-- migration keep NULL hashes and are reported as unchained by `jitgate audit verify`.
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE INDEX audit_events_at ON audit_events (at);
