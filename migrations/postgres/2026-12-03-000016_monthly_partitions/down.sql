-- Back to plain tables (rows kept).
ALTER TABLE audit_events RENAME TO audit_events_partitioned;
ALTER TABLE audit_events_partitioned RENAME CONSTRAINT audit_events_pkey TO audit_events_partitioned_pkey;
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    ip TEXT
);
INSERT INTO audit_events (id, at, actor, action, target, details, ip)
    SELECT id, at, actor, action, target, details, ip FROM audit_events_partitioned;
DROP TABLE audit_events_partitioned;
CREATE INDEX audit_events_at ON audit_events(at);

ALTER TABLE login_attempts RENAME TO login_attempts_partitioned;
ALTER TABLE login_attempts_partitioned RENAME CONSTRAINT login_attempts_pkey TO login_attempts_partitioned_pkey;
CREATE TABLE login_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    ip TEXT,
    ip_net TEXT NOT NULL,
    username_key TEXT NOT NULL,
    -- Named explicitly: generated names avoid every name in the schema, partitions' included.
    user_id TEXT CONSTRAINT login_attempts_user_id_fkey REFERENCES users(id) ON DELETE CASCADE,
    known_device BOOLEAN NOT NULL,
    user_agent TEXT,
    outcome TEXT NOT NULL,
    risk BIGINT NOT NULL,
    reasons TEXT NOT NULL
);
INSERT INTO login_attempts (id, at, ip, ip_net, username_key, user_id, known_device, user_agent, outcome, risk, reasons)
    SELECT id, at, ip, ip_net, username_key, user_id, known_device, user_agent, outcome, risk, reasons FROM login_attempts_partitioned;
DROP TABLE login_attempts_partitioned;
CREATE INDEX login_attempts_net_at ON login_attempts(ip_net, at);
CREATE INDEX login_attempts_user_at ON login_attempts(user_id, at);
CREATE INDEX login_attempts_at ON login_attempts (at);

DROP FUNCTION oxidp_drop_month_partitions(TEXT, BIGINT);
DROP FUNCTION oxidp_ensure_month_partitions(TEXT, BIGINT, BIGINT);
