//! First-come coupons: platform-wide campaigns (percentage or fixed amount, a limit
//! N, a claim window, one claim per subject) and the coupons claimed from them.
//!
//! Exactness is decided by the database, never in process: a claim is one
//! transaction of a conditional counter update (`issued = issued + 1 … WHERE
//! issued < coupon_limit`) and an insert that `UNIQUE (campaign_id, subject)`
//! refuses for a second claim; `CHECK (issued <= coupon_limit)` backs both. A read
//! before it refuses the hopeless claims (sold out, already claimed, outside the
//! window) without taking a write lock; those refusals are final because the counter
//! never goes down and claims are never deleted.
//!
//! A claimed coupon is `ISSUED`; an order applies it (`REDEEMED`); when that order is
//! cancelled, `return_coupon` gives it back to its holder (`ISSUED` again) if the
//! campaign says `reissue_returned`, else it is spent (`RETURNED`). The counter counts
//! claims, so a returned coupon never lets a new subject in beyond N.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::idempotency::{self, Claim, StoredResponse};
use super::{Currency, Limit, Money, Page, cursor, page};
use crate::commerce::storage::coupons::{self as store, CampaignRow, CouponRow, ONE_PER_SUBJECT};
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

/// Creating campaigns.
pub const COUPONS_WRITE: &str = "commerce:coupons:write";

/// The largest campaign.
const MAX_LIMIT: i64 = 10_000_000;

/// Errors of coupon operations; `http::coupons` maps each to a status and a
/// problem+json `type` (`urn:oxidp:commerce:problem:<code>` for the specific ones).
#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Well-formed JSON that breaks a rule (422).
    #[error("{0}")]
    Invalid(String),
    /// RFC 6750 §3.1 insufficient_scope.
    #[error("the token lacks the permission {0}")]
    MissingPermission(&'static str),
    /// The claim window has not opened yet (409 `campaign_not_started`).
    #[error("the campaign opens for claims at {starts_at} (Unix time)")]
    NotStarted { starts_at: i64 },
    /// The claim window has closed (409 `campaign_ended`).
    #[error("the campaign closed for claims at {ends_at} (Unix time)")]
    Ended { ends_at: i64 },
    /// The subject already holds a coupon of this campaign (409 `already_claimed`).
    #[error("you already claimed a coupon of this campaign")]
    AlreadyClaimed,
    /// Every coupon of the campaign has been claimed (410 `sold_out`).
    #[error("every coupon of this campaign has been claimed")]
    SoldOut,
    /// The coupon cannot be used or returned in its current state (409 `coupon_state`).
    #[error("{0}")]
    State(String),
    #[error("the commerce database is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for CouponError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => CouponError::Unavailable,
            DbError::NotFound => CouponError::NotFound("record"),
            other => CouponError::Internal(other.to_string()),
        }
    }
}

type Checked<T> = Result<Result<T, CouponError>, DbError>;

// ---------------------------------------------------------------- discounts

/// What a coupon takes off an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Discount {
    /// A share of the subtotal in basis points: 1 = 0.01 %, 5000 = 50 %, 10000 = 100 %.
    Percent { basis_points: i64 },
    /// A fixed amount in integer minor units, applicable to orders in its currency.
    Amount { amount: Money },
}

impl Discount {
    fn check(&self) -> Result<(), CouponError> {
        match self {
            Discount::Percent { basis_points } if !(1..=10_000).contains(basis_points) => Err(CouponError::Invalid(
                "discount.basis_points must be between 1 and 10000 (0.01 % to 100 %)".into(),
            )),
            Discount::Amount { amount } if amount.amount_minor <= 0 => Err(CouponError::Invalid(
                "discount.amount.amount_minor must be positive".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The amount taken off `subtotal`: a percentage rounds down to the minor unit;
    /// a fixed amount never exceeds the subtotal and needs the same currency.
    pub fn off(&self, subtotal: &Money) -> Result<Money, CouponError> {
        if subtotal.amount_minor < 0 {
            return Err(CouponError::Invalid("the subtotal must not be negative".into()));
        }
        let amount_minor = match self {
            Discount::Percent { basis_points } => {
                (i128::from(subtotal.amount_minor) * i128::from(*basis_points) / 10_000) as i64
            }
            Discount::Amount { amount } => {
                if amount.currency != subtotal.currency {
                    return Err(CouponError::Invalid(format!(
                        "this coupon takes {} off; the order is in {}",
                        amount.currency.as_str(),
                        subtotal.currency.as_str()
                    )));
                }
                amount.amount_minor.min(subtotal.amount_minor)
            }
        };
        Ok(Money {
            amount_minor,
            currency: subtotal.currency.clone(),
        })
    }

    fn of(row: &CampaignRow) -> Discount {
        match (row.basis_points, row.amount_minor, row.currency.as_deref()) {
            (Some(basis_points), _, _) => Discount::Percent { basis_points },
            (None, Some(amount_minor), Some(currency)) => Discount::Amount {
                amount: Money {
                    amount_minor,
                    currency: Currency::parse(currency).unwrap_or_else(|_| Currency("XXX".into())),
                },
            },
            // The CHECK constraint makes this unreachable; nothing off is the safe reading.
            _ => Discount::Percent { basis_points: 0 },
        }
    }
}

// ---------------------------------------------------------------- campaigns

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub name: String,
    pub discount: Discount,
    /// How many coupons exist: exactly this many subjects can claim one.
    pub limit: i64,
    /// Claim window, Unix seconds: open from `starts_at` (inclusive) to `ends_at` (exclusive).
    pub starts_at: i64,
    pub ends_at: i64,
    /// When claimed coupons stop being usable (Unix seconds, not before `ends_at`;
    /// default `ends_at`).
    #[serde(default)]
    pub coupon_expires_at: Option<i64>,
    /// When an order using a coupon is cancelled, give the coupon back to its holder
    /// (true) or count it as spent (false, the default).
    #[serde(default)]
    pub reissue_returned: bool,
}

/// Where a campaign stands at the time of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignState {
    Scheduled,
    Open,
    SoldOut,
    Ended,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub discount: Discount,
    pub limit: i64,
    /// Coupons claimed so far (never above `limit`).
    pub issued: i64,
    pub remaining: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub coupon_expires_at: i64,
    pub reissue_returned: bool,
    pub state: CampaignState,
    pub created_by: String,
    pub created_at: i64,
}

fn campaign_view(row: CampaignRow, now: i64) -> CampaignView {
    let state = if now < row.starts_at {
        CampaignState::Scheduled
    } else if now >= row.ends_at {
        CampaignState::Ended
    } else if row.issued >= row.coupon_limit {
        CampaignState::SoldOut
    } else {
        CampaignState::Open
    };
    CampaignView {
        discount: Discount::of(&row),
        remaining: (row.coupon_limit - row.issued).max(0),
        state,
        id: row.id,
        name: row.name,
        limit: row.coupon_limit,
        issued: row.issued,
        starts_at: row.starts_at,
        ends_at: row.ends_at,
        coupon_expires_at: row.coupon_expires_at,
        reissue_returned: row.reissue_returned,
        created_by: row.created_by,
        created_at: row.created_at,
    }
}

fn require(principal: &Principal, permission: &'static str) -> Result<(), CouponError> {
    if principal.has(permission) {
        Ok(())
    } else {
        Err(CouponError::MissingPermission(permission))
    }
}

/// Creates a campaign (`commerce:coupons:write`). Campaigns are platform-wide: they
/// belong to no seller and apply to a whole order.
pub async fn create_campaign(
    db: &Db,
    actor: &Principal,
    new: NewCampaign,
    now: i64,
) -> Result<CampaignView, CouponError> {
    require(actor, COUPONS_WRITE)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(CouponError::Invalid("name must be 1 to 200 characters".into()));
    }
    new.discount.check()?;
    if !(1..=MAX_LIMIT).contains(&new.limit) {
        return Err(CouponError::Invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    if new.starts_at >= new.ends_at {
        return Err(CouponError::Invalid("starts_at must be before ends_at".into()));
    }
    if new.ends_at <= now {
        return Err(CouponError::Invalid("ends_at is in the past".into()));
    }
    let coupon_expires_at = new.coupon_expires_at.unwrap_or(new.ends_at);
    if coupon_expires_at < new.ends_at {
        return Err(CouponError::Invalid(
            "coupon_expires_at must not be before ends_at (coupons claimed last would be born expired)".into(),
        ));
    }
    let (discount_kind, basis_points, amount_minor, currency) = match &new.discount {
        Discount::Percent { basis_points } => ("PERCENT", Some(*basis_points), None, None),
        Discount::Amount { amount } => (
            "AMOUNT",
            None,
            Some(amount.amount_minor),
            Some(amount.currency.as_str().to_owned()),
        ),
    };
    let row = CampaignRow {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        discount_kind: discount_kind.to_owned(),
        basis_points,
        amount_minor,
        currency,
        coupon_limit: new.limit,
        issued: 0,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        coupon_expires_at,
        reissue_returned: new.reissue_returned,
        created_by: actor.sub.clone(),
        created_at: now,
    };
    db.transaction(move |conn| {
        store::insert_campaign(conn, &row)?;
        Ok(campaign_view(row, now))
    })
    .await
    .map_err(CouponError::from)
}

pub async fn campaign(db: &Db, id: String, now: i64) -> Result<CampaignView, CouponError> {
    db.read(move |conn| store::find_campaign(conn, &id))
        .await?
        .map(|row| campaign_view(row, now))
        .ok_or(CouponError::NotFound("campaign"))
}

pub async fn campaigns(
    db: &Db,
    after: Option<String>,
    limit: Limit,
    now: i64,
) -> Result<Page<CampaignView>, CouponError> {
    let after = cursor::decode(after.as_deref()).map_err(|e| CouponError::Invalid(e.to_string()))?;
    let rows = db
        .read(move |conn| store::list_campaigns(conn, &after, limit.get() + 1))
        .await?;
    Ok(page(rows, limit, |r| r.id.clone(), |r| campaign_view(r, now)))
}

// ---------------------------------------------------------------- claims

/// A coupon's states. `decide` is the only place that moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponStatus {
    /// Held by its subject, usable until it expires.
    Issued,
    /// Applied to an order.
    Redeemed,
    /// Its order was cancelled and the campaign does not reissue: spent.
    Returned,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Issued => "ISSUED",
            CouponStatus::Redeemed => "REDEEMED",
            CouponStatus::Returned => "RETURNED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [CouponStatus::Issued, CouponStatus::Redeemed, CouponStatus::Returned]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// What happens to a coupon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponAction {
    /// An order applies it.
    Redeem,
    /// The order that applied it was cancelled; `reissue` is the campaign's `reissue_returned`.
    Return { reissue: bool },
}

/// Whether `action` is allowed from `from`, and the state it leads to.
pub fn decide(from: CouponStatus, action: CouponAction) -> Result<CouponStatus, CouponError> {
    match (from, action) {
        (CouponStatus::Issued, CouponAction::Redeem) => Ok(CouponStatus::Redeemed),
        (CouponStatus::Redeemed, CouponAction::Return { reissue: true }) => Ok(CouponStatus::Issued),
        (CouponStatus::Redeemed, CouponAction::Return { reissue: false }) => Ok(CouponStatus::Returned),
        (from, action) => Err(CouponError::State(format!(
            "a coupon that is {} cannot be {}",
            from.as_str(),
            match action {
                CouponAction::Redeem => "applied to an order",
                CouponAction::Return { .. } => "returned",
            }
        ))),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CouponView {
    pub id: String,
    pub campaign_id: String,
    /// The code to show the holder (unique across campaigns).
    pub code: String,
    pub discount: Discount,
    pub status: CouponStatus,
    /// The order it is applied to, while `REDEEMED` (or that spent it, when `RETURNED`).
    pub order_id: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
}

fn coupon_view(row: CouponRow, campaign: &CampaignRow) -> CouponView {
    CouponView {
        discount: Discount::of(campaign),
        status: CouponStatus::parse(&row.status).unwrap_or(CouponStatus::Returned),
        id: row.id,
        campaign_id: row.campaign_id,
        code: row.code,
        order_id: row.order_id,
        issued_at: row.issued_at,
        expires_at: row.expires_at,
    }
}

/// A random code: 16 characters of Crockford base32 (80 bits), grouped by four.
fn new_code() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::thread_rng();
    let chars: Vec<char> = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The refusals a claim can meet before the counter is touched, in the order a
/// claimant should hear them.
fn admissible(campaign: &CampaignRow, already_claimed: bool, now: i64) -> Result<(), CouponError> {
    if now < campaign.starts_at {
        Err(CouponError::NotStarted {
            starts_at: campaign.starts_at,
        })
    } else if now >= campaign.ends_at {
        Err(CouponError::Ended {
            ends_at: campaign.ends_at,
        })
    } else if already_claimed {
        Err(CouponError::AlreadyClaimed)
    } else if campaign.issued >= campaign.coupon_limit {
        Err(CouponError::SoldOut)
    } else {
        Ok(())
    }
}

fn is_one_per_subject(constraint: &str) -> bool {
    // PostgreSQL names the constraint; SQLite names its columns.
    constraint.contains(ONE_PER_SUBJECT) || constraint.contains("coupons.subject")
}

/// Claims one coupon of the campaign for `claimant.sub` (a person, or a service
/// account for client_credentials tokens). Exactly `limit` claims ever succeed,
/// whatever the concurrency and however many instances share the database.
pub async fn claim(db: &Db, claimant: &Principal, campaign_id: String, now: i64) -> Result<CouponView, CouponError> {
    claim_recorded(db, claimant, campaign_id, now, None)
        .await
        .map(|(view, _)| view)
}

/// Records the response of a claim made under an Idempotency-Key.
pub type Respond = Box<dyn FnOnce(&CouponView) -> StoredResponse + Send>;

/// `claim`, and with `record` the response built by its `Respond` stored under the
/// idempotency claim in the same transaction as the coupon: a claim whose answer
/// was lost is replayed, never issued twice and never lost.
pub async fn claim_recorded(
    db: &Db,
    claimant: &Principal,
    campaign_id: String,
    now: i64,
    record: Option<(Claim, Respond)>,
) -> Result<(CouponView, Option<StoredResponse>), CouponError> {
    let subject = claimant.sub.clone();
    // 1. A read decides the final refusals without the write lock (cheap when a
    //    crowd arrives after the coupons are gone, or claims twice).
    let (id, sub) = (campaign_id.clone(), subject.clone());
    let campaign = db
        .read(move |conn| {
            let Some(campaign) = store::find_campaign(conn, &id)? else {
                return Ok(Err(CouponError::NotFound("campaign")));
            };
            let claimed = store::claim_of(conn, &id, &sub)?.is_some();
            Ok(admissible(&campaign, claimed, now).map(|()| campaign))
        })
        .await??;
    // 2. The authority: the conditional counter update and the insert, one
    //    transaction (`store::claim_one`).
    let row = CouponRow {
        id: uuid::Uuid::now_v7().to_string(),
        campaign_id,
        subject,
        code: new_code(),
        status: CouponStatus::Issued.as_str().to_owned(),
        order_id: None,
        issued_at: now,
        expires_at: campaign.coupon_expires_at,
        updated_at: now,
    };
    let coupon = row.clone();
    let view = coupon_view(row, &campaign);
    let written = match record {
        None => db
            .run(move |conn| store::claim_one(conn, &coupon, now))
            .await
            .map(|won| (won, None)),
        Some((claim, respond)) => {
            let view = view.clone();
            db.transaction(move |conn| {
                if !store::claim_one_in_transaction(conn, &coupon, now)? {
                    return Ok((false, None));
                }
                let response = respond(&view);
                idempotency::complete(conn, &claim, &response)?;
                Ok((true, Some(response)))
            })
            .await
        }
    };
    match written {
        Ok((true, response)) => Ok((view, response)),
        // The window was open at `now` (checked above, and it never moves): another
        // claim took the last coupon since the read.
        Ok((false, _)) => Err(CouponError::SoldOut),
        // The same subject won a concurrent claim; this one rolled back entirely.
        Err(DbError::Conflict(constraint)) if is_one_per_subject(&constraint) => Err(CouponError::AlreadyClaimed),
        Err(error) => Err(error.into()),
    }
}

/// The caller's coupons, newest last, cursor-paginated.
pub async fn my_coupons(
    db: &Db,
    holder: &Principal,
    after: Option<String>,
    limit: Limit,
) -> Result<Page<CouponView>, CouponError> {
    let after = cursor::decode(after.as_deref()).map_err(|e| CouponError::Invalid(e.to_string()))?;
    let subject = holder.sub.clone();
    let rows = db
        .read(move |conn| store::coupons_of(conn, &subject, &after, limit.get() + 1))
        .await?;
    Ok(page(
        rows,
        limit,
        |(c, _)| c.id.clone(),
        |(c, campaign)| coupon_view(c, &campaign),
    ))
}

// ---------------------------------------------------------------- use by orders

/// Applies the holder's coupon to an order and answers the amount it takes off
/// `subtotal`. Idempotent: applying it again to the same order answers the same.
/// Runs on the caller's connection so an order can make it part of its transaction.
pub fn redeem_in(
    conn: &mut AnyConnection,
    coupon_id: &str,
    holder: &str,
    order_id: &str,
    subtotal: &Money,
    now: i64,
) -> Checked<Money> {
    let Some(coupon) = store::find_coupon(conn, coupon_id)? else {
        return Ok(Err(CouponError::NotFound("coupon")));
    };
    if coupon.subject != holder {
        return Ok(Err(CouponError::NotFound("coupon")));
    }
    let Some(campaign) = store::find_campaign(conn, &coupon.campaign_id)? else {
        return Ok(Err(CouponError::NotFound("campaign")));
    };
    let off = match Discount::of(&campaign).off(subtotal) {
        Ok(off) => off,
        Err(e) => return Ok(Err(e)),
    };
    let status = CouponStatus::parse(&coupon.status).unwrap_or(CouponStatus::Returned);
    if status == CouponStatus::Redeemed && coupon.order_id.as_deref() == Some(order_id) {
        return Ok(Ok(off));
    }
    if now >= coupon.expires_at {
        return Ok(Err(CouponError::State("the coupon has expired".into())));
    }
    let to = match decide(status, CouponAction::Redeem) {
        Ok(to) => to,
        Err(e) => return Ok(Err(e)),
    };
    if !store::move_coupon(conn, coupon_id, status.as_str(), to.as_str(), Some(order_id), now)? {
        return Ok(Err(CouponError::State(
            "the coupon changed meanwhile; try again".into(),
        )));
    }
    Ok(Ok(off))
}

/// Returns the coupon applied to a cancelled order: back to its holder (`ISSUED`)
/// if the campaign says `reissue_returned`, else spent (`RETURNED`). The campaign
/// counter does not move, so no new subject is admitted. Idempotent (a saga
/// compensation): a coupon not applied to `order_id` any more is left as it is.
pub fn return_in(conn: &mut AnyConnection, coupon_id: &str, order_id: &str, now: i64) -> Checked<CouponStatus> {
    let Some(coupon) = store::find_coupon(conn, coupon_id)? else {
        return Ok(Err(CouponError::NotFound("coupon")));
    };
    let status = CouponStatus::parse(&coupon.status).unwrap_or(CouponStatus::Returned);
    if status != CouponStatus::Redeemed || coupon.order_id.as_deref() != Some(order_id) {
        return Ok(Ok(status));
    }
    let Some(campaign) = store::find_campaign(conn, &coupon.campaign_id)? else {
        return Ok(Err(CouponError::NotFound("campaign")));
    };
    let to = match decide(
        status,
        CouponAction::Return {
            reissue: campaign.reissue_returned,
        },
    ) {
        Ok(to) => to,
        Err(e) => return Ok(Err(e)),
    };
    let keep_order = (to == CouponStatus::Returned).then_some(order_id);
    if !store::move_coupon(conn, coupon_id, status.as_str(), to.as_str(), keep_order, now)? {
        return Ok(Err(CouponError::State(
            "the coupon changed meanwhile; try again".into(),
        )));
    }
    Ok(Ok(to))
}

/// What the holder's coupon would take off `subtotal` if applied now, without
/// applying it (an order prices itself with this; `redeem_in` later applies it).
pub fn preview_in(
    conn: &mut AnyConnection,
    coupon_id: &str,
    holder: &str,
    subtotal: &Money,
    now: i64,
) -> Checked<Money> {
    let Some(coupon) = store::find_coupon(conn, coupon_id)? else {
        return Ok(Err(CouponError::NotFound("coupon")));
    };
    if coupon.subject != holder {
        return Ok(Err(CouponError::NotFound("coupon")));
    }
    if CouponStatus::parse(&coupon.status) != Some(CouponStatus::Issued) {
        return Ok(Err(CouponError::State(format!("the coupon is {}", coupon.status))));
    }
    if now >= coupon.expires_at {
        return Ok(Err(CouponError::State("the coupon has expired".into())));
    }
    let Some(campaign) = store::find_campaign(conn, &coupon.campaign_id)? else {
        return Ok(Err(CouponError::NotFound("campaign")));
    };
    Ok(Discount::of(&campaign).off(subtotal))
}

/// `redeem_in` in its own transaction.
pub async fn redeem(
    db: &Db,
    coupon_id: String,
    holder: String,
    order_id: String,
    subtotal: Money,
    now: i64,
) -> Result<Money, CouponError> {
    db.transaction(move |conn| redeem_in(conn, &coupon_id, &holder, &order_id, &subtotal, now))
        .await?
}

/// `return_in` in its own transaction.
pub async fn return_coupon(
    db: &Db,
    coupon_id: String,
    order_id: String,
    now: i64,
) -> Result<CouponStatus, CouponError> {
    db.transaction(move |conn| return_in(conn, &coupon_id, &order_id, now))
        .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount_minor: i64, currency: &str) -> Money {
        Money {
            amount_minor,
            currency: Currency::parse(currency).unwrap(),
        }
    }

    #[test]
    fn percentages_round_down_and_amounts_never_exceed_the_subtotal() {
        let half = Discount::Percent { basis_points: 5000 };
        assert_eq!(half.off(&money(999, "KRW")).unwrap(), money(499, "KRW"));
        let all = Discount::Percent { basis_points: 10_000 };
        assert_eq!(all.off(&money(i64::MAX, "EUR")).unwrap(), money(i64::MAX, "EUR"));
        let tiny = Discount::Percent { basis_points: 1 };
        assert_eq!(tiny.off(&money(9_999, "EUR")).unwrap(), money(0, "EUR"));
        let fixed = Discount::Amount {
            amount: money(3_000, "KRW"),
        };
        assert_eq!(fixed.off(&money(10_000, "KRW")).unwrap(), money(3_000, "KRW"));
        assert_eq!(fixed.off(&money(1_000, "KRW")).unwrap(), money(1_000, "KRW"));
        assert!(matches!(fixed.off(&money(10_000, "EUR")), Err(CouponError::Invalid(_))));
        assert!(matches!(half.off(&money(-1, "EUR")), Err(CouponError::Invalid(_))));
    }

    #[test]
    fn discounts_out_of_range_are_refused() {
        for bad in [
            Discount::Percent { basis_points: 0 },
            Discount::Percent { basis_points: 10_001 },
            Discount::Amount {
                amount: money(0, "EUR"),
            },
        ] {
            assert!(matches!(bad.check(), Err(CouponError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn coupon_transitions() {
        use CouponAction::*;
        use CouponStatus::*;
        let table = [
            (Issued, Redeem, Some(Redeemed)),
            (Redeemed, Redeem, None),
            (Returned, Redeem, None),
            (Redeemed, Return { reissue: true }, Some(Issued)),
            (Redeemed, Return { reissue: false }, Some(Returned)),
            (Issued, Return { reissue: true }, None),
            (Issued, Return { reissue: false }, None),
            (Returned, Return { reissue: true }, None),
        ];
        for (from, action, to) in table {
            assert_eq!(decide(from, action).ok(), to, "{from:?} {action:?}");
        }
    }

    fn campaign(limit: i64, issued: i64) -> CampaignRow {
        CampaignRow {
            id: "c".into(),
            name: "n".into(),
            discount_kind: "PERCENT".into(),
            basis_points: Some(5000),
            amount_minor: None,
            currency: None,
            coupon_limit: limit,
            issued,
            starts_at: 100,
            ends_at: 200,
            coupon_expires_at: 300,
            reissue_returned: false,
            created_by: "admin".into(),
            created_at: 0,
        }
    }

    #[test]
    fn claim_refusals_in_order() {
        let open = campaign(10, 3);
        assert!(admissible(&open, false, 100).is_ok());
        assert!(matches!(
            admissible(&open, false, 99),
            Err(CouponError::NotStarted { .. })
        ));
        assert!(matches!(admissible(&open, false, 200), Err(CouponError::Ended { .. })));
        assert!(matches!(admissible(&open, true, 150), Err(CouponError::AlreadyClaimed)));
        let gone = campaign(10, 10);
        assert!(matches!(admissible(&gone, false, 150), Err(CouponError::SoldOut)));
        assert!(matches!(admissible(&gone, true, 150), Err(CouponError::AlreadyClaimed)));
        assert!(matches!(admissible(&gone, false, 250), Err(CouponError::Ended { .. })));
    }

    #[test]
    fn codes_are_grouped_crockford_base32() {
        let code = new_code();
        assert_eq!(code.len(), 19);
        assert!(code.split('-').all(|g| g.len() == 4));
        assert_ne!(code, new_code());
    }
}
