//! The commerce HTTP adapter: routes (each with the permission it needs), handlers
//! and the mapping of domain errors to problem+json.

pub mod error;
pub mod handlers;

use actix_web::web;

use handlers as h;

/// Routes. Permissions (checked in the domain, reported as `insufficient_scope`):
/// - public, no token: `GET /v1/catalog/products[/{id}]` (SALES products only);
/// - any valid token: reads under `/v1/sellers` and `/v1/products`;
/// - `commerce:sellers:admin`: create sellers, add or remove members;
/// - `commerce:products:write` + member of the seller (or sellers:admin): create and
///   change products, options, combinations, and the seller's lifecycle actions;
/// - `commerce:products:approve` + not a member of the seller: approve / reject.
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
            .route("/catalog/products", web::get().to(h::public_products))
            .route("/catalog/products/{id}", web::get().to(h::public_product))
            .route("/sellers", web::post().to(h::create_seller))
            .route("/sellers", web::get().to(h::list_sellers))
            .route("/sellers/{id}", web::get().to(h::get_seller))
            .route("/sellers/{id}/members/{sub}", web::put().to(h::add_member))
            .route("/sellers/{id}/members/{sub}", web::delete().to(h::remove_member))
            .route("/products", web::post().to(h::create_product))
            .route("/products", web::get().to(h::list_products))
            .route("/products/{id}", web::get().to(h::get_product))
            .route("/products/{id}", web::patch().to(h::update_product))
            .route("/products/{id}/transitions", web::post().to(h::transition))
            .route("/products/{id}/events", web::get().to(h::events))
            .route("/products/{id}/option-groups", web::post().to(h::add_option_group))
            .route("/products/{id}/combinations", web::post().to(h::add_combination)),
    );
}
