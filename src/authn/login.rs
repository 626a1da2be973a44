//! The sign-in pipeline: look the account up, verify the password (or a dummy hash
//! for an unknown account), refuse disabled accounts, upgrade legacy hashes.
//!
//! Every failure is the same `InvalidCredentials` after the same amount of work,
//! so a caller cannot tell an unknown user from a wrong password or a disabled account.

use crate::authn::password::Verification;
use crate::db::DbError;
use crate::db::models::users::{self, UserRow};
use crate::domain::{Password, Username};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error(transparent)]
    Db(#[from] DbError),
}

pub async fn authenticate(state: &AppState, username: &str, password: &Password) -> Result<UserRow, LoginError> {
    let user = match Username::parse(username) {
        Ok(name) => {
            let name = name.to_string();
            state.db.run(move |conn| users::find_by_username(conn, &name)).await?
        }
        Err(_) => None,
    };
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let verification = state.hasher.verify(password, stored.clone()).await;
    let Some(user) = user else {
        return Err(LoginError::InvalidCredentials);
    };
    let Verification::Valid { needs_rehash } = verification else {
        tracing::info!(user_id = %user.id, "sign-in failed: wrong password");
        return Err(LoginError::InvalidCredentials);
    };
    if user.disabled {
        tracing::info!(user_id = %user.id, "sign-in refused: account disabled");
        return Err(LoginError::InvalidCredentials);
    }
    if let (true, Some(old)) = (needs_rehash, stored) {
        upgrade_hash(state, &user.id, &old, password).await;
    }
    Ok(user)
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
    match state
        .db
        .run(move |conn| users::replace_hash(conn, &id, &old, &new))
        .await
    {
        Ok(true) => tracing::info!(%user_id, from = scheme, "password re-hashed with argon2id"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%user_id, %error, "storing the re-hashed password failed"),
    }
}
