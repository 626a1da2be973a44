//! The OpenAPI 3.1 document of the commerce API, generated from the handlers'
//! `#[utoipa::path]` annotations and the domain types' schemas, served at
//! `/v1/openapi.json`.

use actix_web::HttpResponse;
use actix_web::http::header;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::coupons;
use super::handlers as h;

/// An RFC 9457 problem document: every error body of this API.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// The bearer scheme: RFC 9068 JWT access tokens; the scopes listed per operation
/// are the permissions (`permissions` claim, or `scope` for other providers).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        http.description = Some(
            "RFC 9068 access token from the configured issuer; the listed values are the permissions required."
                .to_owned(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "oxidp commerce API", description = "Sellers, products, options, combinations, the product lifecycle, stock and asynchronous reservations, coupons, marketplace orders and payment events."),
    paths(
        h::healthz,
        h::readyz,
        h::metrics,
        openapi_json,
        super::me::me,
        h::public_products,
        h::public_product,
        h::create_seller,
        h::list_sellers,
        h::get_seller,
        h::add_member,
        h::remove_member,
        h::create_product,
        h::list_products,
        h::get_product,
        h::update_product,
        h::transition,
        h::events,
        h::add_option_group,
        h::add_combination,
        // stock and reservations
        super::stock::adjust,
        super::stock::list,
        super::stock::adjustments,
        super::reservations::create,
        super::reservations::get,
        super::reservations::events,
        // coupons
        coupons::create_campaign,
        coupons::list_campaigns,
        coupons::get_campaign,
        coupons::claim,
        coupons::my_coupons,
        // orders and payment events
        super::orders::create,
        super::orders::get,
        super::orders::mine,
        super::orders::cancel,
        super::orders::complete,
        super::orders::request_return,
        super::orders::seller_orders,
        super::orders::ship,
        super::orders::return_received,
        super::orders::payment_event,
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags((name = "commerce", description = "The commerce resource server"), (name = "coupons", description = "First-come coupon campaigns"), (name = "orders", description = "Marketplace orders, their saga and payment events"))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "commerce", responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(ApiDoc::openapi())
}
