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
