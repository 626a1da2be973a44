DROP INDEX grants_expires_at;
DROP INDEX authorization_codes_expires_at;
DROP INDEX login_attempts_at;
