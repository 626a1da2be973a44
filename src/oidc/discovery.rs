//! OpenID Provider metadata (OIDC Discovery §3, RFC 8414 §2).

use serde_json::{Value, json};

use crate::config::Config;
use crate::oauth::clients::AuthMethod;
use crate::oidc::claims;
use crate::oidc::keys::SigningAlg;

pub fn metadata(config: &Config) -> Value {
    let issuer = config.issuer();
    let algs: Vec<&str> = SigningAlg::ALL.iter().map(|a| a.name()).collect();
    let auth_methods: Vec<&str> = AuthMethod::NAMES
        .iter()
        .copied()
        .filter(|m| *m != "none")
        .chain(["none"])
        .collect();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "scopes_supported": ["openid", "profile", "email", "phone", "address", "offline_access", "roles"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims::SUPPORTED,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": [crate::oauth::authorize::ACR_PASSWORD, crate::oauth::authorize::ACR_MFA],
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": false,
    })
}
