//! Row types and queries, one module per table group. Functions take `&mut AnyConnection`
//! and never open transactions themselves; callers compose them.

pub mod audit;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod grants;
pub mod keys;
pub mod logins;
pub mod mfa;
pub mod rbac;
pub mod sessions;
pub mod settings;
pub mod users;
pub mod webauthn;
