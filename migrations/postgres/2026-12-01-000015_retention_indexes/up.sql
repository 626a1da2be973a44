-- Retention deletes expired rows by time in small batches; these indexes let each
-- batch find its rows without scanning the table.
CREATE INDEX login_attempts_at ON login_attempts (at);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);
CREATE INDEX grants_expires_at ON grants (expires_at);
