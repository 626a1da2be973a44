//! OIDC endpoints: discovery, JWKS and userinfo.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::http::error::{BearerHttpError, no_store};
use crate::http::extractors::BearerToken;
use crate::oidc::discovery;
use crate::oidc::userinfo;
use crate::state::AppState;

/// Discovery and JWKS may be cached briefly; new keys are published an hour
/// (`keys.publish_ahead_secs`) before they sign, well beyond this.
const PUBLIC_CACHE: &str = "public, max-age=300";

pub async fn configuration(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, PUBLIC_CACHE))
        .json(discovery::metadata(&state.config))
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, PUBLIC_CACHE))
        .content_type("application/jwk-set+json")
        .body(state.keys.jwks(state.clock.now()).to_string())
}

/// GET or POST /userinfo.
pub async fn userinfo(
    state: web::Data<AppState>,
    BearerToken(token): BearerToken,
) -> Result<HttpResponse, BearerHttpError> {
    let claims = userinfo::userinfo(&state, token.expose()).await?;
    Ok(HttpResponse::Ok().insert_header(no_store()).json(claims))
}
