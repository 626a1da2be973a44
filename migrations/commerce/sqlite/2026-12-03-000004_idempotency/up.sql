-- Idempotency keys (IETF httpapi Idempotency-Key draft), per subject. A row with
-- no response_status is in flight (owned until locked_until); a completed row
-- replays its response until expires_at.
CREATE TABLE idempotency_keys (
    subject TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response_status INTEGER,
    response_headers TEXT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (subject, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
