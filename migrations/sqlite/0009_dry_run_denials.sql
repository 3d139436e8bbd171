-- A dry run that would be denied counts as a recent denial: otherwise POST /v1/decisions lets a
-- caller probe for what is denied without ever raising its risk. Dry runs create no access
-- request, so their denials are kept here, only as long as the recent-denials window needs.
CREATE TABLE dry_run_denials (
    principal TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX dry_run_denials_by_principal ON dry_run_denials (principal, at);
