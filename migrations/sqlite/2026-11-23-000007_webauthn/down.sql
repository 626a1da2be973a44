DROP TABLE webauthn_ceremonies;
DROP TABLE webauthn_credentials;
