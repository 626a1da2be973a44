//! Integration tests: the real server over HTTP, the real `oxidp` binary.
//! Run against SQLite by default, or PostgreSQL with `TEST_DATABASE_URL`.

mod admin_api;
mod authorize_flow;
mod bearer;
mod browser;
mod cli;
mod clients;
mod discovery;
mod errors;
mod headers;
mod health;
mod helpers;
mod legacy_hashes;
mod lifecycle;
mod lifecycle_browser;
mod login;
mod login_protection;
mod logout;
mod mfa;
mod oauth_attacks;
mod oidc_rp;
mod passwords;
mod rbac;
mod sessions;
mod soft_authenticator;
mod webauthn;
mod webauthn_browser;
