//! Static separation of duty: named sets of mutually exclusive roles, of which
//! no subject may be authorized for two (directly or through the hierarchy).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;

use super::hierarchy::{Conflict, closure, sod_conflict};
use super::{Change, Event, Outcome, RbacError, apply, require_role, role_name};
use crate::audit::Actor;
use crate::db::models::rbac as store;
use crate::db::{AnyConnection, Db, DbError};

#[derive(Debug, Clone, Serialize)]
pub struct ExclusiveSet {
    pub name: String,
    pub roles: Vec<String>,
}

/// The first subject (user or client) whose authorized roles break an exclusive set.
pub(super) fn any_conflict(
    conn: &mut AnyConnection,
    edges: &[(String, String)],
    members: &[(String, String)],
) -> Result<Option<(String, Conflict)>, DbError> {
    let mut subjects: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, role) in store::all_user_assignments(conn)? {
        subjects.entry(format!("user {user}")).or_default().push(role);
    }
    for (client, role) in store::all_client_assignments(conn)? {
        subjects.entry(format!("client {client}")).or_default().push(role);
    }
    Ok(subjects
        .into_iter()
        .find_map(|(subject, assigned)| sod_conflict(&closure(&assigned, edges), members).map(|c| (subject, c))))
}

/// Declares `roles` mutually exclusive (static separation of duty). Refused when a
/// subject already holds two of them.
pub async fn create_exclusive_set(
    at: Change<'_>,
    actor: &Actor,
    name: &str,
    roles: &[String],
) -> Result<ExclusiveSet, RbacError> {
    let name = role_name(name)?;
    let roles: Vec<String> = roles.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if roles.len() < 2 {
        return Err(RbacError::SetTooSmall);
    }
    apply(at, actor, move |conn, _, now| {
        for role in &roles {
            require_role(conn, role)?;
        }
        let mut members = store::all_exclusive_members(conn)?;
        if members.iter().any(|(set, _)| *set == name) {
            return Err(RbacError::AlreadyExists(name.clone()));
        }
        members.extend(roles.iter().map(|r| (name.clone(), r.clone())));
        let edges = store::all_parents(conn)?;
        if let Some((subject, conflict)) = any_conflict(conn, &edges, &members)? {
            return Err(RbacError::SeparationOfDuty { subject, conflict });
        }
        store::insert_exclusive_set(conn, &name, &roles, now)?;
        let event = Event::new("role.exclusive.create", &name, json!({ "roles": roles }));
        Ok(Outcome::recorded(ExclusiveSet { name, roles }, event))
    })
    .await
}

pub async fn delete_exclusive_set(at: Change<'_>, actor: &Actor, name: &str) -> Result<(), RbacError> {
    let name = name.to_owned();
    apply(at, actor, move |conn, _, _| {
        if !store::delete_exclusive_set(conn, &name)? {
            return Err(RbacError::UnknownSet(name.clone()));
        }
        Ok(Outcome::recorded(
            (),
            Event::new("role.exclusive.delete", &name, json!({})),
        ))
    })
    .await
}

pub async fn list_exclusive_sets(db: &Db) -> Result<Vec<ExclusiveSet>, RbacError> {
    let members = db.run(store::all_exclusive_members).await?;
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (set, role) in members {
        sets.entry(set).or_default().push(role);
    }
    Ok(sets
        .into_iter()
        .map(|(name, roles)| ExclusiveSet { name, roles })
        .collect())
}
