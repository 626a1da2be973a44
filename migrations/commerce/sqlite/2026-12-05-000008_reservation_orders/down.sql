ALTER TABLE order_items DROP COLUMN reservation_id;
UPDATE reservations SET status = 'EXPIRED', reason = 'order_cancelled' WHERE status = 'ORDERED';
CREATE TABLE reservations_old (
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
INSERT INTO reservations_old SELECT id, subject, product_id, combination_id, day, quantity, status, reason,
    stock_id, hold_until, created_at, updated_at FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_old RENAME TO reservations;
CREATE INDEX reservations_holds ON reservations (status, hold_until);
CREATE INDEX reservations_subject ON reservations (subject, id);
