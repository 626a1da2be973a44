-- WebAuthn: security keys and passkeys (several per person), and the pending
-- ceremonies (single use, 5 minutes, bound to the browser by a cookie token).

CREATE TABLE webauthn_credentials (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- base64url of the authenticator's credential id; one account per credential.
    credential_id TEXT NOT NULL UNIQUE,
    -- The WebAuthn user handle (a UUID) the authenticator stores for discoverable sign-in.
    user_handle TEXT NOT NULL,
    name TEXT NOT NULL,
    -- webauthn-rs `Passkey` (public key, counter, flags) as JSON.
    passkey TEXT NOT NULL,
    -- true when the credential is synced between devices (backup eligible).
    synced BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials(user_id);
CREATE INDEX webauthn_credentials_handle ON webauthn_credentials(user_handle);

CREATE TABLE webauthn_ceremonies (
    token_hash TEXT PRIMARY KEY NOT NULL,
    -- register | second_factor | passwordless
    purpose TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    -- webauthn-rs ceremony state as JSON (holds the challenge).
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies(expires_at);
