//! Authentication of people: password hashing (`password`, `legacy`,
//! `argon2_pool`), the password check with its limits and risk score (`login`,
//! `risk`, `shared_limits`: the sign-in limits in Redis), second factors (`mfa`: authenticator apps and recovery codes;
//! `webauthn`: security keys and passkeys), the sign-in flow that joins them
//! (`signin`) and browser sessions (`session`). No actix types.

pub mod argon2_pool;
pub mod legacy;
pub mod login;
pub mod mfa;
pub mod password;
pub mod risk;
pub mod session;
pub mod shared_limits;
pub mod signin;
pub mod webauthn;
