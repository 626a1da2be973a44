//! Marketplace orders: placing one (priced on the server from the catalog, the
//! options and the coupon), the order and item-shipment state machines, what
//! buyers and sellers see, and their actions. The saga that reserves stock,
//! applies the coupon and awaits payment is `domain::saga`.

use serde::{Deserialize, Serialize};

use super::coupons::{self, CouponError};
use super::idempotency::{self, Claim, StoredResponse};
use super::reservations::ReservationStatus;
use super::stock::{self as stock_rules, Day};
use super::{CommerceError, Currency, Limit, Money, Page, Status as ProductStatus, cursor, page};
use crate::commerce::storage as catalog_store;
use crate::commerce::storage::orders::{self as store, ItemRow, OrderRow};
use crate::commerce::storage::reservations as reservation_store;
use crate::commerce::storage::stock as stock_store;
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

/// Items one order may hold, and units per item.
pub const MAX_ITEMS: usize = 50;
pub const MAX_QUANTITY: i64 = 100;

// ---------------------------------------------------------------- state machines

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Accepted; the saga is reserving stock and applying the coupon.
    Pending,
    /// Stock held, coupon applied: waiting for the payment provider.
    PendingPayment,
    Paid,
    /// Some items shipped, not all.
    Preparing,
    /// Every item shipped.
    Shipped,
    /// Every item delivered.
    Delivered,
    /// The buyer confirmed receipt.
    Completed,
    /// Cancelled before shipping (stock released, coupon returned; refunded if paid).
    Cancelled,
    ReturnRequested,
    Returned,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 11] = [
        Self::Pending,
        Self::PendingPayment,
        Self::Paid,
        Self::Preparing,
        Self::Shipped,
        Self::Delivered,
        Self::Completed,
        Self::Cancelled,
        Self::ReturnRequested,
        Self::Returned,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Paid => "PAID",
            Self::Preparing => "PREPARING",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
            Self::ReturnRequested => "RETURN_REQUESTED",
            Self::Returned => "RETURNED",
            Self::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    /// The saga reserved the stock and applied the coupon.
    Place,
    /// The payment provider reported success.
    Pay,
    /// The buyer cancelled, the payment failed or timed out, or placing failed.
    Cancel,
    /// A first item shipped, not all.
    StartShipping,
    /// Every item shipped.
    ShipAll,
    /// Every item delivered.
    DeliverAll,
    /// The buyer confirmed receipt.
    Complete,
    /// The buyer asked to return the order.
    RequestReturn,
    /// The seller received the goods back.
    ReceiveReturn,
    /// The money went back.
    Refund,
}

impl OrderAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Pay => "pay",
            Self::Cancel => "cancel",
            Self::StartShipping => "start shipping",
            Self::ShipAll => "ship",
            Self::DeliverAll => "deliver",
            Self::Complete => "complete",
            Self::RequestReturn => "request the return of",
            Self::ReceiveReturn => "receive the return of",
            Self::Refund => "refund",
        }
    }
}

/// The order state machine: the one place that says which action may follow
/// which status. Storage updates are conditional on the same `from`.
pub fn next(from: OrderStatus, action: OrderAction) -> Result<OrderStatus, CommerceError> {
    use OrderAction as A;
    use OrderStatus as S;
    let to = match (from, action) {
        (S::Pending, A::Place) => S::PendingPayment,
        (S::PendingPayment, A::Pay) => S::Paid,
        (S::Pending | S::PendingPayment | S::Paid, A::Cancel) => S::Cancelled,
        (S::Paid, A::StartShipping) => S::Preparing,
        (S::Paid | S::Preparing, A::ShipAll) => S::Shipped,
        (S::Shipped, A::DeliverAll) => S::Delivered,
        (S::Delivered, A::Complete) => S::Completed,
        (S::Delivered, A::RequestReturn) => S::ReturnRequested,
        (S::ReturnRequested, A::ReceiveReturn) => S::Returned,
        (S::Returned, A::Refund) => S::Refunded,
        (current, action) => {
            return Err(CommerceError::OrderState {
                current: current.as_str(),
                action: action.as_str(),
            });
        }
    };
    Ok(to)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    Pending,
    Shipped,
    Delivered,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Shipped, Self::Delivered]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An item's shipment: `PENDING → SHIPPED → DELIVERED`, nothing else.
pub fn next_shipment(from: ShipmentStatus, to: ShipmentStatus) -> Result<ShipmentStatus, CommerceError> {
    match (from, to) {
        (ShipmentStatus::Pending, ShipmentStatus::Shipped) | (ShipmentStatus::Shipped, ShipmentStatus::Delivered) => {
            Ok(to)
        }
        _ => Err(CommerceError::OrderState {
            current: from.as_str(),
            action: match to {
                ShipmentStatus::Pending => "move back to PENDING",
                ShipmentStatus::Shipped => "ship",
                ShipmentStatus::Delivered => "deliver",
            },
        }),
    }
}

/// The order action its items call for, if any: every item delivered, every item
/// shipped (or delivered), or a first one shipped.
pub fn follow_items(current: OrderStatus, items: &[ShipmentStatus]) -> Option<OrderAction> {
    let all = |f: fn(&ShipmentStatus) -> bool| !items.is_empty() && items.iter().all(f);
    let action = if all(|s| *s == ShipmentStatus::Delivered) {
        OrderAction::DeliverAll
    } else if all(|s| *s != ShipmentStatus::Pending) {
        OrderAction::ShipAll
    } else if items.iter().any(|s| *s != ShipmentStatus::Pending) {
        OrderAction::StartShipping
    } else {
        return None;
    };
    next(current, action).ok().map(|_| action)
}

// ---------------------------------------------------------------- requests and views

/// One item: a product's combination (with `date` and `quantity`), or one of the
/// buyer's CONFIRMED reservations alone (`reservation_id`), whose product,
/// combination, date, quantity and held stock the item takes over.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderItem {
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub combination_id: Option<String>,
    /// RESERVABLE products: the date (YYYY-MM-DD).
    #[serde(default)]
    pub date: Option<String>,
    /// Units (default 1, at most 100).
    #[serde(default)]
    pub quantity: Option<i64>,
    /// One of the buyer's CONFIRMED reservations, instead of the four fields above.
    #[serde(default)]
    pub reservation_id: Option<String>,
}

/// Where an item's stock comes from, parsed from a `NewOrderItem`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemSource {
    /// Taken from stock by the saga.
    Catalog {
        product_id: String,
        combination_id: String,
        date: Option<String>,
        quantity: i64,
    },
    /// Held by a reservation whose hold the saga takes over.
    Reservation(String),
}

impl ItemSource {
    fn parse(position: usize, item: &NewOrderItem) -> Result<Self, CommerceError> {
        match item {
            NewOrderItem {
                reservation_id: Some(id),
                product_id: None,
                combination_id: None,
                date: None,
                quantity: None,
            } => Ok(Self::Reservation(id.clone())),
            NewOrderItem {
                reservation_id: Some(_),
                ..
            } => Err(CommerceError::Invalid(format!(
                "items[{position}]: reservation_id stands alone (the reservation gives the product, \
                 combination, date and quantity)"
            ))),
            NewOrderItem {
                product_id: Some(product_id),
                combination_id: Some(combination_id),
                date,
                quantity,
                reservation_id: None,
            } => {
                let quantity = quantity.unwrap_or(1);
                if !(1..=MAX_QUANTITY).contains(&quantity) {
                    return Err(CommerceError::Invalid(format!(
                        "quantity must be between 1 and {MAX_QUANTITY}"
                    )));
                }
                Ok(Self::Catalog {
                    product_id: product_id.clone(),
                    combination_id: combination_id.clone(),
                    date: date.clone(),
                    quantity,
                })
            }
            _ => Err(CommerceError::Invalid(format!(
                "items[{position}] needs product_id and combination_id, or reservation_id"
            ))),
        }
    }
}

/// A new order. Prices are not part of it: they come from the catalog.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub items: Vec<NewOrderItem>,
    /// One of the buyer's coupons (`ISSUED`).
    #[serde(default)]
    pub coupon_id: Option<String>,
    /// The currency the buyer expects to pay in; refused if the catalog prices differ.
    #[serde(default)]
    pub currency: Option<Currency>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderItemView {
    pub id: String,
    pub seller_id: String,
    pub product_id: String,
    pub combination_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub quantity: i64,
    /// Product price plus the combination's option price delta, at the time of ordering.
    pub unit_price: Money,
    pub shipment_status: ShipmentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// The reservation whose hold the item took over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: String,
    pub status: OrderStatus,
    pub subtotal: Money,
    pub discount: Money,
    /// What the payment provider must report: subtotal minus discount.
    pub total: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_id: Option<String>,
    /// CANCELLED: `sold_out`, `product_not_on_sale`, `reservation_expired`,
    /// `coupon_unavailable`, `payment_failed`, `payment_timeout`, `buyer_cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// PENDING_PAYMENT: the payment must arrive before this (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_by: Option<i64>,
    /// Money going back, summed over the order's refunds: a paid order cancelled
    /// or returned, a payment after the cancellation, a second payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<Money>,
    pub items: Vec<OrderItemView>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn money(amount_minor: i64, currency: &str) -> Money {
    Money {
        amount_minor,
        currency: Currency::parse(currency).unwrap_or_else(|_| Currency::parse("XXX").expect("XXX")),
    }
}

pub(super) fn item_view(row: ItemRow, currency: &str) -> OrderItemView {
    OrderItemView {
        date: (!row.day.is_empty()).then_some(row.day),
        unit_price: money(row.unit_price_minor, currency),
        shipment_status: ShipmentStatus::parse(&row.shipment_status).unwrap_or(ShipmentStatus::Pending),
        id: row.id,
        seller_id: row.seller_id,
        product_id: row.product_id,
        combination_id: row.combination_id,
        quantity: row.quantity,
        tracking_number: row.tracking_number,
        reservation_id: row.reservation_id,
    }
}

fn view(order: OrderRow, items: Vec<ItemRow>, refund: Option<i64>) -> OrderView {
    let currency = order.currency.clone();
    let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
    OrderView {
        subtotal: money(order.subtotal_minor, &currency),
        discount: money(order.discount_minor, &currency),
        total: money(order.total_minor, &currency),
        refund: refund.map(|r| money(r, &currency)),
        pay_by: order.pay_by.filter(|_| status == OrderStatus::PendingPayment),
        items: items.into_iter().map(|i| item_view(i, &currency)).collect(),
        status,
        id: order.id,
        coupon_id: order.coupon_id,
        cancel_reason: order.cancel_reason,
        created_at: order.created_at,
        updated_at: order.updated_at,
    }
}

/// The order with its items and refund, read on `conn`.
pub fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<OrderView>, DbError> {
    let Some(order) = store::find(conn, id)? else {
        return Ok(None);
    };
    let items = store::items_of(conn, id)?;
    let refund = store::refunded(conn, id)?;
    Ok(Some(view(order, items, refund)))
}

// ---------------------------------------------------------------- placing

/// Who drives a new order's saga first, and for how long (then any runner may).
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub secs: i64,
}

fn coupon_refusal(error: CouponError) -> CommerceError {
    match error {
        CouponError::NotFound(_) => CommerceError::Invalid("coupon_id names none of your coupons".into()),
        CouponError::Invalid(m) | CouponError::State(m) => CommerceError::Invalid(format!("coupon: {m}")),
        CouponError::Unavailable => CommerceError::Unavailable,
        other => CommerceError::Internal(other.to_string()),
    }
}

/// Prices the order from the catalog and writes it (PENDING, saga PLACING) with its
/// items and, when a claim is given, the response `respond` builds, in one
/// transaction: the order exists exactly when its response is stored. The saga
/// (`saga::drive`) then reserves the stock and applies the coupon.
pub async fn place(
    db: &Db,
    buyer: &Principal,
    new: NewOrder,
    claim: Option<Claim>,
    respond: impl FnOnce(&OrderView) -> StoredResponse + Send + 'static,
    lease: Lease,
    now: i64,
) -> Result<(OrderView, StoredResponse), CommerceError> {
    if new.items.is_empty() || new.items.len() > MAX_ITEMS {
        return Err(CommerceError::Invalid(format!("an order holds 1 to {MAX_ITEMS} items")));
    }
    let mut sources = Vec::with_capacity(new.items.len());
    for (position, item) in new.items.iter().enumerate() {
        let source = ItemSource::parse(position, item)?;
        if let ItemSource::Reservation(id) = &source
            && sources.contains(&ItemSource::Reservation(id.clone()))
        {
            return Err(CommerceError::Invalid(format!(
                "items[{position}]: the reservation is already in the order"
            )));
        }
        sources.push(source);
    }
    let buyer = buyer.sub.clone();
    db.transaction(move |conn| {
        let order_id = uuid::Uuid::now_v7().to_string();
        let mut items = Vec::with_capacity(new.items.len());
        let mut currency: Option<String> = new.currency.as_ref().map(|c| c.as_str().to_owned());
        let mut subtotal: i64 = 0;
        for (position, source) in sources.into_iter().enumerate() {
            let (product_id, combination_id, date, quantity, reservation_id) = match source {
                ItemSource::Catalog {
                    product_id,
                    combination_id,
                    date,
                    quantity,
                } => (product_id, combination_id, date, quantity, None),
                ItemSource::Reservation(id) => {
                    let Some(held) = reservation_store::find(conn, &id)?.filter(|r| r.subject == buyer) else {
                        return Ok(Err(CommerceError::Invalid(format!(
                            "items[{position}].reservation_id names none of your reservations"
                        ))));
                    };
                    let status = ReservationStatus::parse(&held.status);
                    if status != Some(ReservationStatus::Confirmed) || held.hold_until.is_none_or(|t| t <= now) {
                        return Ok(Err(CommerceError::Conflict(format!(
                            "items[{position}]: the reservation is {}, not a running hold",
                            held.status
                        ))));
                    }
                    let date = (!held.day.is_empty()).then_some(held.day);
                    (held.product_id, held.combination_id, date, held.quantity, Some(id))
                }
            };
            let (product, combination) = match stock_rules::product_and_combination(conn, &product_id, &combination_id)?
            {
                Ok(found) => found,
                Err(CommerceError::NotFound(_)) => {
                    return Ok(Err(CommerceError::Invalid(format!(
                        "items[{position}].product_id names no product"
                    ))));
                }
                Err(e) => return Ok(Err(e)),
            };
            if ProductStatus::parse(&product.status) != Some(ProductStatus::Sales) || !combination.available {
                return Ok(Err(CommerceError::Conflict(format!(
                    "items[{position}] is not on sale"
                ))));
            }
            let day = match Day::for_product(&product.product_type, date.as_deref()) {
                Ok(day) => day,
                Err(e) => return Ok(Err(e)),
            };
            match &currency {
                Some(c) if *c != product.currency => {
                    return Ok(Err(CommerceError::Invalid(format!(
                        "items[{position}] is priced in {}, the order in {c}; one order has one currency",
                        product.currency
                    ))));
                }
                _ => currency = Some(product.currency.clone()),
            }
            // The catalog's price of the combination: product price + its options'
            // deltas + the combination's own delta.
            let chosen: Vec<&str> = combination.option_ids.split(',').collect();
            let option_deltas: i64 = catalog_store::groups_of(conn, &product.id)?
                .iter()
                .flat_map(|(_, options)| options.iter())
                .filter(|o| chosen.contains(&o.id.as_str()))
                .map(|o| o.price_delta)
                .sum();
            let unit = product
                .price_minor
                .checked_add(option_deltas)
                .and_then(|u| u.checked_add(combination.price_delta))
                .filter(|u| *u >= 0);
            let line = unit.and_then(|u| u.checked_mul(quantity));
            let (Some(unit), Some(next)) = (unit, line.and_then(|l| subtotal.checked_add(l))) else {
                return Ok(Err(CommerceError::Invalid(format!(
                    "items[{position}]: the price is out of range"
                ))));
            };
            subtotal = next;
            // A cheap early refusal; the saga's conditional decrement decides. (A
            // reservation's units are held already.)
            let left = stock_store::find(conn, &combination.id, day.as_str())?.map_or(0, |s| s.available);
            if reservation_id.is_none() && left < quantity {
                return Ok(Err(CommerceError::Conflict(format!("sold_out: items[{position}]"))));
            }
            items.push(ItemRow {
                id: uuid::Uuid::now_v7().to_string(),
                order_id: order_id.clone(),
                position: position as i32,
                seller_id: product.seller_id,
                product_id: product.id,
                combination_id: combination.id,
                day: day.as_str().to_owned(),
                quantity,
                unit_price_minor: unit,
                stock_id: None,
                shipment_status: ShipmentStatus::Pending.as_str().to_owned(),
                tracking_number: None,
                updated_at: now,
                reservation_id,
            });
        }
        let currency = currency.unwrap_or_default();
        let discount = match &new.coupon_id {
            None => 0,
            Some(coupon_id) => {
                let Ok(subtotal_money) = Currency::parse(&currency).map(|c| Money {
                    amount_minor: subtotal,
                    currency: c,
                }) else {
                    return Ok(Err(CommerceError::Internal(format!("catalog currency `{currency}`"))));
                };
                match coupons::preview_in(conn, coupon_id, &buyer, &subtotal_money, now)? {
                    Ok(off) => off.amount_minor,
                    Err(e) => return Ok(Err(coupon_refusal(e))),
                }
            }
        };
        let order = OrderRow {
            id: order_id.clone(),
            buyer: buyer.clone(),
            status: OrderStatus::Pending.as_str().to_owned(),
            saga: super::saga::Phase::Placing.as_str().to_owned(),
            cancel_reason: None,
            currency,
            subtotal_minor: subtotal,
            discount_minor: discount,
            total_minor: subtotal - discount,
            coupon_id: new.coupon_id.clone(),
            pay_by: None,
            lease_owner: Some(lease.owner.clone()),
            lease_until: Some(now + lease.secs),
            created_at: now,
            updated_at: now,
        };
        store::insert(conn, &order, &items)?;
        let view = view(order, items, None);
        let response = respond(&view);
        if let Some(claim) = &claim {
            idempotency::complete(conn, claim, &response)?;
        }
        Ok(Ok((view, response)))
    })
    .await?
}

// ---------------------------------------------------------------- buyers

/// The buyer's own order (another buyer's is "not found").
pub async fn get(db: &Db, buyer: &str, id: String) -> Result<OrderView, CommerceError> {
    let buyer = buyer.to_owned();
    db.read(move |conn| {
        let Some(order) = store::find(conn, &id)? else {
            return Ok(None);
        };
        if order.buyer != buyer {
            return Ok(None);
        }
        load(conn, &id)
    })
    .await?
    .ok_or(CommerceError::NotFound("order"))
}

/// The buyer's orders, oldest first, cursor-paginated.
pub async fn mine(db: &Db, buyer: &str, after: Option<String>, limit: Limit) -> Result<Page<OrderView>, CommerceError> {
    let after = cursor::decode(after.as_deref())?;
    let buyer = buyer.to_owned();
    let rows = db
        .read(move |conn| {
            let orders = store::of_buyer(conn, &buyer, &after, limit.get() + 1)?;
            let mut out = Vec::with_capacity(orders.len());
            for order in orders {
                let items = store::items_of(conn, &order.id)?;
                let refund = store::refunded(conn, &order.id)?;
                out.push((order.id.clone(), view(order, items, refund)));
            }
            Ok(out)
        })
        .await?;
    Ok(page(rows, limit, |(id, _)| id.clone(), |(_, v)| v))
}

/// A buyer action on a delivered order: `Complete` or `RequestReturn`.
pub async fn buyer_action(
    db: &Db,
    buyer: &str,
    id: String,
    action: OrderAction,
    now: i64,
) -> Result<OrderView, CommerceError> {
    let buyer = buyer.to_owned();
    db.transaction(move |conn| {
        let Some(order) = store::find(conn, &id)?.filter(|o| o.buyer == buyer) else {
            return Ok(Err(CommerceError::NotFound("order")));
        };
        let current = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
        let to = match next(current, action) {
            Ok(to) => to,
            Err(e) => return Ok(Err(e)),
        };
        if !store::advance(
            conn,
            &id,
            (current.as_str(), &order.saga),
            (to.as_str(), &order.saga),
            now,
        )? {
            return Ok(Err(CommerceError::Conflict(
                "the order changed meanwhile; try again".into(),
            )));
        }
        Ok(Ok(load(conn, &id)?.expect("the order exists")))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::OrderAction as A;
    use super::OrderStatus as S;
    use super::*;

    const ACTIONS: [OrderAction; 10] = [
        A::Place,
        A::Pay,
        A::Cancel,
        A::StartShipping,
        A::ShipAll,
        A::DeliverAll,
        A::Complete,
        A::RequestReturn,
        A::ReceiveReturn,
        A::Refund,
    ];

    #[test]
    fn the_order_state_machine_as_a_table() {
        let allowed = [
            (S::Pending, A::Place, S::PendingPayment),
            (S::PendingPayment, A::Pay, S::Paid),
            (S::Pending, A::Cancel, S::Cancelled),
            (S::PendingPayment, A::Cancel, S::Cancelled),
            (S::Paid, A::Cancel, S::Cancelled),
            (S::Paid, A::StartShipping, S::Preparing),
            (S::Paid, A::ShipAll, S::Shipped),
            (S::Preparing, A::ShipAll, S::Shipped),
            (S::Shipped, A::DeliverAll, S::Delivered),
            (S::Delivered, A::Complete, S::Completed),
            (S::Delivered, A::RequestReturn, S::ReturnRequested),
            (S::ReturnRequested, A::ReceiveReturn, S::Returned),
            (S::Returned, A::Refund, S::Refunded),
        ];
        for from in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(from.as_str()), Some(from));
            for action in ACTIONS {
                let expected = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match (next(from, action), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} + {action:?}"),
                    (Err(CommerceError::OrderState { current, .. }), None) => assert_eq!(current, from.as_str()),
                    (got, want) => panic!("{from:?} + {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn no_cancellation_once_anything_shipped() {
        for from in [
            S::Preparing,
            S::Shipped,
            S::Delivered,
            S::Completed,
            S::Cancelled,
            S::Refunded,
        ] {
            assert!(next(from, A::Cancel).is_err(), "{from:?}");
        }
    }

    #[test]
    fn shipments_only_move_forward() {
        use ShipmentStatus::*;
        assert_eq!(next_shipment(Pending, Shipped).unwrap(), Shipped);
        assert_eq!(next_shipment(Shipped, Delivered).unwrap(), Delivered);
        for (from, to) in [
            (Pending, Delivered),
            (Pending, Pending),
            (Shipped, Shipped),
            (Shipped, Pending),
            (Delivered, Shipped),
            (Delivered, Delivered),
        ] {
            assert!(next_shipment(from, to).is_err(), "{from:?} → {to:?}");
        }
    }

    #[test]
    fn the_order_follows_its_items() {
        use ShipmentStatus::*;
        assert_eq!(follow_items(S::Paid, &[Pending, Pending]), None);
        assert_eq!(follow_items(S::Paid, &[Shipped, Pending]), Some(A::StartShipping));
        assert_eq!(follow_items(S::Preparing, &[Delivered, Pending]), None);
        assert_eq!(follow_items(S::Preparing, &[Delivered, Shipped]), Some(A::ShipAll));
        assert_eq!(follow_items(S::Paid, &[Shipped]), Some(A::ShipAll));
        assert_eq!(follow_items(S::Shipped, &[Delivered, Shipped]), None);
        assert_eq!(follow_items(S::Shipped, &[Delivered, Delivered]), Some(A::DeliverAll));
        assert_eq!(follow_items(S::Paid, &[]), None);
    }
}
