ALTER TABLE clients DROP COLUMN single_session;
