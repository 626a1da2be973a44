//! `/healthz` (the process answers), `/readyz` (the database answers too) and
//! `/metrics` (Prometheus text; on its own listener, and behind `metrics.token`
//! when one is configured).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;

use crate::http::error::{no_store, problem};
use crate::http_common::{BearerToken, bearer_challenge};
use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(no_store())
        .json(serde_json::json!({ "status": "ok" }))
}

/// 200 when the database answers; otherwise 503 + `Retry-After` (problem+json),
/// whatever the database error: a probe reports "not ready", never a 500, and the
/// cause is logged as one line (no backtrace).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.is_set() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "This instance is shutting down.");
    }
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().insert_header(no_store()).json(serde_json::json!({
            "status": "ready",
            "database": state.db.backend().name(),
        })),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database cannot be reached; retry later.",
            )
        }
    }
}

pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(expected) = &state.config.metrics.token {
        let token = BearerToken::from_headers(req.headers()).ok().flatten();
        let presented = token.as_ref().map(BearerToken::expose).unwrap_or_default();
        // Compared as digests: constant time, and the lengths give nothing away.
        let matches = crate::crypto::constant_time_eq(
            crate::crypto::sha256_hex(presented).as_bytes(),
            crate::crypto::sha256_hex(expected.expose_secret()).as_bytes(),
        );
        if presented.is_empty() || !matches {
            // RFC 6750 §3.1: no token → a bare challenge; a wrong one → invalid_token.
            let error = (!presented.is_empty()).then_some("invalid_token");
            let challenge = bearer_challenge("oxidp-metrics", error, None, None);
            return HttpResponse::Unauthorized()
                .insert_header(no_store())
                .insert_header((actix_web::http::header::WWW_AUTHENTICATE, challenge))
                .finish();
        }
    }
    HttpResponse::Ok()
        .insert_header(no_store())
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state.metrics, &state.hasher, &state.db))
}
