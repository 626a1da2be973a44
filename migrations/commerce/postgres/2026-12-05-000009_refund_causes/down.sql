DELETE FROM refunds WHERE cause <> 'order';
ALTER TABLE refunds DROP CONSTRAINT refunds_one_per_cause;
ALTER TABLE refunds ADD CONSTRAINT refunds_one_per_order UNIQUE (order_id);
ALTER TABLE refunds DROP COLUMN cause;
