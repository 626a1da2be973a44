-- A refund per cause, not per order: `order` (a paid order cancelled, or
-- returned) or `event:<id>` (a payment that arrived after the cancellation, or a
-- second payment of an order already paid). SQLite cannot drop a constraint:
-- the table is rebuilt (nothing references refunds).
CREATE TABLE refunds_new (
    id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    cause TEXT NOT NULL,
    CONSTRAINT refunds_one_per_cause UNIQUE (order_id, cause)
);
INSERT INTO refunds_new (id, order_id, amount_minor, currency, reason, created_at, cause)
SELECT id, order_id, amount_minor, currency, reason, created_at, 'order' FROM refunds;
DROP TABLE refunds;
ALTER TABLE refunds_new RENAME TO refunds;
