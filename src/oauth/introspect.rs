//! Token introspection (RFC 7662) for authenticated clients. A token is reported
//! active only to the client it was issued to or a resource server named in its
//! audience; expired, revoked, malformed and foreign tokens, and tokens of a
//! disabled or deleted person, are `active: false` (the same check as userinfo).

use serde_json::{Value, json};

use crate::crypto;
use crate::db::models::grants;
use crate::oauth::clients::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::tokens;
use crate::state::AppState;

fn inactive() -> Value {
    json!({ "active": false })
}

pub async fn introspect(state: &AppState, caller: &Client, params: &Params) -> Result<Value, OAuthError> {
    let token = params.require("token")?;
    let hint = params.get("token_type_hint");
    let as_access = || async {
        match tokens::verify_access_token(state, token) {
            Ok(claims) => {
                let caller_id = caller.id.as_str();
                let entitled = claims.client_id == caller_id
                    || claims
                        .aud
                        .iter()
                        .any(|a| a == caller_id || Some(a) == caller.audience.as_ref());
                if !entitled || !tokens::is_active(state, &claims).await? {
                    return Ok::<_, OAuthError>(Some(inactive()));
                }
                let mut body = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": claims.scope,
                    "client_id": claims.client_id,
                    "sub": claims.sub,
                    "aud": claims.aud,
                    "iss": claims.iss,
                    "exp": claims.exp,
                    "iat": claims.iat,
                    "jti": claims.jti,
                });
                if let Some(auth_time) = claims.auth_time {
                    body["auth_time"] = json!(auth_time);
                }
                Ok(Some(body))
            }
            Err(_) => Ok(None),
        }
    };
    let as_refresh = || async {
        let hash = crypto::sha256_hex(token);
        let found = state
            .db
            .read(move |conn| {
                Ok(match grants::find_refresh(conn, &hash)? {
                    Some((row, grant)) => {
                        let enabled = tokens::subject_enabled(conn, &grant.user_id)?;
                        Some((row, grant, enabled))
                    }
                    None => None,
                })
            })
            .await?;
        let now = state.clock.now();
        Ok::<_, OAuthError>(found.map(|(row, grant, enabled)| {
            let live = enabled && row.used_at.is_none() && grant.revoked_at.is_none() && grant.expires_at > now;
            if !live || grant.client_id != caller.id.as_str() {
                return inactive();
            }
            json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scope,
                "client_id": grant.client_id,
                "sub": grant.user_id,
                "exp": grant.expires_at,
                "iat": row.created_at,
                "iss": state.config.issuer(),
            })
        }))
    };
    // The hint only decides the order of the look-ups (RFC 7662 §2.1).
    let result = if hint == Some("refresh_token") {
        match as_refresh().await? {
            Some(v) => Some(v),
            None => as_access().await?,
        }
    } else {
        match as_access().await? {
            Some(v) => Some(v),
            None => as_refresh().await?,
        }
    };
    Ok(result.unwrap_or_else(inactive))
}
