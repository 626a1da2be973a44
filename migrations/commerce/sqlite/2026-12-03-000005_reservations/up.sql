-- Reservations and the transactional outbox that carries them to the workers.
CREATE TABLE reservations (
    id TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    combination_id TEXT NOT NULL REFERENCES combinations (id),
    day TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED', 'EXPIRED')),
    reason TEXT,
    stock_id TEXT REFERENCES stock (id),
    hold_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX reservations_holds ON reservations (status, hold_until);
CREATE INDEX reservations_subject ON reservations (subject, id);

-- Messages written in the same transaction as the row they announce. A worker
-- claims one (claimed_by, lease_until), handles it, then deletes it (the ack).
-- A message whose lease ran out is claimed again; available_at delays retries.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    available_at BIGINT NOT NULL,
    claimed_by TEXT,
    lease_until BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_ready ON outbox (available_at, id);
