//! User accounts: creation, profile, password changes (policy and history),
//! enabling and disabling, and import of users with legacy password hashes.
//! Used by the CLI, the account pages and the admin API. Every change is audited
//! in the transaction that makes it, with the actor who asked for it.

pub mod legacy;

use serde::Deserialize;

use serde_json::json;

use crate::audit::{self, Actor};
use crate::authn::legacy::{LegacyError, LegacyParams, Stored};
use crate::authn::password::{self, Verification};
use crate::authn::session;
use crate::db::models::{logins, users};
use crate::db::{DbError, models::users::UserRow};
use crate::domain::{Email, Password, PasswordPolicyError, UserId, Username};
use crate::state::AppState;

/// How many of the most recent passwords (the current one included) may not be reused.
pub const PASSWORD_HISTORY: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("username: {0}")]
    InvalidUsername(#[from] crate::domain::username::UsernameError),
    #[error("email: {0}")]
    InvalidEmail(#[from] crate::domain::email::EmailError),
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("the e-mail address is already in use")]
    EmailTaken,
    #[error("{0}")]
    Policy(#[from] PasswordPolicyError),
    #[error("the current password is not correct")]
    WrongPassword,
    #[error("no such user")]
    NotFound,
    #[error("unsupported password hash format (expected argon2id, bcrypt, or PBKDF2-SHA256)")]
    UnsupportedHash,
    #[error("{0}")]
    WeakLegacyHash(#[from] LegacyError),
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbError> for AccountError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound => AccountError::NotFound,
            DbError::Conflict(c) if c.contains("email") => AccountError::EmailTaken,
            DbError::Conflict(c) if c.contains("username") => AccountError::UsernameTaken,
            // SQLite names the columns of a unique violation as `users.username`;
            // PostgreSQL names the constraint. Anything else is a plain conflict.
            other => AccountError::Db(other),
        }
    }
}

/// What the account page lists about a person.
pub struct Activity {
    /// Their sessions, most recently active first.
    pub sessions: Vec<crate::db::models::sessions::SessionRow>,
    /// The applications they consented to, with each client's name.
    pub consents: Vec<(crate::db::models::consents::ConsentRow, String)>,
    /// Their last ten sign-in attempts.
    pub sign_ins: Vec<logins::AttemptRow>,
}

/// The sessions, consents and recent sign-in attempts of `user_id`.
pub async fn activity(state: &AppState, user_id: &str) -> Result<Activity, DbError> {
    let id = user_id.to_owned();
    state
        .db
        .run(move |conn| {
            Ok(Activity {
                sessions: crate::db::models::sessions::list_for_user(conn, &id)?,
                consents: crate::db::models::consents::list_for_user(conn, &id)?,
                sign_ins: logins::recent_for_user(conn, &id, 10)?,
            })
        })
        .await
}

/// Profile claims (OIDC Core §5.1) an administrator may set.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub zoneinfo: Option<String>,
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_number_verified: bool,
    /// OIDC `address` claim (formatted, street_address, locality, region, postal_code, country).
    pub address: Option<serde_json::Value>,
}

/// How the new account gets its password.
pub enum Credential {
    None,
    Password(Password),
    /// A hash exported from another system; a legacy one (bcrypt, PBKDF2) is
    /// stored wrapped in argon2id, and re-hashed at the next sign-in. Legacy
    /// parameters below the import floor are refused unless `allow_weak`.
    ImportedHash {
        hash: String,
        allow_weak: bool,
    },
}

pub struct NewAccount {
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub profile: Profile,
    pub credential: Credential,
    pub disabled: bool,
}

pub async fn create(state: &AppState, actor: &Actor, input: NewAccount) -> Result<UserRow, AccountError> {
    let username = Username::parse(&input.username)?;
    let email = input.email.as_deref().map(Email::parse).transpose()?;
    let now = state.clock.now();
    let imported = matches!(input.credential, Credential::ImportedHash { .. });
    let mut legacy_params: Option<LegacyParams> = None;
    let password_hash = match input.credential {
        Credential::None => None,
        Credential::Password(password) => {
            let mut context = vec![username.as_str()];
            if let Some(email) = &email {
                context.push(email.as_str());
            }
            password.check_policy(&context)?;
            Some(state.hasher.hash(&password).await?)
        }
        Credential::ImportedHash { hash, allow_weak } => match crate::authn::legacy::classify(&hash) {
            Stored::Argon2(_) if password::is_supported_hash(&hash) => Some(hash),
            Stored::Bare(params, output) => {
                if !allow_weak {
                    params.check_floor()?;
                }
                legacy_params = Some(params.clone());
                // The bare legacy hash never reaches the database.
                Some(state.hasher.wrap(params, output).await?)
            }
            _ => return Err(AccountError::UnsupportedHash),
        },
    };
    let row = users::NewUser {
        id: UserId::generate().to_string(),
        username: username.to_string(),
        email: email.map(|e| e.as_str().to_owned()),
        email_verified: input.email_verified,
        name: input.profile.name,
        given_name: input.profile.given_name,
        family_name: input.profile.family_name,
        nickname: input.profile.nickname,
        picture: input.profile.picture,
        locale: input.profile.locale,
        zoneinfo: input.profile.zoneinfo,
        phone_number: input.profile.phone_number,
        phone_number_verified: input.profile.phone_number_verified,
        password_changed_at: password_hash.as_ref().map(|_| now),
        password_hash,
        disabled: input.disabled,
        created_at: now,
        updated_at: now,
        address: input.profile.address.map(|a| a.to_string()),
    };
    let id = row.id.clone();
    let username_taken = row.username.clone();
    let email_taken = row.email.clone();
    let actor = actor.clone();
    state
        .db
        .transaction(move |conn| {
            if users::find_by_username(conn, &username_taken)?.is_some() {
                return Err(DbError::Conflict("users.username".into()));
            }
            if let Some(email) = &email_taken {
                use crate::db::schema::users::dsl;
                use diesel::prelude::*;
                let taken: i64 = dsl::users.filter(dsl::email.eq(email)).count().get_result(conn)?;
                if taken > 0 {
                    return Err(DbError::Conflict("users.email".into()));
                }
            }
            users::insert(conn, &row)?;
            if let Some(params) = &legacy_params {
                legacy::record_work(conn, params)?;
            }
            audit::record(
                conn,
                &actor,
                if imported { "user.import" } else { "user.create" },
                Some(&format!("user:{}", row.id)),
                json!({ "username": row.username }),
                now,
            )
        })
        .await?;
    find(state, &id).await
}

pub async fn find(state: &AppState, id_or_username: &str) -> Result<UserRow, AccountError> {
    let key = id_or_username.to_owned();
    state
        .db
        .run(move |conn| users::find(conn, &key))
        .await?
        .ok_or(AccountError::NotFound)
}

pub async fn list(state: &AppState, limit: i64, offset: i64) -> Result<Vec<UserRow>, AccountError> {
    Ok(state.db.run(move |conn| users::list(conn, limit, offset)).await?)
}

/// Disabling also ends every browser session of the user and revokes every grant
/// (refresh tokens, `offline_access` included) for good: enabling the account
/// again brings none of them back.
pub async fn set_disabled(
    state: &AppState,
    actor: &Actor,
    id_or_username: &str,
    disabled: bool,
) -> Result<UserRow, AccountError> {
    let user = find(state, id_or_username).await?;
    let now = state.clock.now();
    let id = user.id.clone();
    let actor = actor.clone();
    state
        .db
        .transaction(move |conn| {
            users::set_disabled(conn, &id, disabled, now)?;
            let (action, details) = if disabled {
                let revoked = session::revoke_all_in(conn, &id, None, now)?;
                (
                    "user.disable",
                    json!({ "sessions_ended": revoked.sessions_ended, "grants_revoked": revoked.grants_revoked }),
                )
            } else {
                ("user.enable", json!({}))
            };
            audit::record(conn, &actor, action, Some(&format!("user:{id}")), details, now)
        })
        .await?;
    find(state, &user.id).await
}

/// Sets a new password after checking the policy and the history of the last
/// `PASSWORD_HISTORY` passwords. A new password also lifts a sign-in lockout
/// (NIST SP 800-63B §5.2.2: reset or admin unlock), ends every session of the
/// person except `keep` (the browser of a self-service change; `None` for a reset
/// by an operator or administrator) and revokes every refresh token of theirs
/// (ASVS 5 V7.4), all in the same transaction as the change and its audit event.
pub async fn set_password(
    state: &AppState,
    actor: &Actor,
    user: &UserRow,
    new: &Password,
    keep: Option<&str>,
) -> Result<(), AccountError> {
    let mut context = vec![user.username.as_str()];
    if let Some(email) = &user.email {
        context.push(email.as_str());
    }
    new.check_policy(&context)?;
    let id = user.id.clone();
    let recent = state
        .db
        .run(move |conn| users::recent_hashes(conn, &id, PASSWORD_HISTORY))
        .await?;
    for old in recent {
        if let Verification::Valid { .. } = state.hasher.verify(new, Some(old)).await {
            return Err(PasswordPolicyError::Reused.into());
        }
    }
    let hash = state.hasher.hash(new).await?;
    let id = user.id.clone();
    let now = state.clock.now();
    let throttle_key = crate::authn::risk::username_key(&state.login_key, &user.username);
    let actor = actor.clone();
    let keep = keep.map(str::to_owned);
    state
        .db
        .transaction(move |conn| {
            users::change_password(conn, &id, &hash, now, PASSWORD_HISTORY - 1)?;
            let unlocked = logins::clear(conn, &throttle_key)?;
            let revoked = session::revoke_all_in(conn, &id, keep.as_deref(), now)?;
            audit::record(
                conn,
                &actor,
                "user.set_password",
                Some(&format!("user:{id}")),
                json!({
                    "lockout_cleared": unlocked,
                    "sessions_ended": revoked.sessions_ended,
                    "grants_revoked": revoked.grants_revoked,
                }),
                now,
            )
        })
        .await?;
    Ok(())
}

/// A signed-in person changing their own password: the current one is checked
/// first; the session `current_session` stays signed in, every other one ends.
pub async fn change_password(
    state: &AppState,
    actor: &Actor,
    user: &UserRow,
    current_session: &str,
    current: &Password,
    new: &Password,
) -> Result<(), AccountError> {
    match state.hasher.verify(current, user.password_hash.clone()).await {
        Verification::Valid { .. } => set_password(state, actor, user, new, Some(current_session)).await,
        Verification::Invalid => Err(AccountError::WrongPassword),
    }
}

/// One line of an import file (JSON Lines).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRecord {
    pub username: String,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    /// `$2b$…` (bcrypt), `$pbkdf2-sha256$…` (PHC), `pbkdf2_sha256$…` (Django) or `$argon2id$…`.
    pub password_hash: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(flatten)]
    pub profile: ImportProfile,
}

#[derive(Debug, Default, Deserialize)]
pub struct ImportProfile {
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub zoneinfo: Option<String>,
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_number_verified: bool,
    pub address: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize)]
pub struct ImportOutcome {
    pub line: usize,
    pub username: Option<String>,
    pub id: Option<String>,
    pub error: Option<String>,
}

/// Imports users from JSON Lines. Each line lands or fails on its own; the outcome
/// lists both. Legacy hashes weaker than the floor (`authn::legacy`) fail unless
/// `allow_weak_legacy`.
pub async fn import(state: &AppState, actor: &Actor, text: &str, allow_weak_legacy: bool) -> Vec<ImportOutcome> {
    let mut outcomes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let record: ImportRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => {
                outcomes.push(ImportOutcome {
                    line: line_no,
                    username: None,
                    id: None,
                    error: Some(format!("not a valid record: {e}")),
                });
                continue;
            }
        };
        let username = record.username.clone();
        let credential = match record.password_hash {
            Some(hash) => Credential::ImportedHash {
                hash,
                allow_weak: allow_weak_legacy,
            },
            None => Credential::None,
        };
        let p = record.profile;
        let result = create(
            state,
            actor,
            NewAccount {
                username: record.username,
                email: record.email,
                email_verified: record.email_verified,
                profile: Profile {
                    name: p.name,
                    given_name: p.given_name,
                    family_name: p.family_name,
                    nickname: p.nickname,
                    picture: p.picture,
                    locale: p.locale,
                    zoneinfo: p.zoneinfo,
                    phone_number: p.phone_number,
                    phone_number_verified: p.phone_number_verified,
                    address: p.address,
                },
                credential,
                disabled: record.disabled,
            },
        )
        .await;
        outcomes.push(match result {
            Ok(user) => ImportOutcome {
                line: line_no,
                username: Some(user.username),
                id: Some(user.id),
                error: None,
            },
            Err(e) => ImportOutcome {
                line: line_no,
                username: Some(username),
                id: None,
                error: Some(e.to_string()),
            },
        });
    }
    if let Err(error) = legacy::recompute(state).await {
        tracing::warn!(%error, "recomputing the legacy hash statistics failed");
    }
    outcomes
}
