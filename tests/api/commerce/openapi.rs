//! `/v1/openapi.json`: an OpenAPI 3.1 document generated from the code, listing
//! every route with its security requirement, error responses and schemas.

use serde_json::Value;

use super::spawn_commerce;
use crate::helpers::spawn_app;

/// Every route `commerce::http::configure` registers, with the permissions it
/// declares (`None`: public, no security requirement).
const ROUTES: &[(&str, &str, Option<&[&str]>)] = &[
    ("get", "/healthz", None),
    ("get", "/readyz", None),
    ("get", "/metrics", None),
    ("get", "/v1/openapi.json", None),
    ("get", "/v1/me", Some(&[])),
    ("get", "/v1/catalog/products", None),
    ("get", "/v1/catalog/products/{id}", None),
    ("post", "/v1/sellers", Some(&["commerce:sellers:admin"])),
    ("get", "/v1/sellers", Some(&[])),
    ("get", "/v1/sellers/{id}", Some(&[])),
    (
        "put",
        "/v1/sellers/{id}/members/{sub}",
        Some(&["commerce:sellers:admin"]),
    ),
    (
        "delete",
        "/v1/sellers/{id}/members/{sub}",
        Some(&["commerce:sellers:admin"]),
    ),
    ("post", "/v1/products", Some(&["commerce:products:write"])),
    ("get", "/v1/products", Some(&[])),
    ("get", "/v1/products/{id}", Some(&[])),
    ("patch", "/v1/products/{id}", Some(&["commerce:products:write"])),
    (
        "post",
        "/v1/products/{id}/transitions",
        Some(&["commerce:products:write", "commerce:products:approve"]),
    ),
    ("get", "/v1/products/{id}/events", Some(&[])),
    (
        "post",
        "/v1/products/{id}/option-groups",
        Some(&["commerce:products:write"]),
    ),
    (
        "post",
        "/v1/products/{id}/combinations",
        Some(&["commerce:products:write"]),
    ),
    // stock and reservations
    ("post", "/v1/products/{id}/stock", Some(&["commerce:inventory:write"])),
    ("get", "/v1/products/{id}/stock", Some(&[])),
    (
        "get",
        "/v1/products/{id}/stock/adjustments",
        Some(&["commerce:inventory:write"]),
    ),
    ("post", "/v1/reservations", Some(&[])),
    ("get", "/v1/reservations/{id}", Some(&[])),
    ("get", "/v1/reservations/{id}/events", Some(&[])),
    // ---- coupons
    ("post", "/v1/coupon-campaigns", Some(&["commerce:coupons:write"])),
    ("get", "/v1/coupon-campaigns", Some(&[])),
    ("get", "/v1/coupon-campaigns/{id}", Some(&[])),
    ("post", "/v1/coupon-campaigns/{id}/claims", Some(&[])),
    ("get", "/v1/me/coupons", Some(&[])),
    // ---- orders and payment events
    ("post", "/v1/orders", Some(&[])),
    ("get", "/v1/orders/{id}", Some(&[])),
    ("get", "/v1/me/orders", Some(&[])),
    ("post", "/v1/orders/{id}/cancel", Some(&[])),
    ("post", "/v1/orders/{id}/complete", Some(&[])),
    ("post", "/v1/orders/{id}/return", Some(&[])),
    ("get", "/v1/seller/orders", Some(&["commerce:orders:fulfil"])),
    (
        "post",
        "/v1/seller/orders/{id}/items/{item_id}/shipment",
        Some(&["commerce:orders:fulfil"]),
    ),
    (
        "post",
        "/v1/seller/orders/{id}/return-received",
        Some(&["commerce:orders:fulfil"]),
    ),
    ("post", "/v1/payments/events", Some(&["commerce:payments:write"])),
];

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn commerce_openapi_document_parses_and_lists_every_route_with_its_security() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let response = commerce.get("/v1/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // It is a structurally valid OpenAPI document.
    serde_json::from_value::<utoipa::openapi::OpenApi>(doc.clone()).expect("an OpenAPI document");

    let paths = doc["paths"].as_object().unwrap();
    let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(listed, ROUTES.len(), "operations beyond the route table: {paths:#?}");
    for (method, path, permissions) in ROUTES {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing");
        match permissions {
            None => assert!(operation.get("security").is_none(), "{method} {path} is public"),
            Some(permissions) => {
                let scopes: Vec<&str> = operation["security"][0]["bearer"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} has no bearer requirement"))
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect();
                assert_eq!(&scopes, permissions, "{method} {path}");
                let problem = &operation["responses"]["401"]["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(problem, "#/components/schemas/Problem", "{method} {path}");
            }
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").expect("a schema reference");
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
    for schema in [
        "NewSeller",
        "SellerView",
        "NewProduct",
        "ProductView",
        "ProductPatch",
        "TransitionRequest",
        "Money",
        "Status",
        "Action",
        "EventView",
        "NewCombination",
        "Problem",
        "StockAdjustment",
        "StockView",
        "NewReservation",
        "ReservationView",
        "NewCampaign",
        "CampaignView",
        "CouponView",
        "Discount",
        "NewOrder",
        "OrderView",
        "SellerOrderView",
        "ShipmentUpdate",
        "PaymentEvent",
        "PaymentEventReceipt",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} schema missing"
        );
    }
}
