-- What a rotation handed out, so a retried refresh (lost response) within the
-- grace window gets the same successor: its hash, and the token itself sealed
-- (AES-256-GCM under a key derived from key_encryption_secret), never in clear.
ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;
