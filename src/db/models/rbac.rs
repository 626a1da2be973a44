//! RBAC tables: `roles`, `permissions`, `role_permissions`, `role_parents`,
//! `user_roles`, `client_roles`, `exclusive_role_sets` / `exclusive_role_members`.

use diesel::prelude::*;

use crate::db::schema::{
    client_roles, exclusive_role_members, exclusive_role_sets, permissions, role_parents, role_permissions, roles,
    server_settings, user_roles,
};
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = roles)]
pub struct RoleRow {
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = permissions)]
pub struct PermissionRow {
    pub name: String,
    /// The resource server this permission belongs to; `None` is oxidp itself.
    pub audience: Option<String>,
    pub description: String,
    pub created_at: i64,
}

/// Takes the RBAC write lock for the rest of the transaction (a row lock on
/// PostgreSQL; SQLite transactions are already serialized). Every change that
/// must see a consistent hierarchy and assignment set (cycle and
/// separation-of-duty checks) calls this first.
pub fn lock(conn: &mut AnyConnection) -> Result<(), DbError> {
    diesel::update(server_settings::table.find("rbac_version"))
        .set(server_settings::value.eq(uuid::Uuid::now_v7().to_string()))
        .execute(conn)?;
    Ok(())
}

pub fn insert_role(conn: &mut AnyConnection, row: &RoleRow) -> Result<(), DbError> {
    diesel::insert_into(roles::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_role(conn: &mut AnyConnection, name: &str) -> Result<Option<RoleRow>, DbError> {
    Ok(roles::table
        .find(name)
        .select(RoleRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_roles(conn: &mut AnyConnection, after: &str, limit: i64) -> Result<Vec<RoleRow>, DbError> {
    Ok(roles::table
        .filter(roles::name.gt(after))
        .order(roles::name.asc())
        .limit(limit)
        .select(RoleRow::as_select())
        .load(conn)?)
}

pub fn delete_role(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(roles::table.find(name)).execute(conn)? == 1)
}

pub fn insert_permission(conn: &mut AnyConnection, row: &PermissionRow) -> Result<(), DbError> {
    diesel::insert_into(permissions::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_permission(conn: &mut AnyConnection, name: &str) -> Result<Option<PermissionRow>, DbError> {
    Ok(permissions::table
        .find(name)
        .select(PermissionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_permissions(conn: &mut AnyConnection, after: &str, limit: i64) -> Result<Vec<PermissionRow>, DbError> {
    Ok(permissions::table
        .filter(permissions::name.gt(after))
        .order(permissions::name.asc())
        .limit(limit)
        .select(PermissionRow::as_select())
        .load(conn)?)
}

pub fn all_permission_names(conn: &mut AnyConnection) -> Result<Vec<String>, DbError> {
    Ok(permissions::table.select(permissions::name).load(conn)?)
}

pub fn delete_permission(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(permissions::table.find(name)).execute(conn)? == 1)
}

/// Adds `permission` to `role`; false when it was there already.
pub fn add_role_permission(conn: &mut AnyConnection, role: &str, permission: &str) -> Result<bool, DbError> {
    let exists = role_permissions::table
        .find((role, permission))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        return Ok(false);
    }
    diesel::insert_into(role_permissions::table)
        .values((
            role_permissions::role.eq(role),
            role_permissions::permission.eq(permission),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn remove_role_permission(conn: &mut AnyConnection, role: &str, permission: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(role_permissions::table.find((role, permission))).execute(conn)? == 1)
}

/// The permissions held directly (not inherited) by `role`.
pub fn permissions_of_role(conn: &mut AnyConnection, role: &str) -> Result<Vec<String>, DbError> {
    Ok(role_permissions::table
        .filter(role_permissions::role.eq(role))
        .order(role_permissions::permission.asc())
        .select(role_permissions::permission)
        .load(conn)?)
}

/// The permissions of any of `roles`, with their audiences.
pub fn permissions_of_roles(
    conn: &mut AnyConnection,
    roles: &[String],
) -> Result<Vec<(String, Option<String>)>, DbError> {
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    Ok(role_permissions::table
        .inner_join(permissions::table)
        .filter(role_permissions::role.eq_any(roles))
        .select((permissions::name, permissions::audience))
        .distinct()
        .load(conn)?)
}

/// Every hierarchy edge as (role, parent).
pub fn all_parents(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, DbError> {
    Ok(role_parents::table
        .select((role_parents::role, role_parents::parent))
        .load(conn)?)
}

pub fn add_parent(conn: &mut AnyConnection, role: &str, parent: &str) -> Result<bool, DbError> {
    let exists = role_parents::table
        .find((role, parent))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        return Ok(false);
    }
    diesel::insert_into(role_parents::table)
        .values((role_parents::role.eq(role), role_parents::parent.eq(parent)))
        .execute(conn)?;
    Ok(true)
}

pub fn remove_parent(conn: &mut AnyConnection, role: &str, parent: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(role_parents::table.find((role, parent))).execute(conn)? == 1)
}

pub fn roles_of_user(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<String>, DbError> {
    Ok(user_roles::table
        .filter(user_roles::user_id.eq(user_id))
        .order(user_roles::role.asc())
        .select(user_roles::role)
        .load(conn)?)
}

pub fn roles_of_client(conn: &mut AnyConnection, client_id: &str) -> Result<Vec<String>, DbError> {
    Ok(client_roles::table
        .filter(client_roles::client_id.eq(client_id))
        .order(client_roles::role.asc())
        .select(client_roles::role)
        .load(conn)?)
}

pub fn assign_user(conn: &mut AnyConnection, user_id: &str, role: &str, now: i64) -> Result<bool, DbError> {
    let exists = user_roles::table
        .find((user_id, role))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        return Ok(false);
    }
    diesel::insert_into(user_roles::table)
        .values((
            user_roles::user_id.eq(user_id),
            user_roles::role.eq(role),
            user_roles::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn unassign_user(conn: &mut AnyConnection, user_id: &str, role: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(user_roles::table.find((user_id, role))).execute(conn)? == 1)
}

pub fn assign_client(conn: &mut AnyConnection, client_id: &str, role: &str, now: i64) -> Result<bool, DbError> {
    let exists = client_roles::table
        .find((client_id, role))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        return Ok(false);
    }
    diesel::insert_into(client_roles::table)
        .values((
            client_roles::client_id.eq(client_id),
            client_roles::role.eq(role),
            client_roles::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn unassign_client(conn: &mut AnyConnection, client_id: &str, role: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(client_roles::table.find((client_id, role))).execute(conn)? == 1)
}

/// Every user assignment as (user_id, role).
pub fn all_user_assignments(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, DbError> {
    Ok(user_roles::table
        .select((user_roles::user_id, user_roles::role))
        .load(conn)?)
}

/// Every client assignment as (client_id, role).
pub fn all_client_assignments(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, DbError> {
    Ok(client_roles::table
        .select((client_roles::client_id, client_roles::role))
        .load(conn)?)
}

pub fn insert_exclusive_set(conn: &mut AnyConnection, name: &str, members: &[String], now: i64) -> Result<(), DbError> {
    diesel::insert_into(exclusive_role_sets::table)
        .values((
            exclusive_role_sets::name.eq(name),
            exclusive_role_sets::created_at.eq(now),
        ))
        .execute(conn)?;
    for role in members {
        diesel::insert_into(exclusive_role_members::table)
            .values((
                exclusive_role_members::set_name.eq(name),
                exclusive_role_members::role.eq(role),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn delete_exclusive_set(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(exclusive_role_sets::table.find(name)).execute(conn)? == 1)
}

/// Every exclusive set as (set name, member role), ordered by set.
pub fn all_exclusive_members(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, DbError> {
    Ok(exclusive_role_members::table
        .order((
            exclusive_role_members::set_name.asc(),
            exclusive_role_members::role.asc(),
        ))
        .select((exclusive_role_members::set_name, exclusive_role_members::role))
        .load(conn)?)
}
