DROP TABLE mfa_throttle;
ALTER TABLE known_devices DROP COLUMN failures;
