//! Commerce storage: row types and queries over `AnyConnection`. No HTTP and no
//! business rules here; the domain layer calls these inside its transactions.

pub mod coupons;
pub mod migrations;
pub mod schema;
// stock, idempotency keys, reservations and the outbox (reserve lane)
pub mod idempotency;
pub mod reservations;
pub mod stock;
// orders, the saga log, payment events, refunds (orders lane)
pub mod orders;

use diesel::prelude::*;

use crate::db::{AnyConnection, DbError};
use schema::{combinations, option_groups, product_events, product_options, products, seller_members, sellers};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sellers)]
pub struct SellerRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub contact_email: String,
    pub contact_phone: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = products)]
pub struct ProductRow {
    pub id: String,
    pub seller_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub product_type: String,
    pub price_minor: i64,
    pub currency: String,
    pub status: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = option_groups)]
pub struct OptionGroupRow {
    pub id: String,
    pub product_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = product_options)]
pub struct OptionRow {
    pub id: String,
    pub group_id: String,
    pub name: String,
    pub price_delta: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = combinations)]
pub struct CombinationRow {
    pub id: String,
    pub product_id: String,
    pub sku: String,
    pub option_ids: String,
    pub price_delta: i64,
    pub available: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = product_events)]
pub struct EventRow {
    pub id: String,
    pub product_id: String,
    pub kind: String,
    pub actor: String,
    pub at: i64,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
}

// ---- sellers ----

pub fn insert_seller(conn: &mut AnyConnection, row: &SellerRow) -> Result<(), DbError> {
    diesel::insert_into(sellers::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_seller(conn: &mut AnyConnection, id: &str) -> Result<Option<SellerRow>, DbError> {
    Ok(sellers::table
        .find(id)
        .select(SellerRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_sellers(conn: &mut AnyConnection, after: &str, limit: i64) -> Result<Vec<SellerRow>, DbError> {
    Ok(sellers::table
        .filter(sellers::id.gt(after))
        .order(sellers::id)
        .limit(limit)
        .select(SellerRow::as_select())
        .load(conn)?)
}

pub fn members_of(conn: &mut AnyConnection, seller_id: &str) -> Result<Vec<String>, DbError> {
    Ok(seller_members::table
        .filter(seller_members::seller_id.eq(seller_id))
        .order(seller_members::sub)
        .select(seller_members::sub)
        .load(conn)?)
}

pub fn is_member(conn: &mut AnyConnection, seller_id: &str, sub: &str) -> Result<bool, DbError> {
    let count: i64 = seller_members::table
        .filter(seller_members::seller_id.eq(seller_id))
        .filter(seller_members::sub.eq(sub))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

pub fn add_member(conn: &mut AnyConnection, seller_id: &str, sub: &str, now: i64) -> Result<bool, DbError> {
    if is_member(conn, seller_id, sub)? {
        return Ok(false);
    }
    diesel::insert_into(seller_members::table)
        .values((
            seller_members::seller_id.eq(seller_id),
            seller_members::sub.eq(sub),
            seller_members::added_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn remove_member(conn: &mut AnyConnection, seller_id: &str, sub: &str) -> Result<bool, DbError> {
    let n = diesel::delete(
        seller_members::table
            .filter(seller_members::seller_id.eq(seller_id))
            .filter(seller_members::sub.eq(sub)),
    )
    .execute(conn)?;
    Ok(n > 0)
}

// ---- products ----

pub fn insert_product(conn: &mut AnyConnection, row: &ProductRow) -> Result<(), DbError> {
    diesel::insert_into(products::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_product(conn: &mut AnyConnection, id: &str) -> Result<Option<ProductRow>, DbError> {
    Ok(products::table
        .find(id)
        .select(ProductRow::as_select())
        .first(conn)
        .optional()?)
}

/// Filters of the product list; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub product_type: Option<String>,
    pub category: Option<String>,
    pub seller_id: Option<String>,
    pub status: Option<String>,
}

pub fn list_products(
    conn: &mut AnyConnection,
    filter: &ProductFilter,
    after: &str,
    limit: i64,
) -> Result<Vec<ProductRow>, DbError> {
    let mut query = products::table
        .filter(products::id.gt(after))
        .select(ProductRow::as_select())
        .into_boxed();
    if let Some(t) = &filter.product_type {
        query = query.filter(products::product_type.eq(t));
    }
    if let Some(c) = &filter.category {
        query = query.filter(products::category.eq(c));
    }
    if let Some(s) = &filter.seller_id {
        query = query.filter(products::seller_id.eq(s));
    }
    if let Some(s) = &filter.status {
        query = query.filter(products::status.eq(s));
    }
    Ok(query.order(products::id).limit(limit).load(conn)?)
}

/// Writes `row` (its fields and `version`) only if the stored version is still
/// `expected`: the database decides which of two concurrent editors wins.
pub fn update_product_if_version(conn: &mut AnyConnection, row: &ProductRow, expected: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        products::table
            .filter(products::id.eq(&row.id))
            .filter(products::version.eq(expected)),
    )
    .set(row)
    .execute(conn)?;
    Ok(n == 1)
}

// ---- options and combinations ----

pub fn insert_group(conn: &mut AnyConnection, group: &OptionGroupRow, options: &[OptionRow]) -> Result<(), DbError> {
    diesel::insert_into(option_groups::table).values(group).execute(conn)?;
    for option in options {
        diesel::insert_into(product_options::table)
            .values(option)
            .execute(conn)?;
    }
    Ok(())
}

pub fn groups_of(conn: &mut AnyConnection, product_id: &str) -> Result<Vec<(OptionGroupRow, Vec<OptionRow>)>, DbError> {
    let groups: Vec<OptionGroupRow> = option_groups::table
        .filter(option_groups::product_id.eq(product_id))
        .order(option_groups::id)
        .select(OptionGroupRow::as_select())
        .load(conn)?;
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    let options: Vec<OptionRow> = product_options::table
        .filter(product_options::group_id.eq_any(&ids))
        .order(product_options::id)
        .select(OptionRow::as_select())
        .load(conn)?;
    Ok(groups
        .into_iter()
        .map(|g| {
            let mine = options.iter().filter(|o| o.group_id == g.id).cloned().collect();
            (g, mine)
        })
        .collect())
}

pub fn insert_combination(conn: &mut AnyConnection, row: &CombinationRow) -> Result<(), DbError> {
    diesel::insert_into(combinations::table).values(row).execute(conn)?;
    Ok(())
}

pub fn combinations_of(conn: &mut AnyConnection, product_id: &str) -> Result<Vec<CombinationRow>, DbError> {
    Ok(combinations::table
        .filter(combinations::product_id.eq(product_id))
        .order(combinations::sku)
        .select(CombinationRow::as_select())
        .load(conn)?)
}

// ---- events ----

pub fn insert_event(conn: &mut AnyConnection, row: &EventRow) -> Result<(), DbError> {
    diesel::insert_into(product_events::table).values(row).execute(conn)?;
    Ok(())
}

pub fn events_of(
    conn: &mut AnyConnection,
    product_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(product_events::table
        .filter(product_events::product_id.eq(product_id))
        .filter(product_events::id.gt(after))
        .order(product_events::id)
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)?)
}
