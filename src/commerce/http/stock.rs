//! Stock routes: sellers' adjustments (audited) and stock reads.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, domain};
use super::handlers::PageQuery;
use super::openapi::Problem;
use crate::commerce::CommerceState;
use crate::commerce::domain::Limit;
use crate::commerce::domain::Page;
use crate::commerce::domain::stock::{self, AdjustmentView, StockAdjustment, StockView};
use crate::resource_server::{Authenticated, Sensitive};

type State = web::Data<CommerceState>;

/// Routes (inside `/v1`):
/// - `commerce:inventory:write` + member of the product's seller:
///   `POST /products/{id}/stock` [sensitive], `GET /products/{id}/stock/adjustments` [local];
/// - any valid token: `GET /products/{id}/stock` [local].
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/products/{id}/stock", web::post().to(adjust))
        .route("/products/{id}/stock", web::get().to(list))
        .route("/products/{id}/stock/adjustments", web::get().to(adjustments));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StockQuery {
    /// RESERVABLE products: only this date (YYYY-MM-DD).
    pub date: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StockList {
    pub items: Vec<StockView>,
}

#[utoipa::path(
    post,
    path = "/v1/products/{id}/stock",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id")),
    request_body = StockAdjustment,
    responses((status = 200, description = "Adjusted and audited [sensitive]", body = StockView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the caller is not a member of the product's seller", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The stock would go below zero, or kept changing", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid content (unknown combination, bad date, set and delta both or neither)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:inventory:write"]))
)]
pub async fn adjust(
    state: State,
    auth: Sensitive,
    id: web::Path<String>,
    body: web::Json<StockAdjustment>,
) -> Result<HttpResponse, ApiError> {
    let view = stock::adjust(
        &state.db,
        &auth.principal,
        id.into_inner(),
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view))
}

#[utoipa::path(
    get,
    path = "/v1/products/{id}/stock",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), StockQuery),
    responses((status = 200, description = "The product's stock per combination (and date)", body = StockList), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid date", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn list(
    state: State,
    _auth: Authenticated,
    id: web::Path<String>,
    query: web::Query<StockQuery>,
) -> Result<HttpResponse, ApiError> {
    let items = stock::list(&state.db, id.into_inner(), query.into_inner().date)
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(StockList { items }))
}

#[utoipa::path(
    get,
    path = "/v1/products/{id}/stock/adjustments",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), PageQuery),
    responses((status = 200, description = "The audit of stock adjustments", body = Page<AdjustmentView>), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the caller is not a member of the product's seller", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:inventory:write"]))
)]
pub async fn adjustments(
    state: State,
    auth: Authenticated,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = Limit::parse(q.limit).map_err(domain(&state.realm))?;
    let page = stock::adjustments(&state.db, &auth.principal, id.into_inner(), q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page))
}
