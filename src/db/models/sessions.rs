//! `sessions`: server-side browser sessions. Only the SHA-256 of the cookie value is stored.

use diesel::prelude::*;

use crate::db::models::users::UserRow;
use crate::db::schema::{sessions, users};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub auth_time: i64,
    pub amr: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub fn insert(conn: &mut AnyConnection, session: &SessionRow) -> Result<(), DbError> {
    diesel::insert_into(sessions::table).values(session).execute(conn)?;
    Ok(())
}

pub fn find_with_user(conn: &mut AnyConnection, token_hash: &str) -> Result<Option<(SessionRow, UserRow)>, DbError> {
    Ok(sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .select((SessionRow::as_select(), UserRow::as_select()))
        .first(conn)
        .optional()?)
}

/// Records activity, but never moves `last_seen_at` backwards.
pub fn touch(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), DbError> {
    diesel::update(sessions::table.find(id).filter(sessions::last_seen_at.lt(now)))
        .set(sessions::last_seen_at.eq(now))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(sessions::table.find(id)).execute(conn)? == 1)
}

pub fn list_for_user(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<SessionRow>, DbError> {
    Ok(sessions::table
        .filter(sessions::user_id.eq(user_id))
        .order(sessions::last_seen_at.desc())
        .select(SessionRow::as_select())
        .load(conn)?)
}

/// Deletes sessions idle since before `idle_cutoff` or created before `absolute_cutoff`.
pub fn delete_expired(conn: &mut AnyConnection, idle_cutoff: i64, absolute_cutoff: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(
        sessions::table.filter(
            sessions::last_seen_at
                .lt(idle_cutoff)
                .or(sessions::created_at.lt(absolute_cutoff)),
        ),
    )
    .execute(conn)?)
}
