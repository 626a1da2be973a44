//! `grants`, `refresh_tokens` and `revoked_tokens`: what a code redemption created.
//! A grant is one refresh-token family; revoking it kills every token from it.

use diesel::prelude::*;

use crate::db::schema::{grants, refresh_tokens, revoked_tokens};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = grants)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub code_hash: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: i64,
    pub amr: String,
    pub acr: Option<String>,
    pub nonce: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// RFC 8707 resource indicator: the audience of the grant's access tokens.
    pub resource: Option<String>,
}

pub fn insert(conn: &mut AnyConnection, grant: &GrantRow) -> Result<(), DbError> {
    diesel::insert_into(grants::table).values(grant).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRow>, DbError> {
    Ok(grants::table
        .find(id)
        .select(GrantRow::as_select())
        .first(conn)
        .optional()?)
}

/// Not revoked and not past its absolute lifetime.
pub fn is_live(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, DbError> {
    let count: i64 = grants::table
        .filter(grants::id.eq(id))
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .count()
        .get_result(conn)?;
    Ok(count == 1)
}

pub fn revoke(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, DbError> {
    Ok(
        diesel::update(grants::table.find(id).filter(grants::revoked_at.is_null()))
            .set(grants::revoked_at.eq(now))
            .execute(conn)?
            == 1,
    )
}

/// Revokes whatever was issued from an authorization code (code reuse, RFC 6749 §4.1.2).
pub fn revoke_by_code(conn: &mut AnyConnection, code_hash: &str, now: i64) -> Result<usize, DbError> {
    Ok(diesel::update(
        grants::table
            .filter(grants::code_hash.eq(code_hash))
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::revoked_at.eq(now))
    .execute(conn)?)
}

/// Revokes every grant of a user to a client (consent withdrawn).
pub fn revoke_for_user_client(
    conn: &mut AnyConnection,
    user_id: &str,
    client_id: &str,
    now: i64,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        grants::table
            .filter(grants::user_id.eq(user_id))
            .filter(grants::client_id.eq(client_id))
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::revoked_at.eq(now))
    .execute(conn)?)
}

/// Revokes every grant of a user, `offline_access` ones included (a credential
/// change, a disabled account): every refresh token of theirs stops working.
pub fn revoke_for_user(conn: &mut AnyConnection, user_id: &str, now: i64) -> Result<usize, DbError> {
    Ok(diesel::update(
        grants::table
            .filter(grants::user_id.eq(user_id))
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::revoked_at.eq(now))
    .execute(conn)?)
}

/// Revokes the grants that came from one browser session (sign-out), except
/// `offline_access` grants, which exist to outlive the session.
pub fn revoke_for_session(conn: &mut AnyConnection, session_id: &str, now: i64) -> Result<usize, DbError> {
    Ok(diesel::update(
        grants::table
            .filter(grants::session_id.eq(session_id))
            .filter(grants::revoked_at.is_null())
            .filter(grants::scope.not_like("%offline_access%")),
    )
    .set(grants::revoked_at.eq(now))
    .execute(conn)?)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshRow {
    pub token_hash: String,
    pub grant_id: String,
    pub created_at: i64,
    pub used_at: Option<i64>,
    /// Set by the rotation that used this token: the successor's hash, and the
    /// successor sealed under the key-encryption secret (for the reuse grace window).
    pub successor_hash: Option<String>,
    pub successor_sealed: Option<String>,
}

pub fn insert_refresh(conn: &mut AnyConnection, row: &RefreshRow) -> Result<(), DbError> {
    diesel::insert_into(refresh_tokens::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_refresh(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<(RefreshRow, GrantRow)>, DbError> {
    Ok(refresh_tokens::table
        .inner_join(grants::table)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((RefreshRow::as_select(), GrantRow::as_select()))
        .first(conn)
        .optional()?)
}

/// Marks a refresh token used and records its successor; false if it already was
/// used (a replay or a lost race). The conditional update is the claim: of
/// concurrent rotations exactly one matches the row.
pub fn use_refresh(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
    successor_hash: &str,
    successor_sealed: &str,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(token_hash))
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set((
        refresh_tokens::used_at.eq(now),
        refresh_tokens::successor_hash.eq(successor_hash),
        refresh_tokens::successor_sealed.eq(successor_sealed),
    ))
    .execute(conn)?
        == 1)
}

/// One refresh token by hash (without its grant).
pub fn find_refresh_row(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<RefreshRow>, DbError> {
    Ok(refresh_tokens::table
        .find(token_hash)
        .select(RefreshRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn revoke_token(conn: &mut AnyConnection, jti: &str, expires_at: i64) -> Result<(), DbError> {
    match diesel::insert_into(revoked_tokens::table)
        .values((revoked_tokens::jti.eq(jti), revoked_tokens::expires_at.eq(expires_at)))
        .execute(conn)
    {
        Ok(_) => Ok(()),
        Err(e) => match DbError::from(e) {
            DbError::Conflict(_) => Ok(()),
            other => Err(other),
        },
    }
}

pub fn is_token_revoked(conn: &mut AnyConnection, jti: &str) -> Result<bool, DbError> {
    let count: i64 = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// How long a grant (and its rotated-out refresh tokens, kept for replay
/// detection) is remembered after its absolute expiry.
pub const EXPIRED_GRANT_RETENTION_SECS: i64 = 86_400;

/// Housekeeping: at most `limit` revocations of access tokens that have expired anyway.
pub fn purge_revocations_batch(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let expired = revoked_tokens::table
        .filter(revoked_tokens::expires_at.lt(now))
        .select(revoked_tokens::jti)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, expired, |conn, ids| {
        Ok(diesel::delete(revoked_tokens::table.filter(revoked_tokens::jti.eq_any(ids))).execute(conn)?)
    })
}

/// Housekeeping: at most `limit` grants a day past their absolute expiry, with their
/// refresh tokens (ON DELETE CASCADE).
pub fn purge_grants_batch(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let dead = grants::table
        .filter(grants::expires_at.lt(now - EXPIRED_GRANT_RETENTION_SECS))
        .select(grants::id)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, dead, |conn, ids| {
        Ok(diesel::delete(grants::table.filter(grants::id.eq_any(ids))).execute(conn)?)
    })
}

/// Housekeeping: at most `limit` sealed successors older than an hour are
/// forgotten. They serve only the short reuse grace window; keeping them longer
/// would keep live refresh tokens (sealed) at rest for nothing.
pub fn forget_successors_batch(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let old = refresh_tokens::table
        .filter(refresh_tokens::successor_sealed.is_not_null())
        .filter(refresh_tokens::used_at.lt(now - 3600))
        .select(refresh_tokens::token_hash)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, old, |conn, ids| {
        Ok(
            diesel::update(refresh_tokens::table.filter(refresh_tokens::token_hash.eq_any(ids)))
                .set(refresh_tokens::successor_sealed.eq(None::<String>))
                .execute(conn)?,
        )
    })
}
