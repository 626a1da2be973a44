CREATE TABLE refunds_old (
    id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT refunds_one_per_order UNIQUE (order_id)
);
INSERT INTO refunds_old SELECT id, order_id, amount_minor, currency, reason, created_at FROM refunds
WHERE cause = 'order';
DROP TABLE refunds;
ALTER TABLE refunds_old RENAME TO refunds;
