-- PostgreSQL only: audit_events and login_attempts become monthly range partitions
-- there. SQLite keeps plain tables, expired row by row in small batches.
SELECT 1;
