DROP TABLE mfa_challenges;
DROP TABLE mfa_failures;
DROP TABLE recovery_codes;
DROP TABLE totp_credentials;
