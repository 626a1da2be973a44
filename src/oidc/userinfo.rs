//! The UserInfo endpoint (OIDC Core §5.3) behind RFC 6750 bearer-token checks:
//! only access tokens whose audience includes the issuer URL are accepted.

use serde_json::{Map, Value};

use crate::db::models::users;
use crate::oauth::tokens::{self, TokenError};
use crate::oidc::claims;
use crate::state::AppState;

/// RFC 6750 §3.1 errors, answered with `WWW-Authenticate: Bearer …`.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// No token at all: 401 with a bare challenge.
    #[error("no access token")]
    Missing,
    /// RFC 6750 §3.1 `invalid_request` (400): e.g. a token sent two ways.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// RFC 6750 §3.1 `invalid_token` (401).
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// RFC 6750 §3.1 `insufficient_scope` (403).
    #[error("insufficient_scope: {0}")]
    InsufficientScope(&'static str),
    #[error("temporarily unavailable")]
    Unavailable,
    #[error("server error")]
    Server,
}

impl From<TokenError> for BearerError {
    fn from(error: TokenError) -> Self {
        BearerError::InvalidToken(error.to_string())
    }
}

impl From<crate::db::DbError> for BearerError {
    fn from(error: crate::db::DbError) -> Self {
        if error.is_unavailable() {
            BearerError::Unavailable
        } else {
            tracing::error!(%error, "database error");
            BearerError::Server
        }
    }
}

pub async fn userinfo(state: &AppState, token: &str) -> Result<Map<String, Value>, BearerError> {
    let claims = tokens::verify_access_token(state, token)?;
    // OIDC Core §5.3: userinfo is oxidp's own protected resource, identified by the
    // issuer URL (the default audience of tokens issued without `resource`). A
    // token issued for another resource (RFC 8707) is not for us.
    if !claims
        .aud
        .iter()
        .any(|a| a.trim_end_matches('/') == state.config.issuer_str())
    {
        return Err(BearerError::InvalidToken(
            "the token's audience does not include this server's userinfo endpoint".into(),
        ));
    }
    if !claims.has_user() {
        return Err(BearerError::InvalidToken("the token was not issued to a user".into()));
    }
    let scopes = claims.scopes();
    if !scopes.contains("openid") {
        return Err(BearerError::InsufficientScope("openid"));
    }
    if !tokens::is_active(state, &claims).await? {
        return Err(BearerError::InvalidToken(TokenError::Revoked.to_string()));
    }
    let sub = claims.sub.clone();
    let user = state
        .db
        .read(move |conn| users::find_by_id(conn, &sub))
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| BearerError::InvalidToken("the user no longer exists or is disabled".into()))?;
    let mut info = claims::for_scopes(&user, &scopes);
    if scopes.contains("roles") {
        let roles = crate::rbac::claims::for_user(&state.db, &user.id, None).await?.roles;
        info.insert("roles".into(), serde_json::json!(roles));
    }
    Ok(info)
}
