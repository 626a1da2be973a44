//! ID tokens (OIDC Core §2, §3.1.3.6): signed with the client's chosen algorithm,
//! carrying `at_hash` for the access token issued alongside, `sid`, `nonce`,
//! `auth_time`, `amr`, `acr`, and the scope-allowed profile claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::db::models::users::UserRow;
use crate::domain::Scopes;
use crate::oauth::clients::Client;
use crate::oauth::tokens::{self, SignError};
use crate::oidc::claims;
use crate::oidc::keys::SigningAlg;
use crate::state::AppState;

/// What the ID token asserts about the authentication.
pub struct Authentication<'a> {
    pub auth_time: i64,
    pub amr: &'a str,
    pub acr: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

/// OIDC Core §3.1.3.6: the left half of the hash of the access token, base64url.
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let digest: Vec<u8> = match alg {
        SigningAlg::ES256 | SigningAlg::RS256 => Sha256::digest(access_token.as_bytes()).to_vec(),
        // Ed25519 signs with SHA-512.
        SigningAlg::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

pub fn issue(
    state: &AppState,
    client: &Client,
    user: &UserRow,
    scopes: &Scopes,
    authn: &Authentication<'_>,
    roles: Option<&[String]>,
    access_token: Option<&str>,
) -> Result<String, SignError> {
    let now = state.clock.now();
    let mut map = claims::for_scopes(user, scopes);
    map.insert("iss".into(), json!(state.config.issuer()));
    map.insert("aud".into(), json!(client.id.as_str()));
    map.insert("azp".into(), json!(client.id.as_str()));
    map.insert("iat".into(), json!(now));
    map.insert("exp".into(), json!(now + client.access_token_ttl.max(300)));
    map.insert("auth_time".into(), json!(authn.auth_time));
    let amr: Vec<&str> = authn.amr.split(' ').filter(|s| !s.is_empty()).collect();
    if !amr.is_empty() {
        map.insert("amr".into(), json!(amr));
    }
    if let Some(acr) = authn.acr {
        map.insert("acr".into(), json!(acr));
    }
    if let Some(nonce) = authn.nonce {
        map.insert("nonce".into(), json!(nonce));
    }
    if let Some(sid) = authn.session_id {
        map.insert("sid".into(), json!(sid));
    }
    if let Some(roles) = roles {
        map.insert("roles".into(), json!(roles));
    }
    if let Some(at) = access_token {
        map.insert("at_hash".into(), json!(at_hash(client.id_token_alg, at)));
    }
    tokens::sign(state, client.id_token_alg, "JWT", map)
}

/// The `sub` of an ID token we issued, accepted even after it expired (OIDC Core
/// §3.1.2.1 `id_token_hint`, RP-Initiated Logout §2). Also returns `aud`.
pub fn verify_hint(state: &AppState, token: &str) -> Option<(String, Vec<String>, Option<String>)> {
    let (typ, claims) = tokens::verify_jwt(state, token).ok()?;
    if typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")) {
        return None;
    }
    if claims.get("iss").and_then(Value::as_str) != Some(state.config.issuer().as_str()) {
        return None;
    }
    let sub = claims.get("sub")?.as_str()?.to_owned();
    let aud = match claims.get("aud")? {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => return None,
    };
    let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    Some((sub, aud, sid))
}

pub fn subject_of_hint(state: &AppState, token: &str) -> Option<String> {
    verify_hint(state, token).map(|(sub, _, _)| sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_oidc_example() {
        // OIDC Core A.3: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" → at_hash "77QmUPtjPfzWtF2AnpK9RQ" (RS256).
        assert_eq!(
            at_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
