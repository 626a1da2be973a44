-- Multi-factor authentication: TOTP (secret sealed at rest, last accepted time
-- step for replay protection), single-use recovery codes (hashed), wrong-code
-- counting, and the pending second step of a sign-in.

CREATE TABLE totp_credentials (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE mfa_failures (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at BIGINT NOT NULL
);
CREATE INDEX mfa_failures_user_at ON mfa_failures(user_id, at);

-- A sign-in whose password step passed, waiting for the second factor.
CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    amr TEXT NOT NULL,
    device_id TEXT,
    return_to TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
