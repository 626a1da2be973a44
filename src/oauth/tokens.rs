//! Access tokens: RFC 9068 JWTs (`typ: at+jwt`), signed with the ES256 key in force.
//! Verification is strict: our issuer, a published key whose algorithm matches the
//! header exactly (so `none`, HS256-with-our-public-key and alg swaps fail), the
//! at+jwt type (so an ID token is not an access token), and unexpired.

use josekit::jws::JwsHeader;
use josekit::jwt::{self, JwtPayload};
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::domain::Scopes;
use crate::oidc::keys::SigningAlg;
use crate::state::AppState;

/// Tolerated clock difference for `iat`/`nbf`, in seconds.
const LEEWAY: i64 = 60;

/// The claims oxidp puts in an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The grant (code redemption / refresh family) this token belongs to: revoking
    /// the grant deactivates the token at introspection and userinfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// The browser session the grant came from (OIDC `sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Extra claims (roles, permissions) added by later layers.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl AccessClaims {
    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scope).unwrap_or_default()
    }

    /// True when the token was issued to a person (not a client_credentials token).
    pub fn has_user(&self) -> bool {
        self.auth_time.is_some()
    }
}

/// What an access token is issued for.
pub struct AccessTokenRequest<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub audience: Vec<String>,
    pub scope: &'a Scopes,
    pub ttl: i64,
    pub auth_time: Option<i64>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    /// RBAC claims: the subject's roles and its permissions for this audience.
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

pub struct IssuedAccessToken {
    pub token: String,
    pub claims: AccessClaims,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no signing key for {0}")]
    NoKey(&'static str),
    #[error(transparent)]
    Jose(#[from] josekit::JoseError),
}

/// Signs `claims` with the key in force for `alg`, setting `kid` and `typ`.
pub fn sign(
    state: &AppState,
    alg: SigningAlg,
    typ: &str,
    claims: serde_json::Map<String, serde_json::Value>,
) -> Result<String, SignError> {
    let key = state
        .keys
        .signing_key(alg, state.clock.now())
        .ok_or(SignError::NoKey(alg.name()))?;
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    header.set_key_id(&key.kid);
    let payload = JwtPayload::from_map(claims)?;
    Ok(jwt::encode_with_signer(&payload, &header, key.signer.as_ref())?)
}

pub fn issue_access_token(state: &AppState, request: AccessTokenRequest<'_>) -> Result<IssuedAccessToken, SignError> {
    let now = state.clock.now();
    let mut claims = AccessClaims {
        iss: state.config.issuer(),
        sub: request.subject.to_owned(),
        aud: request.audience,
        client_id: request.client_id.to_owned(),
        scope: request.scope.to_string(),
        jti: crypto::random_token()[..22].to_owned(),
        iat: now,
        exp: now + request.ttl,
        auth_time: request.auth_time,
        acr: request.acr,
        amr: request.amr,
        gid: request.grant_id,
        sid: request.session_id,
        extra: serde_json::Map::new(),
    };
    crate::rbac::claims::insert_claims(&mut claims.extra, &request.roles, &request.permissions);
    let map = match serde_json::to_value(&claims) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("claims serialize to an object"),
    };
    let token = sign(state, SigningAlg::ES256, "at+jwt", map)?;
    Ok(IssuedAccessToken { token, claims })
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was not signed by a key of this server")]
    UnknownKey,
    #[error("the token signature or algorithm is invalid")]
    BadSignature,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token was issued by another server")]
    WrongIssuer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has been revoked")]
    Revoked,
}

/// Verifies a JWT signed by one of our keys and returns its header type and claims.
pub fn verify_jwt(
    state: &AppState,
    token: &str,
) -> Result<(Option<String>, serde_json::Map<String, serde_json::Value>), TokenError> {
    if token.len() > 8192 || token.split('.').count() != 3 {
        return Err(TokenError::Malformed);
    }
    let header = jwt::decode_header(token).map_err(|_| TokenError::Malformed)?;
    let kid = header
        .claim("kid")
        .and_then(|v| v.as_str())
        .ok_or(TokenError::UnknownKey)?;
    let alg = header
        .claim("alg")
        .and_then(|v| v.as_str())
        .ok_or(TokenError::Malformed)?;
    let key = state
        .keys
        .verification_key(kid, state.clock.now())
        .ok_or(TokenError::UnknownKey)?;
    if alg != key.alg.name() {
        return Err(TokenError::BadSignature);
    }
    let (payload, header) =
        jwt::decode_with_verifier(token, key.verifier.as_ref()).map_err(|_| TokenError::BadSignature)?;
    let typ = header.claim("typ").and_then(|v| v.as_str()).map(str::to_owned);
    Ok((typ, payload.claims_set().clone()))
}

/// Verifies an access token's signature, type, issuer and lifetime (not revocation:
/// see `is_active`).
pub fn verify_access_token(state: &AppState, token: &str) -> Result<AccessClaims, TokenError> {
    let (typ, claims) = verify_jwt(state, token)?;
    let typ = typ.unwrap_or_default().to_ascii_lowercase();
    if typ != "at+jwt" && typ != "application/at+jwt" {
        return Err(TokenError::WrongType);
    }
    let claims: AccessClaims =
        serde_json::from_value(serde_json::Value::Object(claims)).map_err(|_| TokenError::Malformed)?;
    if claims.iss != state.config.issuer() {
        return Err(TokenError::WrongIssuer);
    }
    let now = state.clock.now();
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    if claims.iat > now + LEEWAY {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Revocation check: the token id was not revoked, its grant (if any) is live and,
/// for a token issued to a person, that person still exists and is enabled. The
/// one answer shared by introspection, userinfo and the admin API.
pub async fn is_active(state: &AppState, claims: &AccessClaims) -> Result<bool, crate::db::DbError> {
    let jti = claims.jti.clone();
    let gid = claims.gid.clone();
    let subject = claims.has_user().then(|| claims.sub.clone());
    let now = state.clock.now();
    state
        .db
        .read(move |conn| {
            if crate::db::models::grants::is_token_revoked(conn, &jti)? {
                return Ok(false);
            }
            if let Some(gid) = &gid
                && !crate::db::models::grants::is_live(conn, gid, now)?
            {
                return Ok(false);
            }
            match &subject {
                Some(sub) => subject_enabled(conn, sub),
                None => Ok(true),
            }
        })
        .await
}

/// True when the user exists and is not disabled.
pub fn subject_enabled(conn: &mut crate::db::AnyConnection, user_id: &str) -> Result<bool, crate::db::DbError> {
    Ok(crate::db::models::users::find_by_id(conn, user_id)?.is_some_and(|u| !u.disabled))
}
