-- Indexes for the queries that run on every request or every housekeeping tick, so that their
-- cost does not grow with the table (found by jitgate-load's million-request run, issue 6).

-- The recent-denials risk signal counts a principal's denials within a window on every request.
-- The (principal, created_at) index alone makes that read every request of the principal in the
-- window, denied or not, so a busy service paid for its own traffic on each request.
CREATE INDEX access_requests_denials ON access_requests (principal, created_at)
    WHERE decision = 'deny';

-- Housekeeping looks for pending requests past their expiry every few seconds; without this it
-- scanned the whole table each time.
CREATE INDEX access_requests_pending ON access_requests (expires_at)
    WHERE status = 'pending';
