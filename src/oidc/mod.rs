//! OpenID Connect on top of OAuth: signing keys, ID tokens, claims, userinfo,
//! discovery metadata, and RP-initiated logout.

pub mod claims;
pub mod discovery;
pub mod end_session;
pub mod id_token;
pub mod keys;
pub mod userinfo;
