//! `authorization_requests` (pending /authorize requests waiting for sign-in or
//! consent, kept server-side so any instance can continue them) and
//! `authorization_codes` (single use, short-lived, stored hashed).

use diesel::prelude::*;

use crate::db::schema::{authorization_codes, authorization_requests};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = authorization_requests)]
pub struct RequestRow {
    pub id: String,
    pub client_id: String,
    pub params: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// SHA-256 of the binding cookie of the browser that started the request.
    pub browser_hash: Option<String>,
}

pub fn insert_request(conn: &mut AnyConnection, row: &RequestRow) -> Result<(), DbError> {
    diesel::insert_into(authorization_requests::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_request(conn: &mut AnyConnection, id: &str, now: i64) -> Result<Option<RequestRow>, DbError> {
    Ok(authorization_requests::table
        .find(id)
        .filter(authorization_requests::expires_at.gt(now))
        .select(RequestRow::as_select())
        .first(conn)
        .optional()?)
}

/// Rewrites a pending request's parameters (a step of it was completed).
pub fn update_request_params(conn: &mut AnyConnection, id: &str, params: &str) -> Result<(), DbError> {
    diesel::update(authorization_requests::table.find(id))
        .set(authorization_requests::params.eq(params))
        .execute(conn)?;
    Ok(())
}

/// Deletes a pending request; false if another request already finished it.
pub fn delete_request(conn: &mut AnyConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(authorization_requests::table.find(id)).execute(conn)? == 1)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = authorization_codes)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: String,
    pub acr: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// RFC 8707 resource indicator the client asked for.
    pub resource: Option<String>,
}

pub fn insert_code(conn: &mut AnyConnection, row: &CodeRow) -> Result<(), DbError> {
    diesel::insert_into(authorization_codes::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_code(conn: &mut AnyConnection, code_hash: &str) -> Result<Option<CodeRow>, DbError> {
    Ok(authorization_codes::table
        .find(code_hash)
        .select(CodeRow::as_select())
        .first(conn)
        .optional()?)
}

/// Marks a code used; false if it already was.
pub fn use_code(conn: &mut AnyConnection, code_hash: &str, now: i64) -> Result<bool, DbError> {
    Ok(diesel::update(
        authorization_codes::table
            .filter(authorization_codes::code_hash.eq(code_hash))
            .filter(authorization_codes::used_at.is_null()),
    )
    .set(authorization_codes::used_at.eq(now))
    .execute(conn)?
        == 1)
}

/// How long a redeemed code is remembered past its expiry, so that a replay
/// still finds it and revokes what the first redemption got (RFC 6749 §4.1.2).
/// Unused codes go at expiry: a replay of those is refused as unknown anyway.
pub const USED_CODE_RETENTION_SECS: i64 = 600;

/// Housekeeping: at most `limit` expired pending authorization requests.
pub fn purge_requests_batch(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let expired = authorization_requests::table
        .filter(authorization_requests::expires_at.lt(now))
        .select(authorization_requests::id)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, expired, |conn, ids| {
        Ok(
            diesel::delete(authorization_requests::table.filter(authorization_requests::id.eq_any(ids)))
                .execute(conn)?,
        )
    })
}

/// Housekeeping: at most `limit` codes past any use — unused ones at expiry, used
/// ones `USED_CODE_RETENTION_SECS` later.
pub fn purge_codes_batch(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let expired = authorization_codes::table
        .filter(
            authorization_codes::expires_at
                .lt(now - USED_CODE_RETENTION_SECS)
                .or(authorization_codes::used_at
                    .is_null()
                    .and(authorization_codes::expires_at.lt(now))),
        )
        .select(authorization_codes::code_hash)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, expired, |conn, ids| {
        Ok(
            diesel::delete(authorization_codes::table.filter(authorization_codes::code_hash.eq_any(ids)))
                .execute(conn)?,
        )
    })
}
