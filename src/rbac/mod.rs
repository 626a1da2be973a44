//! Role-based access control: roles and their hierarchy (`roles`), namespaced
//! permissions granted to roles (`permissions`), the assignment of roles to
//! users and to clients (service accounts, `assignments`), static separation of
//! duty (`exclusive_sets`), the no-escalation rule for admin-API callers
//! (`escalation`), the pure rules (`hierarchy`) and what roles put into tokens
//! (`claims`).
//!
//! Every change goes through `apply`: one transaction that first takes the
//! RBAC lock, so the cycle and separation-of-duty checks see every concurrent
//! change (two concurrent assignments of exclusive roles: exactly one
//! succeeds), and that writes the change's audit events and the cache
//! invalidation for the other instances (`crate::invalidation`) before it commits.

mod assignments;
pub mod claims;
pub mod escalation;
mod exclusive_sets;
pub mod hierarchy;
mod permissions;
mod roles;

pub use assignments::{Assignments, assign, assign_by, assignments, unassign};
pub use escalation::{ESCALATE, Grantor};
pub use exclusive_sets::{ExclusiveSet, create_exclusive_set, delete_exclusive_set, list_exclusive_sets};
pub use permissions::{create_permission, delete_permission, grant, grant_by, list_permissions, revoke};
pub use roles::{RoleView, add_parent, add_parent_by, create_role, delete_role, list_roles, remove_parent, show_role};

use serde_json::Value;

use crate::audit::{self, Actor};
use crate::db::models::rbac as store;
use crate::db::models::{clients, users};
use crate::db::{AnyConnection, Db, DbError};
use crate::invalidation;
use claims::RbacCache;
use hierarchy::{Conflict, is_valid_role_name};

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

    /// The audit target for the stored id of this subject.
    fn target(&self, id: &str) -> String {
        match self {
            Subject::User(_) => format!("user:{id}"),
            Subject::Client(_) => format!("client:{id}"),
        }
    }
}

/// What an RBAC change needs of the application.
#[derive(Clone, Copy)]
pub struct Change<'a> {
    /// Where the change is made (one transaction, under the RBAC lock).
    pub db: &'a Db,
    /// This instance's entitlement cache, cleared once the change commits.
    pub cache: &'a RbacCache,
    /// When: the audit events' time and new rows' `created_at`.
    pub now: i64,
}

/// An audit event a change records about `target`.
struct Event {
    action: &'static str,
    target: String,
    details: Value,
}

impl Event {
    fn new(action: &'static str, target: &str, details: Value) -> Self {
        Self {
            action,
            target: target.to_owned(),
            details,
        }
    }
}

/// What a change did: its answer and the audit events it records, in order.
struct Outcome<T> {
    value: T,
    events: Vec<Event>,
}

impl<T> Outcome<T> {
    /// Nothing changed: nothing is recorded.
    fn unchanged(value: T) -> Self {
        Self { value, events: vec![] }
    }

    fn recorded(value: T, event: Event) -> Self {
        Self {
            value,
            events: vec![event],
        }
    }
}

impl Outcome<bool> {
    /// `changed` is the answer; `event` is recorded only when it is true.
    fn changed_if(changed: bool, event: Event) -> Self {
        if changed {
            Self::recorded(true, event)
        } else {
            Self::unchanged(false)
        }
    }
}

/// Runs one change: takes the RBAC lock, runs `f` (given the actor and the
/// time), records the events it returns as `actor`, notifies the other instances
/// when there are any (delivered on commit), and commits; then clears this
/// instance's entitlement cache. A refusal commits what `f` wrote before
/// refusing (an escalation refusal's own audit event); a database error rolls
/// everything back.
async fn apply<T, F>(at: Change<'_>, actor: &Actor, f: F) -> Result<T, RbacError>
where
    T: Send + 'static,
    F: FnOnce(&mut AnyConnection, &Actor, i64) -> Result<Outcome<T>, RbacError> + Send + 'static,
{
    let (actor, now) = (actor.clone(), at.now);
    let outcome = at
        .db
        .transaction(move |conn| {
            store::lock(conn)?;
            match f(conn, &actor, now) {
                Ok(Outcome { value, events }) => {
                    if !events.is_empty() {
                        invalidation::notify(conn, &invalidation::Change::Rbac)?;
                    }
                    for event in events {
                        audit::record(conn, &actor, event.action, Some(&event.target), event.details, now)?;
                    }
                    Ok(Ok(value))
                }
                Err(RbacError::Db(error)) => Err(error),
                Err(refusal) => Ok(Err(refusal)),
            }
        })
        .await?;
    if outcome.is_ok() {
        at.cache.clear();
    }
    outcome
}

fn role_name(name: &str) -> Result<String, RbacError> {
    if is_valid_role_name(name) {
        Ok(name.to_owned())
    } else {
        Err(RbacError::InvalidRoleName(name.to_owned()))
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

/// The roles assigned to the subject stored as `id`.
fn assigned_roles(conn: &mut AnyConnection, subject: &Subject, id: &str) -> Result<Vec<String>, DbError> {
    match subject {
        Subject::User(_) => store::roles_of_user(conn, id),
        Subject::Client(_) => store::roles_of_client(conn, id),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::db::testing::TestDb;

    const NOW: i64 = 1_800_000_000;
    const BOOKS: &str = "https://books.example";

    fn at<'a>(t: &'a TestDb, cache: &'a RbacCache) -> Change<'a> {
        Change {
            db: &t.db,
            cache,
            now: NOW,
        }
    }

    fn cache() -> RbacCache {
        RbacCache::new(Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn a_change_commits_with_its_event_and_a_refusal_or_no_op_records_nothing() {
        let (t, cache) = (TestDb::new().await, cache());
        create_role(at(&t, &cache), &Actor::cli(), "clerk", "keeps the books")
            .await
            .unwrap();
        let events = t.events("role.create").await;
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(
            (event.actor.as_str(), event.target.as_deref(), event.at),
            ("cli", Some("clerk"), NOW)
        );
        assert!(event.details.contains("keeps the books"), "{}", event.details);

        let again = create_role(at(&t, &cache), &Actor::cli(), "clerk", "").await;
        assert!(matches!(again, Err(RbacError::AlreadyExists(_))), "{again:?}");
        assert_eq!(t.events("role.create").await.len(), 1);

        let removed = revoke(at(&t, &cache), &Actor::cli(), "clerk", "books:ledger:read").await;
        assert!(!removed.unwrap());
        assert!(t.events("role.revoke").await.is_empty());
    }

    #[tokio::test]
    async fn granting_a_new_permission_records_its_creation_then_the_grant() {
        let (t, cache) = (TestDb::new().await, cache());
        create_role(at(&t, &cache), &Actor::cli(), "clerk", "").await.unwrap();
        let granted = grant(at(&t, &cache), &Actor::cli(), "clerk", "books:ledger:read", Some(BOOKS)).await;
        assert!(granted.unwrap());
        let created = t.events("permission.create").await;
        let grants = t.events("role.grant").await;
        assert_eq!((created.len(), grants.len()), (1, 1));
        assert!(
            created[0].id < grants[0].id,
            "the permission is recorded before the grant"
        );
        assert!(grants[0].details.contains("books:ledger:read"));

        let twice = grant(at(&t, &cache), &Actor::cli(), "clerk", "books:ledger:read", None).await;
        assert!(!twice.unwrap(), "granted already");
        assert_eq!(t.events("role.grant").await.len(), 1);
        let view = show_role(&t.db, "clerk").await.unwrap();
        assert_eq!(view.permissions, ["books:ledger:read"]);
    }

    #[tokio::test]
    async fn an_escalation_refusal_commits_its_own_event_and_nothing_else() {
        let (t, cache) = (TestDb::new().await, cache());
        let eve = t.user("eve", NOW).await;
        t.user("bob", NOW).await;
        create_role(at(&t, &cache), &Actor::cli(), "clerk", "").await.unwrap();
        grant(at(&t, &cache), &Actor::cli(), "clerk", "books:ledger:read", Some(BOOKS))
            .await
            .unwrap();
        let bounded = Grantor::Caller {
            holder: Subject::User(eve.id.clone()),
            may_escalate: false,
        };
        let refused = assign_by(
            at(&t, &cache),
            &Actor::user(&eve.id, None),
            &bounded,
            Subject::User("bob".into()),
            "clerk",
        )
        .await;
        assert!(
            matches!(&refused, Err(RbacError::Escalation { permission }) if permission == "books:ledger:read"),
            "{refused:?}"
        );
        let audited = t.events("rbac.escalation_refused").await;
        assert_eq!(audited.len(), 1);
        assert_eq!(audited[0].actor, format!("user:{}", eve.id));
        assert!(t.events("role.assign").await.is_empty());
        let bob = assignments(&t.db, Subject::User("bob".into())).await.unwrap();
        assert!(bob.assigned.is_empty());
    }

    #[tokio::test]
    async fn only_a_committed_change_clears_the_entitlement_cache() {
        let (t, cache) = (TestDb::new().await, cache());
        let names = claims::registered(&t.db, &cache).await.unwrap();
        assert!(!names.contains("books:ledger:read"));
        create_permission(at(&t, &cache), &Actor::cli(), "books:ledger:read", Some(BOOKS), "")
            .await
            .unwrap();
        let names = claims::registered(&t.db, &cache).await.unwrap();
        assert!(names.contains("books:ledger:read"), "cleared by the change");

        // Another instance registers a permission: this one's cache does not see it yet,
        // and a refused change here does not clear the cache either.
        let row = crate::db::models::rbac::PermissionRow {
            name: "books:ledger:write".into(),
            audience: Some(BOOKS.into()),
            description: String::new(),
            created_at: NOW,
        };
        t.db.run(move |conn| store::insert_permission(conn, &row))
            .await
            .unwrap();
        let refused = delete_role(at(&t, &cache), &Actor::cli(), "no-such-role").await;
        assert!(matches!(refused, Err(RbacError::UnknownRole(_))), "{refused:?}");
        let names = claims::registered(&t.db, &cache).await.unwrap();
        assert!(!names.contains("books:ledger:write"), "still cached");
        delete_permission(at(&t, &cache), &Actor::cli(), "books:ledger:read")
            .await
            .unwrap();
        let names = claims::registered(&t.db, &cache).await.unwrap();
        assert!(names.contains("books:ledger:write") && !names.contains("books:ledger:read"));
    }

    #[tokio::test]
    async fn roles_of_an_exclusive_set_are_not_held_together_even_through_a_parent() {
        let (t, cache) = (TestDb::new().await, cache());
        t.user("bob", NOW).await;
        for role in ["buyer", "seller", "broker"] {
            create_role(at(&t, &cache), &Actor::cli(), role, "").await.unwrap();
        }
        let set = ["buyer".to_owned(), "seller".to_owned()];
        create_exclusive_set(at(&t, &cache), &Actor::cli(), "trade", &set)
            .await
            .unwrap();
        assign(at(&t, &cache), &Actor::cli(), Subject::User("bob".into()), "buyer")
            .await
            .unwrap();
        assign(at(&t, &cache), &Actor::cli(), Subject::User("bob".into()), "broker")
            .await
            .unwrap();
        let refused = add_parent(at(&t, &cache), &Actor::cli(), "broker", "seller").await;
        assert!(
            matches!(refused, Err(RbacError::SeparationOfDuty { .. })),
            "{refused:?}"
        );
        assert!(t.events("role.parent.add").await.is_empty());
        let cycle = add_parent(at(&t, &cache), &Actor::cli(), "seller", "seller").await;
        assert!(matches!(cycle, Err(RbacError::Cycle { .. })), "{cycle:?}");
    }
}
