//! `/healthz` (the process answers), `/readyz` (the database answers too) and
//! `/metrics` (Prometheus text).

use actix_web::{HttpResponse, web};

use crate::http::error::{ApiError, no_store};
use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(no_store())
        .json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.db.ping().await?;
    Ok(HttpResponse::Ok().insert_header(no_store()).json(serde_json::json!({
        "status": "ready",
        "database": state.db.backend().name(),
    })))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(no_store())
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&state))
}
