-- Per-client policy: one active sign-in per person at this application; a new
-- one revokes the grants (refresh tokens, access tokens) of the older ones.
ALTER TABLE clients ADD COLUMN single_session BOOLEAN NOT NULL DEFAULT FALSE;
