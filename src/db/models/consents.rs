//! `consents`: what a person allowed a client, per user × client (the union of granted scopes).

use diesel::prelude::*;

use crate::db::schema::{clients, consents};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consents)]
pub struct ConsentRow {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn find(conn: &mut AnyConnection, user_id: &str, client_id: &str) -> Result<Option<ConsentRow>, DbError> {
    Ok(consents::table
        .find((user_id, client_id))
        .select(ConsentRow::as_select())
        .first(conn)
        .optional()?)
}

/// Records consent to `scope` (already merged with any earlier consent by the caller).
pub fn save(conn: &mut AnyConnection, user_id: &str, client_id: &str, scope: &str, now: i64) -> Result<(), DbError> {
    let updated = diesel::update(consents::table.find((user_id, client_id)))
        .set((consents::scope.eq(scope), consents::updated_at.eq(now)))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(consents::table)
            .values(&ConsentRow {
                user_id: user_id.to_owned(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                created_at: now,
                updated_at: now,
            })
            .execute(conn)?;
    }
    Ok(())
}

pub fn delete(conn: &mut AnyConnection, user_id: &str, client_id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(consents::table.find((user_id, client_id))).execute(conn)? == 1)
}

/// A user's consents with the client names, for the account page.
pub fn list_for_user(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<(ConsentRow, String)>, DbError> {
    Ok(consents::table
        .inner_join(clients::table)
        .filter(consents::user_id.eq(user_id))
        .order(clients::name.asc())
        .select((ConsentRow::as_select(), clients::name))
        .load(conn)?)
}
