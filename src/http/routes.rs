//! The URL map.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, error, web};

use crate::http::error::{PageError, html_error, problem};
use crate::http::handlers::{account, assets, health, login, logout, oauth, oidc};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig, state: &web::Data<AppState>) {
    let limit = state.config.http.max_body_bytes;
    cfg.app_data(
        web::FormConfig::default()
            .limit(limit.min(16 * 1024))
            .error_handler(|err, _req| {
                tracing::info!(error = %err, "malformed form");
                match &err {
                    error::UrlencodedError::Overflow { .. } => PageError::TooLarge.into(),
                    error::UrlencodedError::ContentType => {
                        PageError::BadRequest("The form was not sent as a web form.".to_owned()).into()
                    }
                    _ => PageError::BadRequest("The form was incomplete or malformed.".to_owned()).into(),
                }
            }),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|_err, _req| {
            PageError::BadRequest("The address has malformed parameters.".to_owned()).into()
        }),
    )
    .app_data(web::JsonConfig::default().limit(limit))
    .app_data(web::PayloadConfig::default().limit(limit))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route(
        "/",
        web::get().to(|| async { HttpResponse::Found().insert_header(("Location", "/account")).finish() }),
    )
    .route("/login", web::get().to(login::show))
    .route("/login", web::post().to(login::submit))
    .route("/logout", web::get().to(logout::confirm))
    .route("/logout", web::post().to(logout::submit))
    .route("/account", web::get().to(account::show))
    .route("/account/password", web::post().to(account::change_password))
    .route("/account/consents/revoke", web::post().to(account::withdraw_consent))
    .route("/authorize", web::get().to(oauth::authorize))
    .route("/authorize", web::post().to(oauth::authorize))
    .route("/authorize/continue", web::get().to(oauth::resume))
    .route("/consent", web::get().to(oauth::consent))
    .route("/consent", web::post().to(oauth::consent_submit))
    // Machine endpoints that browsers' JavaScript may call cross-origin (never /authorize).
    .service(
        web::resource("/.well-known/openid-configuration")
            .wrap(cors())
            .route(web::get().to(oidc::configuration)),
    )
    .service(
        web::resource("/.well-known/oauth-authorization-server")
            .wrap(cors())
            .route(web::get().to(oidc::configuration)),
    )
    .service(web::resource("/jwks").wrap(cors()).route(web::get().to(oidc::jwks)))
    .service(web::resource("/token").wrap(cors()).route(web::post().to(oauth::token)))
    .service(
        web::resource("/userinfo")
            .wrap(cors())
            .route(web::get().to(oidc::userinfo))
            .route(web::post().to(oidc::userinfo)),
    )
    .service(
        web::resource("/revoke")
            .wrap(cors())
            .route(web::post().to(oauth::revoke)),
    )
    .service(
        web::resource("/introspect")
            .wrap(cors())
            .route(web::post().to(oauth::introspect)),
    )
    .route("/static/{path:.*}", web::get().to(assets::serve))
    .default_service(web::to(not_found));
}

/// Unknown routes: problem+json for API callers, a page for people.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let wants_json = req.path().starts_with("/admin/")
        || req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("json") && !accept.contains("html"));
    if wants_json {
        problem(StatusCode::NOT_FOUND, "No resource at this address.")
    } else {
        html_error(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
        )
    }
}

/// CORS for machine endpoints: any origin, no credentials (these endpoints use
/// tokens and client authentication, never cookies).
fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["GET", "POST"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::ACCEPT,
        ])
        .expose_headers([actix_web::http::header::WWW_AUTHENTICATE])
        .max_age(3600)
}
