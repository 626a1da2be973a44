//! Integration tests: the real server over HTTP, the real `oxidp` binary.
//! Run against SQLite by default, or PostgreSQL with `TEST_DATABASE_URL`.

mod bearer;
mod cli;
mod errors;
mod headers;
mod health;
mod helpers;
mod login;
mod oauth_attacks;
mod oidc_rp;
mod passwords;
mod sessions;
