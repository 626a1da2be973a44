CREATE TABLE sellers (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('INTERNAL', 'EXTERNAL')),
    contact_email TEXT NOT NULL,
    contact_phone TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE seller_members (
    seller_id TEXT NOT NULL REFERENCES sellers (id) ON DELETE CASCADE,
    sub TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (seller_id, sub)
);
CREATE INDEX seller_members_sub ON seller_members (sub);

CREATE TABLE products (
    id TEXT PRIMARY KEY NOT NULL,
    seller_id TEXT NOT NULL REFERENCES sellers (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    product_type TEXT NOT NULL CHECK (product_type IN ('RESERVABLE', 'REALTIME')),
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX products_status ON products (status, id);
CREATE INDEX products_seller ON products (seller_id, id);

CREATE TABLE option_groups (
    id TEXT PRIMARY KEY NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    UNIQUE (product_id, name)
);

CREATE TABLE product_options (
    id TEXT PRIMARY KEY NOT NULL,
    group_id TEXT NOT NULL REFERENCES option_groups (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    price_delta BIGINT NOT NULL,
    UNIQUE (group_id, name)
);

-- A SKU: one option of each of the product's groups (`option_ids`, sorted, comma-separated).
CREATE TABLE combinations (
    id TEXT PRIMARY KEY NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    sku TEXT NOT NULL,
    option_ids TEXT NOT NULL,
    price_delta BIGINT NOT NULL,
    available BOOLEAN NOT NULL,
    UNIQUE (product_id, sku),
    UNIQUE (product_id, option_ids)
);

CREATE TABLE product_events (
    id TEXT PRIMARY KEY NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX product_events_product ON product_events (product_id, id);
