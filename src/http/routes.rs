//! The URL map.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, error, web};

use crate::admin::AdminError;
use crate::http::error::AdminHttpError;
use crate::http::error::{PageError, html_error, problem};
use crate::http::handlers::{account, admin, assets, health, login, logout, mfa, oauth, oidc, passkey, session};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig, state: &web::Data<AppState>) {
    let limit = state.config.http.max_body_bytes;
    if state.config.metrics.token.is_some() {
        // Behind its bearer token, `/metrics` may be scraped through the public
        // listener too; without one it exists only on the metrics listener.
        cfg.route("/metrics", web::get().to(health::metrics));
    }
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
    .route("/login/mfa", web::get().to(mfa::show))
    .route("/login/mfa", web::post().to(mfa::submit))
    .route(
        "/login/mfa/passkey/options",
        web::post().to(passkey::second_factor_options),
    )
    .route("/login/mfa/passkey", web::post().to(passkey::second_factor))
    .route("/login/passkey/options", web::post().to(passkey::passwordless_options))
    .route("/login/passkey", web::post().to(passkey::passwordless))
    .route("/account/passkeys/new", web::get().to(passkey::new))
    .route("/account/passkeys/options", web::post().to(passkey::register_options))
    .route("/account/passkeys", web::post().to(passkey::register))
    .route("/account/passkeys/{id}/rename", web::post().to(passkey::rename))
    .route("/account/passkeys/{id}/delete", web::get().to(passkey::delete_confirm))
    .route("/account/passkeys/{id}/delete", web::post().to(passkey::delete))
    .route("/account/mfa/totp", web::get().to(mfa::enrol))
    .route("/account/mfa/totp", web::post().to(mfa::confirm))
    .route("/account/mfa/recovery", web::get().to(mfa::recovery_confirm))
    .route("/account/mfa/recovery", web::post().to(mfa::recovery_regenerate))
    .route("/account/mfa/disable", web::get().to(mfa::disable_confirm))
    .route("/account/mfa/disable", web::post().to(mfa::disable))
    .route("/logout", web::get().to(logout::confirm))
    .route("/logout", web::post().to(logout::submit))
    .route("/account", web::get().to(account::show))
    .route("/account/password", web::post().to(account::change_password))
    .route("/account/consents/revoke", web::post().to(account::withdraw_consent))
    .route("/account/sessions/end", web::post().to(session::end_one))
    .route("/account/sessions/end-others", web::post().to(session::end_others))
    .route("/session/extend", web::post().to(session::extend))
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
    .service(admin_api(limit))
    .route("/static/{path:.*}", web::get().to(assets::serve))
    .default_service(web::to(not_found));
}

/// The metrics listener (`metrics.bind`): `/metrics` and nothing else.
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(health::metrics))
        .default_service(web::to(not_found));
}

/// The admin API: JSON in, JSON out, problem+json errors for every bad input.
fn admin_api(limit: usize) -> actix_web::Scope {
    let bad = |detail: String| -> actix_web::Error { AdminHttpError(AdminError::BadRequest(detail)).into() };
    web::scope("/admin/v1")
        .app_data(web::JsonConfig::default().limit(limit).error_handler(move |err, _| {
            match err {
                // RFC 9457 problem+json with the status that says what is wrong.
                error::JsonPayloadError::Overflow { .. } | error::JsonPayloadError::OverflowKnownLength { .. } => {
                    error::InternalError::from_response(
                        err,
                        problem(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("The JSON body is larger than {limit} bytes."),
                        ),
                    )
                    .into()
                }
                err => bad(format!("malformed JSON body: {err}")),
            }
        }))
        .app_data(web::QueryConfig::default().error_handler(move |err, _| bad(format!("malformed query: {err}"))))
        .app_data(web::PathConfig::default().error_handler(move |err, _| bad(format!("malformed path: {err}"))))
        .route("/users", web::get().to(admin::list_users))
        .route("/users", web::post().to(admin::create_user))
        .route("/users/{id}", web::get().to(admin::show_user))
        .route("/users/{id}", web::patch().to(admin::patch_user))
        .route("/users/{id}/unlock", web::post().to(admin::unlock_user))
        .route("/users/{id}/sessions", web::get().to(admin::user_sessions))
        .route("/users/{id}/sessions", web::delete().to(admin::end_user_sessions))
        .route("/users/{id}/sessions/{sid}", web::delete().to(admin::end_user_session))
        .route("/clients", web::get().to(admin::list_clients))
        .route("/clients", web::post().to(admin::create_client))
        .route("/clients/{id}", web::get().to(admin::show_client))
        .route("/clients/{id}", web::patch().to(admin::update_client))
        .route("/clients/{id}", web::delete().to(admin::delete_client))
        .route("/clients/{id}/secret", web::post().to(admin::rotate_secret))
        .route("/{kind:users|clients}/{id}/roles", web::get().to(admin::subject_roles))
        .route("/{kind:users|clients}/{id}/roles/{role}", web::put().to(admin::assign))
        .route(
            "/{kind:users|clients}/{id}/roles/{role}",
            web::delete().to(admin::unassign),
        )
        .route("/roles", web::get().to(admin::list_roles))
        .route("/roles", web::post().to(admin::create_role))
        .route("/roles/{name}", web::get().to(admin::show_role))
        .route("/roles/{name}", web::delete().to(admin::delete_role))
        .route("/roles/{name}/permissions/{permission}", web::put().to(admin::grant))
        .route(
            "/roles/{name}/permissions/{permission}",
            web::delete().to(admin::revoke),
        )
        .route("/roles/{name}/parents/{parent}", web::put().to(admin::add_parent))
        .route("/roles/{name}/parents/{parent}", web::delete().to(admin::remove_parent))
        .route("/permissions", web::get().to(admin::list_permissions))
        .route("/permissions", web::post().to(admin::create_permission))
        .route("/permissions/{name}", web::delete().to(admin::delete_permission))
        .route("/exclusive-sets", web::get().to(admin::list_exclusive))
        .route("/exclusive-sets", web::post().to(admin::create_exclusive))
        .route("/exclusive-sets/{name}", web::delete().to(admin::delete_exclusive))
        .route("/audit", web::get().to(admin::audit))
        .default_service(web::to(|| async {
            problem(StatusCode::NOT_FOUND, "No resource at this address.")
        }))
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
