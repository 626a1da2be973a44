//! Newtypes that make invalid values unrepresentable: parse at the edge, then trust.

pub mod cidr;
pub mod client_id;
pub mod email;
pub mod password;
pub mod redirect_uri;
pub mod scope;
mod user_id;
pub mod username;

pub use cidr::Cidr;
pub use client_id::ClientId;
pub use email::Email;
pub use password::{Password, PasswordPolicyError};
pub use redirect_uri::RedirectUri;
pub use scope::Scopes;
pub use user_id::UserId;
pub use username::Username;
