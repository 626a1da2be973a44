//! Request handlers: thin adapters from HTTP to the domain. Each extracts
//! (forms, `extractors`), calls the domain (`authn`, `accounts`, `oauth`, `oidc`,
//! `admin`) and maps the result to a page, a redirect or JSON (`pages`, `error`).
//! A handler may call a few domain functions to render one page, but holds no
//! policy and no query, and never imports another handler: what two handlers
//! share lives in `http::pages`, `http::extractors` or `http::csrf`.

pub mod account;
pub mod admin;
pub mod assets;
pub mod health;
pub mod login;
pub mod logout;
pub mod mfa;
pub mod oauth;
pub mod oidc;
pub mod passkey;
pub mod session;
