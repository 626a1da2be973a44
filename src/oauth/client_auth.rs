//! Client authentication at the token, revocation and introspection endpoints
//! (RFC 6749 §2.3, OIDC Core §9): client_secret_basic, client_secret_post,
//! private_key_jwt (RFC 7523, with `jti` replay protection), or `none` for public
//! clients. Exactly one method per request.

use std::sync::Arc;

use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsVerifier, PS256, RS256};

use crate::crypto;
use crate::oauth::clients::{AuthMethod, Client};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::state::AppState;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest accepted lifetime of a client assertion.
const MAX_ASSERTION_LIFETIME: i64 = 600;

/// How the client tried to authenticate.
#[derive(Debug)]
pub enum ClientCredentials {
    Basic {
        id: String,
        secret: String,
    },
    Post {
        id: String,
        secret: String,
    },
    Assertion {
        id: Option<String>,
        assertion: String,
    },
    /// A public client naming itself.
    Public {
        id: String,
    },
}

impl ClientCredentials {
    /// The client id the caller claims (an assertion names it inside the JWT).
    pub fn claimed_id(&self) -> Option<&str> {
        match self {
            ClientCredentials::Basic { id, .. }
            | ClientCredentials::Post { id, .. }
            | ClientCredentials::Public { id } => Some(id),
            ClientCredentials::Assertion { id, .. } => id.as_deref(),
        }
    }

    /// Reads the credentials from the `Authorization` header and the form.
    pub fn from_request(authorization: Option<&str>, params: &Params) -> Result<Self, OAuthError> {
        let basic = authorization
            .map(|header| {
                let encoded = header
                    .strip_prefix("Basic ")
                    .or_else(|| header.strip_prefix("basic "))
                    .ok_or(OAuthError::InvalidClient("unsupported Authorization scheme"))?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| OAuthError::InvalidClient("malformed Basic credentials"))?;
                let decoded =
                    String::from_utf8(decoded).map_err(|_| OAuthError::InvalidClient("malformed Basic credentials"))?;
                let (id, secret) = decoded
                    .split_once(':')
                    .ok_or(OAuthError::InvalidClient("malformed Basic credentials"))?;
                // RFC 6749 §2.3.1: both parts are form-urlencoded first.
                let unescape = |s: &str| -> String {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                Ok::<_, OAuthError>((unescape(id), unescape(secret)))
            })
            .transpose()?;
        let post_secret = params.get("client_secret");
        let assertion = params.get("client_assertion");
        let methods = [basic.is_some(), post_secret.is_some(), assertion.is_some()]
            .iter()
            .filter(|m| **m)
            .count();
        if methods > 1 {
            return Err(OAuthError::InvalidRequest(
                "use exactly one client authentication method".to_owned(),
            ));
        }
        let form_id = params.get("client_id");
        if let Some((id, secret)) = basic {
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id does not match the credentials".to_owned(),
                ));
            }
            return Ok(ClientCredentials::Basic { id, secret });
        }
        if let Some(secret) = post_secret {
            let id = form_id.ok_or_else(|| OAuthError::InvalidRequest("missing parameter `client_id`".to_owned()))?;
            return Ok(ClientCredentials::Post {
                id: id.to_owned(),
                secret: secret.to_owned(),
            });
        }
        if let Some(assertion) = assertion {
            if params.get("client_assertion_type") != Some(JWT_BEARER) {
                return Err(OAuthError::InvalidRequest(format!(
                    "client_assertion_type must be {JWT_BEARER}"
                )));
            }
            return Ok(ClientCredentials::Assertion {
                id: form_id.map(str::to_owned),
                assertion: assertion.to_owned(),
            });
        }
        match form_id {
            Some(id) => Ok(ClientCredentials::Public { id: id.to_owned() }),
            None => Err(OAuthError::InvalidClient("client authentication is required")),
        }
    }
}

/// Reads the credentials (`authorization`: the `Authorization` header) and
/// authenticates the client, behind the limit on failures: failed client
/// authentications are limited per claimed client id and per address (`ip`), and
/// while either is blocked the answer is `slow_down` (429) without checking.
pub async fn authenticate_limited(
    state: &AppState,
    authorization: Option<&str>,
    params: &Params,
    ip: Option<&str>,
) -> Result<Arc<Client>, OAuthError> {
    let credentials = ClientCredentials::from_request(authorization, params)?;
    // The keys are built only when needed: nothing is blocked, or this one failed.
    let claimed = credentials.claimed_id().map(str::to_owned);
    let keys = || {
        [
            format!("client:{}", claimed.as_deref().unwrap_or("-")),
            format!("ip:{}", crate::authn::risk::limiter_key(ip.unwrap_or_default())),
        ]
    };
    if state.limiters.any_blocked() {
        let [client_key, ip_key] = keys();
        if let Err(retry_after) = state.limiters.client_blocked(&[&client_key, &ip_key]) {
            crate::metrics::Metrics::inc(&state.metrics.client_auth_slowed);
            return Err(OAuthError::SlowDown { retry_after });
        }
    }
    let result = authenticate(state, credentials).await;
    if let Err(OAuthError::InvalidClient(_)) = &result {
        let [client_key, ip_key] = keys();
        state.limiters.client_failed(&[&client_key, &ip_key]);
    }
    result
}

/// Authenticates the client; every failure is `invalid_client` (401).
pub async fn authenticate(state: &AppState, credentials: ClientCredentials) -> Result<Arc<Client>, OAuthError> {
    let lookup = |id: String| async move {
        state
            .clients
            .get(&state.db, &id)
            .await?
            .ok_or(OAuthError::InvalidClient("unknown client or invalid credentials"))
    };
    match credentials {
        ClientCredentials::Basic { id, secret } => {
            let client = lookup(id).await?;
            check_secret(&client, &secret, AuthMethod::ClientSecretBasic)?;
            Ok(client)
        }
        ClientCredentials::Post { id, secret } => {
            let client = lookup(id).await?;
            check_secret(&client, &secret, AuthMethod::ClientSecretPost)?;
            Ok(client)
        }
        ClientCredentials::Public { id } => {
            let client = lookup(id).await?;
            if client.auth_method != AuthMethod::None {
                return Err(OAuthError::InvalidClient("this client must authenticate"));
            }
            Ok(client)
        }
        ClientCredentials::Assertion { id, assertion } => authenticate_assertion(state, id, &assertion).await,
    }
}

/// Compares the secret's SHA-256 in constant time; the method used must be the
/// one the client registered.
fn check_secret(client: &Client, secret: &str, used: AuthMethod) -> Result<(), OAuthError> {
    let Some(expected) = &client.secret_hash else {
        return Err(OAuthError::InvalidClient(
            "this client does not authenticate with a secret",
        ));
    };
    if client.auth_method != used {
        return Err(OAuthError::InvalidClient(
            "authentication method not registered for this client",
        ));
    }
    if crypto::constant_time_eq(crypto::sha256_hex(secret).as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(OAuthError::InvalidClient("unknown client or invalid credentials"))
    }
}

/// A verifier for `jwk` under `alg`. The key is chosen by `select_key`, so the
/// verifier itself does not compare `kid` (josekit would refuse an assertion
/// without one whenever the registered key has one).
fn verifier_for(alg: &str, jwk: &Jwk) -> Option<Box<dyn JwsVerifier>> {
    macro_rules! without_kid {
        ($verifier:expr) => {
            $verifier.ok().map(|mut v| {
                v.remove_key_id();
                Box::new(v) as Box<dyn JwsVerifier>
            })
        };
    }
    match alg {
        "RS256" => without_kid!(RS256.verifier_from_jwk(jwk)),
        "PS256" => without_kid!(PS256.verifier_from_jwk(jwk)),
        "ES256" => without_kid!(ES256.verifier_from_jwk(jwk)),
        "EdDSA" => without_kid!(EdDSA.verifier_from_jwk(jwk)),
        _ => None,
    }
}

/// Picks the client's key for an assertion. RFC 7515 §4.1.4 makes `kid`
/// optional; OIDC Core §10.1 requires it only when the JWK Set holds several
/// keys. So: the key named by `kid`; else, when exactly one registered key is
/// usable for `alg`, that one (whether the assertion or the key lacks a `kid`,
/// or the key has none to compare). `None` when the choice is ambiguous or empty.
fn select_key(alg: &str, kid: Option<&str>, keys: &[&Jwk]) -> Option<Box<dyn JwsVerifier>> {
    if let Some(kid) = kid
        && let Some(named) = keys.iter().find(|k| k.key_id() == Some(kid))
    {
        return verifier_for(alg, named);
    }
    let mut usable = keys
        .iter()
        // A key that names itself differently from the assertion's `kid` is not this one.
        .filter(|k| kid.is_none() || k.key_id().is_none())
        .filter_map(|k| verifier_for(alg, k));
    let only = usable.next()?;
    usable.next().is_none().then_some(only)
}

/// RFC 7523 §3: iss = sub = client_id, aud names us, unexpired, short-lived, `jti` unique.
async fn authenticate_assertion(
    state: &AppState,
    id: Option<String>,
    assertion: &str,
) -> Result<Arc<Client>, OAuthError> {
    const BAD: OAuthError = OAuthError::InvalidClient("invalid client assertion");
    if assertion.len() > 8192 {
        return Err(BAD);
    }
    let header = josekit::jwt::decode_header(assertion).map_err(|_| BAD)?;
    let alg = header.claim("alg").and_then(|v| v.as_str()).ok_or(BAD)?.to_owned();
    let kid = header.claim("kid").and_then(|v| v.as_str()).map(str::to_owned);
    // Read `iss` before verifying, only to know whose keys to verify with.
    let payload_part = assertion.split('.').nth(1).ok_or(BAD)?;
    let unverified: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload_part)
            .map_err(|_| BAD)?,
    )
    .map_err(|_| BAD)?;
    let issuer = unverified.get("iss").and_then(|v| v.as_str()).ok_or(BAD)?.to_owned();
    if id.as_deref().is_some_and(|id| id != issuer) {
        return Err(OAuthError::InvalidClient("client_id does not match the assertion"));
    }
    let client = state
        .clients
        .get(&state.db, &issuer)
        .await?
        .ok_or(OAuthError::InvalidClient("unknown client or invalid credentials"))?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(OAuthError::InvalidClient("this client does not use private_key_jwt"));
    }
    let jwks = client.jwks.as_ref().ok_or(BAD)?;
    let verifier = select_key(&alg, kid.as_deref(), &jwks.keys()).ok_or(BAD)?;
    let (payload, _) = josekit::jwt::decode_with_verifier(assertion, verifier.as_ref()).map_err(|_| BAD)?;
    let claims = payload.claims_set();
    let now = state.clock.now();
    let str_claim = |name: &str| claims.get(name).and_then(|v| v.as_str());
    if str_claim("iss") != Some(client.id.as_str()) || str_claim("sub") != Some(client.id.as_str()) {
        return Err(BAD);
    }
    let issuer_url = state.config.issuer();
    let token_endpoint = format!("{issuer_url}/token");
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => *a == issuer_url || *a == token_endpoint,
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str())
            .any(|a| a == issuer_url || a == token_endpoint),
        _ => false,
    };
    if !aud_ok {
        return Err(OAuthError::InvalidClient(
            "client assertion audience must be this server",
        ));
    }
    let exp = claims.get("exp").and_then(|v| v.as_i64()).ok_or(BAD)?;
    if exp <= now || exp > now + MAX_ASSERTION_LIFETIME {
        return Err(OAuthError::InvalidClient("client assertion expired or too long-lived"));
    }
    if claims
        .get("nbf")
        .and_then(|v| v.as_i64())
        .is_some_and(|nbf| nbf > now + 60)
    {
        return Err(BAD);
    }
    let jti = str_claim("jti")
        .ok_or(OAuthError::InvalidClient("client assertion needs a jti"))?
        .to_owned();
    let client_id = client.id.to_string();
    let fresh = state
        .db
        .run(move |conn| crate::db::models::clients::remember_assertion(conn, &client_id, &jti, exp))
        .await?;
    if !fresh {
        tracing::warn!(client_id = %client.id, "client assertion replayed");
        return Err(OAuthError::InvalidClient("client assertion already used"));
    }
    Ok(client)
}
