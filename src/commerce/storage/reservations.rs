//! Reservation rows and the outbox queue. Every status change is conditional on
//! the status it leaves, so of two racing writers (duplicate deliveries, two
//! sweepers) exactly one changes the row and the other sees `false`.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use super::schema::{outbox, reservations};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reservations)]
pub struct ReservationRow {
    pub id: String,
    pub subject: String,
    pub product_id: String,
    pub combination_id: String,
    pub day: String,
    pub quantity: i64,
    pub status: String,
    pub reason: Option<String>,
    pub stock_id: Option<String>,
    pub hold_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// ORDERED: the order that took the hold over.
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox)]
pub struct MessageRow {
    pub id: String,
    pub topic: String,
    pub payload: String,
    pub available_at: i64,
    pub claimed_by: Option<String>,
    pub lease_until: Option<i64>,
    pub attempts: i32,
    pub created_at: i64,
}

/// A claimed message.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

pub fn insert(conn: &mut AnyConnection, row: &ReservationRow) -> Result<(), DbError> {
    diesel::insert_into(reservations::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<ReservationRow>, DbError> {
    Ok(reservations::table
        .find(id)
        .select(ReservationRow::as_select())
        .first(conn)
        .optional()?)
}

/// Touches a PENDING reservation: on PostgreSQL this takes its row lock, so a
/// second delivery of the same message waits here and then finds it no longer
/// PENDING. False when it is not PENDING (already handled).
pub fn lock_pending(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq("PENDING")),
    )
    .set(reservations::updated_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn confirm(conn: &mut AnyConnection, id: &str, stock_id: &str, hold_until: i64, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq("PENDING")),
    )
    .set((
        reservations::status.eq("CONFIRMED"),
        reservations::stock_id.eq(Some(stock_id)),
        reservations::hold_until.eq(Some(hold_until)),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn fail(conn: &mut AnyConnection, id: &str, reason: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq("PENDING")),
    )
    .set((
        reservations::status.eq("FAILED"),
        reservations::reason.eq(Some(reason)),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// CONFIRMED → EXPIRED once the hold ran out; true for the one caller that did it.
pub fn expire(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq("CONFIRMED"))
            .filter(reservations::hold_until.le(now)),
    )
    .set((
        reservations::status.eq("EXPIRED"),
        reservations::reason.eq(Some("hold_expired")),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// CONFIRMED → ORDERED while the hold still runs: the order's saga takes the held
/// stock over. True for the one caller that did it (the sweeper's `expire` and a
/// second order race on the same condition).
pub fn hand_to_order(conn: &mut AnyConnection, id: &str, order_id: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq("CONFIRMED"))
            .filter(reservations::hold_until.gt(now)),
    )
    .set((
        reservations::status.eq("ORDERED"),
        reservations::order_id.eq(Some(order_id)),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// ORDERED → EXPIRED (`order_cancelled`) when the order that took the hold was
/// cancelled and its saga gave the stock back.
pub fn end_with_order(conn: &mut AnyConnection, id: &str, order_id: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq("ORDERED"))
            .filter(reservations::order_id.eq(order_id)),
    )
    .set((
        reservations::status.eq("EXPIRED"),
        reservations::reason.eq(Some("order_cancelled")),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Confirmed reservations whose hold ran out.
pub fn due_holds(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<ReservationRow>, DbError> {
    Ok(reservations::table
        .filter(reservations::status.eq("CONFIRMED"))
        .filter(reservations::hold_until.le(now))
        .order(reservations::hold_until)
        .limit(limit)
        .select(ReservationRow::as_select())
        .load(conn)?)
}

// ---- the outbox ----

pub fn enqueue(conn: &mut AnyConnection, row: &MessageRow) -> Result<(), DbError> {
    diesel::insert_into(outbox::table).values(row).execute(conn)?;
    Ok(())
}

/// Whether a message of `topic` is ready to claim: a read, so idle workers do not
/// take SQLite's write lock every poll just to find the queue empty.
pub fn any_ready(conn: &mut AnyConnection, topic: &str, now: i64) -> Result<bool, DbError> {
    let first: Option<String> = outbox::table
        .filter(outbox::topic.eq(topic))
        .filter(outbox::available_at.le(now))
        .filter(outbox::lease_until.is_null().or(outbox::lease_until.le(now)))
        .select(outbox::id)
        .first(conn)
        .optional()?;
    Ok(first.is_some())
}

/// Claims the oldest ready message of `topic` for `worker` until `lease_until`.
/// PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers of every instance share the
/// queue without waiting on each other; SQLite: one `UPDATE … RETURNING`
/// (writes are serialised by the database).
pub fn claim(
    conn: &mut AnyConnection,
    topic: &str,
    worker: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Claimed>, DbError> {
    let claimed = match conn {
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "UPDATE outbox SET claimed_by = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox WHERE topic = $3 AND available_at <= $4 \
               AND (lease_until IS NULL OR lease_until <= $4) \
               ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, payload, attempts",
        )
        .bind::<Text, _>(worker)
        .bind::<BigInt, _>(lease_until)
        .bind::<Text, _>(topic)
        .bind::<BigInt, _>(now)
        .get_result::<Claimed>(c)
        .optional()?,
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "UPDATE outbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox WHERE topic = ? AND available_at <= ? \
               AND (lease_until IS NULL OR lease_until <= ?) \
               ORDER BY available_at, id LIMIT 1) \
             RETURNING id, payload, attempts",
        )
        .bind::<Text, _>(worker)
        .bind::<BigInt, _>(lease_until)
        .bind::<Text, _>(topic)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now)
        .get_result::<Claimed>(c)
        .optional()?,
    };
    Ok(claimed)
}

/// The ack: deletes the message if `worker` still holds it.
pub fn ack(conn: &mut AnyConnection, id: &str, worker: &str) -> Result<bool, DbError> {
    let n = diesel::delete(
        outbox::table
            .filter(outbox::id.eq(id))
            .filter(outbox::claimed_by.eq(worker)),
    )
    .execute(conn)?;
    Ok(n == 1)
}

/// Gives a message back to the queue (visible again at `available_at`).
pub fn nack(conn: &mut AnyConnection, id: &str, worker: &str, available_at: i64) -> Result<(), DbError> {
    diesel::update(
        outbox::table
            .filter(outbox::id.eq(id))
            .filter(outbox::claimed_by.eq(worker)),
    )
    .set((
        outbox::claimed_by.eq(None::<String>),
        outbox::lease_until.eq(None::<i64>),
        outbox::available_at.eq(available_at),
    ))
    .execute(conn)?;
    Ok(())
}

// ---- the outbox relay (RabbitMQ backend) ----

/// Claims up to `limit` ready messages of `topic` for the relay `relay` until
/// `lease_until` (oldest first; PostgreSQL skips rows other relays hold). The
/// relay publishes them, then deletes the confirmed ones (`relayed`) and gives
/// the others back (`release`); a relay that dies in between leaves them to be
/// claimed again once the lease ran out, so a row is published at least once.
pub fn claim_batch(
    conn: &mut AnyConnection,
    topic: &str,
    relay: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, DbError> {
    let claimed = match conn {
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "UPDATE outbox SET claimed_by = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE topic = $3 AND available_at <= $4 \
               AND (lease_until IS NULL OR lease_until <= $4) \
               ORDER BY available_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
             RETURNING id, payload, attempts",
        )
        .bind::<Text, _>(relay)
        .bind::<BigInt, _>(lease_until)
        .bind::<Text, _>(topic)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load::<Claimed>(c)?,
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "UPDATE outbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE topic = ? AND available_at <= ? \
               AND (lease_until IS NULL OR lease_until <= ?) \
               ORDER BY available_at, id LIMIT ?) \
             RETURNING id, payload, attempts",
        )
        .bind::<Text, _>(relay)
        .bind::<BigInt, _>(lease_until)
        .bind::<Text, _>(topic)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load::<Claimed>(c)?,
    };
    Ok(claimed)
}

/// Deletes the messages the broker confirmed, if `relay` still holds them.
pub fn relayed(conn: &mut AnyConnection, ids: &[String], relay: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::claimed_by.eq(relay)),
    )
    .execute(conn)?)
}

/// Gives messages `relay` could not publish back to the queue at once.
pub fn release(conn: &mut AnyConnection, ids: &[String], relay: &str) -> Result<usize, DbError> {
    Ok(diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::claimed_by.eq(relay)),
    )
    .set((
        outbox::claimed_by.eq(None::<String>),
        outbox::lease_until.eq(None::<i64>),
    ))
    .execute(conn)?)
}

/// Reservations still PENDING and outbox messages not yet gone.
pub fn depth(conn: &mut AnyConnection) -> Result<(i64, i64), DbError> {
    let pending = reservations::table
        .filter(reservations::status.eq("PENDING"))
        .count()
        .get_result::<i64>(conn)?;
    let backlog = outbox::table.count().get_result::<i64>(conn)?;
    Ok((pending, backlog))
}
