//! Authentication of people: password hashing, the sign-in pipeline and browser sessions.

pub mod argon2_pool;
pub mod legacy;
pub mod login;
pub mod mfa;
pub mod password;
pub mod risk;
pub mod session;
pub mod webauthn;
