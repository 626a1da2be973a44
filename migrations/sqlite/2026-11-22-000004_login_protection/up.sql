-- Risk-based login protection: per-username failure counters (cluster-wide,
-- for unknown usernames too, so delays and lockouts reveal nothing), every
-- sign-in attempt with its risk score, and the devices a person signed in from.

CREATE TABLE login_throttle (
    -- HMAC of the normalized username: attempted names are never stored.
    username_key TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    delay_until BIGINT NOT NULL,
    locked_at BIGINT
);

CREATE TABLE login_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    ip TEXT,
    -- The /24 (IPv4) or /64 (IPv6) the attempt came from.
    ip_net TEXT NOT NULL,
    username_key TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    known_device BOOLEAN NOT NULL,
    user_agent TEXT,
    outcome TEXT NOT NULL,
    risk BIGINT NOT NULL,
    reasons TEXT NOT NULL
);
CREATE INDEX login_attempts_net_at ON login_attempts(ip_net, at);
CREATE INDEX login_attempts_user_at ON login_attempts(user_id, at);

CREATE TABLE known_devices (
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, user_id)
);
