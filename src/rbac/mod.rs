//! Role-based access control: roles, namespaced permissions, role hierarchy
//! (cycles refused), static separation of duty (exclusive role sets), and the
//! assignment of roles to users and to clients (service accounts).
//!
//! Every change runs in one transaction that first takes the RBAC lock, so the
//! cycle and separation-of-duty checks see every concurrent change (two
//! concurrent assignments of exclusive roles: exactly one succeeds), and writes
//! its audit event in the same transaction.

pub mod claims;
pub mod escalation;
pub mod hierarchy;

pub use escalation::{ESCALATE, Grantor};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Actor};
use crate::db::models::rbac::{self as store, PermissionRow, RoleRow};
use crate::db::models::{clients, users};
use crate::db::{AnyConnection, DbError};
use crate::state::AppState;
use hierarchy::{
    Conflict, OWN_NAMESPACE, closure, creates_cycle, is_permission_name, is_valid_role_name, sod_conflict,
};

/// The built-in administrator role (holds every `oxidp:*` permission).
pub const ADMIN_ROLE: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("invalid role name `{0}`: use 1-64 of a-z 0-9 _ . - starting with a letter or digit")]
    InvalidRoleName(String),
    #[error("invalid permission name `{0}`: use namespace:resource:action with a-z 0-9 _ . -")]
    InvalidPermissionName(String),
    #[error("invalid audience `{0}`: use an absolute URI without fragment")]
    InvalidAudience(String),
    #[error("permission `{0}` is new: give the audience (resource server) it belongs to")]
    AudienceRequired(String),
    #[error("the `oxidp:` namespace is reserved for oxidp's own permissions")]
    ReservedNamespace,
    #[error("no role `{0}`")]
    UnknownRole(String),
    #[error("no permission `{0}`")]
    UnknownPermission(String),
    #[error("no user `{0}`")]
    UnknownUser(String),
    #[error("no client `{0}`")]
    UnknownClient(String),
    #[error("no exclusive role set `{0}`")]
    UnknownSet(String),
    #[error("`{0}` already exists")]
    AlreadyExists(String),
    #[error("the built-in role `{0}` cannot be deleted")]
    BuiltIn(String),
    #[error("making `{parent}` a parent of `{role}` would create a cycle")]
    Cycle { role: String, parent: String },
    #[error("separation of duty: {subject} would hold {} from the exclusive set `{}`", .conflict.roles.join(" and "), .conflict.set)]
    SeparationOfDuty { subject: String, conflict: Conflict },
    #[error("an exclusive set needs at least two distinct roles")]
    SetTooSmall,
    /// The change would hand out (or touch a client holding) a permission the
    /// caller does not hold itself, and the caller lacks `oxidp:roles:escalate`.
    #[error("the caller does not hold `{permission}` (needed for this change, or `oxidp:roles:escalate`)")]
    Escalation { permission: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Whose roles: a user (id or username) or a client id.
#[derive(Debug, Clone)]
pub enum Subject {
    User(String),
    Client(String),
}

impl Subject {
    fn label(&self) -> String {
        match self {
            Subject::User(u) => format!("user {u}"),
            Subject::Client(c) => format!("client {c}"),
        }
    }
}

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

#[derive(Debug, Clone, Serialize)]
pub struct ExclusiveSet {
    pub name: String,
    pub roles: Vec<String>,
}

/// A subject's assigned roles and the roles it is authorized for through the hierarchy.
#[derive(Debug, Clone, Serialize)]
pub struct Assignments {
    pub subject: String,
    pub assigned: Vec<String>,
    pub authorized: Vec<String>,
}

fn role_name(name: &str) -> Result<String, RbacError> {
    if is_valid_role_name(name) {
        Ok(name.to_owned())
    } else {
        Err(RbacError::InvalidRoleName(name.to_owned()))
    }
}

fn permission_name(name: &str) -> Result<String, RbacError> {
    if is_permission_name(name) {
        Ok(name.to_owned())
    } else {
        Err(RbacError::InvalidPermissionName(name.to_owned()))
    }
}

fn require_role(conn: &mut AnyConnection, name: &str) -> Result<(), RbacError> {
    store::find_role(conn, name)?
        .map(|_| ())
        .ok_or_else(|| RbacError::UnknownRole(name.to_owned()))
}

/// The stored id of a subject (a username is resolved to the user id).
fn resolve(conn: &mut AnyConnection, subject: &Subject) -> Result<String, RbacError> {
    match subject {
        Subject::User(u) => users::find(conn, u)?
            .map(|row| row.id)
            .ok_or_else(|| RbacError::UnknownUser(u.clone())),
        Subject::Client(c) => clients::find(conn, c)?
            .map(|row| row.id)
            .ok_or_else(|| RbacError::UnknownClient(c.clone())),
    }
}

/// Runs a change under the RBAC lock, then clears this instance's entitlement cache.
async fn change<T, F>(state: &AppState, f: F) -> Result<T, RbacError>
where
    T: Send + 'static,
    F: FnOnce(&mut AnyConnection, i64) -> Result<Result<T, RbacError>, DbError> + Send + 'static,
{
    let now = state.clock.now();
    let outcome = state
        .db
        .transaction(move |conn| {
            store::lock(conn)?;
            f(conn, now)
        })
        .await?;
    if outcome.is_ok() {
        state.rbac.clear();
    }
    outcome
}

/// Turns `Result<T, RbacError>` computed inside a transaction into the shape `change` wants,
/// letting database errors abort (and roll back) the transaction.
fn split<T>(result: Result<T, RbacError>) -> Result<Result<T, RbacError>, DbError> {
    match result {
        Err(RbacError::Db(db)) => Err(db),
        other => Ok(other),
    }
}

/// The first subject (user or client) whose authorized roles break an exclusive set.
fn any_conflict(
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

pub async fn create_role(state: &AppState, actor: &Actor, name: &str, description: &str) -> Result<RoleRow, RbacError> {
    let row = RoleRow {
        name: role_name(name)?,
        description: description.to_owned(),
        created_at: state.clock.now(),
    };
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            if store::find_role(conn, &row.name)?.is_some() {
                return Err(RbacError::AlreadyExists(row.name.clone()));
            }
            store::insert_role(conn, &row)?;
            audit::record(
                conn,
                &actor,
                "role.create",
                Some(&row.name),
                json!({ "description": row.description }),
                now,
            )?;
            Ok(row)
        })())
    })
    .await
}

pub async fn delete_role(state: &AppState, actor: &Actor, name: &str) -> Result<(), RbacError> {
    if name == ADMIN_ROLE {
        return Err(RbacError::BuiltIn(name.to_owned()));
    }
    let name = name.to_owned();
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            if !store::delete_role(conn, &name)? {
                return Err(RbacError::UnknownRole(name.clone()));
            }
            audit::record(conn, &actor, "role.delete", Some(&name), json!({}), now)?;
            Ok(())
        })())
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

pub async fn show_role(state: &AppState, name: &str) -> Result<RoleView, RbacError> {
    let name = name.to_owned();
    state
        .db
        .run(move |conn| {
            let Some(row) = store::find_role(conn, &name)? else {
                return Ok(Err(RbacError::UnknownRole(name)));
            };
            let edges = store::all_parents(conn)?;
            Ok(Ok(view(conn, row, &edges)?))
        })
        .await?
}

/// Roles ordered by name, after `after` (the previous page's last name).
pub async fn list_roles(state: &AppState, after: &str, limit: i64) -> Result<Vec<RoleView>, RbacError> {
    let after = after.to_owned();
    Ok(state
        .db
        .run(move |conn| {
            let edges = store::all_parents(conn)?;
            store::list_roles(conn, &after, limit)?
                .into_iter()
                .map(|row| view(conn, row, &edges))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?)
}

fn checked_audience(name: &str, audience: Option<&str>) -> Result<Option<String>, RbacError> {
    let own = name.split(':').next() == Some(OWN_NAMESPACE);
    match audience {
        _ if own => Err(RbacError::ReservedNamespace),
        None => Err(RbacError::AudienceRequired(name.to_owned())),
        Some(aud) => {
            let ok = url::Url::parse(aud).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base());
            if ok {
                Ok(Some(aud.to_owned()))
            } else {
                Err(RbacError::InvalidAudience(aud.to_owned()))
            }
        }
    }
}

pub async fn create_permission(
    state: &AppState,
    actor: &Actor,
    name: &str,
    audience: Option<&str>,
    description: &str,
) -> Result<PermissionRow, RbacError> {
    let name = permission_name(name)?;
    let row = PermissionRow {
        audience: checked_audience(&name, audience)?,
        name,
        description: description.to_owned(),
        created_at: state.clock.now(),
    };
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            if store::find_permission(conn, &row.name)?.is_some() {
                return Err(RbacError::AlreadyExists(row.name.clone()));
            }
            store::insert_permission(conn, &row)?;
            audit::record(
                conn,
                &actor,
                "permission.create",
                Some(&row.name),
                json!({ "audience": row.audience, "description": row.description }),
                now,
            )?;
            Ok(row)
        })())
    })
    .await
}

pub async fn delete_permission(state: &AppState, actor: &Actor, name: &str) -> Result<(), RbacError> {
    if name.split(':').next() == Some(OWN_NAMESPACE) {
        return Err(RbacError::ReservedNamespace);
    }
    let name = name.to_owned();
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            if !store::delete_permission(conn, &name)? {
                return Err(RbacError::UnknownPermission(name.clone()));
            }
            audit::record(conn, &actor, "permission.delete", Some(&name), json!({}), now)?;
            Ok(())
        })())
    })
    .await
}

pub async fn list_permissions(state: &AppState, after: &str, limit: i64) -> Result<Vec<PermissionRow>, RbacError> {
    let after = after.to_owned();
    Ok(state
        .db
        .run(move |conn| store::list_permissions(conn, &after, limit))
        .await?)
}

/// Gives `role` a permission as the operator (unrestricted); see [`grant_by`].
pub async fn grant(
    state: &AppState,
    actor: &Actor,
    role: &str,
    permission: &str,
    audience: Option<&str>,
) -> Result<bool, RbacError> {
    grant_by(state, actor, &Grantor::Operator, role, permission, audience).await
}

/// Gives `role` a permission, creating the permission first when it is new (then
/// `audience` names its resource server). Returns false when the role had it already.
/// A bounded `grantor` must hold the permission itself.
pub async fn grant_by(
    state: &AppState,
    actor: &Actor,
    grantor: &Grantor,
    role: &str,
    permission: &str,
    audience: Option<&str>,
) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let permission = permission_name(permission)?;
    let audience = audience.map(str::to_owned);
    let (actor, grantor) = (actor.clone(), grantor.clone());
    change(state, move |conn, now| {
        split((|| {
            require_role(conn, &role)?;
            let granted = BTreeSet::from([permission.clone()]);
            escalation::check(conn, &grantor, &actor, now, "role.grant", &role, &granted)?;
            match store::find_permission(conn, &permission)? {
                Some(existing) => {
                    if audience.is_some() && audience != existing.audience {
                        return Err(RbacError::AlreadyExists(format!(
                            "{permission} (with audience {})",
                            existing.audience.as_deref().unwrap_or("oxidp")
                        )));
                    }
                }
                None => {
                    let row = PermissionRow {
                        audience: checked_audience(&permission, audience.as_deref())?,
                        name: permission.clone(),
                        description: String::new(),
                        created_at: now,
                    };
                    store::insert_permission(conn, &row)?;
                    audit::record(
                        conn,
                        &actor,
                        "permission.create",
                        Some(&permission),
                        json!({ "audience": row.audience }),
                        now,
                    )?;
                }
            }
            let added = store::add_role_permission(conn, &role, &permission)?;
            if added {
                audit::record(
                    conn,
                    &actor,
                    "role.grant",
                    Some(&role),
                    json!({ "permission": permission }),
                    now,
                )?;
            }
            Ok(added)
        })())
    })
    .await
}

pub async fn revoke(state: &AppState, actor: &Actor, role: &str, permission: &str) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let permission = permission.to_owned();
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            require_role(conn, &role)?;
            let removed = store::remove_role_permission(conn, &role, &permission)?;
            if removed {
                audit::record(
                    conn,
                    &actor,
                    "role.revoke",
                    Some(&role),
                    json!({ "permission": permission }),
                    now,
                )?;
            }
            Ok(removed)
        })())
    })
    .await
}

/// Makes `role` inherit `parent`'s permissions as the operator; see [`add_parent_by`].
pub async fn add_parent(state: &AppState, actor: &Actor, role: &str, parent: &str) -> Result<bool, RbacError> {
    add_parent_by(state, actor, &Grantor::Operator, role, parent).await
}

/// Makes `role` inherit `parent`'s permissions. Refused when it would close a
/// cycle or give any subject two roles of an exclusive set, and when a bounded
/// `grantor` does not hold every permission `parent` reaches.
pub async fn add_parent_by(
    state: &AppState,
    actor: &Actor,
    grantor: &Grantor,
    role: &str,
    parent: &str,
) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let parent = parent.to_owned();
    let (actor, grantor) = (actor.clone(), grantor.clone());
    change(state, move |conn, now| {
        split((|| {
            require_role(conn, &role)?;
            require_role(conn, &parent)?;
            let mut edges = store::all_parents(conn)?;
            if edges.iter().any(|(r, p)| *r == role && *p == parent) {
                return Ok(false);
            }
            let granted = escalation::permissions_reachable(conn, std::slice::from_ref(&parent))?;
            escalation::check(conn, &grantor, &actor, now, "role.parent.add", &role, &granted)?;
            if creates_cycle(&role, &parent, &edges) {
                return Err(RbacError::Cycle { role, parent });
            }
            edges.push((role.clone(), parent.clone()));
            let members = store::all_exclusive_members(conn)?;
            if let Some((subject, conflict)) = any_conflict(conn, &edges, &members)? {
                return Err(RbacError::SeparationOfDuty { subject, conflict });
            }
            store::add_parent(conn, &role, &parent)?;
            audit::record(
                conn,
                &actor,
                "role.parent.add",
                Some(&role),
                json!({ "parent": parent }),
                now,
            )?;
            Ok(true)
        })())
    })
    .await
}

pub async fn remove_parent(state: &AppState, actor: &Actor, role: &str, parent: &str) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let parent = parent.to_owned();
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            require_role(conn, &role)?;
            let removed = store::remove_parent(conn, &role, &parent)?;
            if removed {
                audit::record(
                    conn,
                    &actor,
                    "role.parent.remove",
                    Some(&role),
                    json!({ "parent": parent }),
                    now,
                )?;
            }
            Ok(removed)
        })())
    })
    .await
}

/// Assigns `role` to `subject` as the operator (unrestricted); see [`assign_by`].
pub async fn assign(state: &AppState, actor: &Actor, subject: Subject, role: &str) -> Result<bool, RbacError> {
    assign_by(state, actor, &Grantor::Operator, subject, role).await
}

/// Assigns `role` to `subject`; refused when the subject would then be authorized
/// for two roles of an exclusive set, and when a bounded `grantor` does not hold
/// every permission `role` reaches. Returns false when it was assigned already.
pub async fn assign_by(
    state: &AppState,
    actor: &Actor,
    grantor: &Grantor,
    subject: Subject,
    role: &str,
) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let (actor, grantor) = (actor.clone(), grantor.clone());
    change(state, move |conn, now| {
        split((|| {
            let id = resolve(conn, &subject)?;
            require_role(conn, &role)?;
            let mut assigned = match &subject {
                Subject::User(_) => store::roles_of_user(conn, &id)?,
                Subject::Client(_) => store::roles_of_client(conn, &id)?,
            };
            if assigned.contains(&role) {
                return Ok(false);
            }
            assigned.push(role.clone());
            let edges = store::all_parents(conn)?;
            let members = store::all_exclusive_members(conn)?;
            if let Some(conflict) = sod_conflict(&closure(&assigned, &edges), &members) {
                return Err(RbacError::SeparationOfDuty {
                    subject: subject.label(),
                    conflict,
                });
            }
            let target = match &subject {
                Subject::User(_) => format!("user:{id}"),
                Subject::Client(_) => format!("client:{id}"),
            };
            let granted = escalation::permissions_reachable(conn, std::slice::from_ref(&role))?;
            escalation::check(conn, &grantor, &actor, now, "role.assign", &target, &granted)?;
            let target = match &subject {
                Subject::User(_) => {
                    store::assign_user(conn, &id, &role, now)?;
                    format!("user:{id}")
                }
                Subject::Client(_) => {
                    store::assign_client(conn, &id, &role, now)?;
                    format!("client:{id}")
                }
            };
            audit::record(conn, &actor, "role.assign", Some(&target), json!({ "role": role }), now)?;
            Ok(true)
        })())
    })
    .await
}

pub async fn unassign(state: &AppState, actor: &Actor, subject: Subject, role: &str) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            let id = resolve(conn, &subject)?;
            let (removed, target) = match &subject {
                Subject::User(_) => (store::unassign_user(conn, &id, &role)?, format!("user:{id}")),
                Subject::Client(_) => (store::unassign_client(conn, &id, &role)?, format!("client:{id}")),
            };
            if removed {
                audit::record(
                    conn,
                    &actor,
                    "role.unassign",
                    Some(&target),
                    json!({ "role": role }),
                    now,
                )?;
            }
            Ok(removed)
        })())
    })
    .await
}

pub async fn assignments(state: &AppState, subject: Subject) -> Result<Assignments, RbacError> {
    state
        .db
        .run(move |conn| {
            split((|| {
                let id = resolve(conn, &subject)?;
                let assigned = match &subject {
                    Subject::User(_) => store::roles_of_user(conn, &id)?,
                    Subject::Client(_) => store::roles_of_client(conn, &id)?,
                };
                let edges = store::all_parents(conn)?;
                Ok(Assignments {
                    subject: id,
                    authorized: closure(&assigned, &edges).into_iter().collect(),
                    assigned,
                })
            })())
        })
        .await?
}

/// Declares `roles` mutually exclusive (static separation of duty). Refused when a
/// subject already holds two of them.
pub async fn create_exclusive_set(
    state: &AppState,
    actor: &Actor,
    name: &str,
    roles: &[String],
) -> Result<ExclusiveSet, RbacError> {
    let name = role_name(name)?;
    let roles: Vec<String> = roles.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if roles.len() < 2 {
        return Err(RbacError::SetTooSmall);
    }
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
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
            audit::record(
                conn,
                &actor,
                "role.exclusive.create",
                Some(&name),
                json!({ "roles": roles }),
                now,
            )?;
            Ok(ExclusiveSet { name, roles })
        })())
    })
    .await
}

pub async fn delete_exclusive_set(state: &AppState, actor: &Actor, name: &str) -> Result<(), RbacError> {
    let name = name.to_owned();
    let actor = actor.clone();
    change(state, move |conn, now| {
        split((|| {
            if !store::delete_exclusive_set(conn, &name)? {
                return Err(RbacError::UnknownSet(name.clone()));
            }
            audit::record(conn, &actor, "role.exclusive.delete", Some(&name), json!({}), now)?;
            Ok(())
        })())
    })
    .await
}

pub async fn list_exclusive_sets(state: &AppState) -> Result<Vec<ExclusiveSet>, RbacError> {
    let members = state.db.run(store::all_exclusive_members).await?;
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (set, role) in members {
        sets.entry(set).or_default().push(role);
    }
    Ok(sets
        .into_iter()
        .map(|(name, roles)| ExclusiveSet { name, roles })
        .collect())
}
