//! Sellers' side of marketplace orders: the orders holding a seller's items (those
//! items only), item shipments (`PENDING → SHIPPED → DELIVERED`) that the order's
//! status follows, and receiving a return (RETURNED, the refund owed recorded). A
//! member of the item's seller with `commerce:orders:fulfil` only; the state
//! machines are in `domain::orders`.

use serde::{Deserialize, Serialize};

use super::orders::{
    OrderAction, OrderItemView, OrderStatus, OrderView, ShipmentStatus, follow_items, item_view, load, next,
    next_shipment,
};
use super::permissions::ORDERS_FULFIL;
use super::saga::{RefundCause, record_refund};
use super::{CommerceError, Limit, Page, cursor, page};
use crate::commerce::storage as catalog_store;
use crate::commerce::storage::orders as store;
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

/// What a seller sees of an order: its own items only.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SellerOrderView {
    pub order_id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderItemView>,
    pub created_at: i64,
}

fn may_fulfil(
    conn: &mut AnyConnection,
    actor: &Principal,
    seller_id: &str,
) -> Result<Result<(), CommerceError>, DbError> {
    if !actor.has(ORDERS_FULFIL) {
        return Ok(Err(CommerceError::MissingPermission(ORDERS_FULFIL)));
    }
    if catalog_store::is_member(conn, seller_id, &actor.sub)? {
        Ok(Ok(()))
    } else {
        Ok(Err(CommerceError::Forbidden(
            "only members of the seller may see or move its order items".into(),
        )))
    }
}

/// The orders holding `seller_id`'s items, each with those items only.
pub async fn of_seller(
    db: &Db,
    actor: &Principal,
    seller_id: String,
    after: Option<String>,
    limit: Limit,
) -> Result<Page<SellerOrderView>, CommerceError> {
    let after = cursor::decode(after.as_deref())?;
    let actor = actor.clone();
    let rows = db
        .read(move |conn| {
            if let Err(e) = may_fulfil(conn, &actor, &seller_id)? {
                return Ok(Err(e));
            }
            let orders = store::of_seller(conn, &seller_id, &after, limit.get() + 1)?;
            let mut out = Vec::with_capacity(orders.len());
            for order in orders {
                let items = store::items_of_seller(conn, &order.id, &seller_id)?;
                out.push(SellerOrderView {
                    status: OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending),
                    items: items.into_iter().map(|i| item_view(i, &order.currency)).collect(),
                    order_id: order.id,
                    created_at: order.created_at,
                });
            }
            Ok(Ok(out))
        })
        .await??;
    Ok(page(rows, limit, |v| v.order_id.clone(), |v| v))
}

/// A seller's shipment update of one item.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentUpdate {
    /// `SHIPPED` (with a tracking number) or `DELIVERED`.
    pub status: ShipmentStatus,
    #[serde(default)]
    pub tracking_number: Option<String>,
}

/// Moves one item's shipment (member of the item's seller, `commerce:orders:fulfil`);
/// the order's status follows its items. Answers the seller's view of the order.
pub async fn move_item(
    db: &Db,
    actor: &Principal,
    order_id: String,
    item_id: String,
    update: ShipmentUpdate,
    now: i64,
) -> Result<SellerOrderView, CommerceError> {
    let tracking = match (update.status, update.tracking_number.as_deref().map(str::trim)) {
        (ShipmentStatus::Shipped, Some(t)) if !t.is_empty() && t.len() <= 100 => Some(t.to_owned()),
        (ShipmentStatus::Shipped, _) => {
            return Err(CommerceError::Invalid(
                "shipping an item needs a tracking_number of 1 to 100 characters".into(),
            ));
        }
        (_, None) => None,
        (_, Some(_)) => {
            return Err(CommerceError::Invalid("only SHIPPED takes a tracking_number".into()));
        }
    };
    let actor = actor.clone();
    db.transaction(move |conn| {
        let Some(item) = store::find_item(conn, &order_id, &item_id)? else {
            return Ok(Err(CommerceError::NotFound("order item")));
        };
        if let Err(e) = may_fulfil(conn, &actor, &item.seller_id)? {
            return Ok(Err(e));
        }
        let Some(order) = store::find(conn, &order_id)? else {
            return Ok(Err(CommerceError::NotFound("order")));
        };
        let current = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
        if !matches!(
            current,
            OrderStatus::Paid | OrderStatus::Preparing | OrderStatus::Shipped
        ) {
            return Ok(Err(CommerceError::OrderState {
                current: current.as_str(),
                action: "ship or deliver items of",
            }));
        }
        let from = ShipmentStatus::parse(&item.shipment_status).unwrap_or(ShipmentStatus::Pending);
        let to = match next_shipment(from, update.status) {
            Ok(to) => to,
            Err(e) => return Ok(Err(e)),
        };
        // The order row first (its lock orders concurrent item moves of one order).
        if !store::lock_in_phase(conn, &order_id, &order.saga, now)?
            || !store::move_item(conn, &item_id, from.as_str(), to.as_str(), tracking.as_deref(), now)?
        {
            return Ok(Err(CommerceError::Conflict(
                "the order changed meanwhile; try again".into(),
            )));
        }
        let order = store::find(conn, &order_id)?.expect("locked");
        let current = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
        let shipments: Vec<ShipmentStatus> = store::items_of(conn, &order_id)?
            .iter()
            .map(|i| ShipmentStatus::parse(&i.shipment_status).unwrap_or(ShipmentStatus::Pending))
            .collect();
        if let Some(action) = follow_items(current, &shipments) {
            let to = next(current, action).expect("follow_items checked it");
            if !store::advance(
                conn,
                &order_id,
                (current.as_str(), &order.saga),
                (to.as_str(), &order.saga),
                now,
            )? {
                return Err(DbError::Conflict("order moved while locked".into()));
            }
        }
        let order = store::find(conn, &order_id)?.expect("locked");
        let items = store::items_of_seller(conn, &order_id, &item.seller_id)?;
        Ok(Ok(SellerOrderView {
            status: OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending),
            items: items.into_iter().map(|i| item_view(i, &order.currency)).collect(),
            order_id: order.id,
            created_at: order.created_at,
        }))
    })
    .await?
}

/// A seller received a returned order back: `RETURN_REQUESTED → RETURNED` and the
/// refund owed is recorded, in one transaction. The payment provider's
/// `refund.succeeded` event then makes it `REFUNDED` (`domain::payments`). Any
/// seller with items in the order may confirm.
pub async fn receive_return(
    db: &Db,
    actor: &Principal,
    order_id: String,
    now: i64,
) -> Result<OrderView, CommerceError> {
    let actor = actor.clone();
    db.transaction(move |conn| {
        let Some(order) = store::find(conn, &order_id)? else {
            return Ok(Err(CommerceError::NotFound("order")));
        };
        let items = store::items_of(conn, &order_id)?;
        let mut allowed = Err(CommerceError::Forbidden(
            "only members of a seller of this order may receive its return".into(),
        ));
        for seller in items.iter().map(|i| i.seller_id.as_str()) {
            allowed = may_fulfil(conn, &actor, seller)?;
            if allowed.is_ok() {
                break;
            }
        }
        if let Err(e) = allowed {
            return Ok(Err(e));
        }
        let current = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
        let returned = match next(current, OrderAction::ReceiveReturn) {
            Ok(to) => to,
            Err(e) => return Ok(Err(e)),
        };
        if !store::advance(
            conn,
            &order_id,
            (current.as_str(), &order.saga),
            (returned.as_str(), &order.saga),
            now,
        )? {
            return Ok(Err(CommerceError::Conflict(
                "the order changed meanwhile; try again".into(),
            )));
        }
        // The refund owed; the provider's `refund.succeeded` logs the `refunded` step.
        record_refund(conn, &order, "returned", RefundCause::Order, now)?;
        store::log_step(conn, &order_id, "returned", now)?;
        Ok(Ok(load(conn, &order_id)?.expect("the order exists")))
    })
    .await?
}
