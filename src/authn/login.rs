//! The sign-in pipeline: limiters, risk decision, password check, counters.
//!
//! 1. governor limits per client IP (IPv6 by /64) and per username → `RateLimited`;
//! 2. the attempt is reserved in the database before any hash is computed: on the
//!    known-device cookie's own counter (a known device is exempt from the
//!    account's delays, lockout and risk denial, so an attacker cannot lock a
//!    person out of their own laptop — but only for `login.device_max_failures`
//!    wrong passwords since its last successful sign-in), otherwise on the
//!    cluster-wide counter of the username (kept for unknown usernames too, so
//!    delays and lockouts reveal nothing about which accounts exist). One
//!    conditional `UPDATE` checks the delay and lock and counts the attempt as a
//!    failure in advance, so a concurrent burst on any number of instances gets at
//!    most `login.delay_after` undelayed checks and never more than
//!    `login.lockout_after`; the risk score can deny before that;
//! 3. the password is verified (a dummy hash for an unknown account), disabled
//!    accounts refused, legacy hashes upgraded;
//! 4. a failure already counts (it sets the lock at `login.lockout_after`); a
//!    success clears the counter, reservation included.
//!
//! Every refusal is the same `InvalidCredentials`; only the wait message differs,
//! and any failed attempt may carry one. Each attempt is recorded with its risk
//! score and reasons, and audited.

use serde_json::json;

use crate::audit::{self, Actor};
use crate::authn::password::Verification;
use crate::authn::risk::{self, Signals};
use crate::db::DbError;
use crate::db::models::logins::{self, AttemptRow};
use crate::db::models::mfa;
use crate::db::models::users::{self, UserRow};
use crate::domain::{Password, Username};
use crate::metrics::Metrics;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password, disabled, delayed, locked or denied: one answer.
    /// `wait_secs` tells the person when to try again, when that is known.
    #[error("invalid username or password")]
    InvalidCredentials { wait_secs: Option<i64> },
    /// Over a rate limit: answer 429 with `Retry-After`.
    #[error("too many attempts")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One sign-in attempt as the HTTP layer hands it over.
pub struct Attempt<'a> {
    pub username: &'a str,
    pub password: &'a Password,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The device id from a valid known-device cookie.
    pub device: Option<String>,
}

pub struct SignedIn {
    pub user: UserRow,
    /// The device id to (re)set in the known-device cookie.
    pub device_id: String,
}

/// What the database says before the password is checked.
struct Context {
    user: Option<UserRow>,
    known_device: bool,
    signals: Signals,
}

pub async fn authenticate(state: &AppState, attempt: Attempt<'_>) -> Result<SignedIn, LoginError> {
    let config = &state.config.login;
    let now = state.clock.now();
    let key = risk::username_key(&state.login_key, attempt.username);
    let ip = attempt.ip.clone().unwrap_or_else(|| "unknown".to_owned());
    if let Err(retry_after) = state.limiters.sign_in(&ip, &key).await {
        tracing::info!(ip = %ip, "sign-in rate limited");
        Metrics::inc(&state.metrics.logins_rate_limited);
        return Err(LoginError::RateLimited { retry_after });
    }
    let net = risk::network_of(attempt.ip.as_deref());
    let context = load_context(state, &attempt, &key, &net, now).await?;
    let (score, reasons) = risk::score(&context.signals, config);
    let user_id = context.user.as_ref().map(|u| u.id.clone());

    // A known device is only rate limited, while its own counter of wrong
    // passwords has room: the check is reserved on that counter first.
    let mut known_device = false;
    if let (true, Some(device), Some(id)) = (context.known_device, attempt.device.clone(), user_id.clone()) {
        let max = config.device_max_failures;
        known_device = state
            .db
            .transaction(move |conn| logins::reserve_device(conn, &device, &id, max))
            .await?;
    }
    let record = |outcome: &'static str, user_id: Option<String>| AttemptRow {
        id: uuid::Uuid::now_v7().to_string(),
        at: now,
        ip: attempt.ip.clone(),
        ip_net: net.clone(),
        username_key: key.clone(),
        user_id,
        known_device,
        user_agent: attempt.user_agent.as_ref().map(|ua| ua.chars().take(256).collect()),
        outcome: outcome.to_owned(),
        risk: score,
        reasons: reasons.join(" "),
    };

    // Otherwise the attempt is reserved on the username's counter before any hash
    // is computed; refused when denied, delayed or locked.
    let mut reserved = None;
    if !known_device {
        let refusal = if score >= config.deny_score {
            Err(("denied", Some(config.window_secs.min(300))))
        } else {
            reserve(state, &key, now).await?
        };
        match refusal {
            Ok(row) => reserved = Some(row),
            Err((outcome, wait_secs)) => {
                Metrics::inc(&state.metrics.logins_refused);
                finish(state, record(outcome, user_id.clone())).await?;
                tracing::info!(outcome, score, reasons = %reasons.join(" "), "sign-in refused before the password check");
                return Err(LoginError::InvalidCredentials { wait_secs });
            }
        }
    }

    let stored = context.user.as_ref().and_then(|u| u.password_hash.clone());
    // The legacy work every verification pads to, as recorded by the latest import.
    crate::accounts::legacy::refresh_work(state).await;
    let verification = state.hasher.verify(attempt.password, stored.clone()).await;
    let valid = match (&context.user, &verification) {
        (Some(user), Verification::Valid { .. }) if !user.disabled => true,
        (Some(user), Verification::Valid { .. }) => {
            tracing::info!(user_id = %user.id, "sign-in refused: account disabled");
            false
        }
        _ => false,
    };
    if !valid {
        Metrics::inc(&state.metrics.logins_failed);
        let wait_secs = match reserved {
            Some(row) => count_failure(state, &key, row, record("failure", user_id), now).await?,
            None => {
                finish(state, record("failure", user_id)).await?;
                None
            }
        };
        return Err(LoginError::InvalidCredentials { wait_secs });
    }
    Metrics::inc(&state.metrics.logins_succeeded);
    let user = context.user.expect("valid implies a user");
    if let (Verification::Valid { needs_rehash: true }, Some(old)) = (&verification, stored) {
        upgrade_hash(state, &user.id, &old, attempt.password).await;
    }
    let device_id = attempt
        .device
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let (id, dev, k) = (user.id.clone(), device_id.clone(), key.clone());
    let row = record("success", Some(user.id.clone()));
    state
        .db
        .transaction(move |conn| {
            // The success forgets the failures, including this attempt's
            // reservation; a lock caused elsewhere (seen from a known device)
            // stays until an administrator or a password reset lifts it.
            logins::clear_unless_locked(conn, &k)?;
            logins::remember_device(conn, &dev, &id, row.at)?;
            write_attempt(conn, &row)
        })
        .await?;
    Ok(SignedIn { user, device_id })
}

async fn load_context(
    state: &AppState,
    attempt: &Attempt<'_>,
    key: &str,
    net: &str,
    now: i64,
) -> Result<Context, DbError> {
    let username = Username::parse(attempt.username).ok().map(|u| u.to_string());
    let (key, net, device) = (key.to_owned(), net.to_owned(), attempt.device.clone());
    let since = now - state.config.login.window_secs;
    let max_device_failures = state.config.login.device_max_failures;
    state
        .db
        .run(move |conn| {
            let user = match username {
                Some(name) => users::find_by_username(conn, &name)?,
                None => None,
            };
            let throttle = logins::find_throttle(conn, &key)?;
            let mut signals = Signals {
                account_failures: throttle.as_ref().map_or(0, |t| t.failures),
                network_failures: logins::net_failures(conn, &net, since)?,
                network_usernames: logins::net_usernames(conn, &net, since)?,
                many_networks: logins::username_nets(conn, &key, now - 600)? >= 3,
                ..Signals::default()
            };
            let mut known_device = false;
            if let Some(user) = &user {
                known_device = match &device {
                    Some(d) => logins::is_known_device(conn, d, &user.id, max_device_failures)?,
                    None => false,
                };
                let (successes, from_net) = logins::user_history(conn, &user.id, &net)?;
                signals.new_device = !known_device;
                signals.new_network = !successes.is_empty() && !from_net;
                signals.unusual_hour = risk::unusual_hour(&successes, now);
                signals.second_step_failures = mfa::find_throttle(conn, &user.id)?.map_or(0, |t| t.failures);
            }
            Ok(Context {
                user,
                known_device,
                signals,
            })
        })
        .await
}

/// Reserves one password check on the username's counter (see
/// `logins::reserve`) and sets the delay (and lock) that follow if it fails.
/// `Err((outcome, wait))` when the attempt may not be checked now.
async fn reserve(
    state: &AppState,
    key: &str,
    now: i64,
) -> Result<Result<logins::ThrottleRow, (&'static str, Option<i64>)>, DbError> {
    // An unlock or a password reset may delete the row between creating and
    // claiming it: then create it again (a few times; refused if it keeps vanishing).
    for _ in 0..3 {
        let config = state.config.login.clone();
        let k = key.to_owned();
        state.db.run(move |conn| logins::ensure_throttle(conn, &k)).await?;
        let k = key.to_owned();
        let outcome = state
            .db
            .transaction(move |conn| {
                let Some(row) = logins::reserve(conn, &k, now, config.lockout_after)? else {
                    let Some(row) = logins::find_throttle(conn, &k)? else {
                        return Ok(None);
                    };
                    return Ok(Some(Err(
                        if row.locked_at.is_some() || row.failures >= config.lockout_after {
                            ("locked", None)
                        } else {
                            ("delayed", Some((row.delay_until - now).max(1)))
                        },
                    )));
                };
                let delay = risk::delay_for(row.failures, &config);
                let delay_until = if delay > 0 { now + delay } else { 0 };
                logins::set_penalty(conn, &k, delay_until, row.locked_at)?;
                Ok(Some(Ok(logins::ThrottleRow { delay_until, ..row })))
            })
            .await?;
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Ok(Err(("delayed", Some(1))))
}

/// The reserved check failed: it already counts, so this records the attempt and,
/// at `login.lockout_after`, the lock. Returns the wait to show, if any.
async fn count_failure(
    state: &AppState,
    key: &str,
    reserved: logins::ThrottleRow,
    row: AttemptRow,
    now: i64,
) -> Result<Option<i64>, DbError> {
    let lockout_after = state.config.login.lockout_after;
    let k = key.to_owned();
    let failures = reserved.failures;
    let newly_locked = state
        .db
        .transaction(move |conn| {
            let newly_locked = failures >= lockout_after && logins::lock(conn, &k, lockout_after, now)?;
            write_attempt(conn, &row)?;
            if newly_locked {
                audit::record(
                    conn,
                    &Actor::system(),
                    "login.lockout",
                    row.user_id.as_ref().map(|u| format!("user:{u}")).as_deref(),
                    json!({ "failures": failures }),
                    now,
                )?;
            }
            Ok(newly_locked)
        })
        .await?;
    if newly_locked {
        tracing::warn!("sign-in counter reached the lockout threshold; the account is locked");
    }
    Ok((reserved.delay_until > now).then_some(reserved.delay_until - now))
}

/// Records the attempt and its audit event.
fn write_attempt(conn: &mut crate::db::AnyConnection, row: &AttemptRow) -> Result<(), DbError> {
    logins::insert_attempt(conn, row)?;
    let action = if row.outcome == "success" {
        "login.success"
    } else {
        "login.failure"
    };
    let actor = Actor {
        id: row
            .user_id
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |u| format!("user:{u}")),
        ip: row.ip.clone(),
    };
    audit::record(
        conn,
        &actor,
        action,
        row.user_id.as_ref().map(|u| format!("user:{u}")).as_deref(),
        json!({
            "outcome": row.outcome,
            "risk": row.risk,
            "reasons": row.reasons.split(' ').filter(|r| !r.is_empty()).collect::<Vec<_>>(),
            "known_device": row.known_device,
        }),
        row.at,
    )
}

async fn finish(state: &AppState, row: AttemptRow) -> Result<(), DbError> {
    state.db.transaction(move |conn| write_attempt(conn, &row)).await
}

/// Lifts a lockout and forgets the failures of `user`, of the password step and of
/// the second step (NIST SP 800-63B §5.2.2: an administrator unlocks), audited in
/// the same transaction. Returns whether there
/// was anything to lift.
pub async fn unlock(state: &AppState, actor: &Actor, user: &UserRow) -> Result<bool, DbError> {
    let key = risk::username_key(&state.login_key, &user.username);
    let (actor, id, now) = (actor.clone(), user.id.clone(), state.clock.now());
    state
        .db
        .transaction(move |conn| {
            let lifted = logins::find_throttle(conn, &key)?.is_some_and(|t| t.failures > 0 || t.locked_at.is_some());
            logins::clear(conn, &key)?;
            let second_step = mfa::unlock(conn, &id)?;
            audit::record(
                conn,
                &actor,
                "user.unlock",
                Some(&format!("user:{id}")),
                json!({ "had_failures": lifted, "had_second_step_failures": second_step }),
                now,
            )?;
            Ok(lifted || second_step)
        })
        .await
}

/// Re-hashes a password stored with a legacy scheme or old parameters. A failure
/// here is logged and does not fail the sign-in; the next one tries again.
async fn upgrade_hash(state: &AppState, user_id: &str, old: &str, password: &Password) {
    let scheme = crate::authn::password::scheme_of(old);
    let new = match state.hasher.hash(password).await {
        Ok(hash) => hash,
        Err(error) => {
            tracing::warn!(%user_id, %error, "password re-hash failed");
            return;
        }
    };
    let (id, old) = (user_id.to_owned(), old.to_owned());
    let previous = old.clone();
    match state
        .db
        .run(move |conn| users::replace_hash(conn, &id, &previous, &new))
        .await
    {
        Ok(true) => {
            if crate::authn::legacy::params_of(&old).is_some() {
                state.hasher.legacy_upgraded();
            }
            tracing::info!(%user_id, from = scheme, "password re-hashed with argon2id")
        }
        Ok(false) => {}
        Err(error) => tracing::warn!(%user_id, %error, "storing the re-hashed password failed"),
    }
}
