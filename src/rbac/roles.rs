//! Roles and their hierarchy: create, delete, show and list roles; make a role
//! inherit another's permissions (refused when it would close a cycle or break
//! an exclusive set).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::json;

use super::exclusive_sets::any_conflict;
use super::hierarchy::{closure, creates_cycle};
use super::{ADMIN_ROLE, Change, Event, Grantor, Outcome, RbacError, apply, escalation, require_role, role_name};
use crate::audit::Actor;
use crate::db::models::rbac::{self as store, RoleRow};
use crate::db::{AnyConnection, Db, DbError};

/// A role with its direct parents and permissions, and everything it inherits.
#[derive(Debug, Clone, Serialize)]
pub struct RoleView {
    pub name: String,
    pub description: String,
    pub parents: Vec<String>,
    pub permissions: Vec<String>,
    pub inherited_roles: Vec<String>,
    pub effective_permissions: Vec<String>,
    pub created_at: i64,
}

pub async fn create_role(at: Change<'_>, actor: &Actor, name: &str, description: &str) -> Result<RoleRow, RbacError> {
    let row = RoleRow {
        name: role_name(name)?,
        description: description.to_owned(),
        created_at: at.now,
    };
    apply(at, actor, move |conn, _, _| {
        if store::find_role(conn, &row.name)?.is_some() {
            return Err(RbacError::AlreadyExists(row.name.clone()));
        }
        store::insert_role(conn, &row)?;
        let event = Event::new("role.create", &row.name, json!({ "description": row.description }));
        Ok(Outcome::recorded(row, event))
    })
    .await
}

pub async fn delete_role(at: Change<'_>, actor: &Actor, name: &str) -> Result<(), RbacError> {
    if name == ADMIN_ROLE {
        return Err(RbacError::BuiltIn(name.to_owned()));
    }
    let name = name.to_owned();
    apply(at, actor, move |conn, _, _| {
        if !store::delete_role(conn, &name)? {
            return Err(RbacError::UnknownRole(name.clone()));
        }
        Ok(Outcome::recorded((), Event::new("role.delete", &name, json!({}))))
    })
    .await
}

fn view(conn: &mut AnyConnection, row: RoleRow, edges: &[(String, String)]) -> Result<RoleView, DbError> {
    let parents: Vec<String> = edges
        .iter()
        .filter(|(r, _)| *r == row.name)
        .map(|(_, p)| p.clone())
        .collect();
    let all = closure(std::slice::from_ref(&row.name), edges);
    let inherited: Vec<String> = all.iter().filter(|r| **r != row.name).cloned().collect();
    let all: Vec<String> = all.into_iter().collect();
    let effective: BTreeSet<String> = store::permissions_of_roles(conn, &all)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    Ok(RoleView {
        permissions: store::permissions_of_role(conn, &row.name)?,
        name: row.name,
        description: row.description,
        parents,
        inherited_roles: inherited,
        effective_permissions: effective.into_iter().collect(),
        created_at: row.created_at,
    })
}

pub async fn show_role(db: &Db, name: &str) -> Result<RoleView, RbacError> {
    let name = name.to_owned();
    db.run(move |conn| {
        let Some(row) = store::find_role(conn, &name)? else {
            return Ok(Err(RbacError::UnknownRole(name)));
        };
        let edges = store::all_parents(conn)?;
        Ok(Ok(view(conn, row, &edges)?))
    })
    .await?
}

/// Roles ordered by name, after `after` (the previous page's last name).
pub async fn list_roles(db: &Db, after: &str, limit: i64) -> Result<Vec<RoleView>, RbacError> {
    let after = after.to_owned();
    Ok(db
        .run(move |conn| {
            let edges = store::all_parents(conn)?;
            store::list_roles(conn, &after, limit)?
                .into_iter()
                .map(|row| view(conn, row, &edges))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?)
}

/// Makes `role` inherit `parent`'s permissions as the operator; see [`add_parent_by`].
pub async fn add_parent(at: Change<'_>, actor: &Actor, role: &str, parent: &str) -> Result<bool, RbacError> {
    add_parent_by(at, actor, &Grantor::Operator, role, parent).await
}

/// Makes `role` inherit `parent`'s permissions. Refused when it would close a
/// cycle or give any subject two roles of an exclusive set, and when a bounded
/// `grantor` does not hold every permission `parent` reaches.
pub async fn add_parent_by(
    at: Change<'_>,
    actor: &Actor,
    grantor: &Grantor,
    role: &str,
    parent: &str,
) -> Result<bool, RbacError> {
    let (role, parent, grantor) = (role.to_owned(), parent.to_owned(), grantor.clone());
    apply(at, actor, move |conn, actor, now| {
        require_role(conn, &role)?;
        require_role(conn, &parent)?;
        let mut edges = store::all_parents(conn)?;
        if edges.iter().any(|(r, p)| *r == role && *p == parent) {
            return Ok(Outcome::unchanged(false));
        }
        let granted = escalation::permissions_reachable(conn, std::slice::from_ref(&parent))?;
        escalation::check(conn, &grantor, actor, now, "role.parent.add", &role, &granted)?;
        if creates_cycle(&role, &parent, &edges) {
            return Err(RbacError::Cycle { role, parent });
        }
        edges.push((role.clone(), parent.clone()));
        let members = store::all_exclusive_members(conn)?;
        if let Some((subject, conflict)) = any_conflict(conn, &edges, &members)? {
            return Err(RbacError::SeparationOfDuty { subject, conflict });
        }
        store::add_parent(conn, &role, &parent)?;
        let event = Event::new("role.parent.add", &role, json!({ "parent": parent }));
        Ok(Outcome::recorded(true, event))
    })
    .await
}

pub async fn remove_parent(at: Change<'_>, actor: &Actor, role: &str, parent: &str) -> Result<bool, RbacError> {
    let (role, parent) = (role.to_owned(), parent.to_owned());
    apply(at, actor, move |conn, _, _| {
        require_role(conn, &role)?;
        let removed = store::remove_parent(conn, &role, &parent)?;
        let event = Event::new("role.parent.remove", &role, json!({ "parent": parent }));
        Ok(Outcome::changed_if(removed, event))
    })
    .await
}
