//! Token revocation (RFC 7009). A client may revoke only its own tokens. Revoking a
//! refresh token ends its whole grant (and the access tokens from it); revoking an
//! access token blocks its `jti` until it expires. Unknown tokens are not an error.

use crate::crypto;
use crate::db::models::grants;
use crate::oauth::clients::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::tokens::{self, TokenError};
use crate::state::AppState;

pub async fn revoke(state: &AppState, caller: &Client, params: &Params) -> Result<(), OAuthError> {
    let token = params.require("token")?.to_owned();
    let now = state.clock.now();
    // Refresh token?
    let hash = crypto::sha256_hex(&token);
    if let Some((_, grant)) = state.db.run(move |conn| grants::find_refresh(conn, &hash)).await? {
        if grant.client_id != caller.id.as_str() {
            return Err(OAuthError::UnauthorizedClient("the token was issued to another client"));
        }
        let id = grant.id.clone();
        state.db.run(move |conn| grants::revoke(conn, &id, now)).await?;
        tracing::info!(client_id = %caller.id, grant_id = %grant.id, "refresh token revoked");
        return Ok(());
    }
    // Access token?
    match tokens::verify_access_token(state, &token) {
        Ok(claims) => {
            if claims.client_id != caller.id.as_str() {
                return Err(OAuthError::UnauthorizedClient("the token was issued to another client"));
            }
            let (jti, exp) = (claims.jti.clone(), claims.exp);
            state.db.run(move |conn| grants::revoke_token(conn, &jti, exp)).await?;
            tracing::info!(client_id = %caller.id, jti = %claims.jti, "access token revoked");
            Ok(())
        }
        // Expired, foreign or garbage: nothing to revoke (RFC 7009 §2.2).
        Err(TokenError::Expired | TokenError::Malformed | TokenError::UnknownKey | TokenError::BadSignature)
        | Err(_) => Ok(()),
    }
}
