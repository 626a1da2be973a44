//! No escalation through the admin API (the rule Kubernetes RBAC uses): a caller
//! may grant, assign or make reachable only permissions it holds itself (through
//! its roles and their ancestors), and may change a client only when it holds
//! every permission that client holds — unless it holds `oxidp:roles:escalate`.
//! The operator on the server (CLI, first-start bootstrap) is not bounded.
//!
//! The checks run inside the change's transaction, under the RBAC lock, so what
//! the caller holds cannot change between the check and the write. A refusal is
//! audited (`rbac.escalation_refused`) before the transaction commits.

use std::collections::BTreeSet;

use serde_json::json;

use super::hierarchy::closure;
use super::{Change, Outcome, RbacError, Subject, apply, assigned_roles, resolve};
use crate::audit::{self, Actor};
use crate::db::models::rbac as store;
use crate::db::{AnyConnection, DbError};

/// Lets an admin-API caller hand out permissions it does not hold (held by `admin` only).
pub const ESCALATE: &str = "oxidp:roles:escalate";

/// Whose holdings bound a change.
#[derive(Debug, Clone)]
pub enum Grantor {
    /// The operator on the server (CLI, bootstrap): unrestricted.
    Operator,
    /// An admin-API caller: bounded by what `holder` holds unless `may_escalate`.
    Caller { holder: Subject, may_escalate: bool },
}

/// Every permission (any audience) reachable from `roles` through the hierarchy.
pub(super) fn permissions_reachable(conn: &mut AnyConnection, roles: &[String]) -> Result<BTreeSet<String>, DbError> {
    let edges = store::all_parents(conn)?;
    let all: Vec<String> = closure(roles, &edges).into_iter().collect();
    Ok(store::permissions_of_roles(conn, &all)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// Every permission a user or client holds now.
fn held_by(conn: &mut AnyConnection, subject: &Subject) -> Result<BTreeSet<String>, RbacError> {
    let id = resolve(conn, subject)?;
    let assigned = assigned_roles(conn, subject, &id)?;
    Ok(permissions_reachable(conn, &assigned)?)
}

/// Refuses (and audits the refusal) when `granted` holds a permission the grantor
/// does not hold. Call it before the change writes anything: a refusal commits
/// the transaction with only its audit event.
pub(super) fn check(
    conn: &mut AnyConnection,
    grantor: &Grantor,
    actor: &Actor,
    now: i64,
    operation: &str,
    target: &str,
    granted: &BTreeSet<String>,
) -> Result<(), RbacError> {
    let Grantor::Caller {
        holder,
        may_escalate: false,
    } = grantor
    else {
        return Ok(());
    };
    let held = held_by(conn, holder)?;
    let Some(missing) = granted.difference(&held).next() else {
        return Ok(());
    };
    audit::record(
        conn,
        actor,
        "rbac.escalation_refused",
        Some(target),
        json!({ "operation": operation, "missing_permission": missing }),
        now,
    )?;
    Err(RbacError::Escalation {
        permission: missing.clone(),
    })
}

/// Before rotating the secret of, changing or deleting a client: the caller must
/// hold every permission the client holds (so it cannot take over a client that
/// is more powerful than itself). `operation` names the change for the audit log.
pub async fn may_manage_client(
    at: Change<'_>,
    actor: &Actor,
    grantor: &Grantor,
    client_id: &str,
    operation: &'static str,
) -> Result<(), RbacError> {
    if !matches!(
        grantor,
        Grantor::Caller {
            may_escalate: false,
            ..
        }
    ) {
        return Ok(());
    }
    let (grantor, client) = (grantor.clone(), Subject::Client(client_id.to_owned()));
    apply(at, actor, move |conn, actor, now| {
        let target = client.target(&resolve(conn, &client)?);
        let granted = held_by(conn, &client)?;
        check(conn, &grantor, actor, now, operation, &target, &granted)?;
        Ok(Outcome::unchanged(()))
    })
    .await
}
