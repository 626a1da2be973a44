ALTER TABLE order_items DROP COLUMN reservation_id;
UPDATE reservations SET status = 'EXPIRED', reason = 'order_cancelled' WHERE status = 'ORDERED';
ALTER TABLE reservations DROP COLUMN order_id;
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED', 'EXPIRED'));
