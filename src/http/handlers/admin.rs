//! Admin API adapters (`/admin/v1`): extract, check the permission, call one
//! domain function, answer JSON. Errors are problem+json (`AdminHttpError`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::admin::{self, AdminError, NewUserBody, Page, UserPatch, perm};
use crate::db::models::audit::AuditFilter;
use crate::http::error::{AdminHttpError, no_store};
use crate::http::extractors::AdminCaller;
use crate::oauth::clients::ClientSpec;
use crate::rbac::{self, Subject};
use crate::state::AppState;

type Reply = Result<HttpResponse, AdminHttpError>;

fn ok(value: impl serde::Serialize) -> Reply {
    Ok(HttpResponse::Ok().insert_header(no_store()).json(value))
}

fn created(value: impl serde::Serialize) -> Reply {
    Ok(HttpResponse::Created().insert_header(no_store()).json(value))
}

fn no_content() -> Reply {
    Ok(HttpResponse::NoContent().insert_header(no_store()).finish())
}

/// `?limit=&cursor=` on every list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    limit: Option<i64>,
    cursor: Option<String>,
}

// ---- users ----

pub async fn list_users(state: web::Data<AppState>, AdminCaller(who): AdminCaller, q: web::Query<Paging>) -> Reply {
    who.require(perm::USERS_READ)?;
    ok(admin::list_users(&state, q.limit, q.cursor.as_deref()).await?)
}

pub async fn create_user(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    body: web::Json<NewUserBody>,
) -> Reply {
    who.require(perm::USERS_WRITE)?;
    created(admin::create_user(&state, &who, body.into_inner()).await?)
}

pub async fn show_user(state: web::Data<AppState>, AdminCaller(who): AdminCaller, id: web::Path<String>) -> Reply {
    who.require(perm::USERS_READ)?;
    ok(admin::show_user(&state, &id).await?)
}

pub async fn patch_user(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    id: web::Path<String>,
    body: web::Json<UserPatch>,
) -> Reply {
    who.require(perm::USERS_WRITE)?;
    ok(admin::patch_user(&state, &who, &id, body.into_inner()).await?)
}

pub async fn unlock_user(state: web::Data<AppState>, AdminCaller(who): AdminCaller, id: web::Path<String>) -> Reply {
    who.require(perm::USERS_WRITE)?;
    ok(admin::unlock_user(&state, &who, &id).await?)
}

pub async fn user_sessions(state: web::Data<AppState>, AdminCaller(who): AdminCaller, id: web::Path<String>) -> Reply {
    who.require(perm::SESSIONS_READ)?;
    ok(admin::list_sessions(&state, &id).await?)
}

pub async fn end_user_sessions(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    id: web::Path<String>,
) -> Reply {
    who.require(perm::SESSIONS_WRITE)?;
    let ended = admin::end_sessions(&state, &who, &id, None).await?;
    ok(json!({ "ended": ended }))
}

pub async fn end_user_session(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String)>,
) -> Reply {
    who.require(perm::SESSIONS_WRITE)?;
    admin::end_sessions(&state, &who, &path.0, Some(&path.1)).await?;
    no_content()
}

// ---- clients ----

pub async fn list_clients(state: web::Data<AppState>, AdminCaller(who): AdminCaller, q: web::Query<Paging>) -> Reply {
    who.require(perm::CLIENTS_READ)?;
    ok(admin::list_clients(&state, q.limit, q.cursor.as_deref()).await?)
}

pub async fn create_client(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    body: web::Json<ClientSpec>,
) -> Reply {
    who.require(perm::CLIENTS_WRITE)?;
    created(admin::create_client(&state, &who, body.into_inner()).await?)
}

pub async fn show_client(state: web::Data<AppState>, AdminCaller(who): AdminCaller, id: web::Path<String>) -> Reply {
    who.require(perm::CLIENTS_READ)?;
    ok(admin::show_client(&state, &id).await?)
}

pub async fn update_client(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    id: web::Path<String>,
    body: web::Json<ClientSpec>,
) -> Reply {
    who.require(perm::CLIENTS_WRITE)?;
    ok(admin::update_client(&state, &who, &id, body.into_inner()).await?)
}

pub async fn delete_client(state: web::Data<AppState>, AdminCaller(who): AdminCaller, id: web::Path<String>) -> Reply {
    who.require(perm::CLIENTS_WRITE)?;
    admin::delete_client(&state, &who, &id).await?;
    no_content()
}

pub async fn rotate_secret(state: web::Data<AppState>, AdminCaller(who): AdminCaller, id: web::Path<String>) -> Reply {
    who.require(perm::CLIENTS_WRITE)?;
    ok(admin::rotate_client_secret(&state, &who, &id).await?)
}

// ---- role assignments of users and clients ----

fn subject(kind: &str, id: String) -> Result<Subject, AdminError> {
    match kind {
        "users" => Ok(Subject::User(id)),
        "clients" => Ok(Subject::Client(id)),
        _ => Err(AdminError::NotFound("no resource at this address".into())),
    }
}

/// GET /admin/v1/{users|clients}/{id}/roles
pub async fn subject_roles(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String)>,
) -> Reply {
    who.require(perm::ROLES_READ)?;
    let (kind, id) = path.into_inner();
    ok(rbac::assignments(&state.db, subject(&kind, id)?).await?)
}

/// PUT /admin/v1/{users|clients}/{id}/roles/{role}: 201 when assigned, 200 when it already was.
pub async fn assign(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String, String)>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let (kind, id, role) = path.into_inner();
    let subject = subject(&kind, id)?;
    let added = rbac::assign_by(state.rbac_change(), &who.actor, &who.grantor(), subject.clone(), &role).await?;
    let view = rbac::assignments(&state.db, subject).await?;
    if added { created(view) } else { ok(view) }
}

/// DELETE /admin/v1/{users|clients}/{id}/roles/{role}
pub async fn unassign(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String, String)>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let (kind, id, role) = path.into_inner();
    if rbac::unassign(state.rbac_change(), &who.actor, subject(&kind, id)?, &role).await? {
        no_content()
    } else {
        Err(AdminError::NotFound(format!("the role {role} is not assigned")).into())
    }
}

// ---- roles, permissions, hierarchy, exclusive sets ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn list_roles(state: web::Data<AppState>, AdminCaller(who): AdminCaller, q: web::Query<Paging>) -> Reply {
    who.require(perm::ROLES_READ)?;
    let limit = admin::page_size(q.limit)?;
    let items = rbac::list_roles(&state.db, q.cursor.as_deref().unwrap_or(""), limit + 1).await?;
    ok(page_by_name(items, limit, |r| r.name.clone()))
}

fn page_by_name<T>(mut items: Vec<T>, limit: i64, name: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(name) } else { None };
    Page { items, next_cursor }
}

pub async fn create_role(state: web::Data<AppState>, AdminCaller(who): AdminCaller, body: web::Json<NewRole>) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    rbac::create_role(state.rbac_change(), &who.actor, &body.name, &body.description).await?;
    created(rbac::show_role(&state.db, &body.name).await?)
}

pub async fn show_role(state: web::Data<AppState>, AdminCaller(who): AdminCaller, name: web::Path<String>) -> Reply {
    who.require(perm::ROLES_READ)?;
    ok(rbac::show_role(&state.db, &name).await?)
}

pub async fn delete_role(state: web::Data<AppState>, AdminCaller(who): AdminCaller, name: web::Path<String>) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    rbac::delete_role(state.rbac_change(), &who.actor, &name).await?;
    no_content()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The resource server of a permission that does not exist yet.
    audience: Option<String>,
}

/// PUT /admin/v1/roles/{role}/permissions/{permission} (body optional: `{"audience": …}`).
pub async fn grant(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String)>,
    body: Option<web::Json<GrantBody>>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let (role, permission) = path.into_inner();
    let audience = body.and_then(|b| b.into_inner().audience);
    let added = rbac::grant_by(
        state.rbac_change(),
        &who.actor,
        &who.grantor(),
        &role,
        &permission,
        audience.as_deref(),
    )
    .await?;
    let view = rbac::show_role(&state.db, &role).await?;
    if added { created(view) } else { ok(view) }
}

pub async fn revoke(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String)>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let (role, permission) = path.into_inner();
    if rbac::revoke(state.rbac_change(), &who.actor, &role, &permission).await? {
        no_content()
    } else {
        Err(AdminError::NotFound(format!("the role {role} does not hold {permission}")).into())
    }
}

pub async fn add_parent(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String)>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let (role, parent) = path.into_inner();
    let added = rbac::add_parent_by(state.rbac_change(), &who.actor, &who.grantor(), &role, &parent).await?;
    let view = rbac::show_role(&state.db, &role).await?;
    if added { created(view) } else { ok(view) }
}

pub async fn remove_parent(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    path: web::Path<(String, String)>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let (role, parent) = path.into_inner();
    if rbac::remove_parent(state.rbac_change(), &who.actor, &role, &parent).await? {
        no_content()
    } else {
        Err(AdminError::NotFound(format!("{parent} is not a parent of {role}")).into())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPermission {
    name: String,
    audience: Option<String>,
    #[serde(default)]
    description: String,
}

pub async fn list_permissions(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    q: web::Query<Paging>,
) -> Reply {
    who.require(perm::ROLES_READ)?;
    let limit = admin::page_size(q.limit)?;
    let items = rbac::list_permissions(&state.db, q.cursor.as_deref().unwrap_or(""), limit + 1).await?;
    ok(page_by_name(items, limit, |p| p.name.clone()))
}

pub async fn create_permission(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    body: web::Json<NewPermission>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    let body = body.into_inner();
    created(
        rbac::create_permission(
            state.rbac_change(),
            &who.actor,
            &body.name,
            body.audience.as_deref(),
            &body.description,
        )
        .await?,
    )
}

pub async fn delete_permission(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    name: web::Path<String>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    rbac::delete_permission(state.rbac_change(), &who.actor, &name).await?;
    no_content()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewExclusiveSet {
    name: String,
    roles: Vec<String>,
}

pub async fn list_exclusive(state: web::Data<AppState>, AdminCaller(who): AdminCaller) -> Reply {
    who.require(perm::ROLES_READ)?;
    ok(json!({ "items": rbac::list_exclusive_sets(&state.db).await?, "next_cursor": null }))
}

pub async fn create_exclusive(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    body: web::Json<NewExclusiveSet>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    created(rbac::create_exclusive_set(state.rbac_change(), &who.actor, &body.name, &body.roles).await?)
}

pub async fn delete_exclusive(
    state: web::Data<AppState>,
    AdminCaller(who): AdminCaller,
    name: web::Path<String>,
) -> Reply {
    who.require(perm::ROLES_WRITE)?;
    rbac::delete_exclusive_set(state.rbac_change(), &who.actor, &name).await?;
    no_content()
}

// ---- audit ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn audit(state: web::Data<AppState>, AdminCaller(who): AdminCaller, q: web::Query<AuditQuery>) -> Reply {
    who.require(perm::AUDIT_READ)?;
    let q = q.into_inner();
    let limit = admin::page_size(q.limit)?;
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        since: q.since,
        until: q.until,
        before: q.cursor,
    };
    let rows = crate::audit::query(&state.db, filter, limit + 1)
        .await
        .map_err(AdminError::from)?;
    let mut page = page_by_name(rows, limit, |r| r.id.clone());
    let items: Vec<serde_json::Value> = page
        .items
        .drain(..)
        .map(|r| {
            json!({
                "id": r.id, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
                "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or(json!({})),
                "ip": r.ip,
            })
        })
        .collect();
    ok(json!({ "items": items, "next_cursor": page.next_cursor }))
}
