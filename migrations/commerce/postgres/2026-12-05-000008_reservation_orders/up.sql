-- A confirmed reservation can be turned into an order: its hold passes to the
-- order (reservation ORDERED, order_id set; the order's saga owns the stock from
-- then on), and the order item remembers the reservation it came from.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED', 'EXPIRED', 'ORDERED'));
ALTER TABLE reservations ADD COLUMN order_id TEXT;
ALTER TABLE order_items ADD COLUMN reservation_id TEXT;
