//! oxidp: a standalone OAuth 2.0 / OpenID Connect identity provider.
//!
//! The map of modules and request flows is in `docs/ARCHITECTURE.md`.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod clock;
pub mod commerce;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod heap;
pub mod housekeeping;
pub mod http;
pub mod http_common;
pub mod invalidation;
pub mod metrics;
pub mod oauth;
pub mod oidc;
pub mod rbac;
pub mod resource_server;
pub mod secrets;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod views;
