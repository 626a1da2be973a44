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
//!
//! The relying party itself is built from the configuration in `relying_party`,
//! which also names what a ceremony needs of the application (`Ceremony`).

pub mod relying_party;

pub use relying_party::{CEREMONY_TTL_SECS, Ceremony};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn,
};

use crate::audit::{self, Actor};
use crate::crypto;
use crate::db::models::users::{self, UserRow};
use crate::db::models::webauthn::{self as store, CeremonyRow, CredentialRow};
use crate::db::{AnyConnection, Db, DbError};

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

/// Stores a started ceremony's state (`ceremony_state`, webauthn-rs's, kept
/// server-side) and hands out the token and the options for the browser.
async fn open(
    c: Ceremony<'_>,
    purpose: &'static str,
    user_id: Option<String>,
    ceremony_state: &impl serde::Serialize,
    options: &impl serde::Serialize,
) -> Result<Started, PasskeyError> {
    let options = serde_json::to_value(options).map_err(|e| PasskeyError::Internal(e.into()))?;
    let token = crypto::random_token();
    let row = CeremonyRow {
        token_hash: crypto::sha256_hex(&token),
        purpose: purpose.to_owned(),
        user_id,
        state: to_json(ceremony_state)?,
        created_at: c.now,
        expires_at: c.now + CEREMONY_TTL_SECS,
    };
    c.db.run(move |conn| store::insert_ceremony(conn, &row)).await?;
    Ok(Started { token, options })
}

/// Takes the ceremony for `token` if it is of `purpose`, unexpired and unused.
async fn take(c: Ceremony<'_>, token: &str, purpose: &str) -> Result<CeremonyRow, PasskeyError> {
    let hash = crypto::sha256_hex(token);
    let now = c.now;
    let row =
        c.db.run(move |conn| store::take_ceremony(conn, &hash, now))
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
fn relying<'a>(c: &Ceremony<'a>) -> Result<&'a Webauthn, PasskeyError> {
    c.rp.ok_or(PasskeyError::Disabled)
}

/// Audits a refused ceremony (the reason is webauthn-rs's error kind, never key material).
async fn refused(c: Ceremony<'_>, user_id: Option<&str>, ip: Option<String>, purpose: &str, reason: String) {
    let actor = match user_id {
        Some(id) => Actor::user(id, ip),
        None => Actor {
            id: "anonymous".to_owned(),
            ip,
        },
    };
    tracing::info!(purpose, %reason, "webauthn ceremony refused");
    if let Err(error) = audit::record_now(
        c.db,
        c.now,
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

/// The browser's answer to a ceremony; a malformed one is refused, and audited.
async fn answer<T: serde::de::DeserializeOwned>(
    c: Ceremony<'_>,
    user_id: Option<&str>,
    ip: &Option<String>,
    purpose: &str,
    response: &str,
) -> Result<T, PasskeyError> {
    match serde_json::from_str(response) {
        Ok(answer) => Ok(answer),
        Err(e) => {
            refused(c, user_id, ip.clone(), purpose, format!("malformed response: {e}")).await;
            Err(PasskeyError::Rejected)
        }
    }
}

/// Sensitive changes need a sign-in within `session::RECENT_AUTH_SECS` of `now`.
fn require_recent(auth_time: i64, now: i64) -> Result<(), PasskeyError> {
    crate::authn::session::require_recent(auth_time, now).map_err(|_| PasskeyError::ReauthenticationRequired)
}

/// Starts registering a new credential for a person who signed in recently.
/// Existing credentials are excluded so one authenticator is not added twice.
pub async fn start_registration(c: Ceremony<'_>, user: &UserRow, auth_time: i64) -> Result<Started, PasskeyError> {
    require_recent(auth_time, c.now)?;
    let id = user.id.clone();
    let (handle, existing) =
        c.db.run(move |conn| Ok((store::user_handle(conn, &id)?, store::list(conn, &id)?)))
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
    let (options, registration) = relying(&c)?
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
    open(c, REGISTER, Some(user.id.clone()), &saved, &options).await
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
    c: Ceremony<'_>,
    user: &UserRow,
    auth_time: i64,
    token: &str,
    name: &str,
    response: &str,
    ip: Option<String>,
) -> Result<CredentialRow, PasskeyError> {
    let name = parse_name(name)?;
    require_recent(auth_time, c.now)?;
    let ceremony = take(c, token, REGISTER).await?;
    if ceremony.user_id.as_deref() != Some(user.id.as_str()) {
        return Err(PasskeyError::CeremonyExpired);
    }
    let saved: Value = from_json(&ceremony.state)?;
    let handle = saved["handle"].as_str().unwrap_or_default().to_owned();
    let registration: PasskeyRegistration =
        serde_json::from_value(saved["registration"].clone()).map_err(|e| PasskeyError::Internal(e.into()))?;
    let credential: RegisterPublicKeyCredential = answer(c, Some(&user.id), &ip, REGISTER, response).await?;
    let passkey = match relying(&c)?.finish_passkey_registration(&credential, &registration) {
        Ok(p) => p,
        Err(e) => {
            refused(c, Some(&user.id), ip, REGISTER, format!("{e:?}")).await;
            return Err(PasskeyError::Rejected);
        }
    };
    let now = c.now;
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
    c.db.transaction(move |conn| {
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
pub async fn list(db: &Db, user_id: &str) -> Result<Vec<CredentialRow>, DbError> {
    let id = user_id.to_owned();
    db.run(move |conn| store::list(conn, &id)).await
}

pub fn count(conn: &mut AnyConnection, user_id: &str) -> Result<i64, DbError> {
    store::count(conn, user_id)
}

/// Starts the second step of a sign-in with one of the person's credentials.
pub async fn start_second_factor(c: Ceremony<'_>, user_id: &str) -> Result<Started, PasskeyError> {
    let passkeys = list(c.db, user_id)
        .await?
        .iter()
        .filter_map(|c| from_json::<Passkey>(&c.passkey).ok())
        .collect::<Vec<_>>();
    if passkeys.is_empty() {
        return Err(PasskeyError::NoCredentials);
    }
    let (options, authentication) = relying(&c)?
        .start_passkey_authentication(&passkeys)
        .map_err(|e| PasskeyError::Internal(anyhow::anyhow!("starting an authentication: {e}")))?;
    open(c, SECOND_FACTOR, Some(user_id.to_owned()), &authentication, &options).await
}

/// Verifies the second step for `user_id` (the person whose password passed).
pub async fn finish_second_factor(
    c: Ceremony<'_>,
    user_id: &str,
    token: &str,
    response: &str,
    ip: Option<String>,
) -> Result<Used, PasskeyError> {
    let ceremony = take(c, token, SECOND_FACTOR).await?;
    if ceremony.user_id.as_deref() != Some(user_id) {
        return Err(PasskeyError::CeremonyExpired);
    }
    let authentication: PasskeyAuthentication = from_json(&ceremony.state)?;
    let credential: PublicKeyCredential = answer(c, Some(user_id), &ip, SECOND_FACTOR, response).await?;
    let stored = credential_row(c.db, credential.get_credential_id()).await?;
    let Some(stored) = stored.filter(|row| row.user_id == user_id) else {
        refused(
            c,
            Some(user_id),
            ip,
            SECOND_FACTOR,
            "credential not registered to this account".into(),
        )
        .await;
        return Err(PasskeyError::UnknownCredential);
    };
    match relying(&c)?.finish_passkey_authentication(&credential, &authentication) {
        Ok(result) => record_use(c, stored, &result, SECOND_FACTOR, ip).await,
        Err(e) => {
            refused(c, Some(user_id), ip, SECOND_FACTOR, format!("{e:?}")).await;
            Err(PasskeyError::Rejected)
        }
    }
}

async fn credential_row(db: &Db, raw_id: &[u8]) -> Result<Option<CredentialRow>, DbError> {
    let id = b64(raw_id);
    db.run(move |conn| store::find_by_credential_id(conn, &id)).await
}

/// Stores the new signature counter (compare-and-swap on the stored state, so two
/// concurrent assertions cannot both advance from the same counter) and audits.
async fn record_use(
    c: Ceremony<'_>,
    stored: CredentialRow,
    result: &webauthn_rs::prelude::AuthenticationResult,
    purpose: &'static str,
    ip: Option<String>,
) -> Result<Used, PasskeyError> {
    let mut passkey: Passkey = from_json(&stored.passkey)?;
    passkey.update_credential(result);
    let updated = to_json(&passkey)?;
    let now = c.now;
    let actor = Actor::user(&stored.user_id, ip.clone());
    let row = stored.clone();
    let accepted =
        c.db.transaction(move |conn| {
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
            c,
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
pub async fn start_passwordless(c: Ceremony<'_>) -> Result<Started, PasskeyError> {
    let (mut options, authentication) = relying(&c)?
        .start_discoverable_authentication()
        .map_err(|e| PasskeyError::Internal(anyhow::anyhow!("starting a discoverable authentication: {e}")))?;
    // A button press asks with the browser's own dialog, not autofill (conditional) mediation.
    options.mediation = None;
    open(c, PASSWORDLESS, None, &authentication, &options).await
}

/// Finishes a passwordless sign-in: the passkey names its account (user handle).
pub async fn finish_passwordless(
    c: Ceremony<'_>,
    token: &str,
    response: &str,
    ip: Option<String>,
) -> Result<(UserRow, Used), PasskeyError> {
    let ceremony = take(c, token, PASSWORDLESS).await?;
    let authentication: DiscoverableAuthentication = from_json(&ceremony.state)?;
    let credential: PublicKeyCredential = answer(c, None, &ip, PASSWORDLESS, response).await?;
    let (handle, raw_id) = match relying(&c)?.identify_discoverable_authentication(&credential) {
        Ok(found) => found,
        Err(e) => {
            refused(c, None, ip, PASSWORDLESS, format!("{e:?}")).await;
            return Err(PasskeyError::Rejected);
        }
    };
    let stored = credential_row(c.db, raw_id)
        .await?
        .filter(|row| Uuid::parse_str(&row.user_handle).ok() == Some(handle));
    let Some(stored) = stored else {
        refused(c, None, ip, PASSWORDLESS, "unknown credential or user handle".into()).await;
        return Err(PasskeyError::UnknownCredential);
    };
    let passkey: Passkey = from_json(&stored.passkey)?;
    match relying(&c)?.finish_discoverable_authentication_v2(&credential, authentication, &passkey) {
        Ok(result) => {
            let user_id = stored.user_id.clone();
            let used = record_use(c, stored, &result, PASSWORDLESS, ip).await?;
            let user =
                c.db.run(move |conn| users::find_by_id(conn, &user_id))
                    .await?
                    .ok_or(PasskeyError::UnknownCredential)?;
            if user.disabled {
                return Err(PasskeyError::UnknownCredential);
            }
            Ok((user, used))
        }
        Err(e) => {
            refused(c, Some(&stored.user_id), ip, PASSWORDLESS, format!("{e:?}")).await;
            Err(PasskeyError::Rejected)
        }
    }
}

/// Renames one of the person's credentials.
pub async fn rename(db: &Db, user_id: &str, id: &str, name: &str) -> Result<(), PasskeyError> {
    let name = parse_name(name)?;
    let (user, id) = (user_id.to_owned(), id.to_owned());
    if db.run(move |conn| store::rename(conn, &user, &id, &name)).await? {
        Ok(())
    } else {
        Err(PasskeyError::NotFound)
    }
}

/// Looks up one of the person's credentials (for the delete confirmation).
pub async fn find(db: &Db, user_id: &str, id: &str) -> Result<CredentialRow, PasskeyError> {
    list(db, user_id)
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
    db: &Db,
    now: i64,
    user_id: &str,
    id: &str,
    session_id: &str,
    auth_time: i64,
    ip: Option<String>,
) -> Result<(), PasskeyError> {
    require_recent(auth_time, now)?;
    let (user, id, keep) = (user_id.to_owned(), id.to_owned(), session_id.to_owned());
    let actor = Actor::user(user_id, ip);
    let deleted = db
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

/// The allowed origin of `rp`, for tests and diagnostics.
pub fn origin(rp: &Webauthn) -> Option<Url> {
    rp.get_allowed_origins().first().cloned()
}

#[cfg(test)]
mod tests {
    use webauthn_rs::prelude::WebauthnBuilder;

    use super::*;
    use crate::authn::session::RECENT_AUTH_SECS;
    use crate::db::testing::TestDb;

    const NOW: i64 = 1_800_000_000;

    fn relying_party() -> Webauthn {
        let origin = Url::parse("https://idp.example").unwrap();
        WebauthnBuilder::new("idp.example", &origin).unwrap().build().unwrap()
    }

    fn at<'a>(t: &'a TestDb, rp: Option<&'a Webauthn>, now: i64) -> Ceremony<'a> {
        Ceremony { db: &t.db, rp, now }
    }

    #[tokio::test]
    async fn with_the_relying_party_off_every_ceremony_is_refused() {
        let t = TestDb::new().await;
        let alice = t.user("alice", NOW).await;
        let off = at(&t, None, NOW);
        assert!(matches!(start_passwordless(off).await, Err(PasskeyError::Disabled)));
        let registration = start_registration(off, &alice, NOW).await;
        assert!(matches!(registration, Err(PasskeyError::Disabled)));
        // An old sign-in is asked to sign in again first, and a person without
        // credentials is told so, whether or not the relying party is on.
        let stale = start_registration(off, &alice, NOW - RECENT_AUTH_SECS - 1).await;
        assert!(matches!(stale, Err(PasskeyError::ReauthenticationRequired)));
        let second = start_second_factor(off, &alice.id).await;
        assert!(matches!(second, Err(PasskeyError::NoCredentials)));
        let finished = finish_passwordless(off, "no such ceremony", "{}", None).await;
        assert!(matches!(finished, Err(PasskeyError::CeremonyExpired)));
    }

    #[tokio::test]
    async fn a_ceremony_is_answered_at_most_once_and_refusals_are_audited() {
        let (t, rp) = (TestDb::new().await, relying_party());
        let started = start_passwordless(at(&t, Some(&rp), NOW)).await.unwrap();
        assert!(started.options["publicKey"]["challenge"].is_string());
        let ip = Some("192.0.2.1".to_owned());
        let answer = finish_passwordless(at(&t, Some(&rp), NOW + 1), &started.token, "{}", ip.clone()).await;
        assert!(matches!(answer, Err(PasskeyError::Rejected)), "{:?}", answer.err());
        let refusals = t.events("mfa.webauthn.failure").await;
        assert_eq!(refusals.len(), 1);
        assert_eq!((refusals[0].actor.as_str(), &refusals[0].ip), ("anonymous", &ip));
        assert!(refusals[0].details.contains("passwordless"));

        let again = finish_passwordless(at(&t, Some(&rp), NOW + 2), &started.token, "{}", None).await;
        assert!(matches!(again, Err(PasskeyError::CeremonyExpired)), "{:?}", again.err());
        assert_eq!(t.events("mfa.webauthn.failure").await.len(), 1);
    }

    #[tokio::test]
    async fn a_ceremony_expires_and_serves_only_its_own_purpose() {
        let (t, rp) = (TestDb::new().await, relying_party());
        let alice = t.user("alice", NOW).await;
        let started = start_passwordless(at(&t, Some(&rp), NOW)).await.unwrap();
        let late = at(&t, Some(&rp), NOW + CEREMONY_TTL_SECS);
        let expired = finish_passwordless(late, &started.token, "{}", None).await;
        assert!(
            matches!(expired, Err(PasskeyError::CeremonyExpired)),
            "{:?}",
            expired.err()
        );

        let started = start_passwordless(at(&t, Some(&rp), NOW)).await.unwrap();
        let other = finish_second_factor(at(&t, Some(&rp), NOW), &alice.id, &started.token, "{}", None).await;
        assert!(matches!(other, Err(PasskeyError::CeremonyExpired)), "{:?}", other.err());
        let spent = finish_passwordless(at(&t, Some(&rp), NOW), &started.token, "{}", None).await;
        assert!(
            matches!(spent, Err(PasskeyError::CeremonyExpired)),
            "taken by the wrong use"
        );
        assert!(t.events("mfa.webauthn.failure").await.is_empty());
    }

    #[tokio::test]
    async fn a_registration_belongs_to_the_person_who_started_it() {
        let (t, rp) = (TestDb::new().await, relying_party());
        let (alice, bob) = (t.user("alice", NOW).await, t.user("bob", NOW).await);
        let on = at(&t, Some(&rp), NOW);
        let started = start_registration(on, &alice, NOW).await.unwrap();
        let selection = &started.options["publicKey"]["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required");
        assert_eq!(selection["userVerification"], "required");
        let stolen = finish_registration(on, &bob, NOW, &started.token, "key", "{}", None).await;
        assert!(
            matches!(stolen, Err(PasskeyError::CeremonyExpired)),
            "{:?}",
            stolen.err()
        );
        let spent = finish_registration(on, &alice, NOW, &started.token, "key", "{}", None).await;
        assert!(matches!(spent, Err(PasskeyError::CeremonyExpired)), "{:?}", spent.err());

        // A bad name is refused before the ceremony is used up; a malformed answer is audited.
        let started = start_registration(on, &alice, NOW).await.unwrap();
        let unnamed = finish_registration(on, &alice, NOW, &started.token, "  ", "{}", None).await;
        assert!(matches!(unnamed, Err(PasskeyError::InvalidName)), "{:?}", unnamed.err());
        let malformed = finish_registration(on, &alice, NOW, &started.token, "key", "not json", None).await;
        assert!(
            matches!(malformed, Err(PasskeyError::Rejected)),
            "{:?}",
            malformed.err()
        );
        let refusals = t.events("mfa.webauthn.failure").await;
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].actor, format!("user:{}", alice.id));
        assert!(list(&t.db, &alice.id).await.unwrap().is_empty());
    }

    #[test]
    fn credential_names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Work key ").unwrap(), "Work key");
        assert_eq!(parse_name(&"k".repeat(MAX_NAME_CHARS)).unwrap().len(), MAX_NAME_CHARS);
        for bad in ["", "   ", "tab\there", &"k".repeat(MAX_NAME_CHARS + 1)] {
            assert!(matches!(parse_name(bad), Err(PasskeyError::InvalidName)), "{bad:?}");
        }
    }
}
