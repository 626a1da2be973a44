//! Namespaced permissions (`namespace:resource:action`, each belonging to one
//! audience, oxidp's own `oxidp:` namespace reserved) and granting them to roles.

use std::collections::BTreeSet;

use serde_json::json;

use super::hierarchy::{OWN_NAMESPACE, is_permission_name};
use super::{Change, Event, Grantor, Outcome, RbacError, apply, escalation, require_role};
use crate::audit::Actor;
use crate::db::Db;
use crate::db::models::rbac::{self as store, PermissionRow};

fn permission_name(name: &str) -> Result<String, RbacError> {
    if is_permission_name(name) {
        Ok(name.to_owned())
    } else {
        Err(RbacError::InvalidPermissionName(name.to_owned()))
    }
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
    at: Change<'_>,
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
        created_at: at.now,
    };
    apply(at, actor, move |conn, _, _| {
        if store::find_permission(conn, &row.name)?.is_some() {
            return Err(RbacError::AlreadyExists(row.name.clone()));
        }
        store::insert_permission(conn, &row)?;
        let details = json!({ "audience": row.audience, "description": row.description });
        let event = Event::new("permission.create", &row.name, details);
        Ok(Outcome::recorded(row, event))
    })
    .await
}

pub async fn delete_permission(at: Change<'_>, actor: &Actor, name: &str) -> Result<(), RbacError> {
    if name.split(':').next() == Some(OWN_NAMESPACE) {
        return Err(RbacError::ReservedNamespace);
    }
    let name = name.to_owned();
    apply(at, actor, move |conn, _, _| {
        if !store::delete_permission(conn, &name)? {
            return Err(RbacError::UnknownPermission(name.clone()));
        }
        Ok(Outcome::recorded((), Event::new("permission.delete", &name, json!({}))))
    })
    .await
}

pub async fn list_permissions(db: &Db, after: &str, limit: i64) -> Result<Vec<PermissionRow>, RbacError> {
    let after = after.to_owned();
    Ok(db.run(move |conn| store::list_permissions(conn, &after, limit)).await?)
}

/// Gives `role` a permission as the operator (unrestricted); see [`grant_by`].
pub async fn grant(
    at: Change<'_>,
    actor: &Actor,
    role: &str,
    permission: &str,
    audience: Option<&str>,
) -> Result<bool, RbacError> {
    grant_by(at, actor, &Grantor::Operator, role, permission, audience).await
}

/// Gives `role` a permission, creating the permission first when it is new (then
/// `audience` names its resource server). Returns false when the role had it already.
/// A bounded `grantor` must hold the permission itself.
pub async fn grant_by(
    at: Change<'_>,
    actor: &Actor,
    grantor: &Grantor,
    role: &str,
    permission: &str,
    audience: Option<&str>,
) -> Result<bool, RbacError> {
    let role = role.to_owned();
    let permission = permission_name(permission)?;
    let (audience, grantor) = (audience.map(str::to_owned), grantor.clone());
    apply(at, actor, move |conn, actor, now| {
        require_role(conn, &role)?;
        let granted = BTreeSet::from([permission.clone()]);
        escalation::check(conn, &grantor, actor, now, "role.grant", &role, &granted)?;
        let mut events = Vec::new();
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
                events.push(Event::new(
                    "permission.create",
                    &permission,
                    json!({ "audience": row.audience }),
                ));
            }
        }
        let added = store::add_role_permission(conn, &role, &permission)?;
        if added {
            events.push(Event::new("role.grant", &role, json!({ "permission": permission })));
        }
        Ok(Outcome { value: added, events })
    })
    .await
}

pub async fn revoke(at: Change<'_>, actor: &Actor, role: &str, permission: &str) -> Result<bool, RbacError> {
    let (role, permission) = (role.to_owned(), permission.to_owned());
    apply(at, actor, move |conn, _, _| {
        require_role(conn, &role)?;
        let removed = store::remove_role_permission(conn, &role, &permission)?;
        let event = Event::new("role.revoke", &role, json!({ "permission": permission }));
        Ok(Outcome::changed_if(removed, event))
    })
    .await
}
