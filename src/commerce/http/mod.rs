//! The commerce HTTP adapter: routes (each with the permission it needs), handlers
//! and the mapping of domain errors to problem+json.

pub mod coupons;
pub mod error;
pub mod handlers;
pub mod me;
pub mod openapi;
// stock, idempotency keys, reservations (reserve lane)
pub mod idempotency;
pub mod reservations;
pub mod stock;
// marketplace orders, the saga's payment events (orders lane)
pub mod orders;

use actix_web::web;

use handlers as h;

/// Routes. Permissions (checked in the domain, reported as `insufficient_scope`):
/// - public, no token: `GET /v1/catalog/products[/{id}]` (SALES products only);
/// - any valid token: reads under `/v1/sellers` and `/v1/products`;
/// - `commerce:sellers:admin`: create sellers, add or remove members;
/// - `commerce:products:write` + member of the seller (or sellers:admin): create and
///   change products, options, combinations, and the seller's lifecycle actions;
/// - `commerce:products:approve` + not a member of the seller: approve / reject.
///
/// Sensitivity (revocation-sensitive routes move money, stock or lifecycle state; their
/// handlers take the `Sensitive` extractor, so with `commerce.introspection = sensitive`
/// the token is also checked by introspection): marked `[sensitive]` per route below;
/// the others are `[local]` (local JWT verification; introspected only with `all`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(64 * 1024)
            .error_handler(|e, _| error::json_error(e)),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| error::query_error(e)))
    .route("/healthz", web::get().to(h::healthz))
    .route("/readyz", web::get().to(h::readyz))
    .route("/metrics", web::get().to(h::metrics))
    .service(
        web::scope("/v1")
            // [public] this API's OpenAPI 3.1 document
            .route("/openapi.json", web::get().to(openapi::openapi_json))
            // [local] the verified caller (no database)
            .route("/me", web::get().to(me::me))
            // [public]
            .route("/catalog/products", web::get().to(h::public_products))
            // [public]
            .route("/catalog/products/{id}", web::get().to(h::public_product))
            // [sensitive] seller write
            .route("/sellers", web::post().to(h::create_seller))
            // [local]
            .route("/sellers", web::get().to(h::list_sellers))
            // [local]
            .route("/sellers/{id}", web::get().to(h::get_seller))
            // [sensitive] seller write
            .route("/sellers/{id}/members/{sub}", web::put().to(h::add_member))
            // [sensitive] seller write
            .route("/sellers/{id}/members/{sub}", web::delete().to(h::remove_member))
            // [sensitive] product write
            .route("/products", web::post().to(h::create_product))
            // [local]
            .route("/products", web::get().to(h::list_products))
            // [local]
            .route("/products/{id}", web::get().to(h::get_product))
            // [sensitive] product write (price)
            .route("/products/{id}", web::patch().to(h::update_product))
            // [sensitive] lifecycle
            .route("/products/{id}/transitions", web::post().to(h::transition))
            // [local]
            .route("/products/{id}/events", web::get().to(h::events))
            // [sensitive] product write
            .route("/products/{id}/option-groups", web::post().to(h::add_option_group))
            // [sensitive] product write (price, availability)
            .route("/products/{id}/combinations", web::post().to(h::add_combination))
            // stock and reservations: permissions and sensitivity listed in each `routes`
            .configure(stock::routes)
            .configure(reservations::routes)
            // ---- coupons: first-come campaigns and claims (routes, their
            // permissions and sensitivity in `coupons::configure`)
            .configure(coupons::configure)
            // ---- orders, sellers' shipments, payment events: permissions and
            // sensitivity listed in `orders::routes`
            .configure(orders::routes),
    );
}
