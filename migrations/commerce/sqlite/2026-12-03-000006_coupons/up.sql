-- First-come coupon campaigns (platform-wide) and the coupons claimed from them.
-- Exactness lives here: a claim is one transaction of
--   UPDATE coupon_campaigns SET issued = issued + 1 WHERE id = ? AND issued < coupon_limit …
-- and an INSERT into coupons, which UNIQUE (campaign_id, subject) refuses for a
-- second claim by the same subject. The CHECK keeps the counter within the limit
-- whatever code runs against this database.
CREATE TABLE coupon_campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    discount_kind TEXT NOT NULL CHECK (discount_kind IN ('PERCENT', 'AMOUNT')),
    basis_points BIGINT,
    amount_minor BIGINT,
    currency TEXT,
    coupon_limit BIGINT NOT NULL CHECK (coupon_limit > 0),
    issued BIGINT NOT NULL DEFAULT 0,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    coupon_expires_at BIGINT NOT NULL,
    reissue_returned BOOLEAN NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT coupon_campaigns_issued_within_limit CHECK (issued >= 0 AND issued <= coupon_limit),
    CONSTRAINT coupon_campaigns_window CHECK (starts_at < ends_at AND coupon_expires_at > starts_at),
    CONSTRAINT coupon_campaigns_discount CHECK (
        (discount_kind = 'PERCENT' AND basis_points BETWEEN 1 AND 10000
            AND amount_minor IS NULL AND currency IS NULL)
        OR (discount_kind = 'AMOUNT' AND basis_points IS NULL
            AND amount_minor > 0 AND currency IS NOT NULL)
    )
);

CREATE TABLE coupons (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES coupon_campaigns (id),
    subject TEXT NOT NULL,
    code TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ISSUED', 'REDEEMED', 'RETURNED')),
    order_id TEXT,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT coupons_one_per_subject UNIQUE (campaign_id, subject),
    CONSTRAINT coupons_code_unique UNIQUE (code)
);
CREATE INDEX coupons_subject ON coupons (subject, id);
