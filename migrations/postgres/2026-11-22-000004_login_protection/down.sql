DROP TABLE known_devices;
DROP TABLE login_attempts;
DROP TABLE login_throttle;
