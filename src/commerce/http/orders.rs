//! Order routes: placing an order (Idempotency-Key required), the buyer's orders
//! and actions, the sellers' view and shipments, and the payment provider's events.
//! The rules and the saga live in `domain::orders` and `domain::saga`.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::error::{ApiError, domain};
use super::handlers::PageQuery;
use super::idempotency as idem;
use super::openapi::Problem;
use crate::commerce::CommerceState;
use crate::commerce::domain::fulfilment::{self, SellerOrderView, ShipmentUpdate};
use crate::commerce::domain::idempotency::{self, Begun, StoredResponse};
use crate::commerce::domain::orders::{self, NewOrder, OrderAction, OrderView};
use crate::commerce::domain::payments::{PaymentEvent, PaymentEventReceipt};
use crate::commerce::domain::saga;
use crate::commerce::domain::{Limit, Page};
use crate::resource_server::{Authenticated, Sensitive};

type State = web::Data<CommerceState>;

/// Routes (inside `/v1`):
/// - any valid token (a buyer; an order is visible to its buyer only, others get 404):
///   `POST /orders` [sensitive, moves stock and coupons; Idempotency-Key required],
///   `GET /orders/{id}` [local], `GET /me/orders` [local],
///   `POST /orders/{id}/cancel`, `/complete`, `/return` [sensitive];
/// - `commerce:orders:fulfil` + member of the seller: `GET /seller/orders?seller_id=` [local],
///   `POST /seller/orders/{id}/items/{item_id}/shipment` [sensitive],
///   `POST /seller/orders/{id}/return-received` [sensitive, RETURNED, records the refund owed];
/// - `commerce:payments:write` (the payment provider's client_credentials token):
///   `POST /payments/events` [sensitive, moves money state].
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::post().to(create))
        .route("/orders/{id}", web::get().to(get))
        .route("/me/orders", web::get().to(mine))
        .route("/orders/{id}/cancel", web::post().to(cancel))
        .route("/orders/{id}/complete", web::post().to(complete))
        .route("/orders/{id}/return", web::post().to(request_return))
        .route("/seller/orders", web::get().to(seller_orders))
        .route("/seller/orders/{id}/items/{item_id}/shipment", web::post().to(ship))
        .route("/seller/orders/{id}/return-received", web::post().to(return_received))
        .route("/payments/events", web::post().to(payment_event));
}

fn created(view: &OrderView) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("location".into(), format!("/v1/orders/{}", view.id)),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_string(view).unwrap_or_default(),
    }
}

fn no_store<T: serde::Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    params(("Idempotency-Key" = String, Header, description = "Required; the same key and body replay the first response for 24 h")),
    request_body = NewOrder,
    responses((status = 201, description = "Placed [sensitive]: PENDING while the saga reserves stock and applies the coupon, then PENDING_PAYMENT (or CANCELLED with a reason); prices come from the catalog. Location names the order; a replay carries Idempotent-Replayed: true", body = OrderView), (status = 400, description = "Malformed body, or Idempotency-Key missing or malformed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Sold out or not on sale, or a request with this Idempotency-Key is still being processed", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid content (unknown product, mixed currencies, bad coupon or quantity), or the Idempotency-Key was used with a different request", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn create(req: HttpRequest, state: State, auth: Sensitive, body: Bytes) -> Result<HttpResponse, ApiError> {
    let key = match idem::required_key(&req) {
        Ok(key) => key,
        Err(detail) => return Ok(idem::bad_request(&detail)),
    };
    let new: NewOrder = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(error) => return Ok(idem::bad_body(error)),
    };
    let fingerprint = idempotency::fingerprint("POST", req.path(), &body);
    let principal = &auth.principal;
    let claim = match idempotency::begin(&state.db, &principal.sub, &key, fingerprint, state.clock.now())
        .await
        .map_err(domain(&state.realm))?
    {
        Begun::Replay(stored) => return Ok(idem::replay(&stored)),
        Begun::Proceed(claim) => claim,
    };
    match saga::place_order(
        &state.db,
        &state.sagas,
        principal,
        new,
        Some(claim.clone()),
        created,
        state.clock.now(),
    )
    .await
    {
        Ok((_, stored)) => Ok(idem::respond(&stored)),
        Err(error) => {
            idempotency::release(&state.db, claim).await;
            Err(domain(&state.realm)(error))
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The caller's order", body = OrderView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not the caller's)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn get(state: State, auth: Authenticated, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = orders::get(&state.db, &auth.principal.sub, id.into_inner())
        .await
        .map_err(domain(&state.realm))?;
    Ok(no_store(&view))
}

#[utoipa::path(
    get,
    path = "/v1/me/orders",
    tag = "orders",
    params(PageQuery),
    responses((status = 200, description = "The caller's orders, oldest first", body = Page<OrderView>), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn mine(state: State, auth: Authenticated, query: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = Limit::parse(q.limit).map_err(domain(&state.realm))?;
    let page = orders::mine(&state.db, &auth.principal.sub, q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(no_store(&page))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "Cancelled [sensitive]: stock released, coupon returned, a paid order refunded", body = OrderView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not the caller's)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not allowed in the current state (after shipping); `current_status` names it", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn cancel(state: State, auth: Sensitive, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = saga::cancel_order(
        &state.db,
        &state.sagas,
        &auth.principal.sub,
        id.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(no_store(&view))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/complete",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "DELIVERED → COMPLETED [sensitive]", body = OrderView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not the caller's)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not allowed in the current state; `current_status` names it", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn complete(state: State, auth: Sensitive, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    buyer_action(state, auth, id, OrderAction::Complete).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/return",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "DELIVERED → RETURN_REQUESTED [sensitive]", body = OrderView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not the caller's)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not allowed in the current state; `current_status` names it", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn request_return(state: State, auth: Sensitive, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    buyer_action(state, auth, id, OrderAction::RequestReturn).await
}

async fn buyer_action(
    state: State,
    auth: Sensitive,
    id: web::Path<String>,
    action: OrderAction,
) -> Result<HttpResponse, ApiError> {
    let view = orders::buyer_action(
        &state.db,
        &auth.principal.sub,
        id.into_inner(),
        action,
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(no_store(&view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SellerOrdersQuery {
    /// The seller whose items to list (the caller must be a member).
    pub seller_id: String,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/seller/orders",
    tag = "orders",
    params(SellerOrdersQuery),
    responses((status = 200, description = "Orders holding the seller's items, each with those items only", body = Page<SellerOrderView>), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the caller is not a member of the seller", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:orders:fulfil"]))
)]
pub async fn seller_orders(
    state: State,
    auth: Authenticated,
    query: web::Query<SellerOrdersQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = Limit::parse(q.limit).map_err(domain(&state.realm))?;
    let page = fulfilment::of_seller(&state.db, &auth.principal, q.seller_id, q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(no_store(&page))
}

#[utoipa::path(
    post,
    path = "/v1/seller/orders/{id}/items/{item_id}/shipment",
    tag = "orders",
    params(("id" = String, Path, description = "Order id"), ("item_id" = String, Path, description = "Order item id")),
    request_body = ShipmentUpdate,
    responses((status = 200, description = "Moved [sensitive]: PENDING → SHIPPED (tracking number) → DELIVERED; the order follows its items", body = SellerOrderView), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the item is another seller's", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not allowed in the current state; `current_status` names it", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Missing tracking number", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:orders:fulfil"]))
)]
pub async fn ship(
    state: State,
    auth: Sensitive,
    path: web::Path<(String, String)>,
    body: web::Json<ShipmentUpdate>,
) -> Result<HttpResponse, ApiError> {
    let (order_id, item_id) = path.into_inner();
    let view = fulfilment::move_item(
        &state.db,
        &auth.principal,
        order_id,
        item_id,
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(no_store(&view))
}

#[utoipa::path(
    post,
    path = "/v1/seller/orders/{id}/return-received",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "RETURN_REQUESTED → RETURNED [sensitive]: the refund owed is recorded; the provider's `refund.succeeded` event makes it REFUNDED", body = OrderView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or the caller sells nothing in this order", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not allowed in the current state; `current_status` names it", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:orders:fulfil"]))
)]
pub async fn return_received(state: State, auth: Sensitive, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = fulfilment::receive_return(&state.db, &auth.principal, id.into_inner(), state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(no_store(&view))
}

#[utoipa::path(
    post,
    path = "/v1/payments/events",
    tag = "orders",
    request_body = PaymentEvent,
    responses((status = 200, description = "Received [sensitive]: applied, ignored (order not awaiting payment) or refunded (paid after cancellation, or paid again under another event id: that payment is refunded, the order stays); `refund.succeeded` makes a RETURNED order REFUNDED; a repeated event id answers the first outcome with `duplicate: true`", body = PaymentEventReceipt), (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The token lacks the permission (`insufficient_scope`), or is not a client_credentials token", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Unknown order, or amount/currency differ from the order's total (recorded, no state change)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = ["commerce:payments:write"]))
)]
pub async fn payment_event(
    state: State,
    auth: Sensitive,
    body: web::Json<PaymentEvent>,
) -> Result<HttpResponse, ApiError> {
    let receipt = saga::receive_payment(
        &state.db,
        &state.sagas,
        &auth.principal,
        body.into_inner(),
        state.clock.now(),
    )
    .await
    .map_err(domain(&state.realm))?;
    Ok(no_store(&receipt))
}
