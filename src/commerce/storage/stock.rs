//! Stock rows and their adjustments: reads, the version-checked conditional
//! decrement, releases and the audit of sellers' adjustments.

use diesel::prelude::*;

use super::schema::{stock, stock_adjustments};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = stock)]
pub struct StockRow {
    pub id: String,
    pub product_id: String,
    pub combination_id: String,
    /// `""` for REALTIME products, `YYYY-MM-DD` for RESERVABLE ones.
    pub day: String,
    pub available: i64,
    pub version: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = stock_adjustments)]
pub struct AdjustmentRow {
    pub id: String,
    pub stock_id: String,
    pub product_id: String,
    pub actor: String,
    pub at: i64,
    pub delta: i64,
    pub available_after: i64,
    pub reason: Option<String>,
}

pub fn find(conn: &mut AnyConnection, combination_id: &str, day: &str) -> Result<Option<StockRow>, DbError> {
    Ok(stock::table
        .filter(stock::combination_id.eq(combination_id))
        .filter(stock::day.eq(day))
        .select(StockRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn of_product(conn: &mut AnyConnection, product_id: &str, day: Option<&str>) -> Result<Vec<StockRow>, DbError> {
    let mut query = stock::table
        .filter(stock::product_id.eq(product_id))
        .select(StockRow::as_select())
        .into_boxed();
    if let Some(day) = day {
        query = query.filter(stock::day.eq(day));
    }
    Ok(query.order((stock::day, stock::combination_id)).load(conn)?)
}

/// Inserts a new stock row; a concurrent insert of the same (combination, day)
/// fails with `DbError::Conflict`.
pub fn insert(conn: &mut AnyConnection, row: &StockRow) -> Result<(), DbError> {
    diesel::insert_into(stock::table).values(row).execute(conn)?;
    Ok(())
}

/// Sets `available` to `new_available` only if the row is still at `version`:
/// false when another writer got there first.
pub fn set_if_version(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    new_available: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = diesel::update(stock::table.filter(stock::id.eq(id)).filter(stock::version.eq(version)))
        .set((
            stock::available.eq(new_available),
            stock::version.eq(version + 1),
            stock::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// The optimistic decrement: `… WHERE id = ? AND version = ? AND available >= ?`.
/// False when the version moved on or too little is left; the caller re-reads to
/// tell the two apart.
pub fn take_if_version(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    quantity: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = diesel::update(
        stock::table
            .filter(stock::id.eq(id))
            .filter(stock::version.eq(version))
            .filter(stock::available.ge(quantity)),
    )
    .set((
        stock::available.eq(stock::available - quantity),
        stock::version.eq(version + 1),
        stock::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Returns `quantity` to a row (a released hold). Callers run it only after they
/// won the conditional status change that entitles them to, so it runs once.
pub fn give_back(conn: &mut AnyConnection, id: &str, quantity: i64, now: i64) -> Result<(), DbError> {
    diesel::update(stock::table.filter(stock::id.eq(id)))
        .set((
            stock::available.eq(stock::available + quantity),
            stock::version.eq(stock::version + 1),
            stock::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn insert_adjustment(conn: &mut AnyConnection, row: &AdjustmentRow) -> Result<(), DbError> {
    diesel::insert_into(stock_adjustments::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn adjustments_of(
    conn: &mut AnyConnection,
    product_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<AdjustmentRow>, DbError> {
    Ok(stock_adjustments::table
        .filter(stock_adjustments::product_id.eq(product_id))
        .filter(stock_adjustments::id.gt(after))
        .order(stock_adjustments::id)
        .limit(limit)
        .select(AdjustmentRow::as_select())
        .load(conn)?)
}
