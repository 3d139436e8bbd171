-- The grant a decision gave (JSON arrays), kept so that minting under an approval never gives
-- more than the approvers approved (issue 11). Requests decided before this migration keep
-- NULL: they cannot be minted (fail closed), and the requester asks again.
ALTER TABLE access_requests ADD COLUMN granted_scopes TEXT;
ALTER TABLE access_requests ADD COLUMN audience TEXT;
