//! WebAuthn (W3C Web Authentication Level 3) through webauthn-rs: registering
//! security keys and passkeys (several per person, user verification always
//! required, discoverable when the authenticator can), using one as the second
//! step after the password, and passwordless sign-in with a discoverable passkey.
//!
//! Every ceremony's state (its challenge) is stored server-side in
//! `webauthn_ceremonies`, keyed by the hash of a random token that only the
//! browser which started it holds (the `oxidp_webauthn` cookie): so any instance
//! can finish it, it expires after 5 minutes and it is answered at most once.
//! Refusals (wrong origin or rp id, reused or unknown challenge, signature
//! counter regression, user verification missing) are audited.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::audit::{self, Actor};
use crate::config::Config;
use crate::crypto;
use crate::db::models::users::{self, UserRow};
use crate::db::models::webauthn::{self as store, CeremonyRow, CredentialRow};
use crate::db::{AnyConnection, DbError};
use crate::state::AppState;

/// How long a ceremony may take (WebAuthn recommends at most 10 minutes; the issue asks ≤ 5).
pub const CEREMONY_TTL_SECS: i64 = 300;
/// Longest name a person may give a credential.
pub const MAX_NAME_CHARS: usize = 64;

const REGISTER: &str = "register";
const SECOND_FACTOR: &str = "second_factor";
const PASSWORDLESS: &str = "passwordless";

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("security keys and passkeys are turned off on this server")]
    Disabled,
    #[error("this request has expired or was already used; please try again")]
    CeremonyExpired,
    #[error("the security key or passkey could not be verified")]
    Rejected,
    #[error("this passkey is not registered with this site")]
    UnknownCredential,
    #[error("this security key or passkey is already registered")]
    AlreadyRegistered,
    #[error("give it a name of 1 to 64 characters")]
    InvalidName,
    #[error("confirm it is you: sign in again")]
    ReauthenticationRequired,
    #[error("no such security key or passkey")]
    NotFound,
    #[error("there is no security key or passkey on this account")]
    NoCredentials,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The relying party from `[webauthn]` (defaults: the issuer's host and origin);
/// `None` when security keys and passkeys are off (see `Config::webauthn_relying_party`).
pub fn relying_party(config: &Config) -> anyhow::Result<Option<Webauthn>> {
    let Some((rp_id, origin, name)) = config
        .webauthn_relying_party()
        .map_err(|e| anyhow::anyhow!("configuration key `{}`: {}", e.key, e.message))?
    else {
        return Ok(None);
    };
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| {
            b.rp_name(&name)
                .timeout(std::time::Duration::from_secs(CEREMONY_TTL_SECS as u64))
                .build()
        })
        .map(Some)
        .map_err(|e| anyhow::anyhow!("configuration key `webauthn.rp_id`: {e}"))
}

/// A started ceremony: the cookie token binding it to this browser, and the
/// options for `navigator.credentials.create/get` (as JSON, `{"publicKey": …}`).
pub struct Started {
    pub token: String,
    pub options: Value,
}

/// What a successful use of a credential proves, as RFC 8176 `amr` values.
#[derive(Debug, Clone)]
pub struct Used {
    pub credential_id: String,
    /// `swk` for a synced passkey (software-protected, backed up), `hwk` otherwise.
    pub key_method: &'static str,
}

impl Used {
    /// The methods for the session: the key, user verification (`user`), `mfa`.
    pub fn amr(&self) -> [&'static str; 3] {
        [self.key_method, "user", "mfa"]
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

async fn open(
    state: &AppState,
    purpose: &'static str,
    user_id: Option<String>,
    ceremony_state: String,
    options: Value,
) -> Result<Started, PasskeyError> {
    let token = crypto::random_token();
    let now = state.clock.now();
    let row = CeremonyRow {
        token_hash: crypto::sha256_hex(&token),
        purpose: purpose.to_owned(),
        user_id,
        state: ceremony_state,
        created_at: now,
        expires_at: now + CEREMONY_TTL_SECS,
    };
    state.db.run(move |conn| store::insert_ceremony(conn, &row)).await?;
    Ok(Started { token, options })
}

/// Takes the ceremony for `token` if it is of `purpose`, unexpired and unused.
async fn take(state: &AppState, token: &str, purpose: &str) -> Result<CeremonyRow, PasskeyError> {
    let hash = crypto::sha256_hex(token);
    let now = state.clock.now();
    let row = state
        .db
        .run(move |conn| store::take_ceremony(conn, &hash, now))
        .await?
        .ok_or(PasskeyError::CeremonyExpired)?;
    if row.purpose != purpose {
        return Err(PasskeyError::CeremonyExpired);
    }
    Ok(row)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(value).map_err(|e| PasskeyError::Internal(e.into()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(text).map_err(|e| PasskeyError::Internal(e.into()))
}

/// The relying party, or `Disabled` when security keys and passkeys are off.
fn relying(state: &AppState) -> Result<&Webauthn, PasskeyError> {
    state.webauthn.as_deref().ok_or(PasskeyError::Disabled)
}

/// Audits a refused ceremony (the reason is webauthn-rs's error kind, never key material).
async fn refused(state: &AppState, user_id: Option<&str>, ip: Option<String>, purpose: &str, reason: String) {
    let actor = match user_id {
        Some(id) => Actor::user(id, ip),
        None => Actor {
            id: "anonymous".to_owned(),
            ip,
        },
    };
    tracing::info!(purpose, %reason, "webauthn ceremony refused");
    if let Err(error) = audit::record_now(
        state,
        &actor,
        "mfa.webauthn.failure",
        user_id.map(|u| format!("user:{u}")),
        json!({ "purpose": purpose, "reason": reason }),
    )
    .await
    {
        tracing::warn!(%error, "could not audit a refused webauthn ceremony");
    }
}

/// Sensitive changes need a sign-in within `session::RECENT_AUTH_SECS`.
fn require_recent(state: &AppState, auth_time: i64) -> Result<(), PasskeyError> {
    crate::authn::mfa::require_recent(state, auth_time).map_err(|_| PasskeyError::ReauthenticationRequired)
}

/// Starts registering a new credential for a person who signed in recently.
/// Existing credentials are excluded so one authenticator is not added twice.
pub async fn start_registration(state: &AppState, user: &UserRow, auth_time: i64) -> Result<Started, PasskeyError> {
    require_recent(state, auth_time)?;
    let id = user.id.clone();
    let (handle, existing) = state
        .db
        .run(move |conn| Ok((store::user_handle(conn, &id)?, store::list(conn, &id)?)))
        .await?;
    let handle = match handle.as_deref().map(Uuid::parse_str) {
        Some(Ok(h)) => h,
        _ => Uuid::new_v4(),
    };
    let exclude = existing
        .iter()
        .filter_map(|c| from_json::<Passkey>(&c.passkey).ok())
        .map(|p| p.cred_id().clone())
        .collect::<Vec<_>>();
    let display = user.name.clone().unwrap_or_else(|| user.username.clone());
    let (options, registration) = relying(state)?
        .start_passkey_registration(handle, &user.username, &display, Some(exclude))
        .map_err(|e| PasskeyError::Internal(anyhow::anyhow!("starting a registration: {e}")))?;
    let mut options = serde_json::to_value(&options).map_err(|e| PasskeyError::Internal(e.into()))?;
    // Ask for a discoverable credential so it also serves passwordless sign-in.
    if let Some(public_key) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
        let selection = public_key
            .entry("authenticatorSelection")
            .or_insert_with(|| json!({ "userVerification": "required" }));
        selection["residentKey"] = json!("required");
        selection["requireResidentKey"] = json!(true);
    }
    let saved = json!({ "handle": handle.to_string(), "registration": registration });
    open(state, REGISTER, Some(user.id.clone()), saved.to_string(), options).await
}

/// Parses a credential name: trimmed, 1 to 64 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, PasskeyError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(PasskeyError::InvalidName);
    }
    Ok(name.to_owned())
}

/// Finishes a registration started by this browser for this person.
pub async fn finish_registration(
    state: &AppState,
    user: &UserRow,
    auth_time: i64,
    token: &str,
    name: &str,
    response: &str,
    ip: Option<String>,
) -> Result<CredentialRow, PasskeyError> {
    let name = parse_name(name)?;
    require_recent(state, auth_time)?;
    let ceremony = take(state, token, REGISTER).await?;
    if ceremony.user_id.as_deref() != Some(user.id.as_str()) {
        return Err(PasskeyError::CeremonyExpired);
    }
    let saved: Value = from_json(&ceremony.state)?;
    let handle = saved["handle"].as_str().unwrap_or_default().to_owned();
    let registration: PasskeyRegistration =
        serde_json::from_value(saved["registration"].clone()).map_err(|e| PasskeyError::Internal(e.into()))?;
    let credential: RegisterPublicKeyCredential = match serde_json::from_str(response) {
        Ok(c) => c,
        Err(e) => {
            refused(state, Some(&user.id), ip, REGISTER, format!("malformed response: {e}")).await;
            return Err(PasskeyError::Rejected);
        }
    };
    let passkey = match relying(state)?.finish_passkey_registration(&credential, &registration) {
        Ok(p) => p,
        Err(e) => {
            refused(state, Some(&user.id), ip, REGISTER, format!("{e:?}")).await;
            return Err(PasskeyError::Rejected);
        }
    };
    let now = state.clock.now();
    let row = CredentialRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.clone(),
        credential_id: b64(passkey.cred_id()),
        user_handle: handle,
        name,
        passkey: to_json(&passkey)?,
        synced: backup_eligible(&passkey),
        created_at: now,
        last_used_at: None,
    };
    let inserted = row.clone();
    let actor = Actor::user(&user.id, ip);
    state
        .db
        .transaction(move |conn| {
            if store::find_by_credential_id(conn, &inserted.credential_id)?.is_some() {
                return Ok(false);
            }
            store::insert(conn, &inserted)?;
            audit::record(
                conn,
                &actor,
                "mfa.webauthn.register",
                Some(&format!("user:{}", inserted.user_id)),
                json!({ "credential": inserted.id, "name": inserted.name, "synced": inserted.synced }),
                now,
            )?;
            Ok(true)
        })
        .await?
        .then_some(row)
        .ok_or(PasskeyError::AlreadyRegistered)
}

/// Whether the authenticator said the credential may be backed up (synced passkey).
fn backup_eligible(passkey: &Passkey) -> bool {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_eligible").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// The person's credentials, oldest first.
pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<CredentialRow>, DbError> {
    let id = user_id.to_owned();
    state.db.run(move |conn| store::list(conn, &id)).await
}

pub fn count(conn: &mut AnyConnection, user_id: &str) -> Result<i64, DbError> {
    store::count(conn, user_id)
}

/// Starts the second step of a sign-in with one of the person's credentials.
pub async fn start_second_factor(state: &AppState, user_id: &str) -> Result<Started, PasskeyError> {
    let passkeys = list(state, user_id)
        .await?
        .iter()
        .filter_map(|c| from_json::<Passkey>(&c.passkey).ok())
        .collect::<Vec<_>>();
    if passkeys.is_empty() {
        return Err(PasskeyError::NoCredentials);
    }
    let (options, authentication) = relying(state)?
        .start_passkey_authentication(&passkeys)
        .map_err(|e| PasskeyError::Internal(anyhow::anyhow!("starting an authentication: {e}")))?;
    open(
        state,
        SECOND_FACTOR,
        Some(user_id.to_owned()),
        to_json(&authentication)?,
        serde_json::to_value(&options).map_err(|e| PasskeyError::Internal(e.into()))?,
    )
    .await
}

/// Verifies the second step for `user_id` (the person whose password passed).
pub async fn finish_second_factor(
    state: &AppState,
    user_id: &str,
    token: &str,
    response: &str,
    ip: Option<String>,
) -> Result<Used, PasskeyError> {
    let ceremony = take(state, token, SECOND_FACTOR).await?;
    if ceremony.user_id.as_deref() != Some(user_id) {
        return Err(PasskeyError::CeremonyExpired);
    }
    let authentication: PasskeyAuthentication = from_json(&ceremony.state)?;
    let credential: PublicKeyCredential = match serde_json::from_str(response) {
        Ok(c) => c,
        Err(e) => {
            refused(
                state,
                Some(user_id),
                ip,
                SECOND_FACTOR,
                format!("malformed response: {e}"),
            )
            .await;
            return Err(PasskeyError::Rejected);
        }
    };
    let stored = credential_row(state, credential.get_credential_id()).await?;
    let Some(stored) = stored.filter(|c| c.user_id == user_id) else {
        refused(
            state,
            Some(user_id),
            ip,
            SECOND_FACTOR,
            "credential not registered to this account".into(),
        )
        .await;
        return Err(PasskeyError::UnknownCredential);
    };
    match relying(state)?.finish_passkey_authentication(&credential, &authentication) {
        Ok(result) => record_use(state, stored, &result, SECOND_FACTOR, ip).await,
        Err(e) => {
            refused(state, Some(user_id), ip, SECOND_FACTOR, format!("{e:?}")).await;
            Err(PasskeyError::Rejected)
        }
    }
}

async fn credential_row(state: &AppState, raw_id: &[u8]) -> Result<Option<CredentialRow>, DbError> {
    let id = b64(raw_id);
    state.db.run(move |conn| store::find_by_credential_id(conn, &id)).await
}

/// Stores the new signature counter (compare-and-swap on the stored state, so two
/// concurrent assertions cannot both advance from the same counter) and audits.
async fn record_use(
    state: &AppState,
    stored: CredentialRow,
    result: &webauthn_rs::prelude::AuthenticationResult,
    purpose: &'static str,
    ip: Option<String>,
) -> Result<Used, PasskeyError> {
    let mut passkey: Passkey = from_json(&stored.passkey)?;
    passkey.update_credential(result);
    let updated = to_json(&passkey)?;
    let now = state.clock.now();
    let actor = Actor::user(&stored.user_id, ip.clone());
    let row = stored.clone();
    let accepted = state
        .db
        .transaction(move |conn| {
            if !store::record_use(conn, &row.id, &row.passkey, &updated, now)? {
                return Ok(false);
            }
            audit::record(
                conn,
                &actor,
                "mfa.webauthn.use",
                Some(&format!("user:{}", row.user_id)),
                json!({ "credential": row.id, "purpose": purpose, "counter": result_counter(&updated) }),
                now,
            )?;
            Ok(true)
        })
        .await?;
    if !accepted {
        refused(
            state,
            Some(&stored.user_id),
            ip,
            purpose,
            "concurrent use of one credential".into(),
        )
        .await;
        return Err(PasskeyError::Rejected);
    }
    Ok(Used {
        credential_id: stored.id,
        key_method: if backup_eligible(&passkey) { "swk" } else { "hwk" },
    })
}

fn result_counter(passkey_json: &str) -> u64 {
    serde_json::from_str::<Value>(passkey_json)
        .ok()
        .and_then(|v| v.pointer("/cred/counter").and_then(Value::as_u64))
        .unwrap_or(0)
}

/// Starts a passwordless sign-in: the browser lets the person pick a passkey.
pub async fn start_passwordless(state: &AppState) -> Result<Started, PasskeyError> {
    let (mut options, authentication) = relying(state)?
        .start_discoverable_authentication()
        .map_err(|e| PasskeyError::Internal(anyhow::anyhow!("starting a discoverable authentication: {e}")))?;
    // A button press asks with the browser's own dialog, not autofill (conditional) mediation.
    options.mediation = None;
    open(
        state,
        PASSWORDLESS,
        None,
        to_json(&authentication)?,
        serde_json::to_value(&options).map_err(|e| PasskeyError::Internal(e.into()))?,
    )
    .await
}

/// Finishes a passwordless sign-in: the passkey names its account (user handle).
pub async fn finish_passwordless(
    state: &AppState,
    token: &str,
    response: &str,
    ip: Option<String>,
) -> Result<(UserRow, Used), PasskeyError> {
    let ceremony = take(state, token, PASSWORDLESS).await?;
    let authentication: DiscoverableAuthentication = from_json(&ceremony.state)?;
    let credential: PublicKeyCredential = match serde_json::from_str(response) {
        Ok(c) => c,
        Err(e) => {
            refused(state, None, ip, PASSWORDLESS, format!("malformed response: {e}")).await;
            return Err(PasskeyError::Rejected);
        }
    };
    let (handle, raw_id) = match relying(state)?.identify_discoverable_authentication(&credential) {
        Ok(found) => found,
        Err(e) => {
            refused(state, None, ip, PASSWORDLESS, format!("{e:?}")).await;
            return Err(PasskeyError::Rejected);
        }
    };
    let stored = credential_row(state, raw_id)
        .await?
        .filter(|c| Uuid::parse_str(&c.user_handle).ok() == Some(handle));
    let Some(stored) = stored else {
        refused(
            state,
            None,
            ip,
            PASSWORDLESS,
            "unknown credential or user handle".into(),
        )
        .await;
        return Err(PasskeyError::UnknownCredential);
    };
    let passkey: Passkey = from_json(&stored.passkey)?;
    match relying(state)?.finish_discoverable_authentication_v2(&credential, authentication, &passkey) {
        Ok(result) => {
            let user_id = stored.user_id.clone();
            let used = record_use(state, stored, &result, PASSWORDLESS, ip).await?;
            let user = state
                .db
                .run(move |conn| users::find_by_id(conn, &user_id))
                .await?
                .ok_or(PasskeyError::UnknownCredential)?;
            if user.disabled {
                return Err(PasskeyError::UnknownCredential);
            }
            Ok((user, used))
        }
        Err(e) => {
            refused(state, Some(&stored.user_id), ip, PASSWORDLESS, format!("{e:?}")).await;
            Err(PasskeyError::Rejected)
        }
    }
}

/// Renames one of the person's credentials.
pub async fn rename(state: &AppState, user_id: &str, id: &str, name: &str) -> Result<(), PasskeyError> {
    let name = parse_name(name)?;
    let (user, id) = (user_id.to_owned(), id.to_owned());
    if state.db.run(move |conn| store::rename(conn, &user, &id, &name)).await? {
        Ok(())
    } else {
        Err(PasskeyError::NotFound)
    }
}

/// Looks up one of the person's credentials (for the delete confirmation).
pub async fn find(state: &AppState, user_id: &str, id: &str) -> Result<CredentialRow, PasskeyError> {
    list(state, user_id)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(PasskeyError::NotFound)
}

/// Removes one of the person's credentials. Needs a recent authentication.
/// Like any removed factor, it ends every other session of the person and
/// revokes every refresh token of theirs in the same transaction (ASVS 5
/// V7.4.3); `session_id` (the browser that asked) stays signed in.
pub async fn delete(
    state: &AppState,
    user_id: &str,
    id: &str,
    session_id: &str,
    auth_time: i64,
    ip: Option<String>,
) -> Result<(), PasskeyError> {
    require_recent(state, auth_time)?;
    let now = state.clock.now();
    let (user, id, keep) = (user_id.to_owned(), id.to_owned(), session_id.to_owned());
    let actor = Actor::user(user_id, ip);
    let deleted = state
        .db
        .transaction(move |conn| {
            if !store::delete(conn, &user, &id)? {
                return Ok(false);
            }
            let revoked = crate::authn::session::revoke_all_in(conn, &user, Some(&keep), now)?;
            audit::record(
                conn,
                &actor,
                "mfa.webauthn.delete",
                Some(&format!("user:{user}")),
                json!({
                    "credential": id,
                    "sessions_ended": revoked.sessions_ended,
                    "grants_revoked": revoked.grants_revoked,
                }),
                now,
            )?;
            Ok(true)
        })
        .await?;
    if deleted { Ok(()) } else { Err(PasskeyError::NotFound) }
}

/// The allowed origin, for tests and diagnostics.
pub fn origin(state: &AppState) -> Option<Url> {
    state.webauthn.as_ref()?.get_allowed_origins().first().cloned()
}
