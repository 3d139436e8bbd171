-- Scheduled access: the unix second a request's window opens (NULL: when it is decided).
ALTER TABLE access_requests ADD COLUMN not_before INTEGER;
