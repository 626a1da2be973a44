//! `clients`: registered OAuth clients. Lists (redirect URIs, grant types) are
//! stored as JSON arrays or space-separated text.

use diesel::prelude::*;

use crate::db::schema::clients;
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients)]
#[diesel(treat_none_as_null = true)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub auth_method: String,
    pub jwks: Option<String>,
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub grant_types: String,
    pub scopes: String,
    pub audience: Option<String>,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub id_token_alg: String,
    pub require_consent: bool,
    pub refresh_without_offline_access: bool,
    /// Every sign-in for this application needs a second factor.
    pub require_mfa: bool,
    /// One active sign-in per person at this application.
    pub single_session: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn insert(conn: &mut AnyConnection, row: &ClientRow) -> Result<(), DbError> {
    diesel::insert_into(clients::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<ClientRow>, DbError> {
    Ok(clients::table
        .find(id)
        .select(ClientRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(conn: &mut AnyConnection, limit: i64, offset: i64) -> Result<Vec<ClientRow>, DbError> {
    Ok(clients::table
        .order(clients::id.asc())
        .limit(limit)
        .offset(offset)
        .select(ClientRow::as_select())
        .load(conn)?)
}

pub fn update(conn: &mut AnyConnection, row: &ClientRow) -> Result<bool, DbError> {
    Ok(diesel::update(clients::table.find(&row.id)).set(row).execute(conn)? == 1)
}

pub fn set_secret_hash(conn: &mut AnyConnection, id: &str, hash: &str, now: i64) -> Result<bool, DbError> {
    Ok(diesel::update(clients::table.find(id))
        .set((clients::secret_hash.eq(hash), clients::updated_at.eq(now)))
        .execute(conn)?
        == 1)
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(clients::table.find(id)).execute(conn)? == 1)
}

/// Records a `private_key_jwt` assertion id; false if this client used it before (replay).
pub fn remember_assertion(
    conn: &mut AnyConnection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool, DbError> {
    use crate::db::schema::client_assertions;
    match diesel::insert_into(client_assertions::table)
        .values((
            client_assertions::client_id.eq(client_id),
            client_assertions::jti.eq(jti),
            client_assertions::expires_at.eq(expires_at),
        ))
        .execute(conn)
    {
        Ok(_) => Ok(true),
        Err(e) => match DbError::from(e) {
            DbError::Conflict(_) => Ok(false),
            other => Err(other),
        },
    }
}

pub fn purge_assertions(conn: &mut AnyConnection, now: i64) -> Result<usize, DbError> {
    use crate::db::schema::client_assertions;
    Ok(diesel::delete(client_assertions::table.filter(client_assertions::expires_at.lt(now))).execute(conn)?)
}
