//! The commerce database's tables (both backends), by hand to match
//! `migrations/commerce/*`.

diesel::table! {
    sellers (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        contact_email -> Text,
        contact_phone -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    seller_members (seller_id, sub) {
        seller_id -> Text,
        sub -> Text,
        added_at -> BigInt,
    }
}

diesel::table! {
    products (id) {
        id -> Text,
        seller_id -> Text,
        name -> Text,
        description -> Text,
        category -> Text,
        product_type -> Text,
        price_minor -> BigInt,
        currency -> Text,
        status -> Text,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    option_groups (id) {
        id -> Text,
        product_id -> Text,
        name -> Text,
    }
}

diesel::table! {
    product_options (id) {
        id -> Text,
        group_id -> Text,
        name -> Text,
        price_delta -> BigInt,
    }
}

diesel::table! {
    combinations (id) {
        id -> Text,
        product_id -> Text,
        sku -> Text,
        option_ids -> Text,
        price_delta -> BigInt,
        available -> Bool,
    }
}

diesel::table! {
    product_events (id) {
        id -> Text,
        product_id -> Text,
        kind -> Text,
        actor -> Text,
        at -> BigInt,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
    }
}

diesel::joinable!(seller_members -> sellers (seller_id));
diesel::joinable!(products -> sellers (seller_id));
diesel::joinable!(option_groups -> products (product_id));
diesel::joinable!(product_options -> option_groups (group_id));
diesel::allow_tables_to_appear_in_same_query!(
    sellers,
    seller_members,
    products,
    option_groups,
    product_options,
    combinations,
    product_events,
);

// ---- stock, idempotency keys, reservations and their outbox (reserve lane) ----

diesel::table! {
    stock (id) {
        id -> Text,
        product_id -> Text,
        combination_id -> Text,
        day -> Text,
        available -> BigInt,
        version -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    stock_adjustments (id) {
        id -> Text,
        stock_id -> Text,
        product_id -> Text,
        actor -> Text,
        at -> BigInt,
        delta -> BigInt,
        available_after -> BigInt,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (subject, idem_key) {
        subject -> Text,
        idem_key -> Text,
        fingerprint -> Text,
        response_status -> Nullable<Integer>,
        response_headers -> Nullable<Text>,
        response_body -> Nullable<Text>,
        created_at -> BigInt,
        locked_until -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    reservations (id) {
        id -> Text,
        subject -> Text,
        product_id -> Text,
        combination_id -> Text,
        day -> Text,
        quantity -> BigInt,
        status -> Text,
        reason -> Nullable<Text>,
        stock_id -> Nullable<Text>,
        hold_until -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        order_id -> Nullable<Text>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        topic -> Text,
        payload -> Text,
        available_at -> BigInt,
        claimed_by -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        attempts -> Integer,
        created_at -> BigInt,
    }
}

// ---- coupons (first-come campaigns; migrations/commerce/*/2026-12-03-000006_coupons)

diesel::table! {
    coupon_campaigns (id) {
        id -> Text,
        name -> Text,
        discount_kind -> Text,
        basis_points -> Nullable<BigInt>,
        amount_minor -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        coupon_limit -> BigInt,
        issued -> BigInt,
        starts_at -> BigInt,
        ends_at -> BigInt,
        coupon_expires_at -> BigInt,
        reissue_returned -> Bool,
        created_by -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    coupons (id) {
        id -> Text,
        campaign_id -> Text,
        subject -> Text,
        code -> Text,
        status -> Text,
        order_id -> Nullable<Text>,
        issued_at -> BigInt,
        expires_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(coupons -> coupon_campaigns (campaign_id));
diesel::allow_tables_to_appear_in_same_query!(coupon_campaigns, coupons);

// ---- orders, their saga log, payment events, refunds (migrations/commerce/*/2026-12-04-000007_orders;
// 000008 adds reservations.order_id and order_items.reservation_id, 000009 refunds.cause)

diesel::table! {
    orders (id) {
        id -> Text,
        buyer -> Text,
        status -> Text,
        saga -> Text,
        cancel_reason -> Nullable<Text>,
        currency -> Text,
        subtotal_minor -> BigInt,
        discount_minor -> BigInt,
        total_minor -> BigInt,
        coupon_id -> Nullable<Text>,
        pay_by -> Nullable<BigInt>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    order_items (id) {
        id -> Text,
        order_id -> Text,
        position -> Integer,
        seller_id -> Text,
        product_id -> Text,
        combination_id -> Text,
        day -> Text,
        quantity -> BigInt,
        unit_price_minor -> BigInt,
        stock_id -> Nullable<Text>,
        shipment_status -> Text,
        tracking_number -> Nullable<Text>,
        updated_at -> BigInt,
        reservation_id -> Nullable<Text>,
    }
}

diesel::table! {
    saga_log (order_id, step) {
        order_id -> Text,
        step -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    payment_events (event_id) {
        event_id -> Text,
        order_id -> Text,
        kind -> Text,
        amount_minor -> BigInt,
        currency -> Text,
        outcome -> Text,
        received_by -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    refunds (id) {
        id -> Text,
        order_id -> Text,
        amount_minor -> BigInt,
        currency -> Text,
        reason -> Text,
        created_at -> BigInt,
        cause -> Text,
    }
}

diesel::joinable!(order_items -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, order_items, saga_log, payment_events, refunds);
