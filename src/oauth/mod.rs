//! OAuth 2.0 protocol logic, free of HTTP types: clients and their authentication,
//! the authorization and token endpoints, PKCE, access tokens, revocation and
//! introspection. Errors are `OAuthError`, each variant citing its RFC section.

pub mod authorize;
pub mod client_auth;
pub mod clients;
pub mod error;
pub mod introspect;
pub mod params;
pub mod pkce;
pub mod revoke;
pub mod token;
pub mod tokens;
