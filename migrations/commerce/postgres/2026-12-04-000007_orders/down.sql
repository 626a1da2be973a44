DROP TABLE refunds;
DROP TABLE payment_events;
DROP TABLE saga_log;
DROP TABLE order_items;
DROP TABLE orders;
