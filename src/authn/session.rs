//! Browser sessions: a 256-bit random token in a cookie, only its SHA-256 stored.
//! A new token at every sign-in (no fixation); idle and absolute timeouts are
//! enforced here, on the server, whatever the cookie says.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::models::grants;
use crate::db::models::sessions::{self, SessionRow};
use crate::db::models::users::UserRow;
use crate::db::{AnyConnection, DbError};
use crate::state::AppState;

/// Activity closer together than this does not rewrite `last_seen_at`.
const TOUCH_GRANULARITY_SECS: i64 = 10;
/// Sensitive changes (second factors, security keys) need a sign-in at most this old.
pub const RECENT_AUTH_SECS: i64 = 300;

/// The secret cookie value. Never logged.
pub struct SessionToken(String);

impl SessionToken {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_cookie(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: SessionRow,
    pub user: UserRow,
}

impl Authenticated {
    /// Sensitive changes need a sign-in within `RECENT_AUTH_SECS`: otherwise the
    /// person signs in again first.
    pub fn require_recent(&self, now: i64) -> Result<(), ReauthenticationRequired> {
        require_recent(self.session.auth_time, now)
    }
}

/// The sign-in behind a session is too old for a sensitive change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReauthenticationRequired;

/// A sign-in at `auth_time` is recent enough at `now` for a sensitive change.
pub fn require_recent(auth_time: i64, now: i64) -> Result<(), ReauthenticationRequired> {
    if now - auth_time <= RECENT_AUTH_SECS {
        Ok(())
    } else {
        Err(ReauthenticationRequired)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryReason {
    Idle,
    Absolute,
}

#[derive(Debug)]
pub enum Lookup {
    Active(Box<Authenticated>),
    Expired(ExpiryReason),
    /// No cookie, an unknown token, or a disabled account.
    None,
}

/// Where a sign-in came from, kept with the session for the account page.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Starts a session for `user`, ending the one the browser presented (if any), so
/// a token planted before sign-in is worthless after it.
pub async fn start(
    state: &AppState,
    user: &UserRow,
    amr: &[&str],
    origin: Origin,
    previous: Option<SessionToken>,
) -> Result<(SessionToken, SessionRow), DbError> {
    let token = SessionToken::generate();
    let now = state.clock.now();
    let row = SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        token_hash: token.hash(),
        user_id: user.id.clone(),
        created_at: now,
        last_seen_at: now,
        auth_time: now,
        amr: amr.join(" "),
        ip: origin.ip,
        user_agent: origin.user_agent.map(|ua| ua.chars().take(256).collect()),
    };
    let inserted = row.clone();
    let previous_hash = previous.map(|t| t.hash());
    let single = state.config.session.single_session;
    state
        .db
        .transaction(move |conn| {
            if let Some(hash) = previous_hash {
                use crate::db::schema::sessions::dsl;
                use diesel::prelude::*;
                diesel::delete(dsl::sessions.filter(dsl::token_hash.eq(hash))).execute(conn)?;
            }
            if single {
                // One active session per person: the older ones end with their refresh tokens.
                for old in sessions::list_for_user(conn, &inserted.user_id)? {
                    end_in(conn, &old.id, now)?;
                }
            }
            sessions::insert(conn, &inserted)
        })
        .await?;
    Ok((token, row))
}

/// Resolves a cookie to a live session, enforcing both timeouts and recording activity.
pub async fn resolve(state: &AppState, token: &SessionToken) -> Result<Lookup, DbError> {
    let hash = token.hash();
    let now = state.clock.now();
    let idle = state.config.session.idle_timeout_secs;
    let absolute = state.config.session.absolute_timeout_secs;
    state
        .db
        .read(move |conn| {
            let Some((session, user)) = sessions::find_with_user(conn, &hash)? else {
                return Ok(Lookup::None);
            };
            let reason = if now >= session.created_at + absolute {
                Some(ExpiryReason::Absolute)
            } else if now >= session.last_seen_at + idle {
                Some(ExpiryReason::Idle)
            } else {
                None
            };
            if let Some(reason) = reason {
                sessions::delete(conn, &session.id)?;
                return Ok(Lookup::Expired(reason));
            }
            if user.disabled {
                end_in(conn, &session.id, now)?;
                return Ok(Lookup::None);
            }
            let mut session = session;
            if now - session.last_seen_at >= TOUCH_GRANULARITY_SECS {
                sessions::touch(conn, &session.id, now)?;
                session.last_seen_at = now;
            }
            Ok(Lookup::Active(Box::new(Authenticated { session, user })))
        })
        .await
}

/// Ends the session the token belongs to, if any, with the refresh tokens issued
/// during it (except `offline_access` ones, which are meant to outlive it).
pub async fn end(state: &AppState, token: &SessionToken) -> Result<(), DbError> {
    let hash = token.hash();
    let now = state.clock.now();
    state
        .db
        .transaction(move |conn| {
            use crate::db::schema::sessions::dsl;
            use diesel::prelude::*;
            let id: Option<String> = dsl::sessions
                .filter(dsl::token_hash.eq(&hash))
                .select(dsl::id)
                .first(conn)
                .optional()?;
            if let Some(id) = id {
                end_in(conn, &id, now)?;
            }
            Ok(())
        })
        .await
}

/// Records activity now (the "Stay signed in" button) and returns the new timer.
pub async fn extend(state: &AppState, session: &SessionRow) -> Result<Timer, DbError> {
    let now = state.clock.now();
    let id = session.id.clone();
    state.db.run(move |conn| sessions::touch(conn, &id, now)).await?;
    let mut touched = session.clone();
    touched.last_seen_at = now;
    Ok(timer(state, &touched))
}

/// Ends one of `user_id`'s sessions (not necessarily the current one), with the
/// refresh tokens issued during it. False when there is no such session of theirs.
pub async fn end_by_id(state: &AppState, user_id: &str, session_id: &str) -> Result<bool, DbError> {
    let now = state.clock.now();
    let (user_id, session_id) = (user_id.to_owned(), session_id.to_owned());
    state
        .db
        .transaction(move |conn| {
            if !sessions::list_for_user(conn, &user_id)?
                .iter()
                .any(|s| s.id == session_id)
            {
                return Ok(false);
            }
            end_in(conn, &session_id, now)
        })
        .await
}

/// Ends every session of `user_id` except `keep`; returns how many ended.
pub async fn end_others(state: &AppState, user_id: &str, keep: &str) -> Result<usize, DbError> {
    let now = state.clock.now();
    let (user_id, keep) = (user_id.to_owned(), keep.to_owned());
    state
        .db
        .transaction(move |conn| {
            let mut ended = 0;
            for other in sessions::list_for_user(conn, &user_id)?
                .into_iter()
                .filter(|s| s.id != keep)
            {
                end_in(conn, &other.id, now)?;
                ended += 1;
            }
            Ok(ended)
        })
        .await
}

/// The one way a session is ended (sign-out, "Sign out" / "Sign out all other
/// sessions" on the account page, the admin API, `single_session`, a disabled
/// account, a credential change): the row goes, and with it the refresh tokens
/// issued during it — except `offline_access` ones, which are meant to outlive it.
/// Runs inside the caller's transaction. False when there was no such session.
pub fn end_in(conn: &mut AnyConnection, session_id: &str, now: i64) -> Result<bool, DbError> {
    grants::revoke_for_session(conn, session_id, now)?;
    sessions::delete(conn, session_id)
}

/// What `revoke_all_in` ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Revoked {
    pub sessions_ended: usize,
    pub grants_revoked: usize,
}

/// After a password change or reset, a removed second factor, or a disabled
/// account: ends every session of `user_id` except `keep` (the browser that made
/// a self-service change) and revokes every grant of theirs, `offline_access`
/// included, so no refresh token issued before the change works after it. Runs
/// inside the caller's transaction, next to the change and its audit event.
pub fn revoke_all_in(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<Revoked, DbError> {
    let grants_revoked = grants::revoke_for_user(conn, user_id, now)?;
    let mut sessions_ended = 0;
    for session in sessions::list_for_user(conn, user_id)? {
        if Some(session.id.as_str()) != keep && end_in(conn, &session.id, now)? {
            sessions_ended += 1;
        }
    }
    Ok(Revoked {
        sessions_ended,
        grants_revoked,
    })
}

/// What a page needs for the expiry warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Timer {
    /// Seconds until the session ends if nothing happens.
    pub remaining: i64,
    /// Show the warning when `remaining` drops to this.
    pub warn: i64,
    /// False when the absolute timeout is what ends it: activity cannot extend it.
    pub extendable: bool,
}

pub fn timer(state: &AppState, session: &SessionRow) -> Timer {
    let now = state.clock.now();
    let idle_end = session.last_seen_at + state.config.session.idle_timeout_secs;
    let absolute_end = session.created_at + state.config.session.absolute_timeout_secs;
    Timer {
        remaining: (idle_end.min(absolute_end) - now).max(0),
        warn: state.config.session.warn_before_secs,
        extendable: idle_end < absolute_end,
    }
}

/// Seconds until the session ends if nothing happens.
pub fn remaining(state: &AppState, session: &SessionRow) -> i64 {
    let now = state.clock.now();
    let idle_end = session.last_seen_at + state.config.session.idle_timeout_secs;
    let absolute_end = session.created_at + state.config.session.absolute_timeout_secs;
    idle_end.min(absolute_end) - now
}

/// How long an expired session row is kept (unusable) before the purge deletes it.
pub const EXPIRED_SESSION_KEPT_SECS: i64 = 3600;

/// Removes expired sessions; run periodically.
pub async fn purge_expired(state: &AppState) -> Result<usize, DbError> {
    // Expired sessions are kept a while: a browser that comes back with one is
    // told "your session has expired" instead of meeting a plain sign-in page.
    let now = state.clock.now() - EXPIRED_SESSION_KEPT_SECS;
    let idle_cutoff = now - state.config.session.idle_timeout_secs;
    let absolute_cutoff = now - state.config.session.absolute_timeout_secs;
    state
        .db
        .run(move |conn| sessions::delete_expired(conn, idle_cutoff, absolute_cutoff))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_means_within_five_minutes_of_the_sign_in() {
        assert_eq!(require_recent(1_000, 1_000), Ok(()));
        assert_eq!(require_recent(1_000, 1_000 + RECENT_AUTH_SECS), Ok(()));
        assert_eq!(
            require_recent(1_000, 1_001 + RECENT_AUTH_SECS),
            Err(ReauthenticationRequired)
        );
    }
}
