//! Idempotency-key rows: claim (insert or take over an abandoned one), complete,
//! release, purge.

use diesel::prelude::*;

use super::schema::idempotency_keys as keys;
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = keys)]
pub struct KeyRow {
    pub subject: String,
    pub idem_key: String,
    pub fingerprint: String,
    pub response_status: Option<i32>,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub created_at: i64,
    pub locked_until: i64,
    pub expires_at: i64,
}

pub fn find(conn: &mut AnyConnection, subject: &str, key: &str) -> Result<Option<KeyRow>, DbError> {
    Ok(keys::table
        .find((subject, key))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts an in-flight row; `DbError::Conflict` when the key exists.
pub fn insert(conn: &mut AnyConnection, row: &KeyRow) -> Result<(), DbError> {
    diesel::insert_into(keys::table).values(row).execute(conn)?;
    Ok(())
}

/// Takes over a row whose owner is gone: still in flight past its lock, or
/// expired. Exactly one of several concurrent callers wins.
pub fn take_over(conn: &mut AnyConnection, row: &KeyRow, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        keys::table
            .filter(keys::subject.eq(&row.subject))
            .filter(keys::idem_key.eq(&row.idem_key))
            .filter(
                keys::expires_at
                    .le(now)
                    .or(keys::response_status.is_null().and(keys::locked_until.le(now))),
            ),
    )
    .set((
        keys::fingerprint.eq(&row.fingerprint),
        keys::response_status.eq(None::<i32>),
        keys::response_headers.eq(None::<String>),
        keys::response_body.eq(None::<String>),
        keys::created_at.eq(row.created_at),
        keys::locked_until.eq(row.locked_until),
        keys::expires_at.eq(row.expires_at),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Records the response of an in-flight key.
pub fn complete(
    conn: &mut AnyConnection,
    subject: &str,
    key: &str,
    status: i32,
    headers: &str,
    body: &str,
) -> Result<(), DbError> {
    diesel::update(keys::table.find((subject, key)))
        .set((
            keys::response_status.eq(Some(status)),
            keys::response_headers.eq(Some(headers)),
            keys::response_body.eq(Some(body)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Forgets an in-flight key (the request failed without a response worth replaying).
pub fn release(conn: &mut AnyConnection, subject: &str, key: &str) -> Result<(), DbError> {
    diesel::delete(keys::table.find((subject, key)).filter(keys::response_status.is_null())).execute(conn)?;
    Ok(())
}

/// Deletes keys past their retention; returns how many.
pub fn purge(conn: &mut AnyConnection, now: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(keys::table.filter(keys::expires_at.le(now))).execute(conn)?)
}
