//! Stock: per combination (SKU) for REALTIME products, per combination and date
//! for RESERVABLE ones. Every change is a version-checked conditional update with
//! bounded retries; the database CHECK (available >= 0) is the last word. Sellers
//! adjust their own stock (`commerce:inventory:write` + membership), audited.

use serde::{Deserialize, Serialize};

use super::permissions::INVENTORY_WRITE;
use super::{CommerceError, Limit, Page, ProductType, cursor, page};
use crate::commerce::storage::stock::{self as store, AdjustmentRow, StockRow};
use crate::commerce::storage::{self as catalog_store, CombinationRow, ProductRow};
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

/// How often a version conflict is retried before the caller gets 409.
pub const MAX_ATTEMPTS: u32 = 10;
/// The largest stock one row may hold, and the largest single adjustment.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// The stock row's date key: `""` for REALTIME products, `YYYY-MM-DD` (a real
/// calendar date) for RESERVABLE ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day(String);

impl Day {
    /// Checks `date` against the product type: RESERVABLE needs one, REALTIME has none.
    pub fn for_product(product_type: &str, date: Option<&str>) -> Result<Self, CommerceError> {
        match (product_type == ProductType::Reservable.as_str(), date) {
            (true, Some(date)) => Self::parse(date),
            (true, None) => Err(CommerceError::Invalid(
                "a RESERVABLE product needs a date (YYYY-MM-DD)".into(),
            )),
            (false, None) => Ok(Self(String::new())),
            (false, Some(_)) => Err(CommerceError::Invalid(
                "a REALTIME product is bought from stock; send no date".into(),
            )),
        }
    }

    fn parse(date: &str) -> Result<Self, CommerceError> {
        let invalid = || CommerceError::Invalid(format!("date `{date}` is not a calendar date YYYY-MM-DD"));
        let parts: Vec<&str> = date.split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(invalid());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(invalid());
        }
        let (y, m, d): (i32, u8, u8) = (
            y.parse().map_err(|_| invalid())?,
            m.parse().map_err(|_| invalid())?,
            d.parse().map_err(|_| invalid())?,
        );
        let month = time::Month::try_from(m).map_err(|_| invalid())?;
        time::Date::from_calendar_date(y, month, d).map_err(|_| invalid())?;
        Ok(Self(date.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `None` for REALTIME stock.
    pub fn date(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.clone())
    }
}

/// A seller's stock change: set the level, or move it by a delta.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    pub combination_id: String,
    /// RESERVABLE products: the date (YYYY-MM-DD) whose capacity changes.
    #[serde(default)]
    pub date: Option<String>,
    /// The new level (exactly one of `set` and `delta`).
    #[serde(default)]
    pub set: Option<i64>,
    /// The change, positive or negative (exactly one of `set` and `delta`).
    #[serde(default)]
    pub delta: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StockView {
    pub combination_id: String,
    /// RESERVABLE capacity: the date; absent for REALTIME stock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub available: i64,
    pub version: i64,
    pub updated_at: i64,
}

fn view(row: StockRow) -> StockView {
    StockView {
        date: (!row.day.is_empty()).then_some(row.day),
        combination_id: row.combination_id,
        available: row.available,
        version: row.version,
        updated_at: row.updated_at,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdjustmentView {
    pub combination_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub actor: String,
    pub at: i64,
    pub delta: i64,
    pub available_after: i64,
    pub reason: Option<String>,
}

/// The product and the combination, which must belong to it.
pub fn product_and_combination(
    conn: &mut AnyConnection,
    product_id: &str,
    combination_id: &str,
) -> Result<Result<(ProductRow, CombinationRow), CommerceError>, DbError> {
    let Some(product) = catalog_store::find_product(conn, product_id)? else {
        return Ok(Err(CommerceError::NotFound("product")));
    };
    let combination = catalog_store::combinations_of(conn, product_id)?
        .into_iter()
        .find(|c| c.id == combination_id);
    match combination {
        Some(c) => Ok(Ok((product, c))),
        None => Ok(Err(CommerceError::Invalid(format!(
            "combination `{combination_id}` is not a combination of this product"
        )))),
    }
}

/// Seller scope for stock: `commerce:inventory:write` and membership of the
/// product's seller (no administrator bypass: stock is the seller's own business).
fn may_adjust(
    conn: &mut AnyConnection,
    actor: &Principal,
    seller_id: &str,
) -> Result<Result<(), CommerceError>, DbError> {
    if !actor.has(INVENTORY_WRITE) {
        return Ok(Err(CommerceError::MissingPermission(INVENTORY_WRITE)));
    }
    if catalog_store::is_member(conn, seller_id, &actor.sub)? {
        Ok(Ok(()))
    } else {
        Ok(Err(CommerceError::Forbidden(
            "only members of the product's seller may adjust its stock".into(),
        )))
    }
}

enum Attempt<T> {
    Done(T),
    VersionConflict,
}

/// Sets or moves one stock row, retrying version conflicts (another writer, a
/// reservation) up to `MAX_ATTEMPTS` times; records the adjustment.
pub async fn adjust(
    db: &Db,
    actor: &Principal,
    product_id: String,
    change: StockAdjustment,
    now: i64,
) -> Result<StockView, CommerceError> {
    let (set, delta) = match (change.set, change.delta) {
        (Some(set), None) if (0..=MAX_STOCK).contains(&set) => (Some(set), None),
        (None, Some(delta)) if delta != 0 && delta.abs() <= MAX_STOCK => (None, Some(delta)),
        (Some(_), None) => return Err(CommerceError::Invalid(format!("set must be between 0 and {MAX_STOCK}"))),
        (None, Some(_)) => {
            return Err(CommerceError::Invalid(format!(
                "delta must be non-zero and at most {MAX_STOCK} either way"
            )));
        }
        _ => return Err(CommerceError::Invalid("send exactly one of set and delta".into())),
    };
    let reason = change
        .reason
        .map(|r| r.trim().chars().take(500).collect::<String>())
        .filter(|r| !r.is_empty());
    for attempt in 0..MAX_ATTEMPTS {
        let (actor, product_id, combination_id, date, reason) = (
            actor.clone(),
            product_id.clone(),
            change.combination_id.clone(),
            change.date.clone(),
            reason.clone(),
        );
        let outcome = db
            .transaction(move |conn| {
                let (product, combination) = match product_and_combination(conn, &product_id, &combination_id)? {
                    Ok(found) => found,
                    Err(e) => return Ok(Err(e)),
                };
                if let Err(e) = may_adjust(conn, &actor, &product.seller_id)? {
                    return Ok(Err(e));
                }
                let day = match Day::for_product(&product.product_type, date.as_deref()) {
                    Ok(day) => day,
                    Err(e) => return Ok(Err(e)),
                };
                let current = store::find(conn, &combination.id, day.as_str())?;
                let before = current.as_ref().map_or(0, |r| r.available);
                let after = set.unwrap_or_else(|| before + delta.unwrap_or(0));
                if !(0..=MAX_STOCK).contains(&after) {
                    return Ok(Err(CommerceError::Conflict(format!(
                        "stock would become {after}; it is {before} and must stay between 0 and {MAX_STOCK}"
                    ))));
                }
                let row = match current {
                    Some(mut row) => {
                        if !store::set_if_version(conn, &row.id, row.version, after, now)? {
                            return Ok(Ok(Attempt::VersionConflict));
                        }
                        row.available = after;
                        row.version += 1;
                        row.updated_at = now;
                        row
                    }
                    None => {
                        let row = StockRow {
                            id: uuid::Uuid::now_v7().to_string(),
                            product_id: product.id.clone(),
                            combination_id: combination.id.clone(),
                            day: day.as_str().to_owned(),
                            available: after,
                            version: 1,
                            updated_at: now,
                        };
                        match store::insert(conn, &row) {
                            Ok(()) => row,
                            // A concurrent first adjustment created it: retry as an update.
                            Err(DbError::Conflict(_)) => return Ok(Ok(Attempt::VersionConflict)),
                            Err(e) => return Err(e),
                        }
                    }
                };
                store::insert_adjustment(
                    conn,
                    &AdjustmentRow {
                        id: uuid::Uuid::now_v7().to_string(),
                        stock_id: row.id.clone(),
                        product_id: product.id,
                        actor: actor.sub.clone(),
                        at: now,
                        delta: after - before,
                        available_after: after,
                        reason,
                    },
                )?;
                Ok(Ok(Attempt::Done(view(row))))
            })
            .await;
        match outcome {
            Ok(Ok(Attempt::Done(view))) => return Ok(view),
            Ok(Ok(Attempt::VersionConflict)) | Err(DbError::Conflict(_)) => backoff(attempt).await,
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommerceError::Conflict(
        "the stock is changing too fast; try again".into(),
    ))
}

/// Jittered exponential backoff after the `attempt`-th version conflict: up to
/// 5 ms × 2^attempt, at most 200 ms.
pub async fn backoff(attempt: u32) {
    use rand::Rng;
    let cap = (5u64 << attempt.min(6)).min(200);
    let ms = rand::thread_rng().gen_range(1..=cap);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// A product's stock rows (all dates, or one).
pub async fn list(db: &Db, product_id: String, date: Option<String>) -> Result<Vec<StockView>, CommerceError> {
    let day = date.as_deref().map(Day::parse).transpose()?;
    db.run(move |conn| {
        if catalog_store::find_product(conn, &product_id)?.is_none() {
            return Ok(Err(CommerceError::NotFound("product")));
        }
        let rows = store::of_product(conn, &product_id, day.as_ref().map(Day::as_str))?;
        Ok(Ok(rows.into_iter().map(view).collect()))
    })
    .await?
}

/// The audit of a product's stock adjustments (seller members with inventory:write).
pub async fn adjustments(
    db: &Db,
    actor: &Principal,
    product_id: String,
    after: Option<String>,
    limit: Limit,
) -> Result<Page<AdjustmentView>, CommerceError> {
    let after = cursor::decode(after.as_deref())?;
    let actor = actor.clone();
    let rows = db
        .run(move |conn| {
            let Some(product) = catalog_store::find_product(conn, &product_id)? else {
                return Ok(Err(CommerceError::NotFound("product")));
            };
            if let Err(e) = may_adjust(conn, &actor, &product.seller_id)? {
                return Ok(Err(e));
            }
            let rows = store::adjustments_of(conn, &product_id, &after, limit.get() + 1)?;
            let stock = store::of_product(conn, &product_id, None)?;
            Ok(Ok((rows, stock)))
        })
        .await??;
    let (rows, stock) = rows;
    Ok(page(
        rows,
        limit,
        |r| r.id.clone(),
        |r| {
            let row = stock.iter().find(|s| s.id == r.stock_id);
            AdjustmentView {
                combination_id: row.map(|s| s.combination_id.clone()).unwrap_or_default(),
                date: row.and_then(|s| (!s.day.is_empty()).then(|| s.day.clone())),
                actor: r.actor,
                at: r.at,
                delta: r.delta,
                available_after: r.available_after,
                reason: r.reason,
            }
        },
    ))
}

/// The outcome of one attempt to take stock for a hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Taken from this stock row.
    Held(String),
    /// Not enough left (or none was ever stocked).
    SoldOut,
    /// No capacity row for that date: the date is not offered.
    NotOffered,
    /// Another writer changed the row between our read and our update: retry.
    VersionConflict,
}

/// One optimistic attempt: read the row, then `UPDATE … WHERE id = ? AND version = ?
/// AND available >= ?`. Runs inside the caller's transaction.
pub fn try_take(
    conn: &mut AnyConnection,
    combination_id: &str,
    day: &str,
    quantity: i64,
    now: i64,
) -> Result<Take, DbError> {
    let Some(row) = store::find(conn, combination_id, day)? else {
        return Ok(if day.is_empty() {
            Take::SoldOut
        } else {
            Take::NotOffered
        });
    };
    if row.available < quantity {
        return Ok(Take::SoldOut);
    }
    if store::take_if_version(conn, &row.id, row.version, quantity, now)? {
        return Ok(Take::Held(row.id));
    }
    match store::find(conn, combination_id, day)? {
        Some(now_row) if now_row.available >= quantity => Ok(Take::VersionConflict),
        _ => Ok(Take::SoldOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_product_type() {
        assert_eq!(Day::for_product("REALTIME", None).unwrap().as_str(), "");
        assert_eq!(
            Day::for_product("RESERVABLE", Some("2026-12-24")).unwrap().as_str(),
            "2026-12-24"
        );
        for (kind, date) in [
            ("REALTIME", Some("2026-12-24")),
            ("RESERVABLE", None),
            ("RESERVABLE", Some("2026-02-30")),
            ("RESERVABLE", Some("2026-13-01")),
            ("RESERVABLE", Some("26-12-24")),
            ("RESERVABLE", Some("2026-12-24T00:00")),
        ] {
            assert!(Day::for_product(kind, date).is_err(), "{kind} {date:?}");
        }
    }
}
