//! `totp_credentials`, `recovery_codes`, `mfa_failures`, `mfa_challenges`, and
//! `mfa_throttle` (the second step's consecutive-failure counter per account).

use diesel::prelude::*;

use crate::db::schema::{mfa_challenges, mfa_failures, mfa_throttle, recovery_codes, totp_credentials};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = totp_credentials)]
pub struct TotpRow {
    pub user_id: String,
    /// Sealed with the key-encryption secret.
    pub secret: String,
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
    pub created_at: i64,
}

pub fn find_totp(conn: &mut AnyConnection, user_id: &str) -> Result<Option<TotpRow>, DbError> {
    Ok(totp_credentials::table
        .find(user_id)
        .select(TotpRow::as_select())
        .first(conn)
        .optional()?)
}

/// Replaces an unconfirmed enrolment (never a confirmed one).
pub fn put_pending_totp(conn: &mut AnyConnection, row: &TotpRow) -> Result<bool, DbError> {
    if let Some(existing) = find_totp(conn, &row.user_id)? {
        if existing.confirmed_at.is_some() {
            return Ok(false);
        }
        diesel::delete(totp_credentials::table.find(&row.user_id)).execute(conn)?;
    }
    diesel::insert_into(totp_credentials::table).values(row).execute(conn)?;
    Ok(true)
}

/// Accepts time step `step` once: true only for the first caller with a step
/// newer than the last accepted one (atomic, so concurrent submissions of one
/// code yield exactly one success).
pub fn claim_step(
    conn: &mut AnyConnection,
    user_id: &str,
    step: i64,
    confirm_at: Option<i64>,
) -> Result<bool, DbError> {
    let target = totp_credentials::table
        .filter(totp_credentials::user_id.eq(user_id))
        .filter(totp_credentials::last_step.lt(step));
    let updated = match confirm_at {
        Some(at) => diesel::update(target.filter(totp_credentials::confirmed_at.is_null()))
            .set((
                totp_credentials::last_step.eq(step),
                totp_credentials::confirmed_at.eq(at),
            ))
            .execute(conn)?,
        None => diesel::update(target.filter(totp_credentials::confirmed_at.is_not_null()))
            .set(totp_credentials::last_step.eq(step))
            .execute(conn)?,
    };
    Ok(updated == 1)
}

pub fn delete_totp(conn: &mut AnyConnection, user_id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(totp_credentials::table.find(user_id)).execute(conn)? == 1)
}

pub fn replace_recovery_codes(
    conn: &mut AnyConnection,
    user_id: &str,
    hashes: &[String],
    now: i64,
) -> Result<(), DbError> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?;
    for hash in hashes {
        diesel::insert_into(recovery_codes::table)
            .values((
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(hash),
                recovery_codes::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Uses a recovery code once (atomic).
pub fn use_recovery_code(conn: &mut AnyConnection, user_id: &str, hash: &str, now: i64) -> Result<bool, DbError> {
    Ok(diesel::update(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::code_hash.eq(hash))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(now))
    .execute(conn)?
        == 1)
}

pub fn remaining_recovery_codes(conn: &mut AnyConnection, user_id: &str) -> Result<i64, DbError> {
    Ok(recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)?)
}

pub fn delete_recovery_codes(conn: &mut AnyConnection, user_id: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?)
}

pub fn add_failure(conn: &mut AnyConnection, user_id: &str, now: i64) -> Result<(), DbError> {
    diesel::insert_into(mfa_failures::table)
        .values((
            mfa_failures::id.eq(uuid::Uuid::now_v7().to_string()),
            mfa_failures::user_id.eq(user_id),
            mfa_failures::at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Wrong codes since `since`, and the oldest of them (when the window frees up).
pub fn failures_since(conn: &mut AnyConnection, user_id: &str, since: i64) -> Result<Vec<i64>, DbError> {
    Ok(mfa_failures::table
        .filter(mfa_failures::user_id.eq(user_id))
        .filter(mfa_failures::at.gt(since))
        .order(mfa_failures::at.asc())
        .select(mfa_failures::at)
        .load(conn)?)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = mfa_throttle)]
pub struct MfaThrottleRow {
    pub user_id: String,
    /// Consecutive failed second steps (reserved checks count in advance).
    pub failures: i64,
    pub delay_until: i64,
    /// Set when `failures` reached the TOTP lockout.
    pub locked_at: Option<i64>,
    pub since_sign_in: i64,
    pub before_sign_in: i64,
}

pub fn find_throttle(conn: &mut AnyConnection, user_id: &str) -> Result<Option<MfaThrottleRow>, DbError> {
    Ok(mfa_throttle::table
        .find(user_id)
        .select(MfaThrottleRow::as_select())
        .first(conn)
        .optional()?)
}

/// Creates the counter row if missing. Run outside a transaction: a concurrent
/// insert of the same user is a harmless conflict.
pub fn ensure_throttle(conn: &mut AnyConnection, user_id: &str) -> Result<(), DbError> {
    if find_throttle(conn, user_id)?.is_some() {
        return Ok(());
    }
    let row = MfaThrottleRow {
        user_id: user_id.to_owned(),
        failures: 0,
        delay_until: 0,
        locked_at: None,
        since_sign_in: 0,
        before_sign_in: 0,
    };
    match diesel::insert_into(mfa_throttle::table).values(&row).execute(conn) {
        Ok(_) => Ok(()),
        Err(e) => match DbError::from(e) {
            DbError::Conflict(_) => Ok(()),
            other => Err(other),
        },
    }
}

/// Reserves one code check: counts it as a failure in advance, only outside the
/// delay and while fewer than `limit` consecutive failures happened (one
/// conditional `UPDATE`: exact under concurrency and across instances). Returns
/// the row as this transaction sees it afterwards, or `None` when refused. Call
/// inside a transaction.
pub fn reserve(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
    limit: i64,
) -> Result<Option<MfaThrottleRow>, DbError> {
    let claimed = diesel::update(
        mfa_throttle::table
            .find(user_id)
            .filter(mfa_throttle::delay_until.le(now))
            .filter(mfa_throttle::failures.lt(limit)),
    )
    .set((
        mfa_throttle::failures.eq(mfa_throttle::failures + 1),
        mfa_throttle::since_sign_in.eq(mfa_throttle::since_sign_in + 1),
    ))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    Ok(Some(find_throttle(conn, user_id)?.ok_or(DbError::NotFound)?))
}

pub fn set_penalty(
    conn: &mut AnyConnection,
    user_id: &str,
    delay_until: i64,
    locked_at: Option<i64>,
) -> Result<(), DbError> {
    diesel::update(mfa_throttle::table.find(user_id))
        .set((
            mfa_throttle::delay_until.eq(delay_until),
            mfa_throttle::locked_at.eq(locked_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets the lock once the counter reached `lockout_after`; true when this call set it.
pub fn lock(conn: &mut AnyConnection, user_id: &str, lockout_after: i64, now: i64) -> Result<bool, DbError> {
    Ok(diesel::update(
        mfa_throttle::table
            .find(user_id)
            .filter(mfa_throttle::locked_at.is_null())
            .filter(mfa_throttle::failures.ge(lockout_after)),
    )
    .set(mfa_throttle::locked_at.eq(now))
    .execute(conn)?
        == 1)
}

/// A refused attempt (delayed or locked) is not checked, but the person is told of it.
pub fn note_refused(conn: &mut AnyConnection, user_id: &str) -> Result<(), DbError> {
    diesel::update(mfa_throttle::table.find(user_id))
        .set(mfa_throttle::since_sign_in.eq(mfa_throttle::since_sign_in + 1))
        .execute(conn)?;
    Ok(())
}

/// A reserved check passed: it was no failure, and the consecutive count,
/// delay and lock are over.
pub fn reserved_check_passed(conn: &mut AnyConnection, user_id: &str) -> Result<(), DbError> {
    diesel::update(mfa_throttle::table.find(user_id))
        .set((
            mfa_throttle::failures.eq(0),
            mfa_throttle::delay_until.eq(0),
            mfa_throttle::locked_at.eq(None::<i64>),
            mfa_throttle::since_sign_in.eq(mfa_throttle::since_sign_in - 1),
        ))
        .execute(conn)?;
    Ok(())
}

/// A sign-in completed its second step: the counter is over, and the failures
/// since the previous sign-in become what `/account` reports.
pub fn signed_in(conn: &mut AnyConnection, user_id: &str) -> Result<(), DbError> {
    diesel::update(mfa_throttle::table.find(user_id))
        .set((
            mfa_throttle::failures.eq(0),
            mfa_throttle::delay_until.eq(0),
            mfa_throttle::locked_at.eq(None::<i64>),
            mfa_throttle::before_sign_in.eq(mfa_throttle::since_sign_in),
            mfa_throttle::since_sign_in.eq(0),
        ))
        .execute(conn)?;
    Ok(())
}

/// Lifts the second step's delay and lock (an administrator unlocks).
pub fn unlock(conn: &mut AnyConnection, user_id: &str) -> Result<bool, DbError> {
    Ok(
        diesel::update(mfa_throttle::table.find(user_id).filter(mfa_throttle::failures.gt(0)))
            .set((
                mfa_throttle::failures.eq(0),
                mfa_throttle::delay_until.eq(0),
                mfa_throttle::locked_at.eq(None::<i64>),
            ))
            .execute(conn)?
            == 1,
    )
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = mfa_challenges)]
pub struct ChallengeRow {
    pub token_hash: String,
    pub user_id: String,
    /// Methods already passed (`pwd`, or the session's for a step-up).
    pub amr: String,
    pub device_id: Option<String>,
    pub return_to: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert_challenge(conn: &mut AnyConnection, row: &ChallengeRow) -> Result<(), DbError> {
    diesel::insert_into(mfa_challenges::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_challenge(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<ChallengeRow>, DbError> {
    Ok(mfa_challenges::table
        .find(token_hash)
        .select(ChallengeRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn delete_challenge(conn: &mut AnyConnection, token_hash: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(mfa_challenges::table.find(token_hash)).execute(conn)? == 1)
}

pub fn purge(conn: &mut AnyConnection, now: i64) -> Result<usize, DbError> {
    Ok(
        diesel::delete(mfa_challenges::table.filter(mfa_challenges::expires_at.le(now))).execute(conn)?
            + diesel::delete(mfa_failures::table.filter(mfa_failures::at.lt(now - 3600))).execute(conn)?,
    )
}
