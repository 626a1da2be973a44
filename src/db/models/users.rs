//! `users` and `password_history`.

use diesel::prelude::*;

use crate::db::schema::{password_history, users};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub zoneinfo: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub password_changed_at: Option<i64>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// OIDC `address` claim as a JSON object.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub zoneinfo: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    pub password_hash: Option<String>,
    pub password_changed_at: Option<i64>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub address: Option<String>,
}

pub fn insert(conn: &mut AnyConnection, user: &NewUser) -> Result<(), DbError> {
    diesel::insert_into(users::table).values(user).execute(conn)?;
    Ok(())
}

pub fn find_by_username(conn: &mut AnyConnection, username: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// Finds a user by id or by username.
pub fn find(conn: &mut AnyConnection, id_or_username: &str) -> Result<Option<UserRow>, DbError> {
    match find_by_id(conn, id_or_username)? {
        Some(user) => Ok(Some(user)),
        None => find_by_username(conn, &id_or_username.to_lowercase()),
    }
}

pub fn list(conn: &mut AnyConnection, limit: i64, offset: i64) -> Result<Vec<UserRow>, DbError> {
    Ok(users::table
        .order(users::username.asc())
        .limit(limit)
        .offset(offset)
        .select(UserRow::as_select())
        .load(conn)?)
}

pub fn set_disabled(conn: &mut AnyConnection, id: &str, disabled: bool, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(users::table.find(id))
        .set((users::disabled.eq(disabled), users::updated_at.eq(now)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Replaces the stored hash without touching the history: a transparent re-hash
/// of the same password (legacy scheme or new argon2 parameters).
pub fn replace_hash(conn: &mut AnyConnection, id: &str, old_hash: &str, new_hash: &str) -> Result<bool, DbError> {
    // Only if nobody changed the password in between.
    let n = diesel::update(users::table.find(id).filter(users::password_hash.eq(old_hash)))
        .set(users::password_hash.eq(new_hash))
        .execute(conn)?;
    Ok(n == 1)
}

/// Sets a new password: the previous hash goes to the history, of which only the
/// newest `keep` entries are kept.
pub fn change_password(conn: &mut AnyConnection, id: &str, new_hash: &str, now: i64, keep: i64) -> Result<(), DbError> {
    let previous: Option<String> = users::table.find(id).select(users::password_hash).first(conn)?;
    if let Some(previous) = previous {
        diesel::insert_into(password_history::table)
            .values((
                // UUIDv7 ids sort by creation, so changes within one second keep their order.
                password_history::id.eq(uuid::Uuid::now_v7().to_string()),
                password_history::user_id.eq(id),
                password_history::password_hash.eq(previous),
                password_history::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(new_hash),
            users::password_changed_at.eq(now),
            users::updated_at.eq(now),
        ))
        .execute(conn)?;
    let stale: Vec<String> = password_history::table
        .filter(password_history::user_id.eq(id))
        .order((password_history::created_at.desc(), password_history::id.desc()))
        .offset(keep)
        .limit(1000)
        .select(password_history::id)
        .load(conn)?;
    if !stale.is_empty() {
        diesel::delete(password_history::table.filter(password_history::id.eq_any(stale))).execute(conn)?;
    }
    Ok(())
}

/// The current hash followed by the newest historical ones, at most `limit` in all.
pub fn recent_hashes(conn: &mut AnyConnection, id: &str, limit: i64) -> Result<Vec<String>, DbError> {
    let current: Option<String> = users::table.find(id).select(users::password_hash).first(conn)?;
    let mut hashes: Vec<String> = current.into_iter().collect();
    let older: Vec<String> = password_history::table
        .filter(password_history::user_id.eq(id))
        .order((password_history::created_at.desc(), password_history::id.desc()))
        .limit(limit)
        .select(password_history::password_hash)
        .load(conn)?;
    hashes.extend(older);
    hashes.truncate(limit as usize);
    Ok(hashes)
}

pub fn count(conn: &mut AnyConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

/// Filter: accounts whose password hash is a legacy one (wrapped or bare), i.e.
/// neither absent nor plain argon2id.
fn legacy_filter() -> diesel::dsl::And<
    diesel::dsl::IsNotNull<users::password_hash>,
    diesel::dsl::NotLike<users::password_hash, &'static str>,
> {
    users::password_hash
        .is_not_null()
        .and(users::password_hash.not_like("$argon2id$%"))
}

/// How many accounts still carry a legacy hash.
pub fn legacy_count(conn: &mut AnyConnection) -> Result<i64, DbError> {
    Ok(users::table.filter(legacy_filter()).count().get_result(conn)?)
}

/// Accounts still carrying a legacy hash, by username.
pub fn list_legacy(conn: &mut AnyConnection, limit: i64, offset: i64) -> Result<Vec<UserRow>, DbError> {
    Ok(users::table
        .filter(legacy_filter())
        .order(users::username.asc())
        .limit(limit)
        .offset(offset)
        .select(UserRow::as_select())
        .load(conn)?)
}

/// (id, hash) of legacy-hash accounts with an id after `after`, in id order: a
/// page of a scan over large tables.
pub fn legacy_page(conn: &mut AnyConnection, after: &str, limit: i64) -> Result<Vec<(String, String)>, DbError> {
    let rows: Vec<(String, Option<String>)> = users::table
        .filter(legacy_filter())
        .filter(users::id.gt(after))
        .order(users::id.asc())
        .limit(limit)
        .select((users::id, users::password_hash))
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(id, hash)| Some((id, hash?))).collect())
}
