//! `/healthz` (the process answers), `/readyz` (the database answers too) and
//! `/metrics` (Prometheus text).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::http::error::{no_store, problem};
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

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(no_store())
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state))
}
