-- Subjects are full principals (issue 11, findings 9 and 13): `User::"deployer"` and
-- `Service::"deployer"` are different subjects, so a stored subject names its type.

-- Issued tokens: the principal of the request each came from.
UPDATE tokens SET subject = (SELECT principal FROM access_requests WHERE id = tokens.request_id)
WHERE EXISTS (SELECT 1 FROM access_requests WHERE id = tokens.request_id);

-- Subject revocations stored as a bare id blocked every principal with that id. They keep doing
-- so: a copy for each non-User principal that has asked for access with that id (Cedar prints
-- `"` and `\` escaped), then the row itself becomes the User's.
INSERT INTO revocations (id, kind, value, reason, revoked_by, revoked_at, expires_at, lifted_at)
SELECT r.id || '-' || substr(a.principal, 1, instr(a.principal, '::"') - 1), 'subject',
       a.principal, r.reason, r.revoked_by, r.revoked_at, r.expires_at, r.lifted_at
FROM revocations r
JOIN (SELECT DISTINCT principal FROM access_requests) a
  ON substr(a.principal, instr(a.principal, '::"') + 3)
     = replace(replace(r.value, '\', '\\'), '"', '\"') || '"'
WHERE r.kind = 'subject' AND instr(r.value, '::"') = 0
  AND instr(a.principal, '::"') > 1
  AND substr(a.principal, 1, instr(a.principal, '::"') - 1) != 'User';

UPDATE revocations
SET value = 'User::"' || replace(replace(value, '\', '\\'), '"', '\"') || '"'
WHERE kind = 'subject' AND instr(value, '::"') = 0;

-- One revocation in force per target (finding 7): a repeat answers with the one there is.
-- Duplicates made before this keep the first, covering as long as the longest did.
UPDATE revocations
SET expires_at = (SELECT MAX(d.expires_at) FROM revocations d
                  WHERE d.kind = revocations.kind AND d.value = revocations.value
                    AND d.lifted_at IS NULL)
WHERE lifted_at IS NULL;
DELETE FROM revocations
WHERE lifted_at IS NULL
  AND seq NOT IN (SELECT MIN(seq) FROM revocations WHERE lifted_at IS NULL GROUP BY kind, value);
CREATE UNIQUE INDEX revocations_in_force ON revocations (kind, value) WHERE lifted_at IS NULL;

-- Verifiers accept a token until `exp` plus their 5 s leeway, so a revocation is kept (and in
-- the feed) that much longer (finding 5).
UPDATE revocations SET expires_at = expires_at + 5;
