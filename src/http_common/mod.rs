//! HTTP answers shared by the identity provider and the resource servers built on
//! `resource_server` (the commerce API): RFC 9457 problem documents, RFC 6750
//! bearer tokens and challenges, `Cache-Control: no-store` and `Retry-After`.
//! A leaf module: it imports actix-web and serde_json, nothing of the IdP, so the
//! commerce server can use it without reaching into IdP internals.

pub mod bearer;
pub mod problem;

pub use bearer::{BearerToken, MalformedBearer, bearer_challenge};
pub use problem::{Problem, no_store, set_retry_after};
