-- Attempts are reserved in the database before any secret is checked.
-- A known-device cookie carries its own count of wrong passwords (since the last
-- successful sign-in from it); at `login.device_max_failures` it stops being known.
ALTER TABLE known_devices ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;

-- The second step's consecutive-failure counter per account (TOTP codes and
-- recovery codes together), with its exponential delay and lockout.
CREATE TABLE mfa_throttle (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    failures BIGINT NOT NULL,
    delay_until BIGINT NOT NULL,
    locked_at BIGINT,
    -- Failed second steps since the last completed sign-in, and how many there
    -- were before it (what `/account` reports).
    since_sign_in BIGINT NOT NULL,
    before_sign_in BIGINT NOT NULL
);
