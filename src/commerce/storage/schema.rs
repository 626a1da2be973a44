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
