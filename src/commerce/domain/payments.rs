//! Payment events from the payment provider (`POST /v1/payments/events`:
//! `payment.succeeded`, `payment.failed`, and `refund.succeeded` for a returned
//! order's refund): applied
//! once per provider event id (the primary key of `payment_events`), verified
//! against the order's total, and applied to the saga with conditional updates in
//! one transaction with their record. `saga::receive_payment` runs a failure's
//! compensations afterwards.

use serde::{Deserialize, Serialize};

use super::orders::{OrderAction, OrderStatus, next};
use super::permissions::PAYMENTS_WRITE;
use super::saga::{Phase, RefundCause, refund, step};
use super::{CommerceError, Money};
use crate::commerce::storage::orders::{self as store, PaymentEventRow};
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PaymentEventKind {
    #[serde(rename = "payment.succeeded")]
    Succeeded,
    #[serde(rename = "payment.failed")]
    Failed,
    /// The provider paid a returned order's refund back: `RETURNED → REFUNDED`.
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
}

impl PaymentEventKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "payment.succeeded",
            Self::Failed => "payment.failed",
            Self::RefundSucceeded => "refund.succeeded",
        }
    }
}

/// A payment provider's notification.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentEvent {
    /// The provider's unique event id: an event is applied once, however often sent.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: PaymentEventKind,
    pub order_id: String,
    /// Must equal the order's total (amount and currency): what was paid, or
    /// (`refund.succeeded`) what went back.
    pub amount: Money,
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    /// It moved the order (PAID, compensating after a failure, or REFUNDED).
    Applied,
    /// The order was not awaiting payment (already paid, cancelled, …): no change.
    Ignored,
    /// Paid after the order was cancelled, or paid again under another event id:
    /// recorded as a refund of that payment.
    Refunded,
    /// Amount or currency differ from the order's total: refused, no change.
    AmountMismatch,
}

impl PaymentOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Refunded => "refunded",
            Self::AmountMismatch => "amount_mismatch",
        }
    }

    fn parse(s: &str) -> Self {
        [Self::Applied, Self::Ignored, Self::Refunded, Self::AmountMismatch]
            .into_iter()
            .find(|o| o.as_str() == s)
            .unwrap_or(Self::Ignored)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentEventReceipt {
    pub event_id: String,
    pub order_id: String,
    pub outcome: PaymentOutcome,
    /// True when this event id had been received before (nothing was done again).
    pub duplicate: bool,
    pub order_status: OrderStatus,
}

/// Receives a payment event (`commerce:payments:write`, a client_credentials
/// token): once per event id (the primary key; a duplicate answers the first
/// outcome), verified against the order's total, applied with conditional updates
/// in one transaction with its record.
pub async fn payment_event(
    db: &Db,
    provider: &Principal,
    event: PaymentEvent,
    now: i64,
) -> Result<PaymentEventReceipt, CommerceError> {
    if !provider.has(PAYMENTS_WRITE) {
        return Err(CommerceError::MissingPermission(PAYMENTS_WRITE));
    }
    if !provider.is_service_account() {
        return Err(CommerceError::Forbidden(
            "payment events come from the payment provider's client_credentials token".into(),
        ));
    }
    let event_id = event.event_id.trim().to_owned();
    if event_id.is_empty() || event_id.len() > 200 {
        return Err(CommerceError::Invalid("event_id must be 1 to 200 characters".into()));
    }
    let received_by = provider.sub.clone();
    let event = std::sync::Arc::new(event);
    for _ in 0..3 {
        let (event, event_id, received_by) = (event.clone(), event_id.clone(), received_by.clone());
        let outcome = db
            .transaction(move |conn| apply_event(conn, &event, &event_id, &received_by, now))
            .await;
        match outcome {
            Ok(result) => return result,
            // Another delivery of the same event committed first: answer its outcome.
            Err(DbError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommerceError::Conflict(
        "the event is being received concurrently; send it again".into(),
    ))
}

fn apply_event(
    conn: &mut AnyConnection,
    event: &PaymentEvent,
    event_id: &str,
    received_by: &str,
    now: i64,
) -> Result<Result<PaymentEventReceipt, CommerceError>, DbError> {
    if let Some(seen) = store::find_event(conn, event_id)? {
        let status = store::find(conn, &seen.order_id)?
            .and_then(|o| OrderStatus::parse(&o.status))
            .unwrap_or(OrderStatus::Pending);
        let outcome = PaymentOutcome::parse(&seen.outcome);
        if seen.order_id != event.order_id {
            return Ok(Err(CommerceError::Invalid(
                "this event_id was received for another order".into(),
            )));
        }
        return Ok(receipt(seen.event_id, seen.order_id, outcome, true, status));
    }
    let Some(order) = store::find(conn, &event.order_id)? else {
        return Ok(Err(CommerceError::Invalid("order_id names no order".into())));
    };
    // Lock the order row: a payment, a timeout and a cancellation are decided in turn.
    store::lock(conn, &order.id, now)?;
    let order = store::find(conn, &order.id)?.expect("locked");
    let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Pending);
    let phase = Phase::parse(&order.saga).unwrap_or(Phase::Done);
    let matches = event.amount.amount_minor == order.total_minor && event.amount.currency.as_str() == order.currency;
    if status == OrderStatus::Pending && phase == Phase::Placing {
        // Not priced and held yet (a saga cut short is being resumed): not recorded,
        // so the provider's retry is applied once the order awaits payment.
        return Ok(Err(CommerceError::Conflict(
            "the order is not awaiting payment yet; send the event again shortly".into(),
        )));
    }
    let outcome = if !matches {
        PaymentOutcome::AmountMismatch
    } else {
        match (event.kind, status, phase) {
            (PaymentEventKind::Succeeded, OrderStatus::PendingPayment, Phase::AwaitingPayment) => {
                let to = next(status, OrderAction::Pay).map_err(|e| DbError::Conflict(e.to_string()))?;
                store::advance(
                    conn,
                    &order.id,
                    (status.as_str(), phase.as_str()),
                    (to.as_str(), Phase::Done.as_str()),
                    now,
                )?;
                store::log_step(conn, &order.id, step::PAID, now)?;
                PaymentOutcome::Applied
            }
            // Money arrived for an order already being (or been) cancelled: give it back.
            (PaymentEventKind::Succeeded, _, Phase::Compensating)
            | (PaymentEventKind::Succeeded, OrderStatus::Cancelled, _) => {
                refund(
                    conn,
                    &order,
                    "paid_after_cancellation",
                    RefundCause::Payment(event_id),
                    now,
                )?;
                PaymentOutcome::Refunded
            }
            // A second payment (another event id) of an order already paid: the
            // buyer was charged twice; that money goes back, the order stays.
            (PaymentEventKind::Succeeded, _, Phase::Done) => {
                refund(conn, &order, "duplicate_payment", RefundCause::Payment(event_id), now)?;
                PaymentOutcome::Refunded
            }
            (PaymentEventKind::RefundSucceeded, OrderStatus::Returned, _) => {
                let to = next(status, OrderAction::Refund).map_err(|e| DbError::Conflict(e.to_string()))?;
                store::advance(
                    conn,
                    &order.id,
                    (status.as_str(), phase.as_str()),
                    (to.as_str(), phase.as_str()),
                    now,
                )?;
                store::log_step(conn, &order.id, step::REFUNDED, now)?;
                PaymentOutcome::Applied
            }
            (PaymentEventKind::Failed, OrderStatus::PendingPayment, Phase::AwaitingPayment) => {
                store::start_compensation(
                    conn,
                    &order.id,
                    (status.as_str(), phase.as_str()),
                    "payment_failed",
                    now,
                )?;
                PaymentOutcome::Applied
            }
            _ => PaymentOutcome::Ignored,
        }
    };
    store::insert_event(
        conn,
        &PaymentEventRow {
            event_id: event_id.to_owned(),
            order_id: order.id.clone(),
            kind: event.kind.as_str().to_owned(),
            amount_minor: event.amount.amount_minor,
            currency: event.amount.currency.as_str().to_owned(),
            outcome: outcome.as_str().to_owned(),
            received_by: received_by.to_owned(),
            received_at: now,
        },
    )?;
    let status = store::find(conn, &order.id)?
        .and_then(|o| OrderStatus::parse(&o.status))
        .unwrap_or(status);
    Ok(receipt(event_id.to_owned(), order.id, outcome, false, status))
}

fn receipt(
    event_id: String,
    order_id: String,
    outcome: PaymentOutcome,
    duplicate: bool,
    order_status: OrderStatus,
) -> Result<PaymentEventReceipt, CommerceError> {
    if outcome == PaymentOutcome::AmountMismatch {
        return Err(CommerceError::Invalid(
            "the amount or currency differs from the order's total; the event was recorded and refused".into(),
        ));
    }
    Ok(PaymentEventReceipt {
        event_id,
        order_id,
        outcome,
        duplicate,
        order_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for o in [
            PaymentOutcome::Applied,
            PaymentOutcome::Ignored,
            PaymentOutcome::Refunded,
            PaymentOutcome::AmountMismatch,
        ] {
            assert_eq!(PaymentOutcome::parse(o.as_str()), o);
        }
    }
}
