//! Second factors: TOTP (RFC 6238, SHA-1, 6 digits, 30 s, ±1 step; secrets of
//! 160 bits sealed at rest; each time step accepted once) and single-use
//! recovery codes; wrong codes limited per account (a few a minute, and a
//! consecutive-failure counter with exponential delay and lockout, reserved in
//! the database before each check); the pending second step of a
//! sign-in (`mfa_challenges`); the "recent authentication" rule for sensitive
//! changes.

use qrcode::QrCode;
use qrcode::render::svg;
use rand::RngCore;
use serde_json::json;
use totp_rs::{Algorithm, Secret, Totp};

use crate::audit::{self, Actor};
use crate::authn::risk;
use crate::crypto;
use crate::db::models::mfa::{self, ChallengeRow, TotpRow};
use crate::db::models::users::UserRow;
use crate::db::{AnyConnection, DbError};
use crate::metrics::Metrics;
use crate::state::AppState;

/// Records an event the person caused about their own account.
fn own_event(
    conn: &mut AnyConnection,
    user_id: &str,
    action: &str,
    details: serde_json::Value,
    now: i64,
) -> Result<(), DbError> {
    audit::record(
        conn,
        &Actor::user(user_id, None),
        action,
        Some(&format!("user:{user_id}")),
        details,
        now,
    )
}

/// Wrong codes allowed per account per `FAILURE_WINDOW_SECS` while setting up an app.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW_SECS: i64 = 60;
/// How long the second step of a sign-in may take.
pub const CHALLENGE_TTL_SECS: i64 = 300;
pub const RECOVERY_CODES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("the code is not correct")]
    InvalidCode,
    #[error("too many wrong codes; wait {wait_secs} seconds")]
    TooManyAttempts { wait_secs: i64 },
    /// NIST SP 800-63B §5.2.2: too many consecutive failures; an administrator
    /// (or, for authenticator-app codes, a recovery code or a security key) unlocks.
    #[error("too many wrong codes: the second step is locked")]
    Locked,
    #[error("two-step verification is already turned on")]
    AlreadyEnrolled,
    #[error("no authenticator app is being set up")]
    NotEnrolling,
    #[error("confirm it is you: sign in again")]
    ReauthenticationRequired,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn totp(secret: Vec<u8>, account: &str, issuer: &str) -> Result<Totp, MfaError> {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::from(secret))
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| MfaError::Internal(anyhow::anyhow!("totp: {e:?}")))
}

fn issuer_label(state: &AppState) -> String {
    state
        .config
        .issuer_url()
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "oxidp".to_owned())
}

fn seal_key(state: &AppState) -> [u8; 32] {
    state.secrets.derive_key("totp")
}

/// What the enrolment page shows.
pub struct Enrolment {
    /// Base32, for manual entry.
    pub secret: String,
    pub otpauth_url: String,
    /// An inline SVG QR code of `otpauth_url` (rendered here, no third party).
    pub qr_svg: String,
}

/// Starts (or restarts) setting up an authenticator app: a new 160-bit secret,
/// stored sealed and unconfirmed until a valid code comes back.
pub async fn start_enrolment(state: &AppState, user: &UserRow) -> Result<Enrolment, MfaError> {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let sealed = crypto::seal(&seal_key(state), &bytes, &user.id)?;
    let row = TotpRow {
        user_id: user.id.clone(),
        secret: sealed,
        confirmed_at: None,
        last_step: -1,
        created_at: state.clock.now(),
    };
    if !state
        .db
        .transaction(move |conn| mfa::put_pending_totp(conn, &row))
        .await?
    {
        return Err(MfaError::AlreadyEnrolled);
    }
    enrolment(state, user, bytes.to_vec())
}

/// The enrolment in progress (after a wrong first code), shown again.
pub async fn pending_enrolment(state: &AppState, user: &UserRow) -> Result<Enrolment, MfaError> {
    let id = user.id.clone();
    let row = state
        .db
        .run(move |conn| mfa::find_totp(conn, &id))
        .await?
        .filter(|r| r.confirmed_at.is_none())
        .ok_or(MfaError::NotEnrolling)?;
    let secret = crypto::open(&seal_key(state), &row.secret, &user.id)?;
    enrolment(state, user, secret)
}

fn enrolment(state: &AppState, user: &UserRow, bytes: Vec<u8>) -> Result<Enrolment, MfaError> {
    let t = totp(bytes.clone(), &user.username, &issuer_label(state))?;
    let otpauth_url = t
        .to_url()
        .map_err(|e| MfaError::Internal(anyhow::anyhow!("otpauth: {e:?}")))?;
    let secret = Secret::from(bytes).to_base32();
    let qr = QrCode::new(otpauth_url.as_bytes()).map_err(|e| MfaError::Internal(anyhow::anyhow!("qr: {e}")))?;
    let qr_svg = qr
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Ok(Enrolment {
        secret,
        otpauth_url,
        qr_svg,
    })
}

fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

fn recovery_hash(user_id: &str, code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    crypto::sha256_hex(&format!("{user_id}:{normalized}"))
}

fn new_recovery_codes(conn: &mut AnyConnection, user_id: &str, now: i64) -> Result<Vec<String>, DbError> {
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
    let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(user_id, c)).collect();
    mfa::replace_recovery_codes(conn, user_id, &hashes, now)?;
    Ok(codes)
}

fn current_step(state: &AppState, t: &Totp, code: &str) -> Option<i64> {
    let now = state.clock.now().max(0) as u64;
    t.check(code.trim(), now).map(|step| step as i64)
}

fn load_totp(state: &AppState, row: &TotpRow, user: &UserRow) -> Result<Totp, MfaError> {
    let secret = crypto::open(&seal_key(state), &row.secret, &user.id)?;
    totp(secret, &user.username, &issuer_label(state))
}

/// Counts a wrong code while setting up the app; refuses while `MAX_FAILURES`
/// happened in the window. (The second step of a sign-in has its exact counter.)
fn rate_check(conn: &mut AnyConnection, user_id: &str, now: i64) -> Result<Option<i64>, DbError> {
    let recent = mfa::failures_since(conn, user_id, now - FAILURE_WINDOW_SECS)?;
    Ok((recent.len() >= MAX_FAILURES).then(|| (recent[0] + FAILURE_WINDOW_SECS - now).max(1)))
}

/// Confirms the app with a first code; returns the recovery codes, shown once.
pub async fn confirm_enrolment(state: &AppState, user: &UserRow, code: &str) -> Result<Vec<String>, MfaError> {
    let id = user.id.clone();
    let row = state
        .db
        .run(move |conn| mfa::find_totp(conn, &id))
        .await?
        .filter(|r| r.confirmed_at.is_none())
        .ok_or(MfaError::NotEnrolling)?;
    let t = load_totp(state, &row, user)?;
    let step = current_step(state, &t, code);
    let now = state.clock.now();
    let id = user.id.clone();
    state
        .db
        .transaction(move |conn| {
            if let Some(wait) = rate_check(conn, &id, now)? {
                return Ok(Err(MfaError::TooManyAttempts { wait_secs: wait }));
            }
            let Some(step) = step else {
                mfa::add_failure(conn, &id, now)?;
                return Ok(Err(MfaError::InvalidCode));
            };
            if !mfa::claim_step(conn, &id, step, Some(now))? {
                mfa::add_failure(conn, &id, now)?;
                return Ok(Err(MfaError::InvalidCode));
            }
            let codes = new_recovery_codes(conn, &id, now)?;
            own_event(conn, &id, "mfa.totp.enable", json!({}), now)?;
            Ok(Ok(codes))
        })
        .await?
}

/// Which second factor a code proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    RecoveryCode { remaining: i64 },
}

/// Consecutive failed second steps after which even recovery codes are refused
/// (NIST SP 800-63B §5.2.2: at most 100 for every authenticator); TOTP codes stop
/// earlier, at `login.second_step_lockout_after`.
pub const RECOVERY_LOCKOUT: i64 = 100;

/// Checks a TOTP code (each time step once) or a recovery code (each once).
///
/// The check is first reserved on the account's consecutive-failure counter
/// (counted as a failure in advance by one conditional `UPDATE`, exact under
/// concurrency and across instances): refused during the exponential delay that
/// starts after `login.second_step_delay_after` failures, refused for TOTP codes
/// from `login.second_step_lockout_after` failures and for recovery codes from
/// `RECOVERY_LOCKOUT`. A code that passes clears the counter, delay and lock.
pub async fn verify(state: &AppState, user: &UserRow, code: &str) -> Result<Proof, MfaError> {
    let id = user.id.clone();
    let row = state
        .db
        .run(move |conn| mfa::find_totp(conn, &id))
        .await?
        .filter(|r| r.confirmed_at.is_some())
        .ok_or(MfaError::InvalidCode)?;
    let t = load_totp(state, &row, user)?;
    let looks_like_recovery = code.trim().len() > 8;
    let now = state.clock.now();
    let reserved = match reserve(state, &user.id, looks_like_recovery, now).await? {
        Ok(row) => row,
        Err(refusal) => {
            Metrics::inc(&state.metrics.second_step_refused);
            return Err(refusal);
        }
    };
    Metrics::inc(&state.metrics.second_step_checks);
    let step = if looks_like_recovery {
        None
    } else {
        current_step(state, &t, code)
    };
    let recovery = looks_like_recovery.then(|| recovery_hash(&user.id, code));
    let id = user.id.clone();
    let lockout_after = state.config.login.second_step_lockout_after;
    state
        .db
        .transaction(move |conn| {
            if let Some(hash) = recovery {
                if mfa::use_recovery_code(conn, &id, &hash, now)? {
                    mfa::reserved_check_passed(conn, &id)?;
                    let remaining = mfa::remaining_recovery_codes(conn, &id)?;
                    own_event(
                        conn,
                        &id,
                        "mfa.recovery_code.used",
                        json!({ "remaining": remaining }),
                        now,
                    )?;
                    return Ok(Ok(Proof::RecoveryCode { remaining }));
                }
            } else if let Some(step) = step
                && mfa::claim_step(conn, &id, step, None)?
            {
                mfa::reserved_check_passed(conn, &id)?;
                return Ok(Ok(Proof::Totp));
            }
            // The reservation already counted this failure.
            mfa::add_failure(conn, &id, now)?;
            own_event(conn, &id, "mfa.failure", json!({ "failures": reserved.failures }), now)?;
            if mfa::lock(conn, &id, lockout_after, now)? {
                audit::record(
                    conn,
                    &Actor::system(),
                    "mfa.lockout",
                    Some(&format!("user:{id}")),
                    json!({ "failures": reserved.failures }),
                    now,
                )?;
            }
            Ok(Err(MfaError::InvalidCode))
        })
        .await?
}

/// Reserves one second-step check (see `verify`), setting the delay that
/// follows if it fails; `Err` with the refusal when it may not be checked now.
async fn reserve(
    state: &AppState,
    user_id: &str,
    recovery: bool,
    now: i64,
) -> Result<Result<mfa::MfaThrottleRow, MfaError>, DbError> {
    let config = state.config.login.clone();
    let limit = if recovery {
        RECOVERY_LOCKOUT
    } else {
        config.second_step_lockout_after
    };
    let id = user_id.to_owned();
    state.db.run(move |conn| mfa::ensure_throttle(conn, &id)).await?;
    let id = user_id.to_owned();
    state
        .db
        .transaction(move |conn| {
            let Some(row) = mfa::reserve(conn, &id, now, limit)? else {
                mfa::note_refused(conn, &id)?;
                let row = mfa::find_throttle(conn, &id)?.ok_or(DbError::NotFound)?;
                return Ok(Err(if row.failures >= limit {
                    MfaError::Locked
                } else {
                    MfaError::TooManyAttempts {
                        wait_secs: (row.delay_until - now).max(1),
                    }
                }));
            };
            let delay = risk::backoff(row.failures, config.second_step_delay_after, config.delay_max_secs);
            let delay_until = if delay > 0 { now + delay } else { 0 };
            mfa::set_penalty(conn, &id, delay_until, row.locked_at)?;
            Ok(Ok(row))
        })
        .await
}

/// A sign-in (or step-up) completed its second step, by any factor: the
/// counter, delay and lock are over, and the failures since the previous sign-in
/// become what `/account` reports.
pub async fn second_step_passed(state: &AppState, user_id: &str) -> Result<(), DbError> {
    let id = user_id.to_owned();
    state.db.run(move |conn| mfa::signed_in(conn, &id)).await
}

/// Failed second-step attempts between the person's previous sign-in and now.
pub async fn failures_since_last_sign_in(state: &AppState, user_id: &str) -> Result<i64, DbError> {
    let id = user_id.to_owned();
    Ok(state
        .db
        .run(move |conn| mfa::find_throttle(conn, &id))
        .await?
        .map_or(0, |t| t.before_sign_in + t.since_sign_in))
}

/// True when the person has a confirmed second factor (an authenticator app or
/// at least one security key or passkey).
pub async fn is_enrolled(state: &AppState, user_id: &str) -> Result<bool, DbError> {
    let factors = factors(state, user_id).await?;
    Ok(factors.totp || factors.webauthn > 0)
}

/// The second factors a person has set up.
#[derive(Debug, Clone, Copy)]
pub struct Factors {
    pub totp: bool,
    /// Number of security keys and passkeys.
    pub webauthn: i64,
    /// Unused recovery codes (issued with the authenticator app).
    pub recovery_codes: i64,
}

pub async fn factors(state: &AppState, user_id: &str) -> Result<Factors, DbError> {
    let id = user_id.to_owned();
    state
        .db
        .run(move |conn| {
            Ok(Factors {
                totp: mfa::find_totp(conn, &id)?.is_some_and(|r| r.confirmed_at.is_some()),
                webauthn: crate::authn::webauthn::count(conn, &id)?,
                recovery_codes: mfa::remaining_recovery_codes(conn, &id)?,
            })
        })
        .await
}

/// The account page's view: enabled, and recovery codes left.
pub async fn status(state: &AppState, user_id: &str) -> Result<(bool, i64), DbError> {
    let id = user_id.to_owned();
    state
        .db
        .run(move |conn| {
            let on = mfa::find_totp(conn, &id)?.is_some_and(|r| r.confirmed_at.is_some());
            Ok((on, mfa::remaining_recovery_codes(conn, &id)?))
        })
        .await
}

/// Sensitive changes need a recent sign-in (`session::require_recent`).
pub fn require_recent(state: &AppState, auth_time: i64) -> Result<(), MfaError> {
    crate::authn::session::require_recent(auth_time, state.clock.now()).map_err(|_| MfaError::ReauthenticationRequired)
}

/// Turns TOTP off (and drops the recovery codes). Needs a recent authentication.
/// A removed factor is a credential change: every other session of the person
/// ends and every refresh token of theirs is revoked (ASVS 5 V7.4.3), in the same
/// transaction; `session_id` (the browser that asked) stays signed in.
pub async fn disable(state: &AppState, user_id: &str, session_id: &str, auth_time: i64) -> Result<(), MfaError> {
    require_recent(state, auth_time)?;
    let now = state.clock.now();
    let (id, keep) = (user_id.to_owned(), session_id.to_owned());
    state
        .db
        .transaction(move |conn| {
            mfa::delete_totp(conn, &id)?;
            mfa::delete_recovery_codes(conn, &id)?;
            let revoked = crate::authn::session::revoke_all_in(conn, &id, Some(&keep), now)?;
            own_event(conn, &id, "mfa.totp.disable", json!(revoked), now)
        })
        .await?;
    Ok(())
}

/// New recovery codes (the old ones stop working). Needs a recent authentication.
pub async fn regenerate_codes(state: &AppState, user_id: &str, auth_time: i64) -> Result<Vec<String>, MfaError> {
    require_recent(state, auth_time)?;
    if !is_enrolled(state, user_id).await? {
        return Err(MfaError::NotEnrolling);
    }
    let now = state.clock.now();
    let id = user_id.to_owned();
    Ok(state
        .db
        .transaction(move |conn| {
            let codes = new_recovery_codes(conn, &id, now)?;
            own_event(conn, &id, "mfa.recovery_codes.regenerate", json!({}), now)?;
            Ok(codes)
        })
        .await?)
}

/// Opens the second step of a sign-in: returns the token for the `oxidp_mfa` cookie.
pub async fn open_challenge(
    state: &AppState,
    user_id: &str,
    amr: &str,
    device_id: Option<String>,
    return_to: &str,
) -> Result<String, DbError> {
    let token = crypto::random_token();
    let now = state.clock.now();
    let row = ChallengeRow {
        token_hash: crypto::sha256_hex(&token),
        user_id: user_id.to_owned(),
        amr: amr.to_owned(),
        device_id,
        return_to: return_to.to_owned(),
        created_at: now,
        expires_at: now + CHALLENGE_TTL_SECS,
    };
    state.db.run(move |conn| mfa::insert_challenge(conn, &row)).await?;
    Ok(token)
}

/// The pending second step for a cookie token, if still valid.
pub async fn find_challenge(state: &AppState, token: &str) -> Result<Option<ChallengeRow>, DbError> {
    let hash = crypto::sha256_hex(token);
    let now = state.clock.now();
    Ok(state
        .db
        .run(move |conn| mfa::find_challenge(conn, &hash))
        .await?
        .filter(|c| c.expires_at > now))
}

pub async fn close_challenge(state: &AppState, token: &str) -> Result<(), DbError> {
    let hash = crypto::sha256_hex(token);
    state.db.run(move |conn| mfa::delete_challenge(conn, &hash)).await?;
    Ok(())
}
