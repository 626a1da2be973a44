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
use crate::config::{Config, LoginConfig};
use crate::crypto;
use crate::db::models::mfa::{self, ChallengeRow, TotpRow};
use crate::db::models::users::UserRow;
use crate::db::models::webauthn as webauthn_store;
use crate::db::{AnyConnection, Db, DbError};
use crate::metrics::Metrics;
use crate::secrets::ServerSecrets;

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

/// The issuer authenticator apps show: the issuer's host.
fn issuer_label(config: &Config) -> String {
    config
        .issuer_url()
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "oxidp".to_owned())
}

/// The key TOTP secrets are sealed with at rest.
fn seal_key(secrets: &ServerSecrets) -> [u8; 32] {
    secrets.derive_key("totp")
}

/// The person's authenticator app, confirmed (`true`) or being set up (`false`).
async fn stored_totp(db: &Db, user_id: &str, confirmed: bool) -> Result<Option<TotpRow>, DbError> {
    let id = user_id.to_owned();
    Ok(db
        .run(move |conn| mfa::find_totp(conn, &id))
        .await?
        .filter(|r| r.confirmed_at.is_some() == confirmed))
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
pub async fn start_enrolment(
    db: &Db,
    secrets: &ServerSecrets,
    config: &Config,
    now: i64,
    user: &UserRow,
) -> Result<Enrolment, MfaError> {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let sealed = crypto::seal(&seal_key(secrets), &bytes, &user.id)?;
    let row = TotpRow {
        user_id: user.id.clone(),
        secret: sealed,
        confirmed_at: None,
        last_step: -1,
        created_at: now,
    };
    if !db.transaction(move |conn| mfa::put_pending_totp(conn, &row)).await? {
        return Err(MfaError::AlreadyEnrolled);
    }
    enrolment(config, user, bytes.to_vec())
}

/// The enrolment in progress (after a wrong first code), shown again.
pub async fn pending_enrolment(
    db: &Db,
    secrets: &ServerSecrets,
    config: &Config,
    user: &UserRow,
) -> Result<Enrolment, MfaError> {
    let row = stored_totp(db, &user.id, false).await?.ok_or(MfaError::NotEnrolling)?;
    let secret = crypto::open(&seal_key(secrets), &row.secret, &user.id)?;
    enrolment(config, user, secret)
}

fn enrolment(config: &Config, user: &UserRow, bytes: Vec<u8>) -> Result<Enrolment, MfaError> {
    let t = totp(bytes.clone(), &user.username, &issuer_label(config))?;
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

/// The time step `code` is valid for at `now`, if any.
fn current_step(now: i64, t: &Totp, code: &str) -> Option<i64> {
    t.check(code.trim(), now.max(0) as u64).map(|step| step as i64)
}

fn load_totp(secrets: &ServerSecrets, config: &Config, row: &TotpRow, user: &UserRow) -> Result<Totp, MfaError> {
    let secret = crypto::open(&seal_key(secrets), &row.secret, &user.id)?;
    totp(secret, &user.username, &issuer_label(config))
}

/// Counts a wrong code while setting up the app; refuses while `MAX_FAILURES`
/// happened in the window. (The second step of a sign-in has its exact counter.)
fn rate_check(conn: &mut AnyConnection, user_id: &str, now: i64) -> Result<Option<i64>, DbError> {
    let recent = mfa::failures_since(conn, user_id, now - FAILURE_WINDOW_SECS)?;
    Ok((recent.len() >= MAX_FAILURES).then(|| (recent[0] + FAILURE_WINDOW_SECS - now).max(1)))
}

/// Confirms the app with a first code; returns the recovery codes, shown once.
pub async fn confirm_enrolment(
    db: &Db,
    secrets: &ServerSecrets,
    config: &Config,
    now: i64,
    user: &UserRow,
    code: &str,
) -> Result<Vec<String>, MfaError> {
    let row = stored_totp(db, &user.id, false).await?.ok_or(MfaError::NotEnrolling)?;
    let t = load_totp(secrets, config, &row, user)?;
    let step = current_step(now, &t, code);
    let id = user.id.clone();
    db.transaction(move |conn| {
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
///
/// `config` gives the limits (`login.*`) and the issuer label; `metrics` counts
/// the checks and the refusals.
pub async fn verify(
    db: &Db,
    secrets: &ServerSecrets,
    config: &Config,
    metrics: &Metrics,
    now: i64,
    user: &UserRow,
    code: &str,
) -> Result<Proof, MfaError> {
    let row = stored_totp(db, &user.id, true).await?.ok_or(MfaError::InvalidCode)?;
    let t = load_totp(secrets, config, &row, user)?;
    let looks_like_recovery = code.trim().len() > 8;
    let reserved = match reserve(db, &config.login, &user.id, looks_like_recovery, now).await? {
        Ok(row) => row,
        Err(refusal) => {
            Metrics::inc(&metrics.second_step_refused);
            return Err(refusal);
        }
    };
    Metrics::inc(&metrics.second_step_checks);
    let step = if looks_like_recovery {
        None
    } else {
        current_step(now, &t, code)
    };
    let recovery = looks_like_recovery.then(|| recovery_hash(&user.id, code));
    let id = user.id.clone();
    let lockout_after = config.login.second_step_lockout_after;
    db.transaction(move |conn| {
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
    db: &Db,
    limits: &LoginConfig,
    user_id: &str,
    recovery: bool,
    now: i64,
) -> Result<Result<mfa::MfaThrottleRow, MfaError>, DbError> {
    let config = limits.clone();
    let limit = if recovery {
        RECOVERY_LOCKOUT
    } else {
        config.second_step_lockout_after
    };
    let id = user_id.to_owned();
    db.run(move |conn| mfa::ensure_throttle(conn, &id)).await?;
    let id = user_id.to_owned();
    db.transaction(move |conn| {
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
pub async fn second_step_passed(db: &Db, user_id: &str) -> Result<(), DbError> {
    let id = user_id.to_owned();
    db.run(move |conn| mfa::signed_in(conn, &id)).await
}

/// Failed second-step attempts between the person's previous sign-in and now.
pub async fn failures_since_last_sign_in(db: &Db, user_id: &str) -> Result<i64, DbError> {
    let id = user_id.to_owned();
    Ok(db
        .run(move |conn| mfa::find_throttle(conn, &id))
        .await?
        .map_or(0, |t| t.before_sign_in + t.since_sign_in))
}

/// True when the person has a confirmed second factor (an authenticator app or
/// at least one security key or passkey).
pub async fn is_enrolled(db: &Db, user_id: &str) -> Result<bool, DbError> {
    let factors = factors(db, user_id).await?;
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

pub async fn factors(db: &Db, user_id: &str) -> Result<Factors, DbError> {
    let id = user_id.to_owned();
    db.run(move |conn| {
        Ok(Factors {
            totp: mfa::find_totp(conn, &id)?.is_some_and(|r| r.confirmed_at.is_some()),
            webauthn: webauthn_store::count(conn, &id)?,
            recovery_codes: mfa::remaining_recovery_codes(conn, &id)?,
        })
    })
    .await
}

/// The account page's view: enabled, and recovery codes left.
pub async fn status(db: &Db, user_id: &str) -> Result<(bool, i64), DbError> {
    let id = user_id.to_owned();
    db.run(move |conn| {
        let on = mfa::find_totp(conn, &id)?.is_some_and(|r| r.confirmed_at.is_some());
        Ok((on, mfa::remaining_recovery_codes(conn, &id)?))
    })
    .await
}

/// Sensitive changes need a sign-in (at `auth_time`) recent at `now` (`session::require_recent`).
pub fn require_recent(auth_time: i64, now: i64) -> Result<(), MfaError> {
    crate::authn::session::require_recent(auth_time, now).map_err(|_| MfaError::ReauthenticationRequired)
}

/// Turns TOTP off (and drops the recovery codes). Needs a recent authentication.
/// A removed factor is a credential change: every other session of the person
/// ends and every refresh token of theirs is revoked (ASVS 5 V7.4.3), in the same
/// transaction; `session_id` (the browser that asked) stays signed in.
pub async fn disable(db: &Db, now: i64, user_id: &str, session_id: &str, auth_time: i64) -> Result<(), MfaError> {
    require_recent(auth_time, now)?;
    let (id, keep) = (user_id.to_owned(), session_id.to_owned());
    db.transaction(move |conn| {
        mfa::delete_totp(conn, &id)?;
        mfa::delete_recovery_codes(conn, &id)?;
        let revoked = crate::authn::session::revoke_all_in(conn, &id, Some(&keep), now)?;
        own_event(conn, &id, "mfa.totp.disable", json!(revoked), now)
    })
    .await?;
    Ok(())
}

/// New recovery codes (the old ones stop working). Needs a recent authentication.
pub async fn regenerate_codes(db: &Db, now: i64, user_id: &str, auth_time: i64) -> Result<Vec<String>, MfaError> {
    require_recent(auth_time, now)?;
    if !is_enrolled(db, user_id).await? {
        return Err(MfaError::NotEnrolling);
    }
    let id = user_id.to_owned();
    Ok(db
        .transaction(move |conn| {
            let codes = new_recovery_codes(conn, &id, now)?;
            own_event(conn, &id, "mfa.recovery_codes.regenerate", json!({}), now)?;
            Ok(codes)
        })
        .await?)
}

/// Opens the second step of a sign-in: returns the token for the `oxidp_mfa` cookie.
pub async fn open_challenge(
    db: &Db,
    now: i64,
    user_id: &str,
    amr: &str,
    device_id: Option<String>,
    return_to: &str,
) -> Result<String, DbError> {
    let token = crypto::random_token();
    let row = ChallengeRow {
        token_hash: crypto::sha256_hex(&token),
        user_id: user_id.to_owned(),
        amr: amr.to_owned(),
        device_id,
        return_to: return_to.to_owned(),
        created_at: now,
        expires_at: now + CHALLENGE_TTL_SECS,
    };
    db.run(move |conn| mfa::insert_challenge(conn, &row)).await?;
    Ok(token)
}

/// The pending second step for a cookie token, if still valid at `now`.
pub async fn find_challenge(db: &Db, now: i64, token: &str) -> Result<Option<ChallengeRow>, DbError> {
    let hash = crypto::sha256_hex(token);
    Ok(db
        .run(move |conn| mfa::find_challenge(conn, &hash))
        .await?
        .filter(|c| c.expires_at > now))
}

pub async fn close_challenge(db: &Db, token: &str) -> Result<(), DbError> {
    let hash = crypto::sha256_hex(token);
    db.run(move |conn| mfa::delete_challenge(conn, &hash)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::authn::session::RECENT_AUTH_SECS;
    use crate::clock::{Clock, ManualClock};
    use crate::db::testing::TestDb;

    struct Setup {
        t: TestDb,
        secrets: ServerSecrets,
        config: Config,
        metrics: Metrics,
        clock: Arc<ManualClock>,
        user: UserRow,
    }

    async fn setup() -> Setup {
        let t = TestDb::new().await;
        let clock = ManualClock::at(1_800_000_000);
        let user = t.user("alice", clock.now()).await;
        Setup {
            t,
            secrets: ServerSecrets::from_parts("unit-test pepper", "unit-test key-encryption secret"),
            config: Config::default(),
            metrics: Metrics::default(),
            clock,
            user,
        }
    }

    impl Setup {
        async fn enrol(&self) -> (Enrolment, Vec<String>) {
            let (db, now) = (&self.t.db, self.clock.now());
            let enrolment = start_enrolment(db, &self.secrets, &self.config, now, &self.user)
                .await
                .unwrap();
            let code = code_at(&enrolment, now);
            let codes = confirm_enrolment(db, &self.secrets, &self.config, now, &self.user, &code)
                .await
                .unwrap();
            (enrolment, codes)
        }

        async fn verify(&self, code: &str) -> Result<Proof, MfaError> {
            let now = self.clock.now();
            verify(
                &self.t.db,
                &self.secrets,
                &self.config,
                &self.metrics,
                now,
                &self.user,
                code,
            )
            .await
        }
    }

    /// The app's code at `now`.
    fn code_at(enrolment: &Enrolment, now: i64) -> String {
        let secret = Secret::try_from_base32(&enrolment.secret).unwrap();
        let app = totp(secret.as_bytes().to_vec(), "alice", "unit").unwrap();
        app.generate(now as u64).to_string()
    }

    /// A code that is not the app's at `now` (one digit changed).
    fn wrong_at(enrolment: &Enrolment, now: i64) -> String {
        let right = code_at(enrolment, now);
        let first = (right.as_bytes()[0] - b'0' + 1) % 10;
        format!("{first}{}", &right[1..])
    }

    fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn the_app_is_on_only_once_a_first_code_confirms_it() {
        let s = setup().await;
        let now = s.clock.now();
        let enrolment = start_enrolment(&s.t.db, &s.secrets, &s.config, now, &s.user)
            .await
            .unwrap();
        assert!(enrolment.otpauth_url.starts_with("otpauth://totp/"));
        assert!(enrolment.qr_svg.contains("<svg"));
        assert!(!is_enrolled(&s.t.db, &s.user.id).await.unwrap());
        let shown_again = pending_enrolment(&s.t.db, &s.secrets, &s.config, &s.user)
            .await
            .unwrap();
        assert_eq!(shown_again.secret, enrolment.secret);

        let wrong = wrong_at(&enrolment, now);
        let refused = confirm_enrolment(&s.t.db, &s.secrets, &s.config, now, &s.user, &wrong).await;
        assert!(matches!(refused, Err(MfaError::InvalidCode)), "{refused:?}");
        let right = code_at(&enrolment, now);
        let codes = confirm_enrolment(&s.t.db, &s.secrets, &s.config, now, &s.user, &right)
            .await
            .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(is_enrolled(&s.t.db, &s.user.id).await.unwrap());
        assert_eq!(s.t.events("mfa.totp.enable").await.len(), 1);
        let restarted = start_enrolment(&s.t.db, &s.secrets, &s.config, now, &s.user).await;
        assert!(
            matches!(restarted, Err(MfaError::AlreadyEnrolled)),
            "{:?}",
            restarted.err()
        );
    }

    #[tokio::test]
    async fn each_time_step_is_accepted_once() {
        let s = setup().await;
        let (enrolment, _) = s.enrol().await;
        let confirming = code_at(&enrolment, s.clock.now());
        assert!(matches!(s.verify(&confirming).await, Err(MfaError::InvalidCode)));
        s.clock.advance(30);
        let next = code_at(&enrolment, s.clock.now());
        assert_eq!(s.verify(&next).await.unwrap(), Proof::Totp);
        assert!(matches!(s.verify(&next).await, Err(MfaError::InvalidCode)));
        assert_eq!(count(&s.metrics.second_step_checks), 3);
        assert_eq!(s.t.events("mfa.failure").await.len(), 2);
    }

    #[tokio::test]
    async fn a_recovery_code_works_once_however_it_is_typed() {
        let s = setup().await;
        let (_, codes) = s.enrol().await;
        let first = s.verify(&codes[0]).await.unwrap();
        assert_eq!(first, Proof::RecoveryCode { remaining: 9 });
        assert!(matches!(s.verify(&codes[0]).await, Err(MfaError::InvalidCode)));
        let loose = codes[1].replace('-', "").to_uppercase();
        let second = s.verify(&loose).await.unwrap();
        assert_eq!(second, Proof::RecoveryCode { remaining: 8 });
        assert_eq!(factors(&s.t.db, &s.user.id).await.unwrap().recovery_codes, 8);
    }

    #[tokio::test]
    async fn wrong_codes_are_delayed_then_locked_and_refusals_are_not_checked() {
        let mut s = setup().await;
        s.config.login.second_step_delay_after = 2;
        s.config.login.second_step_lockout_after = 3;
        let (enrolment, codes) = s.enrol().await;
        for _ in 0..2 {
            let wrong = wrong_at(&enrolment, s.clock.now());
            assert!(matches!(s.verify(&wrong).await, Err(MfaError::InvalidCode)));
        }
        let right = code_at(&enrolment, s.clock.now() + 30);
        let delayed = s.verify(&right).await;
        assert!(
            matches!(delayed, Err(MfaError::TooManyAttempts { wait_secs: 1 })),
            "{delayed:?}"
        );
        assert_eq!(
            (
                count(&s.metrics.second_step_checks),
                count(&s.metrics.second_step_refused)
            ),
            (2, 1)
        );

        s.clock.advance(1);
        let wrong = wrong_at(&enrolment, s.clock.now());
        assert!(matches!(s.verify(&wrong).await, Err(MfaError::InvalidCode)));
        assert_eq!(s.t.events("mfa.lockout").await.len(), 1);
        s.clock.advance(3600);
        let right = code_at(&enrolment, s.clock.now());
        assert!(matches!(s.verify(&right).await, Err(MfaError::Locked)));
        // A recovery code still opens the lock (until RECOVERY_LOCKOUT failures).
        let unlocked = s.verify(&codes[0]).await.unwrap();
        assert_eq!(unlocked, Proof::RecoveryCode { remaining: 9 });
        assert_eq!(s.verify(&right).await.unwrap(), Proof::Totp);
    }

    #[tokio::test]
    async fn a_pending_second_step_expires_and_closes() {
        let s = setup().await;
        let (db, now) = (&s.t.db, s.clock.now());
        let token = open_challenge(db, now, &s.user.id, "pwd", None, "/account")
            .await
            .unwrap();
        let found = find_challenge(db, now, &token).await.unwrap().expect("open");
        assert_eq!(
            (found.user_id.as_str(), found.amr.as_str()),
            (s.user.id.as_str(), "pwd")
        );
        assert!(find_challenge(db, now, "another token").await.unwrap().is_none());
        let later = now + CHALLENGE_TTL_SECS;
        assert!(find_challenge(db, later, &token).await.unwrap().is_none(), "expired");
        close_challenge(db, &token).await.unwrap();
        assert!(find_challenge(db, now, &token).await.unwrap().is_none(), "closed");
    }

    #[tokio::test]
    async fn turning_it_off_or_new_codes_need_a_recent_sign_in() {
        let s = setup().await;
        let (_, old_codes) = s.enrol().await;
        let now = s.clock.now();
        let stale = now - RECENT_AUTH_SECS - 1;
        assert!(require_recent(now - RECENT_AUTH_SECS, now).is_ok());
        assert!(require_recent(stale, now).is_err());
        let refused = disable(&s.t.db, now, &s.user.id, "this-session", stale).await;
        assert!(matches!(refused, Err(MfaError::ReauthenticationRequired)));
        let refused = regenerate_codes(&s.t.db, now, &s.user.id, stale).await;
        assert!(matches!(refused, Err(MfaError::ReauthenticationRequired)));
        assert!(is_enrolled(&s.t.db, &s.user.id).await.unwrap());

        let new_codes = regenerate_codes(&s.t.db, now, &s.user.id, now).await.unwrap();
        assert!(matches!(s.verify(&old_codes[0]).await, Err(MfaError::InvalidCode)));
        s.clock.advance(2);
        assert!(matches!(s.verify(&new_codes[0]).await, Ok(Proof::RecoveryCode { .. })));
        disable(&s.t.db, s.clock.now(), &s.user.id, "this-session", s.clock.now())
            .await
            .unwrap();
        assert!(!is_enrolled(&s.t.db, &s.user.id).await.unwrap());
        assert_eq!(s.t.events("mfa.totp.disable").await.len(), 1);
    }
}
