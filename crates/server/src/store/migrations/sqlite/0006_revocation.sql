-- Revocation: a person who leaves is disabled (kept, for the record of what they did),
-- a leaked token is revoked, a lab host that is gone or compromised is revoked (its
-- key no longer accepted). Nothing is deleted: the audit log names them.

ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
ALTER TABLE labhosts ADD COLUMN revoked_at BIGINT;
