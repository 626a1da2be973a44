-- Audit events and sign-in attempts are append-only and expire by age. On PostgreSQL
-- they are range-partitioned by month on `at` (Unix seconds, UTC months), so the
-- housekeeping task expires a month by dropping its partition whole: no DELETE, no
-- dead tuples, no vacuum debt, however many rows the month holds. Rows older than
-- the first monthly partition, or written before their month's partition existed,
-- land in the DEFAULT partition and are expired row by row in small batches.

-- Creates the monthly partitions of `parent` covering [from_at, until_at] that do
-- not exist yet; answers how many it created. Serialised across instances by an
-- advisory lock. A month whose rows already sit in the default partition cannot get
-- its own partition (PostgreSQL refuses with check_violation): it is skipped, and
-- those rows expire row by row.
CREATE FUNCTION oxidp_ensure_month_partitions(parent TEXT, from_at BIGINT, until_at BIGINT)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    month TIMESTAMP := date_trunc('month', to_timestamp(from_at) AT TIME ZONE 'UTC');
    last_month TIMESTAMP := date_trunc('month', to_timestamp(until_at) AT TIME ZONE 'UTC');
    part TEXT;
    created INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('oxidp_month_partitions'));
    WHILE month <= last_month LOOP
        part := parent || '_' || to_char(month, 'YYYY_MM');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                    part, parent,
                    extract(epoch FROM month AT TIME ZONE 'UTC')::BIGINT,
                    extract(epoch FROM (month + INTERVAL '1 month') AT TIME ZONE 'UTC')::BIGINT);
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                RAISE NOTICE 'rows of % are in the default partition of %; they expire row by row', part, parent;
            END;
        END IF;
        month := month + INTERVAL '1 month';
    END LOOP;
    RETURN created;
END $$;

-- Drops the monthly partitions of `parent` whose every possible row is older than
-- `before_at` (the month ends at or before it); answers how many it dropped. Waits
-- at most 200 ms for the lock a DROP needs, so it never queues writers behind it
-- for long: on timeout it fails and the next run tries again.
CREATE FUNCTION oxidp_drop_month_partitions(parent TEXT, before_at BIGINT)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    dropped INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('oxidp_month_partitions'));
    PERFORM set_config('lock_timeout', '200ms', true);
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent::regclass
          AND c.relname ~ ('^' || parent || '_[0-9]{4}_[0-9]{2}$')
        ORDER BY c.relname
    LOOP
        IF extract(epoch FROM (to_date(right(part.relname, 7), 'YYYY_MM') + INTERVAL '1 month') AT TIME ZONE 'UTC')::BIGINT
           <= before_at THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- audit_events → partitioned (the primary key must include the partition key).
ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_pkey RENAME TO audit_events_unpartitioned_pkey;
ALTER INDEX audit_events_at RENAME TO audit_events_unpartitioned_at;
CREATE TABLE audit_events (
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    ip TEXT,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;
CREATE INDEX audit_events_at ON audit_events (at);
-- Existing rows: a partition per month they cover (at most two years back), the
-- current month and the next two.
SELECT oxidp_ensure_month_partitions(
    'audit_events',
    GREATEST(
        COALESCE((SELECT MIN(at) FROM audit_events_unpartitioned), extract(epoch FROM now())::BIGINT),
        extract(epoch FROM now() - INTERVAL '24 months')::BIGINT),
    extract(epoch FROM now() + INTERVAL '2 months')::BIGINT);
INSERT INTO audit_events (id, at, actor, action, target, details, ip)
    SELECT id, at, actor, action, target, details, ip FROM audit_events_unpartitioned;
DROP TABLE audit_events_unpartitioned;

-- login_attempts → partitioned.
ALTER TABLE login_attempts RENAME TO login_attempts_unpartitioned;
ALTER INDEX login_attempts_pkey RENAME TO login_attempts_unpartitioned_pkey;
ALTER INDEX login_attempts_net_at RENAME TO login_attempts_unpartitioned_net_at;
ALTER INDEX login_attempts_user_at RENAME TO login_attempts_unpartitioned_user_at;
ALTER INDEX login_attempts_at RENAME TO login_attempts_unpartitioned_at;
CREATE TABLE login_attempts (
    id TEXT NOT NULL,
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
    reasons TEXT NOT NULL,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE login_attempts_default PARTITION OF login_attempts DEFAULT;
CREATE INDEX login_attempts_net_at ON login_attempts (ip_net, at);
CREATE INDEX login_attempts_user_at ON login_attempts (user_id, at);
CREATE INDEX login_attempts_at ON login_attempts (at);
SELECT oxidp_ensure_month_partitions(
    'login_attempts',
    GREATEST(
        COALESCE((SELECT MIN(at) FROM login_attempts_unpartitioned), extract(epoch FROM now())::BIGINT),
        extract(epoch FROM now() - INTERVAL '24 months')::BIGINT),
    extract(epoch FROM now() + INTERVAL '2 months')::BIGINT);
INSERT INTO login_attempts (id, at, ip, ip_net, username_key, user_id, known_device, user_agent, outcome, risk, reasons)
    SELECT id, at, ip, ip_net, username_key, user_id, known_device, user_agent, outcome, risk, reasons FROM login_attempts_unpartitioned;
DROP TABLE login_attempts_unpartitioned;
