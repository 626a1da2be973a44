-- Stock per combination (SKU). REALTIME products: one row per combination with
-- day = ''. RESERVABLE products: one row per combination and date (YYYY-MM-DD).
-- Writers change a row only if its version is still the one they read; the CHECK
-- makes overselling impossible whatever the code does.
CREATE TABLE stock (
    id TEXT PRIMARY KEY NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    combination_id TEXT NOT NULL REFERENCES combinations (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    available BIGINT NOT NULL CHECK (available >= 0),
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (combination_id, day)
);
CREATE INDEX stock_product ON stock (product_id, day);

-- The audit of sellers' stock adjustments.
CREATE TABLE stock_adjustments (
    id TEXT PRIMARY KEY NOT NULL,
    stock_id TEXT NOT NULL REFERENCES stock (id) ON DELETE CASCADE,
    product_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    delta BIGINT NOT NULL,
    available_after BIGINT NOT NULL,
    reason TEXT
);
CREATE INDEX stock_adjustments_product ON stock_adjustments (product_id, id);
