//! Standard claims by scope (OIDC Core §5.4): profile, email, phone, address.

use serde_json::{Map, Value, json};

use crate::db::models::users::UserRow;
use crate::domain::Scopes;

/// The claims about `user` that `scopes` allow, `sub` included.
pub fn for_scopes(user: &UserRow, scopes: &Scopes) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.id));
    let mut put = |name: &str, value: Option<&String>| {
        if let Some(v) = value {
            claims.insert(name.into(), json!(v));
        }
    };
    if scopes.contains("profile") {
        put("name", user.name.as_ref());
        put("given_name", user.given_name.as_ref());
        put("family_name", user.family_name.as_ref());
        put("nickname", user.nickname.as_ref());
        put("picture", user.picture.as_ref());
        put("locale", user.locale.as_ref());
        put("zoneinfo", user.zoneinfo.as_ref());
        put("preferred_username", Some(&user.username));
    }
    if scopes.contains("email") {
        put("email", user.email.as_ref());
    }
    if scopes.contains("phone") {
        put("phone_number", user.phone_number.as_ref());
    }
    if scopes.contains("profile") {
        claims.insert("updated_at".into(), json!(user.updated_at));
    }
    if scopes.contains("email") && user.email.is_some() {
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if scopes.contains("phone") && user.phone_number.is_some() {
        claims.insert("phone_number_verified".into(), json!(user.phone_number_verified));
    }
    if scopes.contains("address")
        && let Some(address) = user
            .address
            .as_deref()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
    {
        claims.insert("address".into(), address);
    }
    claims
}

/// Every claim name oxidp can return, for discovery.
pub const SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "sid",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "preferred_username",
    "picture",
    "locale",
    "zoneinfo",
    "updated_at",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "address",
    "roles",
];
