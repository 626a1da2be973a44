-- Marketplace orders, their items (one seller each), the orchestrated saga's log,
-- payment events (idempotent by the provider's event id) and refunds.
CREATE TABLE orders (
    id TEXT PRIMARY KEY NOT NULL,
    buyer TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'PENDING_PAYMENT', 'PAID', 'PREPARING', 'SHIPPED',
        'DELIVERED', 'COMPLETED', 'CANCELLED', 'RETURN_REQUESTED', 'RETURNED', 'REFUNDED')),
    -- Where the saga stands: PLACING (reserve stock, apply the coupon),
    -- AWAITING_PAYMENT, COMPENSATING (release stock, return the coupon), DONE.
    saga TEXT NOT NULL CHECK (saga IN ('PLACING', 'AWAITING_PAYMENT', 'COMPENSATING', 'DONE')),
    cancel_reason TEXT,
    currency TEXT NOT NULL,
    subtotal_minor BIGINT NOT NULL CHECK (subtotal_minor >= 0),
    discount_minor BIGINT NOT NULL CHECK (discount_minor >= 0 AND discount_minor <= subtotal_minor),
    total_minor BIGINT NOT NULL CHECK (total_minor = subtotal_minor - discount_minor),
    coupon_id TEXT,
    pay_by BIGINT,
    -- The saga runner (or the request) driving the saga, until lease_until.
    lease_owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_buyer ON orders (buyer, id);
CREATE INDEX orders_saga ON orders (saga, lease_until);

CREATE TABLE order_items (
    id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    position INTEGER NOT NULL,
    seller_id TEXT NOT NULL REFERENCES sellers (id),
    product_id TEXT NOT NULL REFERENCES products (id),
    combination_id TEXT NOT NULL REFERENCES combinations (id),
    day TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    stock_id TEXT REFERENCES stock (id),
    shipment_status TEXT NOT NULL CHECK (shipment_status IN ('PENDING', 'SHIPPED', 'DELIVERED')),
    tracking_number TEXT,
    updated_at BIGINT NOT NULL,
    CONSTRAINT order_items_position UNIQUE (order_id, position)
);
CREATE INDEX order_items_seller ON order_items (seller_id, order_id);

-- One row per saga step or compensation done (reserve:N, coupon, placed, paid,
-- coupon_returned, release:N, cancelled, refunded): the primary key makes each
-- happen once, in the transaction of its effect.
CREATE TABLE saga_log (
    order_id TEXT NOT NULL REFERENCES orders (id),
    step TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (order_id, step)
);

CREATE TABLE payment_events (
    event_id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_by TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX payment_events_order ON payment_events (order_id);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT refunds_one_per_order UNIQUE (order_id)
);
