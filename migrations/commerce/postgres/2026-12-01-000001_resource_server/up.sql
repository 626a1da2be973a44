-- The last good key set of each token issuer, so a restart during an IdP outage still serves.
CREATE TABLE rs_key_sets (
    issuer TEXT PRIMARY KEY NOT NULL,
    jwks TEXT NOT NULL,
    fetched_at BIGINT NOT NULL
);
