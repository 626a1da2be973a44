//! The token endpoint (RFC 6749 §4.1.3, §4.4, §6): `grant_type`-tagged requests
//! exchanged for tokens.
//!
//! - authorization_code: single use (a second redemption fails and revokes what the
//!   first one received), ≤ `tokens.code_ttl_secs`, bound to client, redirect_uri
//!   and PKCE verifier; a verifier without a stored challenge is a downgrade.
//! - refresh_token: rotated on every use; presenting a used one revokes the family,
//!   except within `tokens.refresh_reuse_grace_secs` of the rotation while the
//!   successor is unused: then the same client gets the same successor again.
//! - authorization_code and refresh_token read everything the response needs inside
//!   the transaction; after the commit only signing happens.
//! - client_credentials: no database write, client from the in-memory registry.

use std::sync::Arc;

use serde::Serialize;

use crate::crypto;
use crate::db::DbError;
use crate::db::models::{codes, grants, users};
use crate::domain::Scopes;
use crate::oauth::clients::{Client, GrantType};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::pkce::{self, CodeChallenge};
use crate::oauth::tokens::{self, AccessTokenRequest};
use crate::oidc::id_token::{self, Authentication};
use crate::rbac::claims::{self as rbac_claims, SubjectRef};
use crate::state::AppState;

/// A token request, parsed: one variant per grant type.
#[derive(Debug)]
pub enum TokenRequest {
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
        scope: Option<Scopes>,
    },
    ClientCredentials {
        scope: Option<Scopes>,
        resource: Option<String>,
    },
}

impl TryFrom<&Params> for TokenRequest {
    type Error = OAuthError;

    fn try_from(params: &Params) -> Result<Self, OAuthError> {
        let scope = params
            .get("scope")
            .map(Scopes::parse)
            .transpose()
            .map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
        match params.require("grant_type")? {
            "authorization_code" => Ok(TokenRequest::AuthorizationCode {
                code: params.require("code")?.to_owned(),
                redirect_uri: params.get("redirect_uri").map(str::to_owned),
                code_verifier: params.get("code_verifier").map(str::to_owned),
            }),
            "refresh_token" => Ok(TokenRequest::RefreshToken {
                refresh_token: params.require("refresh_token")?.to_owned(),
                scope,
            }),
            "client_credentials" => Ok(TokenRequest::ClientCredentials {
                scope,
                resource: params.get("resource").map(str::to_owned),
            }),
            _ => Err(OAuthError::UnsupportedGrantType),
        }
    }
}

/// RFC 6749 §5.1.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub async fn exchange(
    state: &AppState,
    client: Arc<Client>,
    request: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    match request {
        TokenRequest::ClientCredentials { scope, resource } => {
            client_credentials(state, &client, scope, resource).await
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => authorization_code(state, &client, &code, redirect_uri.as_deref(), code_verifier.as_deref()).await,
        TokenRequest::RefreshToken { refresh_token, scope } => refresh(state, &client, &refresh_token, scope).await,
    }
}

/// The audience of a token: the requested resource, the client's default audience, or us.
fn audience(state: &AppState, client: &Client, resource: Option<&str>) -> Result<Vec<String>, OAuthError> {
    match resource {
        Some(r) => {
            let ok = url::Url::parse(r).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base());
            if !ok {
                return Err(OAuthError::InvalidTarget(
                    "resource must be an absolute URI without fragment".into(),
                ));
            }
            Ok(vec![r.to_owned()])
        }
        None => Ok(vec![
            client
                .audience
                .clone()
                .unwrap_or_else(|| state.config.issuer_str().to_owned()),
        ]),
    }
}

async fn client_credentials(
    state: &AppState,
    client: &Client,
    scope: Option<Scopes>,
    resource: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows(GrantType::ClientCredentials) || client.is_public() {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use client_credentials",
        ));
    }
    // No person is involved: user-only scopes make no sense here.
    let allowed = client.scopes.without("openid").without("offline_access");
    let explicit = scope.as_ref().is_some_and(|s| !s.is_empty());
    let granted = match scope {
        Some(requested) => {
            let refused = requested.difference(&allowed);
            if !refused.is_empty() {
                return Err(OAuthError::InvalidScope(format!("not allowed: {}", refused.join(" "))));
            }
            requested
        }
        None => allowed,
    };
    let aud = audience(state, client, resource.as_deref())?;
    // Scopes requested ∩ allowed (above) ∩ the service account's permissions for this audience.
    let entitled = rbac_claims::for_client(
        &state.db,
        &state.rbac,
        client.id.as_str(),
        rbac_claims::audience_key(state.config.issuer_str(), &aud[0]),
    )
    .await?;
    let registered = rbac_claims::registered(&state.db, &state.rbac).await?;
    let (granted, permissions) = rbac_claims::narrow(&granted, &entitled, &registered);
    if explicit && granted.is_empty() {
        return Err(OAuthError::InvalidScope(
            "the client holds none of the requested permissions".into(),
        ));
    }
    let issued = tokens::issue_access_token(
        state,
        AccessTokenRequest {
            subject: client.id.as_str(),
            client_id: client.id.as_str(),
            audience: aud,
            scope: &granted,
            ttl: client.access_token_ttl,
            auth_time: None,
            acr: None,
            amr: Vec::new(),
            grant_id: None,
            session_id: None,
            roles: entitled.roles.clone(),
            permissions,
        },
    )
    .map_err(|e| OAuthError::from(anyhow::Error::from(e)))?;
    state.issuance.note(client.id.as_str());
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: client.access_token_ttl,
        scope: granted.to_string(),
        refresh_token: None,
        id_token: None,
    })
}

/// RFC 6749 §4.1.2: a code presented twice revokes every token issued from it.
fn reused(
    conn: &mut crate::db::AnyConnection,
    code_hash: &str,
    client_id: &str,
    now: i64,
) -> Result<Redemption, DbError> {
    let revoked = grants::revoke_by_code(conn, code_hash, now)?;
    crate::audit::record(
        conn,
        &crate::audit::Actor::client(client_id, None),
        "token.code_replay",
        None,
        serde_json::json!({ "revoked_grants": revoked }),
        now,
    )?;
    tracing::warn!(%client_id, revoked, "authorization code reused; its tokens are revoked");
    Ok(Redemption::Refused(OAuthError::InvalidGrant(
        "the authorization code was already used",
    )))
}

enum Redemption {
    Issued(Box<Issuance>),
    Refused(OAuthError),
}

async fn authorization_code(
    state: &AppState,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use the authorization code grant",
        ));
    }
    if let Some(v) = verifier
        && !pkce::is_valid_verifier(v)
    {
        return Err(OAuthError::InvalidRequest(
            "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]".into(),
        ));
    }
    let code_hash = crypto::sha256_hex(code);
    let now = state.clock.now();
    let client_id = client.id.to_string();
    let redirect_uri = redirect_uri.map(str::to_owned);
    let verifier = verifier.map(str::to_owned);
    // A refresh token only with offline_access, unless the client's policy says always.
    let refresh_allowed = client.allows(GrantType::RefreshToken);
    let refresh_policy = client.refresh_without_offline_access;
    let refresh_ttl = client.refresh_token_ttl;
    let single_session = client.single_session;
    // Read before the transaction (cached, idempotent): after the commit only signing is left.
    let registered = rbac_claims::registered(&state.db, &state.rbac).await?;
    let issuer = state.config.issuer_str().to_owned();
    let client_audience = client.audience.clone();
    let outcome = state
        .db
        .transaction(move |conn| {
            let Some(row) = codes::find_code(conn, &code_hash)? else {
                return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                    "unknown authorization code",
                )));
            };
            if row.client_id != client_id {
                return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                    "the code was issued to another client",
                )));
            }
            if row.used_at.is_some() {
                return reused(conn, &code_hash, &client_id, now);
            }
            if row.expires_at <= now {
                return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                    "the authorization code has expired",
                )));
            }
            if redirect_uri.as_deref() != Some(row.redirect_uri.as_str()) {
                return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                    "redirect_uri does not match the authorization request",
                )));
            }
            match (&row.code_challenge, &verifier) {
                (Some(challenge), Some(v)) => {
                    if !CodeChallenge::from_stored(challenge.clone()).verify(v) {
                        return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                            "PKCE verification failed",
                        )));
                    }
                }
                (Some(_), None) => {
                    return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                        "code_verifier is required",
                    )));
                }
                // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade attempt.
                (None, Some(_)) => {
                    return Ok(Redemption::Refused(OAuthError::InvalidGrant(
                        "no code_challenge was sent with the authorization request",
                    )));
                }
                (None, None) => {}
            }
            let user = match users::find_by_id(conn, &row.user_id)? {
                Some(user) if !user.disabled => user,
                _ => return Ok(Redemption::Refused(OAuthError::InvalidGrant("the user is disabled"))),
            };
            // Every check passed: claim the code. Of concurrent redemptions exactly one
            // gets here first; the others see it used and revoke what it received.
            if !codes::use_code(conn, &code_hash, now)? {
                return reused(conn, &code_hash, &client_id, now);
            }
            let scope = Scopes::parse(&row.scope).unwrap_or_default();
            let grant = grants::GrantRow {
                id: uuid::Uuid::new_v4().to_string(),
                client_id: row.client_id.clone(),
                user_id: row.user_id.clone(),
                scope: row.scope.clone(),
                code_hash: Some(code_hash.clone()),
                session_id: Some(row.session_id.clone()),
                auth_time: row.auth_time,
                amr: row.amr.clone(),
                acr: row.acr.clone(),
                nonce: row.nonce.clone(),
                created_at: now,
                expires_at: now + refresh_ttl,
                revoked_at: None,
                resource: row.resource.clone(),
            };
            // A client with one active sign-in per person: the older grants end
            // here, with their refresh tokens and (through the grant check) access tokens.
            let superseded = if single_session {
                grants::revoke_for_user_client(conn, &grant.user_id, &client_id, now)?
            } else {
                0
            };
            grants::insert(conn, &grant)?;
            crate::audit::record(
                conn,
                &crate::audit::Actor::client(&client_id, None),
                "token.authorization_code",
                Some(&format!("user:{}", grant.user_id)),
                serde_json::json!({ "grant": grant.id, "scope": grant.scope, "superseded_grants": superseded }),
                now,
            )?;
            let refresh_token = if refresh_allowed && (scope.contains("offline_access") || refresh_policy) {
                let token = crypto::random_token();
                grants::insert_refresh(
                    conn,
                    &grants::RefreshRow {
                        token_hash: crypto::sha256_hex(&token),
                        grant_id: grant.id.clone(),
                        created_at: now,
                        used_at: None,
                        successor_hash: None,
                        successor_sealed: None,
                    },
                )?;
                Some(token)
            } else {
                None
            };
            let key = permission_audience(&issuer, client_audience.as_deref(), grant.resource.as_deref());
            let entitled = rbac_claims::effective_in(conn, SubjectRef::User(&user.id), key.as_deref())?;
            Ok(Redemption::Issued(Box::new(Issuance {
                grant,
                user,
                entitled,
                refresh_token,
            })))
        })
        .await?;
    match outcome {
        Redemption::Refused(error) => Err(error),
        Redemption::Issued(issuance) => respond(state, client, &issuance, &registered, true, None),
    }
}

/// Everything a token response needs from the database, read in the same
/// transaction that commits the grant change: after the commit nothing fallible
/// touches the database, so a committed rotation is never answered with an error
/// (issue: a 5xx after a committed rotation made the client's retry look like a replay).
struct Issuance {
    grant: grants::GrantRow,
    user: users::UserRow,
    /// The person's roles, and permissions for the token's audience, read at every
    /// issuance so a change shows in the next token.
    entitled: rbac_claims::Effective,
    refresh_token: Option<String>,
}

/// The permission audience of a grant's tokens (see `audience` and
/// `rbac_claims::audience_key`): `None` for oxidp's own issuer.
fn permission_audience(issuer: &str, client_audience: Option<&str>, resource: Option<&str>) -> Option<String> {
    let aud = resource.or(client_audience).unwrap_or(issuer);
    (aud != issuer).then(|| aud.to_owned())
}

/// Signs the access token (and the ID token when `openid` was granted). No
/// database work: everything was read before the commit.
fn respond(
    state: &AppState,
    client: &Client,
    issuance: &Issuance,
    registered: &std::collections::BTreeSet<String>,
    with_nonce: bool,
    narrowed: Option<Scopes>,
) -> Result<TokenResponse, OAuthError> {
    let Issuance {
        grant,
        user,
        entitled,
        refresh_token,
    } = issuance;
    let granted = Scopes::parse(&grant.scope).unwrap_or_default();
    let scope = narrowed.unwrap_or(granted);
    let aud = audience(state, client, grant.resource.as_deref())?;
    let (scope, permissions) = rbac_claims::narrow(&scope, entitled, registered);
    let sign_error = |e: tokens::SignError| OAuthError::from(anyhow::Error::from(e));
    let issued = tokens::issue_access_token(
        state,
        AccessTokenRequest {
            subject: &user.id,
            client_id: client.id.as_str(),
            audience: aud,
            scope: &scope,
            ttl: client.access_token_ttl,
            auth_time: Some(grant.auth_time),
            acr: grant.acr.clone(),
            amr: grant
                .amr
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            grant_id: Some(grant.id.clone()),
            session_id: grant.session_id.clone(),
            roles: entitled.roles.clone(),
            permissions,
        },
    )
    .map_err(sign_error)?;
    let id_token = if scope.contains("openid") {
        Some(
            id_token::issue(
                state,
                client,
                user,
                &scope,
                &Authentication {
                    auth_time: grant.auth_time,
                    amr: &grant.amr,
                    acr: grant.acr.as_deref(),
                    nonce: if with_nonce { grant.nonce.as_deref() } else { None },
                    session_id: grant.session_id.as_deref(),
                },
                scope.contains("roles").then_some(entitled.roles.as_slice()),
                Some(&issued.token),
            )
            .map_err(sign_error)?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: client.access_token_ttl,
        scope: scope.to_string(),
        refresh_token: refresh_token.clone(),
        id_token,
    })
}

enum Rotation {
    Rotated(Box<Issuance>),
    Refused(OAuthError),
}

/// The purpose of the key that seals successors at rest (derived from the
/// key-encryption secret); the old token's hash is the AEAD context, so a sealed
/// successor cannot be moved to another row.
const SUCCESSOR_KEY: &str = "refresh-successor";

/// RFC 9700 §4.14.2 reuse grace: `row` was already used. Within
/// `tokens.refresh_reuse_grace_secs` of that use, and while its successor is still
/// unused, the same client gets the same successor again (its response was lost).
/// `None` means a replay.
fn grace_successor(
    conn: &mut crate::db::AnyConnection,
    row: &grants::RefreshRow,
    now: i64,
    grace: i64,
    key: &[u8; 32],
) -> Result<Option<String>, DbError> {
    let (Some(used_at), Some(hash), Some(sealed)) = (row.used_at, &row.successor_hash, &row.successor_sealed) else {
        return Ok(None);
    };
    if grace <= 0 || now >= used_at + grace {
        return Ok(None);
    }
    // After the successor was used, the client has the response: the old token
    // presented again is a replay.
    if grants::find_refresh_row(conn, hash)?.is_none_or(|s| s.used_at.is_some()) {
        return Ok(None);
    }
    let Ok(token) = crypto::open(key, sealed, &row.token_hash).map(String::from_utf8) else {
        tracing::error!("a sealed refresh successor cannot be opened; treated as a replay");
        return Ok(None);
    };
    Ok(token.ok().filter(|t| crypto::sha256_hex(t) == *hash))
}

async fn refresh(
    state: &AppState,
    client: &Client,
    presented: &str,
    scope: Option<Scopes>,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows(GrantType::RefreshToken) {
        return Err(OAuthError::UnauthorizedClient("this client may not use refresh tokens"));
    }
    let token_hash = crypto::sha256_hex(presented);
    let now = state.clock.now();
    let client_id = client.id.to_string();
    let requested = scope.clone();
    let grace = state.config.tokens.refresh_reuse_grace_secs;
    let key = state.secrets.derive_key(SUCCESSOR_KEY);
    // Read before the transaction (cached, idempotent): after the commit only signing is left.
    let registered = rbac_claims::registered(&state.db, &state.rbac).await?;
    let issuer = state.config.issuer_str().to_owned();
    let client_audience = client.audience.clone();
    let outcome = state
        .db
        .transaction(move |conn| -> Result<Rotation, DbError> {
            let Some((row, grant)) = grants::find_refresh(conn, &token_hash)? else {
                return Ok(Rotation::Refused(OAuthError::InvalidGrant("unknown refresh token")));
            };
            if grant.client_id != client_id {
                return Ok(Rotation::Refused(OAuthError::InvalidGrant(
                    "the refresh token was issued to another client",
                )));
            }
            if grant.revoked_at.is_some() {
                return Ok(Rotation::Refused(OAuthError::InvalidGrant(
                    "the refresh token has been revoked",
                )));
            }
            if grant.expires_at <= now {
                return Ok(Rotation::Refused(OAuthError::InvalidGrant(
                    "the refresh token has expired",
                )));
            }
            // Checked before rotating, so a refused request leaves the token usable.
            if let Some(requested) = &requested
                && !requested.is_subset(&Scopes::parse(&grant.scope).unwrap_or_default())
            {
                return Ok(Rotation::Refused(OAuthError::InvalidScope(
                    "a refresh cannot widen the granted scope".into(),
                )));
            }
            let user = match users::find_by_id(conn, &grant.user_id)? {
                Some(user) if !user.disabled => user,
                _ => return Ok(Rotation::Refused(OAuthError::InvalidGrant("the user is disabled"))),
            };
            let audience = permission_audience(&issuer, client_audience.as_deref(), grant.resource.as_deref());
            let entitled = rbac_claims::effective_in(conn, SubjectRef::User(&user.id), audience.as_deref())?;
            let actor = crate::audit::Actor::client(&client_id, None);
            let target = format!("user:{}", grant.user_id);
            let next = crypto::random_token();
            let next_hash = crypto::sha256_hex(&next);
            let sealed = crypto::seal(&key, next.as_bytes(), &token_hash).map_err(|e| DbError::Task(e.to_string()))?;
            let claimed = row.used_at.is_none() && grants::use_refresh(conn, &token_hash, now, &next_hash, &sealed)?;
            if !claimed {
                // Used already, or a concurrent rotation claimed it first (on PostgreSQL
                // the update waited for that one to commit): read what it recorded.
                let row = grants::find_refresh_row(conn, &token_hash)?.unwrap_or(row);
                if let Some(successor) = grace_successor(conn, &row, now, grace, &key)? {
                    crate::audit::record(
                        conn,
                        &actor,
                        "token.refresh_retry",
                        Some(&target),
                        serde_json::json!({ "grant": grant.id }),
                        now,
                    )?;
                    return Ok(Rotation::Rotated(Box::new(Issuance {
                        grant,
                        user,
                        entitled,
                        refresh_token: Some(successor),
                    })));
                }
                // RFC 9700 §4.14.2: a rotated token presented again means it leaked; end the family.
                grants::revoke(conn, &grant.id, now)?;
                crate::audit::record(
                    conn,
                    &actor,
                    "token.refresh_replay",
                    Some(&target),
                    serde_json::json!({ "grant": grant.id, "revoked": "family" }),
                    now,
                )?;
                tracing::warn!(client_id = %client_id, grant_id = %grant.id, "refresh token replayed; family revoked");
                return Ok(Rotation::Refused(OAuthError::InvalidGrant(
                    "the refresh token was already used",
                )));
            }
            crate::audit::record(
                conn,
                &actor,
                "token.refresh",
                Some(&target),
                serde_json::json!({ "grant": grant.id }),
                now,
            )?;
            grants::insert_refresh(
                conn,
                &grants::RefreshRow {
                    token_hash: next_hash,
                    grant_id: grant.id.clone(),
                    created_at: now,
                    used_at: None,
                    successor_hash: None,
                    successor_sealed: None,
                },
            )?;
            Ok(Rotation::Rotated(Box::new(Issuance {
                grant,
                user,
                entitled,
                refresh_token: Some(next),
            })))
        })
        .await?;
    match outcome {
        Rotation::Refused(error) => Err(error),
        Rotation::Rotated(issuance) => respond(state, client, &issuance, &registered, false, scope),
    }
}
