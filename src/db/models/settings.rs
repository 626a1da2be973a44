//! `server_settings`: small key/value facts about this installation shared by all
//! instances (secret fingerprints, schema facts).

use diesel::prelude::*;

use crate::db::schema::server_settings;
use crate::db::{AnyConnection, DbError};

pub fn get(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, DbError> {
    Ok(server_settings::table
        .find(key)
        .select(server_settings::value)
        .first::<String>(conn)
        .optional()?)
}

/// Stores `value` under `key` unless a value is there already; returns the value in force.
/// Two instances starting together agree on one value.
pub fn get_or_insert(conn: &mut AnyConnection, key: &str, value: &str) -> Result<String, DbError> {
    if let Some(existing) = get(conn, key)? {
        return Ok(existing);
    }
    match diesel::insert_into(server_settings::table)
        .values((server_settings::key.eq(key), server_settings::value.eq(value)))
        .execute(conn)
    {
        Ok(_) => Ok(value.to_owned()),
        Err(e) => match DbError::from(e) {
            DbError::Conflict(_) => get(conn, key)?.ok_or(DbError::NotFound),
            other => Err(other),
        },
    }
}

/// Stores `value` under `key`, replacing any previous value.
pub fn set(conn: &mut AnyConnection, key: &str, value: &str) -> Result<(), DbError> {
    let updated = diesel::update(server_settings::table.find(key))
        .set(server_settings::value.eq(value))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(server_settings::table)
            .values((server_settings::key.eq(key), server_settings::value.eq(value)))
            .execute(conn)?;
    }
    Ok(())
}
