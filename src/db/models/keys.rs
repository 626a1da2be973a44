//! `signing_keys`: the JWT signing key set shared by every instance. Private keys
//! are stored sealed (AES-256-GCM under a key derived from the key-encryption secret).

use diesel::prelude::*;

use crate::db::schema::signing_keys;
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub expires_at: Option<i64>,
}

pub fn insert(conn: &mut AnyConnection, key: &KeyRow) -> Result<(), DbError> {
    diesel::insert_into(signing_keys::table).values(key).execute(conn)?;
    Ok(())
}

/// Every key not yet removed from JWKS at `now`.
pub fn live(conn: &mut AnyConnection, now: i64) -> Result<Vec<KeyRow>, DbError> {
    Ok(signing_keys::table
        .filter(signing_keys::expires_at.is_null().or(signing_keys::expires_at.gt(now)))
        .order((signing_keys::activates_at.asc(), signing_keys::kid.asc()))
        .select(KeyRow::as_select())
        .load(conn)?)
}

pub fn all(conn: &mut AnyConnection) -> Result<Vec<KeyRow>, DbError> {
    Ok(signing_keys::table
        .order((signing_keys::alg.asc(), signing_keys::activates_at.asc()))
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// Schedules the end of a key: it stops signing at `retires_at` and leaves JWKS at `expires_at`.
pub fn retire(conn: &mut AnyConnection, kid: &str, retires_at: i64, expires_at: i64) -> Result<(), DbError> {
    diesel::update(signing_keys::table.find(kid))
        .set((
            signing_keys::retires_at.eq(retires_at),
            signing_keys::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes keys that left JWKS more than a day ago.
pub fn purge(conn: &mut AnyConnection, before: i64) -> Result<usize, DbError> {
    Ok(diesel::delete(signing_keys::table.filter(signing_keys::expires_at.lt(before))).execute(conn)?)
}
