DROP TABLE sessions;
DROP TABLE password_history;
DROP TABLE users;
DROP TABLE server_settings;
