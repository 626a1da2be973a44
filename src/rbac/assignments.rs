//! Assigning roles to subjects (users and clients), refused when the subject
//! would then hold two roles of an exclusive set or, for a bounded grantor,
//! permissions the grantor does not hold.

use serde::Serialize;
use serde_json::json;

use super::hierarchy::{closure, sod_conflict};
use super::{
    Change, Event, Grantor, Outcome, RbacError, Subject, apply, assigned_roles, escalation, require_role, resolve,
};
use crate::audit::Actor;
use crate::db::Db;
use crate::db::models::rbac as store;

/// A subject's assigned roles and the roles it is authorized for through the hierarchy.
#[derive(Debug, Clone, Serialize)]
pub struct Assignments {
    pub subject: String,
    pub assigned: Vec<String>,
    pub authorized: Vec<String>,
}

/// Assigns `role` to `subject` as the operator (unrestricted); see [`assign_by`].
pub async fn assign(at: Change<'_>, actor: &Actor, subject: Subject, role: &str) -> Result<bool, RbacError> {
    assign_by(at, actor, &Grantor::Operator, subject, role).await
}

/// Assigns `role` to `subject`; refused when the subject would then be authorized
/// for two roles of an exclusive set, and when a bounded `grantor` does not hold
/// every permission `role` reaches. Returns false when it was assigned already.
pub async fn assign_by(
    at: Change<'_>,
    actor: &Actor,
    grantor: &Grantor,
    subject: Subject,
    role: &str,
) -> Result<bool, RbacError> {
    let (role, grantor) = (role.to_owned(), grantor.clone());
    apply(at, actor, move |conn, actor, now| {
        let id = resolve(conn, &subject)?;
        require_role(conn, &role)?;
        let mut assigned = assigned_roles(conn, &subject, &id)?;
        if assigned.contains(&role) {
            return Ok(Outcome::unchanged(false));
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
        let target = subject.target(&id);
        let granted = escalation::permissions_reachable(conn, std::slice::from_ref(&role))?;
        escalation::check(conn, &grantor, actor, now, "role.assign", &target, &granted)?;
        match &subject {
            Subject::User(_) => store::assign_user(conn, &id, &role, now)?,
            Subject::Client(_) => store::assign_client(conn, &id, &role, now)?,
        };
        Ok(Outcome::recorded(
            true,
            Event::new("role.assign", &target, json!({ "role": role })),
        ))
    })
    .await
}

pub async fn unassign(at: Change<'_>, actor: &Actor, subject: Subject, role: &str) -> Result<bool, RbacError> {
    let role = role.to_owned();
    apply(at, actor, move |conn, _, _| {
        let id = resolve(conn, &subject)?;
        let removed = match &subject {
            Subject::User(_) => store::unassign_user(conn, &id, &role)?,
            Subject::Client(_) => store::unassign_client(conn, &id, &role)?,
        };
        let event = Event::new("role.unassign", &subject.target(&id), json!({ "role": role }));
        Ok(Outcome::changed_if(removed, event))
    })
    .await
}

pub async fn assignments(db: &Db, subject: Subject) -> Result<Assignments, RbacError> {
    db.run(move |conn| {
        let id = match resolve(conn, &subject) {
            Ok(id) => id,
            Err(RbacError::Db(error)) => return Err(error),
            Err(refusal) => return Ok(Err(refusal)),
        };
        let assigned = assigned_roles(conn, &subject, &id)?;
        let edges = store::all_parents(conn)?;
        Ok(Ok(Assignments {
            subject: id,
            authorized: closure(&assigned, &edges).into_iter().collect(),
            assigned,
        }))
    })
    .await?
}
