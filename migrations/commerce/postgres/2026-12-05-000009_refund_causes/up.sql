-- A refund per cause, not per order: `order` (a paid order cancelled, or
-- returned) or `event:<id>` (a payment that arrived after the cancellation, or a
-- second payment of an order already paid).
ALTER TABLE refunds ADD COLUMN cause TEXT NOT NULL DEFAULT 'order';
ALTER TABLE refunds ALTER COLUMN cause DROP DEFAULT;
ALTER TABLE refunds DROP CONSTRAINT refunds_one_per_order;
ALTER TABLE refunds ADD CONSTRAINT refunds_one_per_cause UNIQUE (order_id, cause);
