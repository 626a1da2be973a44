//! Authentication of people: password hashing, the sign-in pipeline and browser sessions.

pub mod login;
pub mod password;
pub mod session;
