//! The sign-in pipeline: limiters, risk decision, password check, counters.
//!
//! 1. governor limits per client IP (IPv6 by /64) and per username → `RateLimited`;
//! 2. the cluster-wide counter of the username (kept for unknown usernames too, so
//!    delays and lockouts reveal nothing about which accounts exist) and the risk
//!    signals decide, before any hash is computed, whether the attempt is delayed,
//!    locked or denied; a known device of the account is exempt (only rate limited),
//!    so an attacker cannot lock a person out of their own laptop;
//! 3. the password is verified (a dummy hash for an unknown account), disabled
//!    accounts refused, legacy hashes upgraded;
//! 4. failures add exactly one to the counter (atomic `UPDATE … + 1`), setting the
//!    exponential delay and, at `login.lockout_after`, the lock; success clears it.
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
    throttle: Option<logins::ThrottleRow>,
    known_device: bool,
    signals: Signals,
}

pub async fn authenticate(state: &AppState, attempt: Attempt<'_>) -> Result<SignedIn, LoginError> {
    let config = &state.config.login;
    let now = state.clock.now();
    let key = risk::username_key(&state.login_key, attempt.username);
    let ip = attempt.ip.clone().unwrap_or_else(|| "unknown".to_owned());
    if let Err(retry_after) = state.limiters.sign_in(&ip, &key) {
        tracing::info!(ip = %ip, "sign-in rate limited");
        Metrics::inc(&state.metrics.logins_rate_limited);
        return Err(LoginError::RateLimited { retry_after });
    }
    let net = risk::network_of(attempt.ip.as_deref());
    let context = load_context(state, &attempt, &key, &net, now).await?;
    let (score, reasons) = risk::score(&context.signals, config);
    let record = |outcome: &'static str, user_id: Option<String>| AttemptRow {
        id: uuid::Uuid::now_v7().to_string(),
        at: now,
        ip: attempt.ip.clone(),
        ip_net: net.clone(),
        username_key: key.clone(),
        user_id,
        known_device: context.known_device,
        user_agent: attempt.user_agent.as_ref().map(|ua| ua.chars().take(256).collect()),
        outcome: outcome.to_owned(),
        risk: score,
        reasons: reasons.join(" "),
    };
    let user_id = context.user.as_ref().map(|u| u.id.clone());

    // Refusals before any hash is computed (a known device is only rate limited).
    if !context.known_device {
        let refusal = match &context.throttle {
            Some(t) if t.locked_at.is_some() => Some(("locked", None)),
            Some(t) if t.delay_until > now => Some(("delayed", Some(t.delay_until - now))),
            _ if score >= config.deny_score => Some(("denied", Some(config.window_secs.min(300)))),
            _ => None,
        };
        if let Some((outcome, wait_secs)) = refusal {
            Metrics::inc(&state.metrics.logins_refused);
            finish(state, record(outcome, user_id.clone())).await?;
            tracing::info!(outcome, score, reasons = %reasons.join(" "), "sign-in refused before the password check");
            return Err(LoginError::InvalidCredentials { wait_secs });
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
        let wait_secs = if context.known_device {
            finish(state, record("failure", user_id)).await?;
            None
        } else {
            count_failure(state, &key, record("failure", user_id), now).await?
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
    let locked = context.throttle.as_ref().is_some_and(|t| t.locked_at.is_some());
    let (id, dev, clear_key) = (user.id.clone(), device_id.clone(), (!locked).then(|| key.clone()));
    let row = record("success", Some(user.id.clone()));
    state
        .db
        .transaction(move |conn| {
            // A lock caused elsewhere stays until an administrator or a password reset lifts it.
            if let Some(k) = clear_key {
                logins::clear(conn, &k)?;
            }
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
                    Some(d) => logins::is_known_device(conn, d, &user.id)?,
                    None => false,
                };
                let (successes, from_net) = logins::user_history(conn, &user.id, &net)?;
                signals.new_device = !known_device;
                signals.new_network = !successes.is_empty() && !from_net;
                signals.unusual_hour = risk::unusual_hour(&successes, now);
            }
            Ok(Context {
                user,
                throttle,
                known_device,
                signals,
            })
        })
        .await
}

/// Adds one failure to the username's counter (exact under concurrency), applies
/// the delay and lock, records the attempt. Returns the wait to show, if any.
async fn count_failure(state: &AppState, key: &str, row: AttemptRow, now: i64) -> Result<Option<i64>, DbError> {
    let config = state.config.login.clone();
    let k = key.to_owned();
    state.db.run(move |conn| logins::ensure_throttle(conn, &k)).await?;
    let k = key.to_owned();
    let (delay, newly_locked) = state
        .db
        .transaction(move |conn| {
            let counted = logins::add_failure(conn, &k, now)?;
            let delay = risk::delay_for(counted.failures, &config);
            let lock = counted.failures >= config.lockout_after;
            let locked_at = counted.locked_at.or(lock.then_some(now));
            logins::set_penalty(conn, &k, if delay > 0 { now + delay } else { 0 }, locked_at)?;
            write_attempt(conn, &row)?;
            let newly_locked = lock && counted.locked_at.is_none();
            if newly_locked {
                audit::record(
                    conn,
                    &Actor::system(),
                    "login.lockout",
                    row.user_id.as_ref().map(|u| format!("user:{u}")).as_deref(),
                    json!({ "failures": counted.failures }),
                    now,
                )?;
            }
            Ok((delay, newly_locked))
        })
        .await?;
    if newly_locked {
        tracing::warn!("sign-in counter reached the lockout threshold; the account is locked");
    }
    Ok((delay > 0).then_some(delay))
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

/// Lifts a lockout and forgets the failures of `user` (NIST SP 800-63B §5.2.2: an
/// administrator unlocks), audited in the same transaction. Returns whether there
/// was anything to lift.
pub async fn unlock(state: &AppState, actor: &Actor, user: &UserRow) -> Result<bool, DbError> {
    let key = risk::username_key(&state.login_key, &user.username);
    let (actor, id, now) = (actor.clone(), user.id.clone(), state.clock.now());
    state
        .db
        .transaction(move |conn| {
            let lifted = logins::clear(conn, &key)?;
            audit::record(
                conn,
                &actor,
                "user.unlock",
                Some(&format!("user:{id}")),
                json!({ "had_failures": lifted }),
                now,
            )?;
            Ok(lifted)
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
