//! OIDC endpoints: discovery, JWKS and userinfo.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::error::{BearerHttpError, no_store};
use crate::oauth::params::Params;
use crate::oidc::discovery;
use crate::oidc::userinfo::{self, BearerError};
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

/// The bearer token from the `Authorization` header or (POST) the form body;
/// both at once is an error (RFC 6750 §2).
fn bearer_token(req: &HttpRequest, body: &[u8]) -> Result<String, BearerError> {
    let from_header = match req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(value) => {
            let (scheme, token) = value
                .split_once(' ')
                .ok_or(BearerError::InvalidRequest("malformed Authorization header"))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(BearerError::Missing);
            }
            Some(token.trim().to_owned())
        }
        None => None,
    };
    let from_body = if req.method() == actix_web::http::Method::POST && !body.is_empty() {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            Params::parse(body)
                .map_err(|_| BearerError::InvalidRequest("malformed form body"))?
                .get("access_token")
                .map(str::to_owned)
        } else {
            None
        }
    } else {
        None
    };
    if req.query_string().contains("access_token=") {
        return Err(BearerError::InvalidRequest(
            "send the access token in the Authorization header, not the URL",
        ));
    }
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest(
            "the access token was sent more than one way",
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(BearerError::Missing),
    }
}

/// GET or POST /userinfo.
pub async fn userinfo(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, BearerHttpError> {
    let token = bearer_token(&req, &body)?;
    let claims = userinfo::userinfo(&state, &token).await?;
    Ok(HttpResponse::Ok().insert_header(no_store()).json(claims))
}
