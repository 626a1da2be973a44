-- Per-client policy: this application requires a second factor.
ALTER TABLE clients ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT FALSE;
