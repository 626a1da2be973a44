//! actix-web adapters only: routes, extractors, middleware and thin handlers that
//! parse a request, call one domain function and map the result.

pub mod browser_binding;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod extractors;
pub mod handlers;
pub mod middleware;
pub mod pages;
pub mod routes;
