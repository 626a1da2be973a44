//! The order saga, orchestrated, with its log in the commerce database:
//! reserve stock for every item → apply the coupon → await payment → PAID.
//! An item placed with a reservation takes its hold over instead of taking stock
//! (the reservation becomes ORDERED; on cancellation its stock goes back and the
//! reservation ends `order_cancelled`).
//! Payment failure, the payment deadline or a buyer's cancellation start the
//! compensations, in reverse order: return the coupon, release the stock, then
//! CANCELLED (with a refund record if the order had been paid).
//!
//! Every step and every compensation is one local transaction that (1) locks the
//! order row while its saga is still in the expected phase, (2) does its effect
//! and (3) inserts its `saga_log` row, whose primary key makes it happen once. A
//! process killed between steps leaves the log saying what is done; `drive`
//! (from the request, or from any instance's saga runner once the lease ran out)
//! continues from there. Why a saga and not two-phase commit: docs/ARCHITECTURE.md.

use super::coupons;
use super::orders::{self, OrderAction, OrderStatus, OrderView, next};
use super::payments::{self, PaymentEvent, PaymentEventReceipt, PaymentOutcome};
use super::stock::{self, Take};
use super::{CommerceError, Currency, Money, Status as ProductStatus};
use crate::commerce::storage::orders::{self as store, OrderRow, RefundRow};
use crate::commerce::storage::reservations as reservation_store;
use crate::commerce::storage::stock as stock_store;
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

/// Where an order's saga stands (`orders.saga`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reserving stock, applying the coupon.
    Placing,
    /// Forward steps done; the payment provider has until `pay_by`.
    AwaitingPayment,
    /// Undoing what was done, in reverse order.
    Compensating,
    /// Nothing left for the saga (paid, or cancelled).
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Placing => "PLACING",
            Phase::AwaitingPayment => "AWAITING_PAYMENT",
            Phase::Compensating => "COMPENSATING",
            Phase::Done => "DONE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Phase::Placing, Phase::AwaitingPayment, Phase::Compensating, Phase::Done]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Steps recorded in `saga_log`.
pub(super) mod step {
    pub fn reserve(position: i32) -> String {
        format!("reserve:{position}")
    }
    pub fn release(position: i32) -> String {
        format!("release:{position}")
    }
    pub const COUPON: &str = "coupon";
    pub const PLACED: &str = "placed";
    pub const PAID: &str = "paid";
    pub const COUPON_RETURNED: &str = "coupon_returned";
    pub const CANCELLED: &str = "cancelled";
    pub const REFUNDED: &str = "refunded";
}

/// Saga settings (`commerce.payment_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub payment_timeout_secs: i64,
}

/// How long a driver (a request or a runner) owns a saga before another may take it.
pub const LEASE_SECS: i64 = 10;

/// Version conflicts on one stock row retried before the step is left to the runner.
const MAX_CONFLICTS: u32 = 30;

/// What one step did.
enum Stepped {
    /// Done (or found done): look again.
    Progress,
    /// The saga has nothing to do now (awaiting payment before the deadline, done).
    Idle,
    /// A stock row kept changing: try later.
    Busy,
}

/// Drives the saga of `order_id` as far as it can go now: the forward steps, the
/// compensations, the payment deadline. Safe to run concurrently with itself on
/// any instance: each step is guarded by the order's row lock, the saga phase and
/// the log. Returns the phase it stopped in.
pub async fn drive(db: &Db, order_id: &str, settings: Settings, now: i64) -> Result<Phase, DbError> {
    let mut conflicts = 0;
    loop {
        let id = order_id.to_owned();
        let stepped = db.transaction(move |conn| step_once(conn, &id, settings, now)).await;
        match stepped {
            Ok(Stepped::Progress) => conflicts = 0,
            Ok(Stepped::Idle) => break,
            // A concurrent driver logged the same step first (our attempt rolled
            // back), or a stock row kept changing: look again after a pause.
            Err(DbError::Conflict(_)) | Ok(Stepped::Busy) => {
                conflicts += 1;
                if conflicts >= MAX_CONFLICTS {
                    break;
                }
                stock::backoff(conflicts).await;
            }
            Err(e) => return Err(e),
        }
    }
    let id = order_id.to_owned();
    let order = db.read(move |conn| store::find(conn, &id)).await?;
    Ok(order.and_then(|o| Phase::parse(&o.saga)).unwrap_or(Phase::Done))
}

/// One step in one transaction, chosen from the order's phase and its log.
fn step_once(conn: &mut AnyConnection, id: &str, settings: Settings, now: i64) -> Result<Stepped, DbError> {
    let Some(order) = store::find(conn, id)? else {
        return Ok(Stepped::Idle);
    };
    let Some(phase) = Phase::parse(&order.saga) else {
        return Ok(Stepped::Idle);
    };
    match phase {
        Phase::Done => Ok(Stepped::Idle),
        Phase::AwaitingPayment => {
            if order.pay_by.is_some_and(|t| t <= now)
                && store::start_compensation(
                    conn,
                    id,
                    (OrderStatus::PendingPayment.as_str(), phase.as_str()),
                    "payment_timeout",
                    now,
                )?
            {
                return Ok(Stepped::Progress);
            }
            Ok(Stepped::Idle)
        }
        Phase::Placing => {
            if !store::lock_in_phase(conn, id, phase.as_str(), now)? {
                return Ok(Stepped::Progress);
            }
            place_step(conn, &order, settings, now)
        }
        Phase::Compensating => {
            if !store::lock_in_phase(conn, id, phase.as_str(), now)? {
                return Ok(Stepped::Progress);
            }
            compensate_step(conn, &order, now)
        }
    }
}

fn fail(conn: &mut AnyConnection, order: &OrderRow, reason: &str, now: i64) -> Result<Stepped, DbError> {
    store::start_compensation(conn, &order.id, (&order.status, Phase::Placing.as_str()), reason, now)?;
    Ok(Stepped::Progress)
}

/// The next forward step: reserve the first item not reserved yet, else apply the
/// coupon, else await payment.
fn place_step(conn: &mut AnyConnection, order: &OrderRow, settings: Settings, now: i64) -> Result<Stepped, DbError> {
    let done = store::steps_of(conn, &order.id)?;
    for item in store::items_of(conn, &order.id)? {
        let reserve = step::reserve(item.position);
        if done.contains(&reserve) {
            continue;
        }
        let (product, combination) = match stock::product_and_combination(conn, &item.product_id, &item.combination_id)?
        {
            Ok(found) => found,
            Err(_) => return fail(conn, order, "product_not_on_sale", now),
        };
        if ProductStatus::parse(&product.status) != Some(ProductStatus::Sales) || !combination.available {
            return fail(conn, order, "product_not_on_sale", now);
        }
        if let Some(reservation_id) = &item.reservation_id {
            // Take the reservation's hold over (conditional on it still running, so
            // the hold sweeper and a second order cannot both have it).
            let held = reservation_store::find(conn, reservation_id)?.and_then(|r| r.stock_id);
            let Some(stock_id) = held else {
                return fail(conn, order, "reservation_expired", now);
            };
            if !reservation_store::hand_to_order(conn, reservation_id, &order.id, now)? {
                return fail(conn, order, "reservation_expired", now);
            }
            store::set_item_stock(conn, &item.id, &stock_id, now)?;
            store::log_step(conn, &order.id, &reserve, now)?;
            return Ok(Stepped::Progress);
        }
        return match stock::try_take(conn, &item.combination_id, &item.day, item.quantity, now)? {
            Take::Held(stock_id) => {
                store::set_item_stock(conn, &item.id, &stock_id, now)?;
                store::log_step(conn, &order.id, &reserve, now)?;
                Ok(Stepped::Progress)
            }
            Take::SoldOut | Take::NotOffered => fail(conn, order, "sold_out", now),
            Take::VersionConflict => Ok(Stepped::Busy),
        };
    }
    if let Some(coupon_id) = &order.coupon_id
        && !done.iter().any(|s| s == step::COUPON)
    {
        let subtotal = Money {
            amount_minor: order.subtotal_minor,
            currency: match Currency::parse(&order.currency) {
                Ok(c) => c,
                Err(_) => return fail(conn, order, "coupon_unavailable", now),
            },
        };
        return match coupons::redeem_in(conn, coupon_id, &order.buyer, &order.id, &subtotal, now)? {
            Ok(off) => {
                if off.amount_minor != order.discount_minor {
                    store::set_discount(
                        conn,
                        &order.id,
                        off.amount_minor,
                        order.subtotal_minor - off.amount_minor,
                    )?;
                }
                store::log_step(conn, &order.id, step::COUPON, now)?;
                Ok(Stepped::Progress)
            }
            Err(_) => fail(conn, order, "coupon_unavailable", now),
        };
    }
    let to = next(OrderStatus::Pending, OrderAction::Place).map_err(|e| DbError::Conflict(e.to_string()))?;
    if store::advance(
        conn,
        &order.id,
        (OrderStatus::Pending.as_str(), Phase::Placing.as_str()),
        (to.as_str(), Phase::AwaitingPayment.as_str()),
        now,
    )? {
        store::set_pay_by(conn, &order.id, now + settings.payment_timeout_secs)?;
        store::log_step(conn, &order.id, step::PLACED, now)?;
    }
    Ok(Stepped::Progress)
}

/// The next compensation, in reverse order of the forward steps: return the
/// coupon, release the items' stock from the last to the first, then CANCELLED.
fn compensate_step(conn: &mut AnyConnection, order: &OrderRow, now: i64) -> Result<Stepped, DbError> {
    let done = store::steps_of(conn, &order.id)?;
    let has = |s: &str| done.iter().any(|d| d == s);
    if let Some(coupon_id) = &order.coupon_id
        && has(step::COUPON)
        && !has(step::COUPON_RETURNED)
    {
        if let Err(error) = coupons::return_in(conn, coupon_id, &order.id, now)? {
            // Only a vanished coupon or campaign gets here; nothing to give back.
            tracing::warn!(order = %order.id, %error, "coupon could not be returned");
        }
        store::log_step(conn, &order.id, step::COUPON_RETURNED, now)?;
        return Ok(Stepped::Progress);
    }
    let mut items = store::items_of(conn, &order.id)?;
    items.reverse();
    for item in items {
        let release = step::release(item.position);
        if !has(&step::reserve(item.position)) || has(&release) {
            continue;
        }
        if let Some(stock_id) = &item.stock_id {
            stock_store::give_back(conn, stock_id, item.quantity, now)?;
        }
        if let Some(reservation_id) = &item.reservation_id {
            reservation_store::end_with_order(conn, reservation_id, &order.id, now)?;
        }
        store::log_step(conn, &order.id, &release, now)?;
        return Ok(Stepped::Progress);
    }
    let current = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
    let to = next(current, OrderAction::Cancel).map_err(|e| DbError::Conflict(e.to_string()))?;
    if store::advance(
        conn,
        &order.id,
        (current.as_str(), Phase::Compensating.as_str()),
        (to.as_str(), Phase::Done.as_str()),
        now,
    )? {
        store::log_step(conn, &order.id, step::CANCELLED, now)?;
        if has(step::PAID) {
            refund(conn, order, "cancelled", RefundCause::Order, now)?;
        }
    }
    Ok(Stepped::Progress)
}

/// What a refund pays back.
#[derive(Debug, Clone, Copy)]
pub enum RefundCause<'a> {
    /// The payment that paid the order (a cancellation or a return).
    Order,
    /// One payment event's money (paid after the cancellation, or paid twice).
    Payment(&'a str),
}

impl RefundCause<'_> {
    pub fn key(self) -> String {
        match self {
            Self::Order => "order".to_owned(),
            Self::Payment(event_id) => format!("event:{event_id}"),
        }
    }

    fn step(self) -> String {
        match self {
            Self::Order => step::REFUNDED.to_owned(),
            Self::Payment(event_id) => format!("{}:{event_id}", step::REFUNDED),
        }
    }
}

/// Records a refund of the order's total for `cause` unless one exists; true when
/// this call recorded it.
pub(super) fn record_refund(
    conn: &mut AnyConnection,
    order: &OrderRow,
    reason: &str,
    cause: RefundCause<'_>,
    now: i64,
) -> Result<bool, DbError> {
    store::insert_refund(
        conn,
        &RefundRow {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: order.id.clone(),
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
            reason: reason.to_owned(),
            created_at: now,
            cause: cause.key(),
        },
    )
}

/// Records a refund of the order's total for `cause`, once per cause, with its
/// saga step.
pub(super) fn refund(
    conn: &mut AnyConnection,
    order: &OrderRow,
    reason: &str,
    cause: RefundCause<'_>,
    now: i64,
) -> Result<(), DbError> {
    if record_refund(conn, order, reason, cause, now)? {
        store::log_step(conn, &order.id, &cause.step(), now)?;
    }
    Ok(())
}

/// The buyer cancels (before shipping): the saga compensates. Answers the order
/// as it is now (the compensations follow at once, from the caller's `drive`).
pub async fn cancel(db: &Db, buyer: &str, id: String, now: i64) -> Result<OrderView, CommerceError> {
    let buyer = buyer.to_owned();
    db.transaction(move |conn| {
        let Some(order) = store::find(conn, &id)?.filter(|o| o.buyer == buyer) else {
            return Ok(Err(CommerceError::NotFound("order")));
        };
        let current = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
        if let Err(e) = next(current, OrderAction::Cancel) {
            return Ok(Err(e));
        }
        let phase = Phase::parse(&order.saga).unwrap_or(Phase::Done);
        if phase == Phase::Compensating {
            return Ok(Ok(orders::load(conn, &id)?.expect("the order exists")));
        }
        if !store::start_compensation(conn, &id, (current.as_str(), phase.as_str()), "buyer_cancelled", now)? {
            return Ok(Err(CommerceError::Conflict(
                "the order changed meanwhile; try again".into(),
            )));
        }
        Ok(Ok(orders::load(conn, &id)?.expect("the order exists")))
    })
    .await?
}

// ---------------------------------------------------------------- the runner's part

/// Claims sagas that need work (for `owner`, until `lease_until`).
pub async fn claim_due(db: &Db, owner: &str, now: i64, lease_until: i64) -> Result<Vec<String>, DbError> {
    let owner = owner.to_owned();
    db.run(move |conn| {
        if !store::any_due(conn, now)? {
            return Ok(Vec::new());
        }
        store::claim_due(conn, &owner, now, lease_until, 20)
    })
    .await
}

/// Takes the lease of one order (a request about to drive it).
pub async fn take_lease(db: &Db, id: &str, owner: &str, now: i64, until: i64) -> Result<bool, DbError> {
    let (id, owner) = (id.to_owned(), owner.to_owned());
    db.run(move |conn| store::take_lease(conn, &id, &owner, now, until))
        .await
}

pub async fn release_lease(db: &Db, id: &str, owner: &str) {
    let (id, owner) = (id.to_owned(), owner.to_owned());
    if let Err(error) = db.run(move |conn| store::release_lease(conn, &id, &owner)).await {
        tracing::warn!(%error, "could not release a saga lease; it runs out by itself");
    }
}

/// Who drives sagas from this instance's requests, and for how long a lease holds.
#[derive(Debug, Clone)]
pub struct Driver {
    /// This instance's lease owner name.
    pub owner: String,
    pub lease_secs: i64,
    pub settings: Settings,
}

impl Driver {
    /// Drives the order's saga now if no one else holds its lease (a runner that
    /// holds it drives it anyway); errors are logged, the runner resumes later.
    pub async fn drive_now(&self, db: &Db, order_id: &str, now: i64) {
        match take_lease(db, order_id, &self.owner, now, now + self.lease_secs).await {
            Ok(true) => {
                if let Err(error) = drive(db, order_id, self.settings, now).await {
                    tracing::warn!(order = %order_id, %error, "saga step failed; the runner resumes it");
                }
                release_lease(db, order_id, &self.owner).await;
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(order = %order_id, %error, "cannot lease the saga; the runner resumes it"),
        }
    }
}

/// `POST /v1/orders`: writes the order with its stored response
/// (`orders::place`), then runs the saga's forward steps at once.
pub async fn place_order(
    db: &Db,
    driver: &Driver,
    buyer: &Principal,
    new: orders::NewOrder,
    claim: Option<super::idempotency::Claim>,
    respond: impl FnOnce(&OrderView) -> super::idempotency::StoredResponse + Send + 'static,
    now: i64,
) -> Result<(OrderView, super::idempotency::StoredResponse), CommerceError> {
    let lease = orders::Lease {
        owner: driver.owner.clone(),
        secs: driver.lease_secs,
    };
    let placed = orders::place(db, buyer, new, claim, respond, lease, now).await?;
    driver.drive_now(db, &placed.0.id, now).await;
    Ok(placed)
}

/// The buyer cancels; the compensations run at once. Answers the order after them.
pub async fn cancel_order(
    db: &Db,
    driver: &Driver,
    buyer: &str,
    id: String,
    now: i64,
) -> Result<OrderView, CommerceError> {
    cancel(db, buyer, id.clone(), now).await?;
    driver.drive_now(db, &id, now).await;
    orders::get(db, buyer, id).await
}

/// A payment event; a failure's compensations run at once.
pub async fn receive_payment(
    db: &Db,
    driver: &Driver,
    provider: &Principal,
    event: PaymentEvent,
    now: i64,
) -> Result<PaymentEventReceipt, CommerceError> {
    let mut receipt = payments::payment_event(db, provider, event, now).await?;
    if !receipt.duplicate && receipt.outcome == PaymentOutcome::Applied {
        driver.drive_now(db, &receipt.order_id, now).await;
        let id = receipt.order_id.clone();
        if let Some(order) = db.read(move |conn| store::find(conn, &id)).await? {
            receipt.order_status = OrderStatus::parse(&order.status).unwrap_or(receipt.order_status);
        }
    }
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip() {
        for p in [Phase::Placing, Phase::AwaitingPayment, Phase::Compensating, Phase::Done] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
    }
}
