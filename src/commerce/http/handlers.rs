//! Handlers: extract, call one domain function, map the result. Each route's
//! permission is declared in `routes` (mod.rs) and checked by the domain.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ApiError, domain};
use super::openapi::Problem;
use crate::commerce::CommerceState;
use crate::commerce::domain::Page;
use crate::commerce::domain::catalog::{
    self, NewCombination, NewOptionGroup, NewProduct, NewSeller, ProductPatch, ProductView, TransitionRequest,
};
use crate::commerce::domain::catalog::{EventView, SellerView};
use crate::commerce::domain::reservations;
use crate::commerce::domain::{CommerceError, Limit, Status};
use crate::commerce::storage::ProductFilter;
use crate::resource_server::{Authenticated, ResourceServer, Sensitive};

type Rs = web::Data<ResourceServer>;
type State = web::Data<CommerceState>;

/// Public catalog responses may be cached briefly by browsers and proxies.
const PUBLIC_CACHE: &str = "public, max-age=60";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProductQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    #[serde(rename = "type")]
    pub product_type: Option<crate::commerce::domain::ProductType>,
    pub category: Option<String>,
    pub seller_id: Option<String>,
    pub status: Option<Status>,
}

impl ProductQuery {
    fn filter(&self) -> ProductFilter {
        ProductFilter {
            product_type: self.product_type.map(|t| t.as_str().to_owned()),
            category: self.category.clone(),
            seller_id: self.seller_id.clone(),
            status: self.status.map(|s| s.as_str().to_owned()),
        }
    }
}

fn etag(view: &ProductView) -> String {
    format!("\"v{}\"", view.version)
}

/// The version an `If-Match` names: `None` when absent (428), `Some(-1)` when it
/// names no version of ours (412).
fn if_match(req: &HttpRequest) -> Option<i64> {
    let value = req.headers().get(header::IF_MATCH)?.to_str().unwrap_or_default().trim();
    Some(
        value
            .strip_prefix("\"v")
            .and_then(|v| v.strip_suffix('"'))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
    )
}

fn with_etag(view: ProductView) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&view)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view)
}

/// 200 with `ETag` and `Cache-Control`, or 304 when `If-None-Match` names the ETag.
fn cacheable(req: &HttpRequest, tag: String, body: Vec<u8>) -> HttpResponse {
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, PUBLIC_CACHE));
    if matches {
        response.finish()
    } else {
        response.content_type("application/json").body(body)
    }
}

// ---------------------------------------------------------------- health

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "commerce",
    responses((status = 200, description = "Alive"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers and a key set is usable (fresh or last known good).
/// The queue backend is reported, not required: while RabbitMQ is unreachable
/// requests are still accepted into the outbox (relayed once it is back), so an
/// instance stays in the balancer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "commerce",
    responses((status = 200, description = "Database up and a key set usable; `queue` reports the queue backend (RabbitMQ disconnected does not make the instance unready)"), (status = 503, description = "Not ready"))
)]
pub async fn readyz(state: State, rs: Rs) -> HttpResponse {
    let database = state.db.ping().await.is_ok();
    let queue_state = state.queue_metrics.state(state.queue_rabbitmq, state.queue_consumers);
    let depth = reservations::queue_depth(&state.db).await.ok();
    let keys = rs.keys.status();
    let draining = state.draining.is_set();
    let ready = database && keys.state != "none" && !draining;
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "status": if draining { "shutting down" } else if ready { "ready" } else { "not ready" },
            "database": if database { "ok" } else { "unavailable" },
            "key_set": keys,
            "cached_tokens": rs.cached_tokens(),
            "queue": {
                "backend": if state.queue_rabbitmq { "rabbitmq" } else { "database" },
                "state": queue_state.name(),
                "pending": depth.map(|d| d.pending),
                "outbox_backlog": depth.map(|d| d.outbox_backlog),
            },
        }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "commerce",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"))
)]
pub async fn metrics(state: State, rs: Rs) -> HttpResponse {
    use crate::resource_server::RsMetrics;
    let m = &rs.metrics;
    let mut out = String::new();
    for (name, help, value) in [
        (
            "commerce_jwks_fetches_total",
            "Key-set fetches attempted.",
            &m.jwks_fetches,
        ),
        (
            "commerce_jwks_fetch_failures_total",
            "Key-set fetches that failed.",
            &m.jwks_fetch_failures,
        ),
        (
            "commerce_jwks_refetch_suppressed_total",
            "Unknown-kid refetches refused by jwks_min_refetch_secs.",
            &m.jwks_refetch_suppressed,
        ),
        (
            "commerce_token_cache_hits_total",
            "Tokens served from the verified-token cache.",
            &m.token_cache_hits,
        ),
        (
            "commerce_tokens_verified_total",
            "Tokens verified by signature.",
            &m.tokens_verified,
        ),
        ("commerce_tokens_rejected_total", "Tokens refused.", &m.tokens_rejected),
        (
            "commerce_served_stale_total",
            "Requests served with a key set past its refresh (issuer unreachable).",
            &m.served_stale,
        ),
        (
            "commerce_introspection_calls_total",
            "Introspection requests sent to the issuer.",
            &m.introspection_calls,
        ),
        (
            "commerce_introspection_failures_total",
            "Introspection requests that failed (timeout, network, non-2xx, garbage).",
            &m.introspection_failures,
        ),
        (
            "commerce_introspection_inactive_total",
            "Tokens refused because the issuer reported them inactive.",
            &m.introspection_inactive,
        ),
        (
            "commerce_introspection_denied_total",
            "Sensitive requests refused (503) because the issuer could not be asked.",
            &m.introspection_denied,
        ),
        (
            "commerce_introspection_breaker_opened_total",
            "Introspection circuit breaker transitions to open.",
            &m.breaker_opened,
        ),
        (
            "commerce_introspection_breaker_closed_total",
            "Introspection circuit breaker transitions back to closed.",
            &m.breaker_closed,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            RsMetrics::get(value)
        ));
    }
    out.push_str(
        "# HELP commerce_requests_served_total Authenticated requests by the path that served them.\n\
         # TYPE commerce_requests_served_total counter\n",
    );
    for (path, value) in [
        ("local", &m.served_local),
        ("introspection", &m.served_introspection),
        ("introspection-cache", &m.served_introspection_cache),
        ("fallback", &m.served_fallback),
    ] {
        out.push_str(&format!(
            "commerce_requests_served_total{{path=\"{path}\"}} {}\n",
            RsMetrics::get(value)
        ));
    }
    let breaker = rs.introspection.breaker_state();
    out.push_str(&format!(
        "# HELP commerce_introspection_breaker_state Introspection circuit breaker: 0 closed, 1 open, 2 half-open.\n\
         # TYPE commerce_introspection_breaker_state gauge\n\
         commerce_introspection_breaker_state{{state=\"{}\"}} {}\n",
        breaker.name(),
        breaker.gauge()
    ));
    let depth = reservations::queue_depth(&state.db).await.ok();
    out.push_str(&crate::commerce::metrics::render(
        &state.queue_metrics,
        state.queue_metrics.state(state.queue_rabbitmq, state.queue_consumers),
        depth,
    ));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

// ---------------------------------------------------------------- sellers

#[utoipa::path(
    post,
    path = "/v1/sellers",
    tag = "commerce",
    request_body = NewSeller,
    responses((status = 201, description = "Created [sensitive]", body = SellerView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:sellers:admin"]))
)]
pub async fn create_seller(
    state: State,
    auth: Sensitive,
    body: web::Json<NewSeller>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::create_seller(&state.db, &auth.principal, body.into_inner(), state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(
    get,
    path = "/v1/sellers",
    tag = "commerce",
    params(PageQuery),
    responses((status = 200, description = "A page of sellers", body = Page<SellerView>), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn list_sellers(
    state: State,
    _auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = Limit::parse(q.limit).map_err(domain(&state.realm))?;
    let page = catalog::sellers(&state.db, q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(
    get,
    path = "/v1/sellers/{id}",
    tag = "commerce",
    params(("id" = String, Path, description = "Seller id")),
    responses((status = 200, description = "The seller", body = SellerView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn get_seller(state: State, _auth: Authenticated, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = catalog::seller(&state.db, id.into_inner())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    put,
    path = "/v1/sellers/{id}/members/{sub}",
    tag = "commerce",
    params(("id" = String, Path, description = "Seller id"), ("sub" = String, Path, description = "Member subject")),
    responses((status = 200, description = "Member added [sensitive]", body = SellerView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:sellers:admin"]))
)]
pub async fn add_member(
    state: State,
    auth: Sensitive,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (seller, sub) = path.into_inner();
    let view = catalog::set_member(&state.db, &auth.principal, seller, sub, true, state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    delete,
    path = "/v1/sellers/{id}/members/{sub}",
    tag = "commerce",
    params(("id" = String, Path, description = "Seller id"), ("sub" = String, Path, description = "Member subject")),
    responses((status = 200, description = "Member removed [sensitive]", body = SellerView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:sellers:admin"]))
)]
pub async fn remove_member(
    state: State,
    auth: Sensitive,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (seller, sub) = path.into_inner();
    let view = catalog::set_member(&state.db, &auth.principal, seller, sub, false, state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok().json(view))
}

// ---------------------------------------------------------------- products

#[utoipa::path(
    post,
    path = "/v1/products",
    tag = "commerce",
    request_body = NewProduct,
    responses((status = 201, description = "Created [sensitive]", body = ProductView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid content (e.g. an invalid combination)", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:products:write"]))
)]
pub async fn create_product(
    state: State,
    auth: Sensitive,
    body: web::Json<NewProduct>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::create_product(&state.db, &auth.principal, body.into_inner(), state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Created()
        .insert_header((header::ETAG, etag(&view)))
        .insert_header((header::LOCATION, format!("/v1/products/{}", view.id)))
        .json(view))
}

#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "commerce",
    params(ProductQuery),
    responses((status = 200, description = "A page of products", body = Page<ProductView>), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn list_products(
    state: State,
    _auth: Authenticated,
    query: web::Query<ProductQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = Limit::parse(q.limit).map_err(domain(&state.realm))?;
    let page = catalog::products(&state.db, q.filter(), q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page))
}

#[utoipa::path(
    get,
    path = "/v1/products/{id}",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "The product, with ETag", body = ProductView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn get_product(state: State, _auth: Authenticated, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = catalog::product(&state.db, id.into_inner())
        .await
        .map_err(domain(&state.realm))?;
    Ok(with_etag(view))
}

#[utoipa::path(
    patch,
    path = "/v1/products/{id}",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), ("If-Match" = String, Header, description = "The product's ETag")),
    request_body = ProductPatch,
    responses((status = 200, description = "Updated [sensitive]", body = ProductView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 412, description = "If-Match names a stale version", body = Problem, content_type = "application/problem+json"), (status = 428, description = "If-Match is required", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:products:write"]))
)]
pub async fn update_product(
    req: HttpRequest,
    state: State,
    auth: Sensitive,
    id: web::Path<String>,
    body: web::Json<ProductPatch>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::update_product(
        &state.db,
        &auth.principal,
        id.into_inner(),
        if_match(&req),
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(with_etag(view))
}

#[utoipa::path(
    post,
    path = "/v1/products/{id}/transitions",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), ("If-Match" = String, Header, description = "The product's ETag")),
    request_body = TransitionRequest,
    responses((status = 200, description = "Moved [sensitive]; approve/reject need commerce:products:approve and a non-member (four-eyes)", body = ProductView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (e.g. a lifecycle transition not allowed in the current state)", body = Problem, content_type = "application/problem+json"), (status = 412, description = "If-Match names a stale version", body = Problem, content_type = "application/problem+json"), (status = 428, description = "If-Match is required", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:products:write", "commerce:products:approve"]))
)]
pub async fn transition(
    req: HttpRequest,
    state: State,
    auth: Sensitive,
    id: web::Path<String>,
    body: web::Json<TransitionRequest>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::transition(
        &state.db,
        &auth.principal,
        id.into_inner(),
        if_match(&req),
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(with_etag(view))
}

#[utoipa::path(
    post,
    path = "/v1/products/{id}/option-groups",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), ("If-Match" = String, Header, description = "The product's ETag")),
    request_body = NewOptionGroup,
    responses((status = 200, description = "Added [sensitive]", body = ProductView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 412, description = "If-Match names a stale version", body = Problem, content_type = "application/problem+json"), (status = 428, description = "If-Match is required", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid content (e.g. an invalid combination)", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:products:write"]))
)]
pub async fn add_option_group(
    req: HttpRequest,
    state: State,
    auth: Sensitive,
    id: web::Path<String>,
    body: web::Json<NewOptionGroup>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::add_option_group(
        &state.db,
        &auth.principal,
        id.into_inner(),
        if_match(&req),
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(with_etag(view))
}

#[utoipa::path(
    post,
    path = "/v1/products/{id}/combinations",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), ("If-Match" = String, Header, description = "The product's ETag")),
    request_body = NewCombination,
    responses((status = 200, description = "Added [sensitive]", body = ProductView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the seller scope / four-eyes rule refuses", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 412, description = "If-Match names a stale version", body = Problem, content_type = "application/problem+json"), (status = 428, description = "If-Match is required", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid content (e.g. an invalid combination)", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:products:write"]))
)]
pub async fn add_combination(
    req: HttpRequest,
    state: State,
    auth: Sensitive,
    id: web::Path<String>,
    body: web::Json<NewCombination>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::add_combination(
        &state.db,
        &auth.principal,
        id.into_inner(),
        if_match(&req),
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(with_etag(view))
}

#[utoipa::path(
    get,
    path = "/v1/products/{id}/events",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id"), PageQuery),
    responses((status = 200, description = "Lifecycle events", body = Page<EventView>), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or (sensitive routes, `introspection_fallback = deny`) the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn events(
    state: State,
    _auth: Authenticated,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = Limit::parse(q.limit).map_err(domain(&state.realm))?;
    let page = catalog::events(&state.db, id.into_inner(), q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok().json(page))
}

// ---------------------------------------------------------------- public catalog

#[utoipa::path(
    get,
    path = "/v1/catalog/products",
    tag = "commerce",
    params(ProductQuery),
    responses((status = 200, description = "Products in SALES (ETag, Cache-Control)", body = Page<ProductView>), (status = 304, description = "Not modified"), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"))
)]
pub async fn public_products(
    req: HttpRequest,
    state: State,
    query: web::Query<ProductQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    if q.status.is_some_and(|s| s != Status::Sales) {
        return Err(ApiError::Domain(CommerceError::Invalid(
            "the public catalog lists products in SALES only".into(),
        )));
    }
    let mut filter = q.filter();
    filter.status = Some(Status::Sales.as_str().to_owned());
    let limit = Limit::parse(q.limit).map_err(ApiError::Domain)?;
    let page = catalog::products(&state.db, filter, q.cursor, limit)
        .await
        .map_err(ApiError::Domain)?;
    let body = serde_json::to_vec(&page).map_err(|e| ApiError::Domain(CommerceError::Internal(e.to_string())))?;
    let tag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    Ok(cacheable(&req, tag, body))
}

#[utoipa::path(
    get,
    path = "/v1/catalog/products/{id}",
    tag = "commerce",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "A product in SALES (ETag, Cache-Control)", body = ProductView), (status = 304, description = "Not modified"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"))
)]
pub async fn public_product(req: HttpRequest, state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = catalog::product_on_sale(&state.db, id.into_inner())
        .await
        .map_err(ApiError::Domain)?;
    let tag = etag(&view);
    let body = serde_json::to_vec(&view).map_err(|e| ApiError::Domain(CommerceError::Internal(e.to_string())))?;
    Ok(cacheable(&req, tag, body))
}
