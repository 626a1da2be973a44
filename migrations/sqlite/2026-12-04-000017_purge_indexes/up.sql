-- The retention purge's other lookups by time: without these each run scanned the
-- whole table (refresh_tokens: 1.3 million rows after a 30-minute soak, every
-- minute), and its cost grew with the table.
CREATE INDEX refresh_tokens_sealed_used ON refresh_tokens (used_at) WHERE successor_sealed IS NOT NULL;
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
CREATE INDEX authorization_requests_expires_at ON authorization_requests (expires_at);
-- Idle sign-in failure counters and devices not seen for long are forgotten too.
CREATE INDEX login_throttle_last_failure_at ON login_throttle (last_failure_at) WHERE locked_at IS NULL;
CREATE INDEX known_devices_last_seen_at ON known_devices (last_seen_at);
