-- Extensions: the request an extension extends (the first of its chain), and the total
-- lifetime of that chain before it (the `extended_secs` its policies saw).
ALTER TABLE access_requests ADD COLUMN extends TEXT;
ALTER TABLE access_requests ADD COLUMN extended_secs BIGINT;
