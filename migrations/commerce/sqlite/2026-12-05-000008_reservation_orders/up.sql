-- A confirmed reservation can be turned into an order: its hold passes to the
-- order (reservation ORDERED, order_id set; the order's saga owns the stock from
-- then on), and the order item remembers the reservation it came from.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt
-- (nothing references reservations).
CREATE TABLE reservations_new (
    id TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    combination_id TEXT NOT NULL REFERENCES combinations (id),
    day TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED', 'EXPIRED', 'ORDERED')),
    reason TEXT,
    stock_id TEXT REFERENCES stock (id),
    hold_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    order_id TEXT
);
INSERT INTO reservations_new (id, subject, product_id, combination_id, day, quantity, status, reason,
    stock_id, hold_until, created_at, updated_at)
SELECT id, subject, product_id, combination_id, day, quantity, status, reason,
    stock_id, hold_until, created_at, updated_at FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_new RENAME TO reservations;
CREATE INDEX reservations_holds ON reservations (status, hold_until);
CREATE INDEX reservations_subject ON reservations (subject, id);

ALTER TABLE order_items ADD COLUMN reservation_id TEXT;
