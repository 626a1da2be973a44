//! Request handlers: thin adapters from HTTP to one domain call each.

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

use actix_web::HttpResponse;
use askama::Template;

use crate::http::error::{PageError, no_store};

/// Renders a page as an uncacheable HTML response.
pub fn page(template: &impl Template) -> Result<HttpResponse, PageError> {
    Ok(HttpResponse::Ok()
        .insert_header(no_store())
        .content_type("text/html; charset=utf-8")
        .body(template.render()?))
}
