//! `login_throttle` (per-username failure counters), `login_attempts` (every
//! sign-in attempt with its risk score) and `known_devices` (with each device's
//! own count of wrong passwords), and their retention batches.

use diesel::dsl::count;
use diesel::expression_methods::AggregateExpressionMethods;
use diesel::prelude::*;

use crate::db::schema::{known_devices, login_attempts, login_throttle};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = login_throttle)]
pub struct ThrottleRow {
    pub username_key: String,
    pub failures: i64,
    pub last_failure_at: i64,
    pub delay_until: i64,
    pub locked_at: Option<i64>,
}

pub fn find_throttle(conn: &mut AnyConnection, key: &str) -> Result<Option<ThrottleRow>, DbError> {
    Ok(login_throttle::table
        .find(key)
        .select(ThrottleRow::as_select())
        .first(conn)
        .optional()?)
}

/// Creates the counter row if missing. Run outside a transaction: a concurrent
/// insert of the same key is a harmless conflict.
pub fn ensure_throttle(conn: &mut AnyConnection, key: &str) -> Result<(), DbError> {
    if find_throttle(conn, key)?.is_some() {
        return Ok(());
    }
    let row = ThrottleRow {
        username_key: key.to_owned(),
        failures: 0,
        last_failure_at: 0,
        delay_until: 0,
        locked_at: None,
    };
    match diesel::insert_into(login_throttle::table).values(&row).execute(conn) {
        Ok(_) => Ok(()),
        Err(e) => match DbError::from(e) {
            DbError::Conflict(_) => Ok(()),
            other => Err(other),
        },
    }
}

/// Reserves one password check: counts it as a failure in advance, but only if
/// the counter is not locked, not within its delay and below `lockout_after`
/// (one conditional `UPDATE`, so exact under concurrency and across instances).
/// Returns the row as this transaction sees it afterwards, or `None` when the
/// attempt may not be checked. Call inside a transaction, then set the penalty.
pub fn reserve(
    conn: &mut AnyConnection,
    key: &str,
    now: i64,
    lockout_after: i64,
) -> Result<Option<ThrottleRow>, DbError> {
    let claimed = diesel::update(
        login_throttle::table
            .find(key)
            .filter(login_throttle::locked_at.is_null())
            .filter(login_throttle::delay_until.le(now))
            .filter(login_throttle::failures.lt(lockout_after)),
    )
    .set((
        login_throttle::failures.eq(login_throttle::failures + 1),
        login_throttle::last_failure_at.eq(now),
    ))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    Ok(Some(find_throttle(conn, key)?.ok_or(DbError::NotFound)?))
}

pub fn set_penalty(
    conn: &mut AnyConnection,
    key: &str,
    delay_until: i64,
    locked_at: Option<i64>,
) -> Result<(), DbError> {
    diesel::update(login_throttle::table.find(key))
        .set((
            login_throttle::delay_until.eq(delay_until),
            login_throttle::locked_at.eq(locked_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets the lock once the counter reached `lockout_after`; true when this call set it.
pub fn lock(conn: &mut AnyConnection, key: &str, lockout_after: i64, now: i64) -> Result<bool, DbError> {
    Ok(diesel::update(
        login_throttle::table
            .find(key)
            .filter(login_throttle::locked_at.is_null())
            .filter(login_throttle::failures.ge(lockout_after)),
    )
    .set(login_throttle::locked_at.eq(now))
    .execute(conn)?
        == 1)
}

/// Forgets the failures after a successful sign-in, unless the account is locked.
/// The row stays (reset in place), so concurrent attempts can go on claiming it.
pub fn clear_unless_locked(conn: &mut AnyConnection, key: &str) -> Result<bool, DbError> {
    Ok(diesel::update(
        login_throttle::table
            .find(key)
            .filter(login_throttle::locked_at.is_null()),
    )
    .set((login_throttle::failures.eq(0), login_throttle::delay_until.eq(0)))
    .execute(conn)?
        == 1)
}

/// Retention: deletes at most `limit` counters nobody has failed on since
/// `before`: not locked, no delay running at `now`. A lock stays until it is
/// lifted, however old. The conditions are repeated in the `DELETE`, so a counter
/// claimed between the select and the delete keeps its new failure.
pub fn purge_throttle_batch(
    conn: &mut AnyConnection,
    before: i64,
    now: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let stale = login_throttle::table
        .filter(login_throttle::last_failure_at.lt(before))
        .filter(login_throttle::locked_at.is_null())
        .filter(login_throttle::delay_until.le(now))
        .select(login_throttle::username_key)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, stale, |conn, keys| {
        Ok(diesel::delete(
            login_throttle::table
                .filter(login_throttle::username_key.eq_any(keys))
                .filter(login_throttle::last_failure_at.lt(before))
                .filter(login_throttle::locked_at.is_null())
                .filter(login_throttle::delay_until.le(now)),
        )
        .execute(conn)?)
    })
}

/// Forgets the failures (after a successful sign-in, a password reset or an unlock).
pub fn clear(conn: &mut AnyConnection, key: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(login_throttle::table.find(key)).execute(conn)? == 1)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = login_attempts)]
pub struct AttemptRow {
    pub id: String,
    pub at: i64,
    pub ip: Option<String>,
    pub ip_net: String,
    #[serde(skip)]
    pub username_key: String,
    pub user_id: Option<String>,
    pub known_device: bool,
    pub user_agent: Option<String>,
    /// `success`, `failure`, `delayed`, `locked`, `denied`.
    pub outcome: String,
    pub risk: i64,
    /// Space-separated risk signals.
    pub reasons: String,
}

pub fn insert_attempt(conn: &mut AnyConnection, row: &AttemptRow) -> Result<(), DbError> {
    diesel::insert_into(login_attempts::table).values(row).execute(conn)?;
    Ok(())
}

/// Failed (or refused) attempts from a network since `since`.
pub fn net_failures(conn: &mut AnyConnection, net: &str, since: i64) -> Result<i64, DbError> {
    Ok(login_attempts::table
        .filter(login_attempts::ip_net.eq(net))
        .filter(login_attempts::at.ge(since))
        .filter(login_attempts::outcome.ne("success"))
        .count()
        .get_result(conn)?)
}

/// Distinct usernames tried (and failed) from a network since `since`.
pub fn net_usernames(conn: &mut AnyConnection, net: &str, since: i64) -> Result<i64, DbError> {
    Ok(login_attempts::table
        .filter(login_attempts::ip_net.eq(net))
        .filter(login_attempts::at.ge(since))
        .filter(login_attempts::outcome.ne("success"))
        .select(count(login_attempts::username_key).aggregate_distinct())
        .get_result(conn)?)
}

/// The times of a user's recent successful sign-ins and whether one came from `net`.
pub fn user_history(conn: &mut AnyConnection, user_id: &str, net: &str) -> Result<(Vec<i64>, bool), DbError> {
    let times: Vec<i64> = login_attempts::table
        .filter(login_attempts::user_id.eq(user_id))
        .filter(login_attempts::outcome.eq("success"))
        .order(login_attempts::at.desc())
        .limit(50)
        .select(login_attempts::at)
        .load(conn)?;
    let from_net = login_attempts::table
        .filter(login_attempts::user_id.eq(user_id))
        .filter(login_attempts::outcome.eq("success"))
        .filter(login_attempts::ip_net.eq(net))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    Ok((times, from_net))
}

/// Distinct networks that tried this username since `since`.
pub fn username_nets(conn: &mut AnyConnection, key: &str, since: i64) -> Result<i64, DbError> {
    Ok(login_attempts::table
        .filter(login_attempts::username_key.eq(key))
        .filter(login_attempts::at.ge(since))
        .select(count(login_attempts::ip_net).aggregate_distinct())
        .get_result(conn)?)
}

/// A user's most recent attempts, newest first (for the account page).
pub fn recent_for_user(conn: &mut AnyConnection, user_id: &str, limit: i64) -> Result<Vec<AttemptRow>, DbError> {
    Ok(login_attempts::table
        .filter(login_attempts::user_id.eq(user_id))
        .order(login_attempts::id.desc())
        .limit(limit)
        .select(AttemptRow::as_select())
        .load(conn)?)
}

/// Retention: deletes at most `limit` sign-in attempts older than `before` (oldest first).
pub fn purge_attempts_batch(
    conn: &mut AnyConnection,
    before: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let oldest = login_attempts::table
        .filter(login_attempts::at.lt(before))
        .order(login_attempts::at)
        .select(login_attempts::id)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, oldest, |conn, ids| {
        Ok(diesel::delete(login_attempts::table.filter(login_attempts::id.eq_any(ids))).execute(conn)?)
    })
}

/// True when the device signed in to the account before and has fewer than
/// `max_failures` wrong passwords since.
pub fn is_known_device(
    conn: &mut AnyConnection,
    device_id: &str,
    user_id: &str,
    max_failures: i64,
) -> Result<bool, DbError> {
    Ok(known_devices::table
        .find((device_id, user_id))
        .filter(known_devices::failures.lt(max_failures))
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

/// Reserves one password check on the device's own counter: counts it as a wrong
/// password in advance, only while below `max_failures` (one conditional
/// `UPDATE`, exact under concurrency). False: the device is no longer known.
pub fn reserve_device(
    conn: &mut AnyConnection,
    device_id: &str,
    user_id: &str,
    max_failures: i64,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        known_devices::table
            .find((device_id, user_id))
            .filter(known_devices::failures.lt(max_failures)),
    )
    .set(known_devices::failures.eq(known_devices::failures + 1))
    .execute(conn)?
        == 1)
}

/// Retention: forgets at most `limit` devices (with every account they signed in
/// to and were last seen on before `before`). The device ids select the batch;
/// the `DELETE` keeps the age condition, so a device seen meanwhile stays.
pub fn purge_devices_batch(
    conn: &mut AnyConnection,
    before: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let stale = known_devices::table
        .filter(known_devices::last_seen_at.lt(before))
        .select(known_devices::device_id)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, stale, |conn, ids| {
        Ok(diesel::delete(
            known_devices::table
                .filter(known_devices::device_id.eq_any(ids))
                .filter(known_devices::last_seen_at.lt(before)),
        )
        .execute(conn)?)
    })
}

pub fn remember_device(conn: &mut AnyConnection, device_id: &str, user_id: &str, now: i64) -> Result<(), DbError> {
    let updated = diesel::update(known_devices::table.find((device_id, user_id)))
        .set((known_devices::last_seen_at.eq(now), known_devices::failures.eq(0)))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(known_devices::table)
            .values((
                known_devices::device_id.eq(device_id),
                known_devices::user_id.eq(user_id),
                known_devices::created_at.eq(now),
                known_devices::last_seen_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}
