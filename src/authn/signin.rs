//! The sign-in flow around the factors, as decisions the HTTP layer only renders:
//! after the password, a second step (when one is set up) or a new session; the
//! pending second step of this browser; completing it with a code or a security
//! key, which starts a new session whose `amr` adds the method and `mfa` (and so
//! reaches the MFA `acr`, see `oauth::authorize::acr_for`); a step-up for a
//! signed-in person; passwordless sign-in with a passkey. No actix types: cookies
//! and redirects are `http::pages`' job.

use crate::accounts::{self, AccountError};
use crate::authn::login;
use crate::authn::mfa::{self, MfaError, Proof};
use crate::authn::session::{self, Authenticated, Origin, SessionToken};
use crate::authn::webauthn::{self, PasskeyError, Started};
use crate::db::DbError;
use crate::db::models::mfa::ChallengeRow;
use crate::db::models::users::UserRow;
use crate::state::AppState;

/// RFC 8176 `amr` of a password.
pub const PASSWORD: &str = "pwd";
/// RFC 8176 `amr` of a one-time code from an authenticator app.
pub const OTP: &str = "otp";
/// RFC 8176 `amr` of multiple factors.
pub const MFA: &str = "mfa";

/// A session that just started, and what the browser gets with it.
pub struct NewSession {
    /// The session cookie's value.
    pub token: SessionToken,
    /// The device id for the known-device cookie, when the password was checked.
    pub device_id: Option<String>,
    /// Where the sign-in started (a same-site path).
    pub return_to: String,
}

/// What follows a correct password.
pub enum AfterPassword {
    /// A second factor is set up: the token of the pending second step (the
    /// `oxidp_mfa` cookie); no session yet.
    SecondStep {
        challenge: String,
    },
    SignedIn(NewSession),
}

/// After the password: an enrolled second factor is always asked (the session
/// starts after it); otherwise the session starts now, replacing `previous`.
pub async fn after_password(
    state: &AppState,
    signed_in: login::SignedIn,
    return_to: &str,
    origin: Origin,
    previous: Option<SessionToken>,
) -> Result<AfterPassword, DbError> {
    let login::SignedIn { user, device_id } = signed_in;
    if mfa::is_enrolled(&state.db, &user.id).await? {
        let challenge = mfa::open_challenge(
            &state.db,
            state.clock.now(),
            &user.id,
            PASSWORD,
            Some(device_id),
            return_to,
        )
        .await?;
        return Ok(AfterPassword::SecondStep { challenge });
    }
    let (token, _) = session::start(state, &user, &[PASSWORD], origin, previous).await?;
    tracing::info!(user_id = %user.id, "signed in");
    Ok(AfterPassword::SignedIn(NewSession {
        token,
        device_id: Some(device_id),
        return_to: return_to.to_owned(),
    }))
}

/// Opens a step-up for a signed-in person (e.g. `acr_values` asks for MFA): the
/// token of the second step, which keeps the session's methods.
pub async fn step_up(state: &AppState, auth: &Authenticated, return_to: &str) -> Result<String, DbError> {
    mfa::open_challenge(
        &state.db,
        state.clock.now(),
        &auth.user.id,
        &auth.session.amr,
        None,
        return_to,
    )
    .await
}

/// This browser's sign-in waiting for its second step.
pub struct Pending {
    /// The `oxidp_mfa` cookie's value.
    pub token: String,
    pub challenge: ChallengeRow,
    pub user: UserRow,
}

/// The state of the second step a browser's cookie points at.
pub enum SecondStep {
    Pending(Box<Pending>),
    /// No cookie, or the account was disabled meanwhile (the challenge is closed).
    None,
    /// Too much time passed, or it was completed already.
    Expired,
}

/// The pending second step for the cookie `token`, if any.
pub async fn pending(state: &AppState, token: Option<String>) -> Result<SecondStep, AccountError> {
    let Some(token) = token else {
        return Ok(SecondStep::None);
    };
    let Some(challenge) = mfa::find_challenge(&state.db, state.clock.now(), &token).await? else {
        return Ok(SecondStep::Expired);
    };
    let user = accounts::find(state, &challenge.user_id).await?;
    if user.disabled {
        mfa::close_challenge(&state.db, &token).await?;
        return Ok(SecondStep::None);
    }
    Ok(SecondStep::Pending(Box::new(Pending { token, challenge, user })))
}

/// The second step with a code (authenticator app or recovery code).
pub async fn second_step_with_code(
    state: &AppState,
    pending: &Pending,
    code: &str,
    origin: Origin,
    previous: Option<SessionToken>,
) -> Result<NewSession, MfaError> {
    let proof = mfa::verify(
        &state.db,
        &state.secrets,
        &state.config,
        &state.metrics,
        state.clock.now(),
        &pending.user,
        code,
    )
    .await?;
    let method = (proof == Proof::Totp).then_some(OTP);
    Ok(complete_second_step(state, pending, method, origin, previous).await?)
}

/// Starts the second step with a security key or passkey for the pending
/// sign-in of the cookie `token`: `None` when there is none, or it expired.
pub async fn start_second_step_with_key(
    state: &AppState,
    token: Option<&str>,
) -> Result<Option<Started>, PasskeyError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let Some(challenge) = mfa::find_challenge(&state.db, state.clock.now(), token).await? else {
        return Ok(None);
    };
    Ok(Some(
        webauthn::start_second_factor(state.webauthn_ceremony(), &challenge.user_id).await?,
    ))
}

/// The second step with a security key or passkey (`ceremony`: the
/// `oxidp_webauthn` cookie, `credential`: the browser's answer).
pub async fn second_step_with_key(
    state: &AppState,
    pending: &Pending,
    ceremony: &str,
    credential: &str,
    origin: Origin,
    previous: Option<SessionToken>,
) -> Result<NewSession, PasskeyError> {
    let used = webauthn::finish_second_factor(
        state.webauthn_ceremony(),
        &pending.user.id,
        ceremony,
        credential,
        origin.ip.clone(),
    )
    .await?;
    Ok(complete_second_step(state, pending, Some(used.key_method), origin, previous).await?)
}

/// The second step passed (`method`: the RFC 8176 value it adds, if any): the
/// challenge closes, the failure counter is cleared, and a new session (new id)
/// starts with `amr` including `mfa`.
async fn complete_second_step(
    state: &AppState,
    pending: &Pending,
    method: Option<&str>,
    origin: Origin,
    previous: Option<SessionToken>,
) -> Result<NewSession, DbError> {
    mfa::close_challenge(&state.db, &pending.token).await?;
    mfa::second_step_passed(&state.db, &pending.user.id).await?;
    let amr = second_step_amr(&pending.challenge.amr, method);
    let (token, _) = session::start(state, &pending.user, &amr, origin, previous).await?;
    tracing::info!(user_id = %pending.user.id, "second factor passed");
    Ok(NewSession {
        token,
        device_id: pending.challenge.device_id.clone(),
        return_to: pending.challenge.return_to.clone(),
    })
}

/// The `amr` of the session a passed second step starts: the methods of the
/// first step (`before`, space-separated), the second step's own method once,
/// then `mfa` once, last.
pub fn second_step_amr<'a>(before: &'a str, method: Option<&'a str>) -> Vec<&'a str> {
    let mut amr: Vec<&str> = before.split(' ').filter(|m| !m.is_empty() && *m != MFA).collect();
    if let Some(method) = method
        && !amr.contains(&method)
    {
        amr.push(method);
    }
    amr.push(MFA);
    amr
}

/// Why a passwordless ceremony did not start.
#[derive(Debug, thiserror::Error)]
pub enum PasswordlessRefused {
    /// Over the per-address sign-in limit: 429 with `Retry-After`.
    #[error("too many sign-in attempts")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    Passkey(#[from] PasskeyError),
}

/// Starts a passwordless sign-in, within the per-address sign-in limit.
pub async fn start_passwordless(state: &AppState, ip: Option<&str>) -> Result<Started, PasswordlessRefused> {
    if let Err(retry_after) = state.limiters.per_ip(ip.unwrap_or("unknown")).await {
        return Err(PasswordlessRefused::RateLimited {
            retry_after: retry_after.max(1),
        });
    }
    Ok(webauthn::start_passwordless(state.webauthn_ceremony()).await?)
}

/// Finishes a passwordless sign-in: the passkey names the account, and the
/// session's `amr` is the key's method, `user` and `mfa`.
pub async fn with_passkey(
    state: &AppState,
    ceremony: &str,
    credential: &str,
    return_to: &str,
    origin: Origin,
    previous: Option<SessionToken>,
) -> Result<NewSession, PasskeyError> {
    let (user, used) =
        webauthn::finish_passwordless(state.webauthn_ceremony(), ceremony, credential, origin.ip.clone()).await?;
    let (token, _) = session::start(state, &user, &used.amr(), origin, previous).await?;
    tracing::info!(user_id = %user.id, "signed in with a passkey");
    Ok(NewSession {
        token,
        device_id: None,
        return_to: return_to.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_after_a_password_is_pwd_otp_mfa() {
        assert_eq!(second_step_amr("pwd", Some(OTP)), ["pwd", "otp", "mfa"]);
    }

    #[test]
    fn a_recovery_code_adds_only_mfa() {
        assert_eq!(second_step_amr("pwd", None), ["pwd", "mfa"]);
    }

    #[test]
    fn a_security_key_adds_its_method() {
        assert_eq!(second_step_amr("pwd", Some("hwk")), ["pwd", "hwk", "mfa"]);
        assert_eq!(second_step_amr("pwd", Some("swk")), ["pwd", "swk", "mfa"]);
    }

    #[test]
    fn a_step_up_keeps_the_session_methods_and_adds_mfa_once() {
        // The challenge of a step-up carries the session's amr, which may already
        // hold the method (a second TOTP step) or `mfa` (never repeated).
        assert_eq!(second_step_amr("pwd otp mfa", Some(OTP)), ["pwd", "otp", "mfa"]);
        assert_eq!(second_step_amr("pwd  mfa", Some("hwk")), ["pwd", "hwk", "mfa"]);
        assert_eq!(second_step_amr("", None), ["mfa"]);
    }

    #[test]
    fn every_completed_second_step_reaches_the_mfa_acr() {
        for (before, method) in [
            ("pwd", Some(OTP)),
            ("pwd", None),
            ("pwd", Some("hwk")),
            ("hwk user", None),
        ] {
            let amr = second_step_amr(before, method).join(" ");
            assert_eq!(
                crate::oauth::authorize::acr_for(&amr),
                crate::oauth::authorize::acr_for("pwd mfa")
            );
            assert_ne!(
                crate::oauth::authorize::acr_for(&amr),
                crate::oauth::authorize::acr_for("pwd")
            );
        }
    }
}
