//! Reservations, asynchronous (seed 004): a request is accepted at once (PENDING)
//! and written with its queue message in one transaction (transactional outbox);
//! a worker later holds the stock (CONFIRMED) or refuses (FAILED with a reason).
//! A hold not turned into a paid order within `hold_secs` expires and its stock
//! returns; an order placed with the reservation (`reservation_id` in its item)
//! takes the hold over instead (ORDERED), and the order's saga owns the stock from
//! then on. Each step is a conditional update on the status it leaves, so a
//! message delivered twice, two sweepers, or a sweeper racing an order, change
//! nothing twice.

use serde::{Deserialize, Serialize};

use super::idempotency::{self, Claim, StoredResponse};
use super::stock::{self, Day, Take};
use super::{CommerceError, Status as ProductStatus};
use crate::commerce::storage::reservations::{self as store, MessageRow, ReservationRow};
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

/// The outbox topic of reservation requests.
pub const TOPIC: &str = "reservation.requested";
/// The most units one reservation may take.
pub const MAX_QUANTITY: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// Stock is held until `hold_until`.
    Confirmed,
    /// Refused; see `reason`.
    Failed,
    /// The hold ran out and the stock returned (`hold_expired`), or the order
    /// that took it over was cancelled (`order_cancelled`).
    Expired,
    /// An order took the hold over (`order_id`); its saga owns the stock.
    Ordered,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
            Self::Ordered => "ORDERED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Confirmed,
            Self::Failed,
            Self::Expired,
            Self::Ordered,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What happens to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationEvent {
    /// A worker held the stock.
    Confirm,
    /// A worker refused.
    Fail,
    /// The sweeper released an unpaid hold.
    Expire,
    /// An order's saga took the hold over.
    Order,
    /// The order that took the hold over was cancelled; its stock went back.
    OrderCancelled,
}

/// The reservation state machine: the one place that says which event may
/// follow which status. The storage updates are conditional on the same `from`.
pub fn next(from: ReservationStatus, event: ReservationEvent) -> Option<ReservationStatus> {
    use ReservationEvent as E;
    use ReservationStatus as S;
    match (from, event) {
        (S::Pending, E::Confirm) => Some(S::Confirmed),
        (S::Pending, E::Fail) => Some(S::Failed),
        (S::Confirmed, E::Expire) => Some(S::Expired),
        (S::Confirmed, E::Order) => Some(S::Ordered),
        (S::Ordered, E::OrderCancelled) => Some(S::Expired),
        _ => None,
    }
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    SoldOut,
    ProductNotOnSale,
    CombinationUnavailable,
    DateNotOffered,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::ProductNotOnSale => "product_not_on_sale",
            Self::CombinationUnavailable => "combination_unavailable",
            Self::DateNotOffered => "date_not_offered",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReservation {
    pub product_id: String,
    pub combination_id: String,
    /// RESERVABLE products: the date (YYYY-MM-DD).
    #[serde(default)]
    pub date: Option<String>,
    /// Units (default 1, at most 100).
    #[serde(default)]
    pub quantity: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReservationView {
    pub id: String,
    pub status: ReservationStatus,
    /// Why it failed or ended: `sold_out`, `product_not_on_sale`,
    /// `combination_unavailable`, `date_not_offered`, `hold_expired`,
    /// `order_cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub product_id: String,
    pub combination_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub quantity: i64,
    /// CONFIRMED: until when the stock is held (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<i64>,
    /// ORDERED (and EXPIRED with `order_cancelled`): the order that took the hold over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn view(row: ReservationRow) -> ReservationView {
    ReservationView {
        status: ReservationStatus::parse(&row.status).unwrap_or(ReservationStatus::Failed),
        reason: row.reason,
        date: (!row.day.is_empty()).then_some(row.day),
        id: row.id,
        product_id: row.product_id,
        combination_id: row.combination_id,
        quantity: row.quantity,
        hold_until: row.hold_until,
        order_id: row.order_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Accepts a reservation request: the PENDING row, its queue message and (when an
/// idempotency claim is given) the response built by `respond` commit together,
/// so an accepted request is never lost and a retried one never doubled.
pub async fn request(
    db: &Db,
    actor: &Principal,
    new: NewReservation,
    claim: Option<Claim>,
    respond: impl FnOnce(&ReservationView) -> StoredResponse + Send + 'static,
    now: i64,
) -> Result<(ReservationView, StoredResponse), CommerceError> {
    let quantity = new.quantity.unwrap_or(1);
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(CommerceError::Invalid(format!(
            "quantity must be between 1 and {MAX_QUANTITY}"
        )));
    }
    let subject = actor.sub.clone();
    db.transaction(move |conn| {
        let (product, combination) = match stock::product_and_combination(conn, &new.product_id, &new.combination_id)? {
            Ok(found) => found,
            Err(CommerceError::NotFound(_)) => {
                return Ok(Err(CommerceError::Invalid("product_id names no product".into())));
            }
            Err(e) => return Ok(Err(e)),
        };
        let day = match Day::for_product(&product.product_type, new.date.as_deref()) {
            Ok(day) => day,
            Err(e) => return Ok(Err(e)),
        };
        let row = ReservationRow {
            id: uuid::Uuid::now_v7().to_string(),
            subject,
            product_id: product.id,
            combination_id: combination.id,
            day: day.as_str().to_owned(),
            quantity,
            status: ReservationStatus::Pending.as_str().to_owned(),
            reason: None,
            stock_id: None,
            hold_until: None,
            created_at: now,
            updated_at: now,
            order_id: None,
        };
        store::insert(conn, &row)?;
        store::enqueue(
            conn,
            &MessageRow {
                id: uuid::Uuid::now_v7().to_string(),
                topic: TOPIC.to_owned(),
                payload: row.id.clone(),
                available_at: now,
                claimed_by: None,
                lease_until: None,
                attempts: 0,
                created_at: now,
            },
        )?;
        let view = view(row);
        let response = respond(&view);
        if let Some(claim) = &claim {
            idempotency::complete(conn, claim, &response)?;
        }
        Ok(Ok((view, response)))
    })
    .await?
}

/// The caller's own reservation (another subject's is "not found").
pub async fn get(db: &Db, subject: &str, id: String) -> Result<ReservationView, CommerceError> {
    let subject = subject.to_owned();
    db.read(move |conn| store::find(conn, &id))
        .await?
        .filter(|row| row.subject == subject)
        .map(view)
        .ok_or(CommerceError::NotFound("reservation"))
}

/// Reservations still PENDING and outbox messages not yet consumed or relayed
/// (the whole database: every instance reports the same).
pub async fn queue_depth(db: &Db) -> Result<crate::commerce::metrics::QueueDepth, DbError> {
    let (pending, outbox_backlog) = db.read(store::depth).await?;
    Ok(crate::commerce::metrics::QueueDepth {
        pending,
        outbox_backlog,
    })
}

/// What one processing attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Processed {
    Confirmed,
    Failed(FailureReason),
    /// Not PENDING any more (a duplicate delivery, or unknown): nothing to do.
    AlreadyHandled,
    /// The stock row moved under us: retry after a backoff.
    VersionConflict,
}

/// One attempt at a reservation, in one transaction: lock it if still PENDING,
/// check the product, take the stock optimistically, record the outcome.
pub async fn process(db: &Db, id: String, hold_secs: i64, now: i64) -> Result<Processed, DbError> {
    db.transaction(move |conn| process_in(conn, &id, hold_secs, now)).await
}

fn process_in(conn: &mut AnyConnection, id: &str, hold_secs: i64, now: i64) -> Result<Processed, DbError> {
    if !store::lock_pending(conn, id, now)? {
        return Ok(Processed::AlreadyHandled);
    }
    let Some(row) = store::find(conn, id)? else {
        return Ok(Processed::AlreadyHandled);
    };
    let refuse = |conn: &mut AnyConnection, reason: FailureReason| {
        debug_assert!(next(ReservationStatus::Pending, ReservationEvent::Fail).is_some());
        store::fail(conn, id, reason.as_str(), now)?;
        Ok(Processed::Failed(reason))
    };
    let (product, combination) = match stock::product_and_combination(conn, &row.product_id, &row.combination_id)? {
        Ok(found) => found,
        Err(_) => return refuse(conn, FailureReason::ProductNotOnSale),
    };
    if ProductStatus::parse(&product.status) != Some(ProductStatus::Sales) {
        return refuse(conn, FailureReason::ProductNotOnSale);
    }
    if !combination.available {
        return refuse(conn, FailureReason::CombinationUnavailable);
    }
    match stock::try_take(conn, &row.combination_id, &row.day, row.quantity, now)? {
        Take::Held(stock_id) => {
            debug_assert!(next(ReservationStatus::Pending, ReservationEvent::Confirm).is_some());
            if !store::confirm(conn, id, &stock_id, now + hold_secs, now)? {
                // Impossible while we hold the row lock; never keep stock without a hold.
                return Err(DbError::Conflict("reservation changed while held".into()));
            }
            Ok(Processed::Confirmed)
        }
        Take::SoldOut => refuse(conn, FailureReason::SoldOut),
        Take::NotOffered => refuse(conn, FailureReason::DateNotOffered),
        Take::VersionConflict => Ok(Processed::VersionConflict),
    }
}

/// Releases every hold that ran out by `now`; returns how many this call released.
/// Each release is its own transaction: CONFIRMED → EXPIRED conditionally, and the
/// stock goes back only for the caller whose update won.
pub async fn expire_holds(db: &Db, now: i64) -> Result<usize, DbError> {
    let due = db.read(move |conn| store::due_holds(conn, now, 100)).await?;
    let mut released = 0;
    for row in due {
        let done = db
            .transaction(move |conn| {
                debug_assert!(next(ReservationStatus::Confirmed, ReservationEvent::Expire).is_some());
                if !store::expire(conn, &row.id, now)? {
                    return Ok(false);
                }
                if let Some(stock_id) = &row.stock_id {
                    crate::commerce::storage::stock::give_back(conn, stock_id, row.quantity, now)?;
                }
                Ok(true)
            })
            .await?;
        released += usize::from(done);
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::ReservationEvent as E;
    use super::ReservationStatus as S;
    use super::*;

    #[test]
    fn the_state_machine_as_a_table() {
        let all = [S::Pending, S::Confirmed, S::Failed, S::Expired, S::Ordered];
        let allowed = [
            (S::Pending, E::Confirm, S::Confirmed),
            (S::Pending, E::Fail, S::Failed),
            (S::Confirmed, E::Expire, S::Expired),
            (S::Confirmed, E::Order, S::Ordered),
            (S::Ordered, E::OrderCancelled, S::Expired),
        ];
        for from in all {
            for event in [E::Confirm, E::Fail, E::Expire, E::Order, E::OrderCancelled] {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(next(from, event), expected, "{from:?} + {event:?}");
            }
        }
        for status in all {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
    }
}
