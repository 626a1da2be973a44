//! `webauthn_credentials` and `webauthn_ceremonies`.

use diesel::prelude::*;

use crate::db::schema::{webauthn_ceremonies, webauthn_credentials};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webauthn_credentials)]
pub struct CredentialRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: String,
    pub user_handle: String,
    pub name: String,
    pub passkey: String,
    pub synced: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webauthn_ceremonies)]
pub struct CeremonyRow {
    pub token_hash: String,
    pub purpose: String,
    pub user_id: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn list(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<CredentialRow>, DbError> {
    Ok(webauthn_credentials::table
        .filter(webauthn_credentials::user_id.eq(user_id))
        .order(webauthn_credentials::created_at.asc())
        .select(CredentialRow::as_select())
        .load(conn)?)
}

pub fn count(conn: &mut AnyConnection, user_id: &str) -> Result<i64, DbError> {
    Ok(webauthn_credentials::table
        .filter(webauthn_credentials::user_id.eq(user_id))
        .count()
        .get_result(conn)?)
}

pub fn find_by_credential_id(conn: &mut AnyConnection, credential_id: &str) -> Result<Option<CredentialRow>, DbError> {
    Ok(webauthn_credentials::table
        .filter(webauthn_credentials::credential_id.eq(credential_id))
        .select(CredentialRow::as_select())
        .first(conn)
        .optional()?)
}

/// The user handle already given to this person's authenticators, if any.
pub fn user_handle(conn: &mut AnyConnection, user_id: &str) -> Result<Option<String>, DbError> {
    Ok(webauthn_credentials::table
        .filter(webauthn_credentials::user_id.eq(user_id))
        .select(webauthn_credentials::user_handle)
        .first(conn)
        .optional()?)
}

pub fn insert(conn: &mut AnyConnection, row: &CredentialRow) -> Result<(), DbError> {
    diesel::insert_into(webauthn_credentials::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Stores the updated counter/flags after a sign-in, but only if the stored
/// state is still `previous` (two concurrent sign-ins cannot both move it).
pub fn record_use(
    conn: &mut AnyConnection,
    id: &str,
    previous: &str,
    passkey: &str,
    now: i64,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        webauthn_credentials::table
            .filter(webauthn_credentials::id.eq(id))
            .filter(webauthn_credentials::passkey.eq(previous)),
    )
    .set((
        webauthn_credentials::passkey.eq(passkey),
        webauthn_credentials::last_used_at.eq(now),
    ))
    .execute(conn)?
        == 1)
}

pub fn rename(conn: &mut AnyConnection, user_id: &str, id: &str, name: &str) -> Result<bool, DbError> {
    Ok(diesel::update(
        webauthn_credentials::table
            .filter(webauthn_credentials::id.eq(id))
            .filter(webauthn_credentials::user_id.eq(user_id)),
    )
    .set(webauthn_credentials::name.eq(name))
    .execute(conn)?
        == 1)
}

pub fn delete(conn: &mut AnyConnection, user_id: &str, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(
        webauthn_credentials::table
            .filter(webauthn_credentials::id.eq(id))
            .filter(webauthn_credentials::user_id.eq(user_id)),
    )
    .execute(conn)?
        == 1)
}

pub fn insert_ceremony(conn: &mut AnyConnection, row: &CeremonyRow) -> Result<(), DbError> {
    diesel::insert_into(webauthn_ceremonies::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Takes a ceremony out of the table: the caller that deletes the row owns it,
/// so a challenge is answered at most once even under concurrent submissions.
pub fn take_ceremony(conn: &mut AnyConnection, token_hash: &str, now: i64) -> Result<Option<CeremonyRow>, DbError> {
    let Some(row) = webauthn_ceremonies::table
        .find(token_hash)
        .select(CeremonyRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let deleted = diesel::delete(webauthn_ceremonies::table.find(token_hash)).execute(conn)?;
    Ok((deleted == 1 && row.expires_at > now).then_some(row))
}

pub fn purge(conn: &mut AnyConnection, now: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(webauthn_ceremonies::table.filter(webauthn_ceremonies::expires_at.le(now))).execute(conn)?)
}
