//! `audit_events`: who did what, when (admin changes, and later sign-in events).

use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    /// UUIDv7: ordered by time.
    pub id: String,
    pub at: i64,
    /// `user:<sub>`, `client:<client_id>`, `cli` or `system`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// A JSON object with the change's details (never secrets).
    pub details: String,
    pub ip: Option<String>,
}

/// Retention: deletes at most `limit` events older than `before` (oldest first).
pub fn purge_batch(
    conn: &mut AnyConnection,
    before: i64,
    limit: i64,
) -> Result<crate::db::maintenance::Batch, DbError> {
    let oldest = audit_events::table
        .filter(audit_events::at.lt(before))
        .order(audit_events::at)
        .select(audit_events::id)
        .limit(limit)
        .load::<String>(conn)?;
    crate::db::maintenance::delete_timed(conn, oldest, |conn, ids| {
        Ok(diesel::delete(audit_events::table.filter(audit_events::id.eq_any(ids))).execute(conn)?)
    })
}

pub fn insert(conn: &mut AnyConnection, row: &AuditRow) -> Result<(), DbError> {
    diesel::insert_into(audit_events::table).values(row).execute(conn)?;
    Ok(())
}

/// Filters for `list`; every field narrows the result.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events older than this id (the cursor of the previous page).
    pub before: Option<String>,
}

/// Newest first.
pub fn list(conn: &mut AnyConnection, filter: &AuditFilter, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    let mut query = audit_events::table.select(AuditRow::as_select()).into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(target) = &filter.target {
        query = query.filter(audit_events::target.eq(target.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::at.lt(until));
    }
    if let Some(before) = &filter.before {
        query = query.filter(audit_events::id.lt(before.clone()));
    }
    Ok(query.order(audit_events::id.desc()).limit(limit).load(conn)?)
}
