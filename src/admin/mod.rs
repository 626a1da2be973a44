//! The admin API's domain: who is calling (an oxidp access token for oxidp's own
//! audience, carrying `oxidp:*` permissions) and the audited administrative
//! operations on users, clients and sessions. Role operations live in `rbac`
//! and audit themselves.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{self, AccountError, Credential, NewAccount, Profile};
use crate::audit::{self, Actor};
use crate::authn::session;
use crate::db::DbError;
use crate::db::models::sessions;
use crate::domain::Password;
use crate::oauth::clients::{self, ClientError, ClientSpec};
use crate::oauth::tokens::{self, TokenError};
use crate::rbac::RbacError;
use crate::state::AppState;

/// Permissions of the admin API (seeded by the RBAC migration, held by the `admin` role).
pub mod perm {
    pub const USERS_READ: &str = "oxidp:users:read";
    pub const USERS_WRITE: &str = "oxidp:users:write";
    pub const CLIENTS_READ: &str = "oxidp:clients:read";
    pub const CLIENTS_WRITE: &str = "oxidp:clients:write";
    pub const ROLES_READ: &str = "oxidp:roles:read";
    pub const ROLES_WRITE: &str = "oxidp:roles:write";
    pub const SESSIONS_READ: &str = "oxidp:sessions:read";
    pub const SESSIONS_WRITE: &str = "oxidp:sessions:write";
    pub const AUDIT_READ: &str = "oxidp:audit:read";
    /// Hand out permissions the caller does not hold itself (see `rbac::escalation`).
    pub const ROLES_ESCALATE: &str = crate::rbac::ESCALATE;
}

/// Errors of the admin API, rendered as RFC 9457 problem+json (with an RFC 6750
/// challenge for the authentication and authorization failures).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// RFC 6750 §3.1: no token (`None`) or `invalid_token` (401).
    #[error("unauthenticated: {0:?}")]
    Unauthenticated(Option<String>),
    /// RFC 6750 §3.1 `insufficient_scope` (403): the token lacks this permission.
    #[error("missing permission {0}")]
    Forbidden(&'static str),
    /// 403: the change would hand out, or touch a client holding, this permission,
    /// which the caller does not hold (and it lacks `oxidp:roles:escalate`).
    #[error("escalation refused: the caller does not hold {0}")]
    Escalation(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the change conflicts with the current state (exists, cycle, separation of duty).
    #[error("conflict ({code}): {detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("database unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<DbError> for AdminError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => AdminError::Unavailable,
            DbError::NotFound => AdminError::NotFound("no such resource".into()),
            DbError::Conflict(c) => AdminError::Conflict {
                code: "conflict",
                detail: format!("the change conflicts with existing data ({c})"),
            },
            other => AdminError::Internal(other.into()),
        }
    }
}

impl From<RbacError> for AdminError {
    fn from(error: RbacError) -> Self {
        let detail = error.to_string();
        match error {
            RbacError::Db(db) => db.into(),
            RbacError::UnknownRole(_)
            | RbacError::UnknownPermission(_)
            | RbacError::UnknownUser(_)
            | RbacError::UnknownClient(_)
            | RbacError::UnknownSet(_) => AdminError::NotFound(detail),
            RbacError::AlreadyExists(_) => AdminError::Conflict { code: "exists", detail },
            RbacError::Cycle { .. } => AdminError::Conflict {
                code: "role_cycle",
                detail,
            },
            RbacError::SeparationOfDuty { .. } => AdminError::Conflict {
                code: "separation_of_duty",
                detail,
            },
            RbacError::BuiltIn(_) => AdminError::Conflict {
                code: "built_in",
                detail,
            },
            RbacError::Escalation { permission } => AdminError::Escalation(permission),
            _ => AdminError::BadRequest(detail),
        }
    }
}

impl From<AccountError> for AdminError {
    fn from(error: AccountError) -> Self {
        let detail = error.to_string();
        match error {
            AccountError::Db(db) => db.into(),
            AccountError::NotFound => AdminError::NotFound(detail),
            AccountError::UsernameTaken | AccountError::EmailTaken => AdminError::Conflict { code: "exists", detail },
            AccountError::Internal(e) => AdminError::Internal(e),
            _ => AdminError::BadRequest(detail),
        }
    }
}

impl From<ClientError> for AdminError {
    fn from(error: ClientError) -> Self {
        let detail = error.to_string();
        match error {
            ClientError::Db(db) => db.into(),
            ClientError::NotFound => AdminError::NotFound(detail),
            ClientError::Exists => AdminError::Conflict { code: "exists", detail },
            ClientError::Internal(e) => AdminError::Internal(e),
            ClientError::Invalid { .. } => AdminError::BadRequest(detail),
        }
    }
}

/// The caller of the admin API.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    /// The user or client the token speaks for (whose holdings bound what it may grant).
    holder: crate::rbac::Subject,
    permissions: BTreeSet<String>,
}

impl Principal {
    /// What bounds this caller's grants: what it holds, unless it holds `oxidp:roles:escalate`.
    pub fn grantor(&self) -> crate::rbac::Grantor {
        crate::rbac::Grantor::Caller {
            holder: self.holder.clone(),
            may_escalate: self.permissions.contains(perm::ROLES_ESCALATE),
        }
    }

    pub fn require(&self, permission: &'static str) -> Result<(), AdminError> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(AdminError::Forbidden(permission))
        }
    }
}

/// Checks a bearer token for the admin API: signed by us, an access token, for
/// oxidp's own audience, unexpired, not revoked, and its subject still enabled.
/// Permissions come from the token (they were current at issuance; the
/// access-token lifetime bounds staleness).
pub async fn authenticate(state: &AppState, token: &str, ip: Option<String>) -> Result<Principal, AdminError> {
    let invalid = |e: TokenError| AdminError::Unauthenticated(Some(e.to_string()));
    let claims = tokens::verify_access_token(state, token).map_err(invalid)?;
    let issuer = state.config.issuer();
    if !claims.aud.contains(&issuer) {
        return Err(AdminError::Unauthenticated(Some(
            "the token's audience is not this API".into(),
        )));
    }
    if !tokens::is_active(state, &claims).await? {
        return Err(invalid(TokenError::Revoked));
    }
    let (actor, holder) = if claims.has_user() {
        let user = accounts::find(state, &claims.sub).await.ok().filter(|u| !u.disabled);
        if user.is_none() {
            return Err(AdminError::Unauthenticated(Some(
                "the user no longer exists or is disabled".into(),
            )));
        }
        (
            Actor::user(&claims.sub, ip),
            crate::rbac::Subject::User(claims.sub.clone()),
        )
    } else {
        if state.clients.get(&state.db, &claims.client_id).await?.is_none() {
            return Err(AdminError::Unauthenticated(Some("the client no longer exists".into())));
        }
        (
            Actor::client(&claims.client_id, ip),
            crate::rbac::Subject::Client(claims.client_id.clone()),
        )
    };
    let permissions = claims
        .extra
        .get("permissions")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(Principal {
        actor,
        holder,
        permissions,
    })
}

/// A page of results and the cursor of the next page.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Page size: `limit` in 1..=200, 50 by default.
pub fn page_size(limit: Option<i64>) -> Result<i64, AdminError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(AdminError::BadRequest("limit must be between 1 and 200".into())),
    }
}

fn offset_cursor(cursor: Option<&str>) -> Result<i64, AdminError> {
    cursor
        .map(|c| c.parse::<i64>().ok().filter(|n| *n >= 0))
        .unwrap_or(Some(0))
        .ok_or_else(|| AdminError::BadRequest("malformed cursor".into()))
}

fn user_json(user: &crate::db::models::users::UserRow) -> Value {
    let mut value = serde_json::to_value(user).unwrap_or(Value::Null);
    if let Some(address) = user
        .address
        .as_deref()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
    {
        value["address"] = address;
    }
    value
}

pub async fn list_users(state: &AppState, limit: Option<i64>, cursor: Option<&str>) -> Result<Page<Value>, AdminError> {
    let limit = page_size(limit)?;
    let offset = offset_cursor(cursor)?;
    let users = accounts::list(state, limit + 1, offset).await?;
    let more = users.len() as i64 > limit;
    Ok(Page {
        items: users.iter().take(limit as usize).map(user_json).collect(),
        next_cursor: more.then(|| (offset + limit).to_string()),
    })
}

pub async fn show_user(state: &AppState, id: &str) -> Result<Value, AdminError> {
    let user = accounts::find(state, id).await?;
    let roles = crate::rbac::assignments(&state.db, crate::rbac::Subject::User(user.id.clone())).await?;
    let mut value = user_json(&user);
    value["roles"] = json!(roles.assigned);
    value["authorized_roles"] = json!(roles.authorized);
    Ok(value)
}

/// Body of `POST /admin/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    pub username: String,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    /// Checked against the password policy; omit for an account without a password.
    pub password: Option<String>,
    #[serde(default)]
    pub profile: Profile,
    #[serde(default)]
    pub disabled: bool,
}

pub async fn create_user(state: &AppState, who: &Principal, body: NewUserBody) -> Result<Value, AdminError> {
    let credential = match body.password {
        Some(p) => Credential::Password(Password::new(&p)),
        None => Credential::None,
    };
    let user = accounts::create(
        state,
        &who.actor,
        NewAccount {
            username: body.username,
            email: body.email,
            email_verified: body.email_verified,
            profile: body.profile,
            credential,
            disabled: body.disabled,
        },
    )
    .await?;
    Ok(user_json(&user))
}

/// Body of `PATCH /admin/v1/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub disabled: Option<bool>,
    /// A password reset: checked against the policy and history; ends every
    /// session of the person and revokes every refresh token of theirs.
    pub password: Option<secrecy::SecretString>,
}

pub async fn patch_user(state: &AppState, who: &Principal, id: &str, patch: UserPatch) -> Result<Value, AdminError> {
    if patch.disabled.is_none() && patch.password.is_none() {
        return Err(AdminError::BadRequest(
            "nothing to change: send {\"disabled\": true|false} and/or {\"password\": \"…\"}".into(),
        ));
    }
    let mut user = accounts::find(state, id).await?;
    if let Some(password) = &patch.password {
        use secrecy::ExposeSecret;
        let password = Password::new(password.expose_secret());
        accounts::set_password(state, &who.actor, &user, &password, None).await?;
    }
    if let Some(disabled) = patch.disabled {
        user = accounts::set_disabled(state, &who.actor, &user.id, disabled).await?;
    }
    Ok(user_json(&user))
}

pub async fn list_sessions(state: &AppState, user: &str) -> Result<Value, AdminError> {
    let user = accounts::find(state, user).await?;
    let id = user.id.clone();
    let rows = state.db.run(move |conn| sessions::list_for_user(conn, &id)).await?;
    Ok(json!({
        "items": rows.iter().map(|s| json!({
            "id": s.id,
            "created_at": s.created_at,
            "last_seen_at": s.last_seen_at,
            "auth_time": s.auth_time,
            "amr": s.amr.split(' ').filter(|m| !m.is_empty()).collect::<Vec<_>>(),
            "ip": s.ip,
            "user_agent": s.user_agent,
        })).collect::<Vec<_>>(),
        "next_cursor": null,
    }))
}

/// Ends one session of a user, or all of them (`session` = None), each through
/// `session::end_in` (with its refresh tokens). Returns how many ended.
pub async fn end_sessions(
    state: &AppState,
    who: &Principal,
    user: &str,
    session: Option<&str>,
) -> Result<usize, AdminError> {
    let user = accounts::find(state, user).await?;
    let (id, sid) = (user.id.clone(), session.map(str::to_owned));
    let (actor, now) = (who.actor.clone(), state.clock.now());
    let ended = state
        .db
        .transaction(move |conn| {
            // The same path as sign-out: the sessions' refresh tokens end with them.
            let mut ended = 0;
            for s in sessions::list_for_user(conn, &id)? {
                if sid.as_ref().is_none_or(|sid| *sid == s.id) && session::end_in(conn, &s.id, now)? {
                    ended += 1;
                }
            }
            if sid.is_some() && ended == 0 {
                return Ok(None);
            }
            let details = json!({ "session": sid, "ended": ended });
            audit::record(conn, &actor, "session.end", Some(&format!("user:{id}")), details, now)?;
            Ok(Some(ended))
        })
        .await?;
    ended.ok_or_else(|| AdminError::NotFound("no such session for this user".into()))
}

pub async fn list_clients(
    state: &AppState,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Page<Value>, AdminError> {
    let limit = page_size(limit)?;
    let offset = offset_cursor(cursor)?;
    let list = clients::list(&state.db, limit + 1, offset).await?;
    let more = list.len() as i64 > limit;
    Ok(Page {
        items: list.iter().take(limit as usize).map(clients::describe).collect(),
        next_cursor: more.then(|| (offset + limit).to_string()),
    })
}

pub async fn show_client(state: &AppState, id: &str) -> Result<Value, AdminError> {
    let client = clients::find(&state.db, id).await?;
    let roles = crate::rbac::assignments(&state.db, crate::rbac::Subject::Client(id.to_owned())).await?;
    let mut value = clients::describe(&client);
    value["roles"] = json!(roles.assigned);
    Ok(value)
}

/// The client as described, plus its secret when one was just issued (shown once).
fn with_secret(created: clients::Created) -> Value {
    let mut value = clients::describe(&created.client);
    if let Some(secret) = created.secret {
        value["client_secret"] = json!(secret);
    }
    value
}

pub async fn create_client(state: &AppState, who: &Principal, spec: ClientSpec) -> Result<Value, AdminError> {
    let created = clients::create(&state.db, state.clock.now(), &state.config.tokens, &who.actor, spec).await?;
    Ok(with_secret(created))
}

pub async fn update_client(state: &AppState, who: &Principal, id: &str, spec: ClientSpec) -> Result<Value, AdminError> {
    crate::rbac::escalation::may_manage_client(state.rbac_change(), &who.actor, &who.grantor(), id, "client.update")
        .await?;
    let updated = clients::update(&state.db, &state.clients, state.clock.now(), &who.actor, id, spec).await?;
    state.rbac.clear();
    Ok(with_secret(updated))
}

pub async fn delete_client(state: &AppState, who: &Principal, id: &str) -> Result<(), AdminError> {
    crate::rbac::escalation::may_manage_client(state.rbac_change(), &who.actor, &who.grantor(), id, "client.delete")
        .await?;
    clients::delete(&state.db, &state.clients, state.clock.now(), &who.actor, id).await?;
    state.rbac.clear();
    Ok(())
}

pub async fn rotate_client_secret(state: &AppState, who: &Principal, id: &str) -> Result<Value, AdminError> {
    crate::rbac::escalation::may_manage_client(
        state.rbac_change(),
        &who.actor,
        &who.grantor(),
        id,
        "client.secret.rotate",
    )
    .await?;
    let secret = clients::rotate_secret(&state.db, &state.clients, state.clock.now(), &who.actor, id).await?;
    Ok(json!({ "client_id": id, "client_secret": secret }))
}

/// The administrator created on first start.
pub struct Bootstrapped {
    pub username: String,
    /// The generated password, to be shown once; `None` when it came from the config.
    pub generated_password: Option<String>,
}

const BOOTSTRAP_MARK: &str = "admin_bootstrapped";

/// On the first start with an empty database (and `admin.bootstrap`), creates the
/// `admin.username` user with the `admin` role. Runs once per installation: a
/// marker in the database stops it from recreating a deleted administrator, and of
/// two instances starting together only one creates the user.
pub async fn bootstrap(state: &AppState) -> Result<Option<Bootstrapped>, AdminError> {
    use crate::db::models::{settings, users};
    use secrecy::ExposeSecret;
    if !state.config.admin.bootstrap {
        return Ok(None);
    }
    let (marked, count) = state
        .db
        .run(|conn| Ok((settings::get(conn, BOOTSTRAP_MARK)?.is_some(), users::count(conn)?)))
        .await?;
    if marked || count > 0 {
        return Ok(None);
    }
    let config = &state.config.admin;
    let (password, generated) = match &config.initial_password {
        Some(p) => (p.expose_secret().to_owned(), false),
        None => (crate::crypto::random_token()[..24].to_owned(), true),
    };
    let actor = Actor::system();
    let created = accounts::create(
        state,
        &actor,
        NewAccount {
            username: config.username.clone(),
            email: None,
            email_verified: false,
            profile: Profile::default(),
            credential: Credential::Password(Password::new(&password)),
            disabled: false,
        },
    )
    .await;
    let user = match created {
        Ok(user) => user,
        // Another instance got there first.
        Err(AccountError::UsernameTaken) => return Ok(None),
        Err(AccountError::Policy(e)) => {
            return Err(AdminError::BadRequest(format!("admin.initial_password: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    crate::rbac::assign(
        state.rbac_change(),
        &actor,
        crate::rbac::Subject::User(user.id.clone()),
        crate::rbac::ADMIN_ROLE,
    )
    .await?;
    let (target, details, now) = (
        format!("user:{}", user.id),
        json!({ "username": user.username }),
        state.clock.now(),
    );
    state
        .db
        .transaction(move |conn| {
            settings::get_or_insert(conn, BOOTSTRAP_MARK, "1")?;
            audit::record(conn, &actor, "admin.bootstrap", Some(&target), details, now)
        })
        .await?;
    Ok(Some(Bootstrapped {
        username: user.username,
        generated_password: generated.then_some(password),
    }))
}

/// Lifts a sign-in lockout or delay (NIST SP 800-63B §5.2.2: an administrator unlocks).
pub async fn unlock_user(state: &AppState, who: &Principal, id: &str) -> Result<Value, AdminError> {
    let user = accounts::find(state, id).await?;
    crate::authn::login::unlock(state, &who.actor, &user).await?;
    Ok(json!({ "id": user.id, "unlocked": true }))
}
