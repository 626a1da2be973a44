//! `GET /v1/me`: who the verified token says the caller is — subject, client,
//! permissions for this audience, whether it is a service account, and when the
//! token expires. Answered from the token alone (no database), so it is also the
//! cheapest protected route: what `bench/commerce.sh` measures token
//! verification with.

use actix_web::HttpResponse;
use serde::Serialize;

use super::openapi::Problem;
use crate::http_common::no_store;
use crate::resource_server::{Authenticated, Principal};

/// The caller, as the verified access token names it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The subject (`sub`): a person, or the client itself for client_credentials tokens.
    pub sub: String,
    pub client_id: String,
    /// The permissions this API sees (the `permissions` claim, or `scope`).
    pub permissions: Vec<String>,
    /// True for a client_credentials token (the client is its own subject).
    pub service_account: bool,
    /// The token's `exp` (Unix seconds).
    pub expires_at: i64,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Self {
        Me {
            sub: p.sub.clone(),
            client_id: p.client_id.clone(),
            permissions: p.permissions.iter().cloned().collect(),
            service_account: p.is_service_account(),
            expires_at: p.exp,
        }
    }
}

/// The caller of this request.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "commerce",
    responses(
        (status = 200, description = "The verified caller [local]", body = Me),
        (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No usable key set, or (`introspection = all`, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn me(auth: Authenticated) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(no_store())
        .json(Me::from(auth.principal.as_ref()))
}
