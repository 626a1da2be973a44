//! Coupon campaigns and coupons: rows and queries. The counter update and the
//! one-per-subject constraint that keep first-come claims exact are here; the
//! decisions around them are in `domain::coupons`.

use diesel::prelude::*;

use super::schema::{coupon_campaigns, coupons};
use crate::db::{AnyConnection, DbError};

/// The constraint that refuses a second coupon of one campaign for one subject.
pub const ONE_PER_SUBJECT: &str = "coupons_one_per_subject";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = coupon_campaigns)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub discount_kind: String,
    pub basis_points: Option<i64>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub coupon_limit: i64,
    pub issued: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub coupon_expires_at: i64,
    pub reissue_returned: bool,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = coupons)]
pub struct CouponRow {
    pub id: String,
    pub campaign_id: String,
    pub subject: String,
    pub code: String,
    pub status: String,
    pub order_id: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
}

pub fn insert_campaign(conn: &mut AnyConnection, row: &CampaignRow) -> Result<(), DbError> {
    diesel::insert_into(coupon_campaigns::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_campaign(conn: &mut AnyConnection, id: &str) -> Result<Option<CampaignRow>, DbError> {
    Ok(coupon_campaigns::table
        .find(id)
        .select(CampaignRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_campaigns(conn: &mut AnyConnection, after: &str, limit: i64) -> Result<Vec<CampaignRow>, DbError> {
    Ok(coupon_campaigns::table
        .filter(coupon_campaigns::id.gt(after))
        .order(coupon_campaigns::id)
        .limit(limit)
        .select(CampaignRow::as_select())
        .load(conn)?)
}

/// Claims one coupon: in one transaction, takes one from the campaign's counter if
/// any is left and the claim window is open at `now`
/// (`UPDATE … SET issued = issued + 1 WHERE id = ? AND issued < coupon_limit …`)
/// and inserts `coupon`. The database evaluates the condition on the current row
/// under its row lock (PostgreSQL) or the write lock (SQLite), so concurrent callers
/// on any number of instances never take more than the limit.
///
/// False: none left (nothing written). A second coupon for the same (campaign,
/// subject) fails with `DbError::Conflict` naming `ONE_PER_SUBJECT` (PostgreSQL) or
/// its columns (SQLite), and the counter update is rolled back with it.
///
/// PostgreSQL runs both as one statement (a data-modifying CTE), so the campaign row
/// is locked for a single round trip and its commit; SQLite, which has no such CTE,
/// runs the two statements in a `BEGIN IMMEDIATE` transaction.
pub fn claim_one(conn: &mut AnyConnection, coupon: &CouponRow, now: i64) -> Result<bool, DbError> {
    use diesel::sql_types::{BigInt, Text};
    match conn {
        AnyConnection::Postgresql(pg) => {
            let n = diesel::sql_query(
                "WITH taken AS ( \
                   UPDATE coupon_campaigns SET issued = issued + 1 \
                   WHERE id = $1 AND issued < coupon_limit AND starts_at <= $2 AND ends_at > $2 \
                   RETURNING id) \
                 INSERT INTO coupons (id, campaign_id, subject, code, status, order_id, issued_at, expires_at, updated_at) \
                 SELECT $3, id, $4, $5, $6, NULL, $2, $7, $2 FROM taken",
            )
            .bind::<Text, _>(&coupon.campaign_id)
            .bind::<BigInt, _>(now)
            .bind::<Text, _>(&coupon.id)
            .bind::<Text, _>(&coupon.subject)
            .bind::<Text, _>(&coupon.code)
            .bind::<Text, _>(&coupon.status)
            .bind::<BigInt, _>(coupon.expires_at)
            .execute(pg)?;
            Ok(n == 1)
        }
        AnyConnection::Sqlite(lite) => lite.immediate_transaction(|lite| take_and_insert(lite, coupon, now)),
    }
}

/// `claim_one` inside the caller's transaction (one that also records an
/// Idempotency-Key response): on SQLite that transaction already holds the write lock.
pub fn claim_one_in_transaction(conn: &mut AnyConnection, coupon: &CouponRow, now: i64) -> Result<bool, DbError> {
    match conn {
        AnyConnection::Postgresql(_) => claim_one(conn, coupon, now),
        AnyConnection::Sqlite(lite) => take_and_insert(lite, coupon, now),
    }
}

fn take_and_insert(lite: &mut diesel::SqliteConnection, coupon: &CouponRow, now: i64) -> Result<bool, DbError> {
    use coupon_campaigns::dsl as c;
    let taken = diesel::update(
        c::coupon_campaigns
            .filter(c::id.eq(&coupon.campaign_id))
            .filter(c::issued.lt(c::coupon_limit))
            .filter(c::starts_at.le(now))
            .filter(c::ends_at.gt(now)),
    )
    .set(c::issued.eq(c::issued + 1))
    .execute(lite)?;
    if taken == 0 {
        return Ok(false);
    }
    diesel::insert_into(coupons::table).values(coupon).execute(lite)?;
    Ok(true)
}

pub fn find_coupon(conn: &mut AnyConnection, id: &str) -> Result<Option<CouponRow>, DbError> {
    Ok(coupons::table
        .find(id)
        .select(CouponRow::as_select())
        .first(conn)
        .optional()?)
}

/// The coupon `subject` holds from the campaign, if any.
pub fn claim_of(conn: &mut AnyConnection, campaign_id: &str, subject: &str) -> Result<Option<CouponRow>, DbError> {
    Ok(coupons::table
        .filter(coupons::campaign_id.eq(campaign_id))
        .filter(coupons::subject.eq(subject))
        .select(CouponRow::as_select())
        .first(conn)
        .optional()?)
}

/// A subject's coupons with their campaigns, by coupon id.
pub fn coupons_of(
    conn: &mut AnyConnection,
    subject: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(CouponRow, CampaignRow)>, DbError> {
    Ok(coupons::table
        .inner_join(coupon_campaigns::table)
        .filter(coupons::subject.eq(subject))
        .filter(coupons::id.gt(after))
        .order(coupons::id)
        .limit(limit)
        .select((CouponRow::as_select(), CampaignRow::as_select()))
        .load(conn)?)
}

/// Moves a coupon from status `from` to `to` (and sets its order), only if it is
/// still in `from`: of two concurrent movers exactly one succeeds.
pub fn move_coupon(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    order_id: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let n = diesel::update(
        coupons::table
            .filter(coupons::id.eq(id))
            .filter(coupons::status.eq(from)),
    )
    .set((
        coupons::status.eq(to),
        coupons::order_id.eq(order_id),
        coupons::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// How many coupons of the campaign exist (equals its `issued` counter: coupons are
/// never deleted and the counter never goes down).
pub fn count_coupons(conn: &mut AnyConnection, campaign_id: &str) -> Result<i64, DbError> {
    Ok(coupons::table
        .filter(coupons::campaign_id.eq(campaign_id))
        .count()
        .get_result(conn)?)
}
