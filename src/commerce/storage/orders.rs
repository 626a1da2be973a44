//! Orders, their items, the saga log, payment events and refunds: rows and
//! queries. Every status change is conditional on the state it leaves (and the
//! saga phase), so of two racing writers exactly one changes the row; the saga
//! log's primary key makes each step happen once.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::schema::{order_items, orders, payment_events, refunds, saga_log};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: String,
    pub buyer: String,
    pub status: String,
    pub saga: String,
    pub cancel_reason: Option<String>,
    pub currency: String,
    pub subtotal_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
    pub coupon_id: Option<String>,
    pub pay_by: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = order_items)]
pub struct ItemRow {
    pub id: String,
    pub order_id: String,
    pub position: i32,
    pub seller_id: String,
    pub product_id: String,
    pub combination_id: String,
    pub day: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub stock_id: Option<String>,
    pub shipment_status: String,
    pub tracking_number: Option<String>,
    pub updated_at: i64,
    /// The CONFIRMED reservation whose hold this item takes over.
    pub reservation_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_events)]
pub struct PaymentEventRow {
    pub event_id: String,
    pub order_id: String,
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub outcome: String,
    pub received_by: String,
    pub received_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refunds)]
pub struct RefundRow {
    pub id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub created_at: i64,
    /// What is paid back, one refund each: `order` (the order's payment, on a
    /// cancellation or a return) or `event:<id>` (one payment event's money).
    pub cause: String,
}

// ---- orders and items ----

pub fn insert(conn: &mut AnyConnection, order: &OrderRow, items: &[ItemRow]) -> Result<(), DbError> {
    diesel::insert_into(orders::table).values(order).execute(conn)?;
    for item in items {
        diesel::insert_into(order_items::table).values(item).execute(conn)?;
    }
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<OrderRow>, DbError> {
    Ok(orders::table
        .find(id)
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn items_of(conn: &mut AnyConnection, order_id: &str) -> Result<Vec<ItemRow>, DbError> {
    Ok(order_items::table
        .filter(order_items::order_id.eq(order_id))
        .order(order_items::position)
        .select(ItemRow::as_select())
        .load(conn)?)
}

pub fn find_item(conn: &mut AnyConnection, order_id: &str, item_id: &str) -> Result<Option<ItemRow>, DbError> {
    Ok(order_items::table
        .filter(order_items::order_id.eq(order_id))
        .filter(order_items::id.eq(item_id))
        .select(ItemRow::as_select())
        .first(conn)
        .optional()?)
}

/// A buyer's orders after the cursor `after` (an order id), oldest first.
pub fn of_buyer(conn: &mut AnyConnection, buyer: &str, after: &str, limit: i64) -> Result<Vec<OrderRow>, DbError> {
    Ok(orders::table
        .filter(orders::buyer.eq(buyer))
        .filter(orders::id.gt(after))
        .order(orders::id)
        .limit(limit)
        .select(OrderRow::as_select())
        .load(conn)?)
}

/// The orders holding items of `seller_id`, after the cursor `after` (an order id).
pub fn of_seller(conn: &mut AnyConnection, seller_id: &str, after: &str, limit: i64) -> Result<Vec<OrderRow>, DbError> {
    let ids = order_items::table
        .filter(order_items::seller_id.eq(seller_id))
        .select(order_items::order_id);
    Ok(orders::table
        .filter(orders::id.eq_any(ids))
        .filter(orders::id.gt(after))
        .order(orders::id)
        .limit(limit)
        .select(OrderRow::as_select())
        .load(conn)?)
}

pub fn items_of_seller(conn: &mut AnyConnection, order_id: &str, seller_id: &str) -> Result<Vec<ItemRow>, DbError> {
    Ok(order_items::table
        .filter(order_items::order_id.eq(order_id))
        .filter(order_items::seller_id.eq(seller_id))
        .order(order_items::position)
        .select(ItemRow::as_select())
        .load(conn)?)
}

/// Touches the order if its saga is in `saga`: on PostgreSQL this takes the order's
/// row lock, so the steps of one order (and the payment events and cancellations
/// that race them) run one after the other. False when the saga has moved on.
pub fn lock_in_phase(conn: &mut AnyConnection, id: &str, saga: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(orders::table.filter(orders::id.eq(id)).filter(orders::saga.eq(saga)))
        .set(orders::updated_at.eq(now))
        .execute(conn)?;
    Ok(n == 1)
}

/// Touches the order (PostgreSQL: takes its row lock) whatever its phase.
pub fn lock(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(orders::table.filter(orders::id.eq(id)))
        .set(orders::updated_at.eq(now))
        .execute(conn)?;
    Ok(n == 1)
}

/// Moves the order from (`status`, `saga`) to (`to_status`, `to_saga`); false if it
/// was not there any more.
pub fn advance(
    conn: &mut AnyConnection,
    id: &str,
    (status, saga): (&str, &str),
    (to_status, to_saga): (&str, &str),
    now: i64,
) -> Result<bool, DbError> {
    let n = diesel::update(
        orders::table
            .filter(orders::id.eq(id))
            .filter(orders::status.eq(status))
            .filter(orders::saga.eq(saga)),
    )
    .set((
        orders::status.eq(to_status),
        orders::saga.eq(to_saga),
        orders::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn set_pay_by(conn: &mut AnyConnection, id: &str, pay_by: i64) -> Result<(), DbError> {
    diesel::update(orders::table.find(id))
        .set(orders::pay_by.eq(Some(pay_by)))
        .execute(conn)?;
    Ok(())
}

/// Starts compensating an order whose saga is in `saga` (and status `status`),
/// recording why; false if it was not there any more.
pub fn start_compensation(
    conn: &mut AnyConnection,
    id: &str,
    (status, saga): (&str, &str),
    reason: &str,
    now: i64,
) -> Result<bool, DbError> {
    let n = diesel::update(
        orders::table
            .filter(orders::id.eq(id))
            .filter(orders::status.eq(status))
            .filter(orders::saga.eq(saga)),
    )
    .set((
        orders::saga.eq("COMPENSATING"),
        orders::cancel_reason.eq(Some(reason)),
        orders::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// The discount the coupon step computed (the same the order was priced with,
/// unless the campaign changed).
pub fn set_discount(conn: &mut AnyConnection, id: &str, discount_minor: i64, total_minor: i64) -> Result<(), DbError> {
    diesel::update(orders::table.find(id))
        .set((
            orders::discount_minor.eq(discount_minor),
            orders::total_minor.eq(total_minor),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_item_stock(conn: &mut AnyConnection, item_id: &str, stock_id: &str, now: i64) -> Result<(), DbError> {
    diesel::update(order_items::table.find(item_id))
        .set((
            order_items::stock_id.eq(Some(stock_id)),
            order_items::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Moves an item's shipment from `from` to `to`; false if it was not `from` any more.
pub fn move_item(
    conn: &mut AnyConnection,
    item_id: &str,
    from: &str,
    to: &str,
    tracking_number: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let target = order_items::table
        .filter(order_items::id.eq(item_id))
        .filter(order_items::shipment_status.eq(from));
    let n = match tracking_number {
        Some(tracking) => diesel::update(target)
            .set((
                order_items::shipment_status.eq(to),
                order_items::tracking_number.eq(Some(tracking)),
                order_items::updated_at.eq(now),
            ))
            .execute(conn)?,
        None => diesel::update(target)
            .set((order_items::shipment_status.eq(to), order_items::updated_at.eq(now)))
            .execute(conn)?,
    };
    Ok(n == 1)
}

// ---- the saga log ----

pub fn steps_of(conn: &mut AnyConnection, order_id: &str) -> Result<Vec<String>, DbError> {
    Ok(saga_log::table
        .filter(saga_log::order_id.eq(order_id))
        .select(saga_log::step)
        .load(conn)?)
}

pub fn has_step(conn: &mut AnyConnection, order_id: &str, step: &str) -> Result<bool, DbError> {
    let n: i64 = saga_log::table
        .filter(saga_log::order_id.eq(order_id))
        .filter(saga_log::step.eq(step))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Records a step; `DbError::Conflict` if it was recorded already (the caller's
/// transaction then rolls back, effect included).
pub fn log_step(conn: &mut AnyConnection, order_id: &str, step: &str, now: i64) -> Result<(), DbError> {
    diesel::insert_into(saga_log::table)
        .values((
            saga_log::order_id.eq(order_id),
            saga_log::step.eq(step),
            saga_log::at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

// ---- leases of the saga runner ----

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Claims up to `limit` sagas that need work (placing, compensating, or awaiting a
/// payment past its deadline) and whose lease is free, for `owner` until
/// `lease_until`. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so the runners of every
/// instance share the work; SQLite: one `UPDATE … RETURNING`.
pub fn claim_due(
    conn: &mut AnyConnection,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<String>, DbError> {
    const DUE: &str = "(saga IN ('PLACING', 'COMPENSATING') OR (saga = 'AWAITING_PAYMENT' AND pay_by <= $3)) \
                       AND (lease_until IS NULL OR lease_until <= $3)";
    let rows: Vec<Id> = match conn {
        AnyConnection::Postgresql(c) => diesel::sql_query(format!(
            "UPDATE orders SET lease_owner = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM orders WHERE {DUE} ORDER BY updated_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id"
        ))
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(lease_until)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load(c)?,
        AnyConnection::Sqlite(c) => diesel::sql_query(
            format!(
                "UPDATE orders SET lease_owner = $1, lease_until = $2 WHERE id IN \
                 (SELECT id FROM orders WHERE {DUE} ORDER BY updated_at, id LIMIT $4) RETURNING id"
            )
            .replace('$', "?"),
        )
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(lease_until)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load(c)?,
    };
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Whether any saga needs work now (a read: idle runners do not take SQLite's write lock).
pub fn any_due(conn: &mut AnyConnection, now: i64) -> Result<bool, DbError> {
    let first: Option<String> = orders::table
        .filter(
            orders::saga
                .eq_any(["PLACING", "COMPENSATING"])
                .or(orders::saga.eq("AWAITING_PAYMENT").and(orders::pay_by.le(now))),
        )
        .filter(orders::lease_until.is_null().or(orders::lease_until.le(now)))
        .select(orders::id)
        .first(conn)
        .optional()?;
    Ok(first.is_some())
}

/// Takes the lease of one order if it is free (or already `owner`'s).
pub fn take_lease(conn: &mut AnyConnection, id: &str, owner: &str, now: i64, until: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        orders::table.filter(orders::id.eq(id)).filter(
            orders::lease_until
                .is_null()
                .or(orders::lease_until.le(now))
                .or(orders::lease_owner.eq(owner)),
        ),
    )
    .set((orders::lease_owner.eq(Some(owner)), orders::lease_until.eq(Some(until))))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn release_lease(conn: &mut AnyConnection, id: &str, owner: &str) -> Result<(), DbError> {
    diesel::update(
        orders::table
            .filter(orders::id.eq(id))
            .filter(orders::lease_owner.eq(owner)),
    )
    .set((
        orders::lease_owner.eq(None::<String>),
        orders::lease_until.eq(None::<i64>),
    ))
    .execute(conn)?;
    Ok(())
}

// ---- payment events and refunds ----

pub fn find_event(conn: &mut AnyConnection, event_id: &str) -> Result<Option<PaymentEventRow>, DbError> {
    Ok(payment_events::table
        .find(event_id)
        .select(PaymentEventRow::as_select())
        .first(conn)
        .optional()?)
}

/// Records an event; `DbError::Conflict` when its id was recorded already.
pub fn insert_event(conn: &mut AnyConnection, row: &PaymentEventRow) -> Result<(), DbError> {
    diesel::insert_into(payment_events::table).values(row).execute(conn)?;
    Ok(())
}

/// The sum of the order's refunds, if it has any.
pub fn refunded(conn: &mut AnyConnection, order_id: &str) -> Result<Option<i64>, DbError> {
    let amounts: Vec<i64> = refunds::table
        .filter(refunds::order_id.eq(order_id))
        .select(refunds::amount_minor)
        .load(conn)?;
    Ok((!amounts.is_empty()).then(|| amounts.iter().sum()))
}

/// Records a refund unless the order has one for the same cause
/// (`refunds_one_per_cause`).
pub fn insert_refund(conn: &mut AnyConnection, row: &RefundRow) -> Result<bool, DbError> {
    let exists: Option<String> = refunds::table
        .filter(refunds::order_id.eq(&row.order_id))
        .filter(refunds::cause.eq(&row.cause))
        .select(refunds::id)
        .first(conn)
        .optional()?;
    if exists.is_some() {
        return Ok(false);
    }
    diesel::insert_into(refunds::table).values(row).execute(conn)?;
    Ok(true)
}
