//! Catalog operations: each is one transaction that checks the caller's permission
//! and the resource-level rules, then writes the change and its lifecycle event.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::lifecycle::{self, Action, EventKind, Status};
use super::permissions::{PRODUCTS_APPROVE, PRODUCTS_WRITE, SELLERS_ADMIN};
use super::{CommerceError, Currency, Limit, Money, Page, ProductType, SellerKind, cursor, page};
use crate::commerce::storage::{
    self as store, CombinationRow, EventRow, OptionGroupRow, OptionRow, ProductRow, SellerRow,
};
use crate::db::{AnyConnection, Db, DbError};
use crate::resource_server::Principal;

type Checked<T> = Result<Result<T, CommerceError>, DbError>;

/// Runs `f` in one transaction; a domain refusal is decided before any write.
async fn tx<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&mut AnyConnection) -> Checked<T> + Send + 'static,
) -> Result<T, CommerceError> {
    db.transaction(f).await?
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, CommerceError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(CommerceError::Invalid(format!("{field} must be 1 to {max} characters")));
    }
    Ok(value.to_owned())
}

// ---------------------------------------------------------------- sellers

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSeller {
    pub name: String,
    pub kind: SellerKind,
    pub contact: Contact,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SellerView {
    pub id: String,
    pub name: String,
    pub kind: SellerKind,
    pub contact: Contact,
    pub members: Vec<String>,
    pub created_at: i64,
}

fn seller_view(row: SellerRow, members: Vec<String>) -> SellerView {
    SellerView {
        kind: if row.kind == "INTERNAL" {
            SellerKind::Internal
        } else {
            SellerKind::External
        },
        id: row.id,
        name: row.name,
        contact: Contact {
            email: row.contact_email,
            phone: row.contact_phone,
        },
        members,
        created_at: row.created_at,
    }
}

fn require(principal: &Principal, permission: &'static str) -> Result<(), CommerceError> {
    if principal.has(permission) {
        Ok(())
    } else {
        Err(CommerceError::MissingPermission(permission))
    }
}

pub async fn create_seller(db: &Db, actor: &Principal, new: NewSeller, now: i64) -> Result<SellerView, CommerceError> {
    require(actor, SELLERS_ADMIN)?;
    let email = text("contact.email", &new.contact.email, 254)?;
    if !email.contains('@') {
        return Err(CommerceError::Invalid("contact.email is not an email address".into()));
    }
    let row = SellerRow {
        id: uuid::Uuid::now_v7().to_string(),
        name: text("name", &new.name, 200)?,
        kind: new.kind.as_str().to_owned(),
        contact_email: email,
        contact_phone: new.contact.phone.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()),
        created_at: now,
    };
    tx(db, move |conn| {
        store::insert_seller(conn, &row)?;
        Ok(Ok(seller_view(row, Vec::new())))
    })
    .await
}

pub async fn seller(db: &Db, id: String) -> Result<SellerView, CommerceError> {
    db.run(move |conn| {
        let Some(row) = store::find_seller(conn, &id)? else {
            return Ok(Err(CommerceError::NotFound("seller")));
        };
        let members = store::members_of(conn, &id)?;
        Ok(Ok(seller_view(row, members)))
    })
    .await?
}

pub async fn sellers(db: &Db, after: Option<String>, limit: Limit) -> Result<Page<SellerView>, CommerceError> {
    let after = cursor::decode(after.as_deref())?;
    let rows = db
        .run(move |conn| store::list_sellers(conn, &after, limit.get() + 1))
        .await?;
    Ok(page(rows, limit, |r| r.id.clone(), |r| seller_view(r, Vec::new())))
}

/// Adds (`add = true`) or removes a member (`sub`) of a seller.
pub async fn set_member(
    db: &Db,
    actor: &Principal,
    seller_id: String,
    sub: String,
    add: bool,
    now: i64,
) -> Result<SellerView, CommerceError> {
    require(actor, SELLERS_ADMIN)?;
    let sub = text("sub", &sub, 255)?;
    tx(db, move |conn| {
        let Some(row) = store::find_seller(conn, &seller_id)? else {
            return Ok(Err(CommerceError::NotFound("seller")));
        };
        if add {
            store::add_member(conn, &seller_id, &sub, now)?;
        } else if !store::remove_member(conn, &seller_id, &sub)? {
            return Ok(Err(CommerceError::NotFound("member")));
        }
        let members = store::members_of(conn, &seller_id)?;
        Ok(Ok(seller_view(row, members)))
    })
    .await
}

// ---------------------------------------------------------------- products

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub seller_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(rename = "type")]
    pub product_type: ProductType,
    pub price: Money,
}

/// Fields an update may change; the seller and the type are fixed at creation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<Money>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOption {
    pub name: String,
    #[serde(default)]
    pub price_delta: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOptionGroup {
    pub name: String,
    pub options: Vec<NewOption>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCombination {
    pub sku: String,
    pub option_ids: Vec<String>,
    #[serde(default)]
    pub price_delta: i64,
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OptionView {
    pub id: String,
    pub name: String,
    pub price_delta: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub options: Vec<OptionView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CombinationView {
    pub id: String,
    pub sku: String,
    pub option_ids: Vec<String>,
    pub price_delta: i64,
    /// The product price plus the combination's and its options' deltas.
    pub price: Money,
    pub available: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    pub id: String,
    pub seller_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    #[serde(rename = "type")]
    pub product_type: ProductType,
    pub price: Money,
    pub status: Status,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub option_groups: Option<Vec<GroupView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combinations: Option<Vec<CombinationView>>,
}

fn status_of(row: &ProductRow) -> Status {
    Status::parse(&row.status).unwrap_or(Status::Planning)
}

fn product_view(row: ProductRow) -> ProductView {
    ProductView {
        status: status_of(&row),
        product_type: if row.product_type == "RESERVABLE" {
            ProductType::Reservable
        } else {
            ProductType::Realtime
        },
        price: Money {
            amount_minor: row.price_minor,
            currency: Currency::parse(&row.currency).unwrap_or_else(|_| Currency("XXX".into())),
        },
        id: row.id,
        seller_id: row.seller_id,
        name: row.name,
        description: row.description,
        category: row.category,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        option_groups: None,
        combinations: None,
    }
}

/// A product with its option groups and combinations.
fn full_view(conn: &mut AnyConnection, row: ProductRow) -> Result<ProductView, DbError> {
    let groups = store::groups_of(conn, &row.id)?;
    let deltas: BTreeMap<String, i64> = groups
        .iter()
        .flat_map(|(_, options)| options.iter().map(|o| (o.id.clone(), o.price_delta)))
        .collect();
    let combinations = store::combinations_of(conn, &row.id)?;
    let mut view = product_view(row);
    view.combinations = Some(
        combinations
            .into_iter()
            .map(|c| {
                let option_ids: Vec<String> = c.option_ids.split(',').map(str::to_owned).collect();
                let options: i64 = option_ids.iter().filter_map(|id| deltas.get(id)).sum();
                CombinationView {
                    price: Money {
                        amount_minor: view.price.amount_minor + options + c.price_delta,
                        currency: view.price.currency.clone(),
                    },
                    id: c.id,
                    sku: c.sku,
                    option_ids,
                    price_delta: c.price_delta,
                    available: c.available,
                }
            })
            .collect(),
    );
    view.option_groups = Some(
        groups
            .into_iter()
            .map(|(g, options)| GroupView {
                id: g.id,
                name: g.name,
                options: options
                    .into_iter()
                    .map(|o| OptionView {
                        id: o.id,
                        name: o.name,
                        price_delta: o.price_delta,
                    })
                    .collect(),
            })
            .collect(),
    );
    Ok(view)
}

/// Seller scope: changing a product needs `commerce:products:write` and membership
/// of its seller (or `commerce:sellers:admin`).
fn may_edit(conn: &mut AnyConnection, actor: &Principal, seller_id: &str) -> Checked<()> {
    if let Err(e) = require(actor, PRODUCTS_WRITE) {
        return Ok(Err(e));
    }
    if actor.has(SELLERS_ADMIN) || store::is_member(conn, seller_id, &actor.sub)? {
        return Ok(Ok(()));
    }
    Ok(Err(CommerceError::Forbidden(
        "only members of the product's seller may change it".into(),
    )))
}

fn event(
    row: &ProductRow,
    kind: EventKind,
    actor: &Principal,
    from: Option<Status>,
    reason: Option<String>,
) -> EventRow {
    EventRow {
        id: format!("{}:{:012}", row.id, row.version),
        product_id: row.id.clone(),
        kind: kind.as_str().to_owned(),
        actor: actor.sub.clone(),
        at: row.updated_at,
        from_status: from.map(|s| s.as_str().to_owned()),
        to_status: row.status.clone(),
        reason,
    }
}

pub async fn create_product(
    db: &Db,
    actor: &Principal,
    new: NewProduct,
    now: i64,
) -> Result<ProductView, CommerceError> {
    require(actor, PRODUCTS_WRITE)?;
    if new.price.amount_minor < 0 {
        return Err(CommerceError::Invalid("price.amount_minor must not be negative".into()));
    }
    let row = ProductRow {
        id: uuid::Uuid::now_v7().to_string(),
        seller_id: new.seller_id,
        name: text("name", &new.name, 200)?,
        description: new.description.trim().chars().take(10_000).collect(),
        category: text("category", &new.category, 100)?,
        product_type: new.product_type.as_str().to_owned(),
        price_minor: new.price.amount_minor,
        currency: new.price.currency.as_str().to_owned(),
        status: Status::Planning.as_str().to_owned(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let actor = actor.clone();
    tx(db, move |conn| {
        if store::find_seller(conn, &row.seller_id)?.is_none() {
            return Ok(Err(CommerceError::Invalid("seller_id names no seller".into())));
        }
        if let Err(e) = may_edit(conn, &actor, &row.seller_id)? {
            return Ok(Err(e));
        }
        store::insert_product(conn, &row)?;
        store::insert_event(conn, &event(&row, EventKind::Created, &actor, None, None))?;
        Ok(Ok(product_view(row)))
    })
    .await
}

pub async fn product(db: &Db, id: String) -> Result<ProductView, CommerceError> {
    db.run(move |conn| match store::find_product(conn, &id)? {
        Some(row) => Ok(Ok(full_view(conn, row)?)),
        None => Ok(Err(CommerceError::NotFound("product"))),
    })
    .await?
}

/// A product only if it is on sale (the public catalog).
pub async fn product_on_sale(db: &Db, id: String) -> Result<ProductView, CommerceError> {
    let view = product(db, id).await?;
    if view.status != Status::Sales {
        return Err(CommerceError::NotFound("product"));
    }
    Ok(view)
}

pub async fn products(
    db: &Db,
    filter: store::ProductFilter,
    after: Option<String>,
    limit: Limit,
) -> Result<Page<ProductView>, CommerceError> {
    let after = cursor::decode(after.as_deref())?;
    let rows = db
        .run(move |conn| store::list_products(conn, &filter, &after, limit.get() + 1))
        .await?;
    Ok(page(rows, limit, |r| r.id.clone(), product_view))
}

/// Loads the product, checks the If-Match version and the caller, and hands the
/// row to `change`; the write is conditional on the version, so of two concurrent
/// editors exactly one wins and the other gets 412.
async fn edit(
    db: &Db,
    actor: &Principal,
    id: String,
    expected: Option<i64>,
    now: i64,
    change: impl FnOnce(
        &mut AnyConnection,
        &mut ProductRow,
        &Principal,
    ) -> Checked<(EventKind, Option<Status>, Option<String>)>
    + Send
    + 'static,
) -> Result<ProductView, CommerceError> {
    let expected = expected.ok_or(CommerceError::PreconditionRequired)?;
    let actor = actor.clone();
    tx(db, move |conn| {
        let Some(mut row) = store::find_product(conn, &id)? else {
            return Ok(Err(CommerceError::NotFound("product")));
        };
        if row.version != expected {
            return Ok(Err(CommerceError::PreconditionFailed));
        }
        let (kind, from, reason) = match change(conn, &mut row, &actor)? {
            Ok(outcome) => outcome,
            Err(e) => return Ok(Err(e)),
        };
        row.version = expected + 1;
        row.updated_at = now;
        if !store::update_product_if_version(conn, &row, expected)? {
            return Ok(Err(CommerceError::PreconditionFailed));
        }
        store::insert_event(conn, &event(&row, kind, &actor, from, reason))?;
        Ok(Ok(full_view(conn, row)?))
    })
    .await
}

pub async fn update_product(
    db: &Db,
    actor: &Principal,
    id: String,
    expected: Option<i64>,
    patch: ProductPatch,
    now: i64,
) -> Result<ProductView, CommerceError> {
    let name = patch.name.as_deref().map(|n| text("name", n, 200)).transpose()?;
    let category = patch
        .category
        .as_deref()
        .map(|c| text("category", c, 100))
        .transpose()?;
    if patch.price.as_ref().is_some_and(|p| p.amount_minor < 0) {
        return Err(CommerceError::Invalid("price.amount_minor must not be negative".into()));
    }
    edit(db, actor, id, expected, now, move |conn, row, actor| {
        if let Err(e) = may_edit(conn, actor, &row.seller_id)? {
            return Ok(Err(e));
        }
        if status_of(row) == Status::EndOfLife {
            return Ok(Err(CommerceError::Conflict("a retired product cannot change".into())));
        }
        if let Some(name) = name {
            row.name = name;
        }
        if let Some(category) = category {
            row.category = category;
        }
        if let Some(description) = patch.description {
            row.description = description.trim().chars().take(10_000).collect();
        }
        if let Some(price) = patch.price {
            row.price_minor = price.amount_minor;
            row.currency = price.currency.as_str().to_owned();
        }
        Ok(Ok((EventKind::Updated, None, None)))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub action: Action,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Moves a product through its lifecycle. Approve and reject need
/// `commerce:products:approve` and a reviewer who is not a member of the
/// product's seller (four-eyes); the other actions are the seller's.
pub async fn transition(
    db: &Db,
    actor: &Principal,
    id: String,
    expected: Option<i64>,
    request: TransitionRequest,
    now: i64,
) -> Result<ProductView, CommerceError> {
    let reason = request
        .reason
        .map(|r| r.trim().chars().take(2000).collect::<String>())
        .filter(|r| !r.is_empty());
    if request.action == Action::Reject && reason.is_none() {
        return Err(CommerceError::Invalid("a rejection needs a reason".into()));
    }
    let action = request.action;
    edit(db, actor, id, expected, now, move |conn, row, actor| {
        if action.is_review() {
            if let Err(e) = require(actor, PRODUCTS_APPROVE) {
                return Ok(Err(e));
            }
            if store::is_member(conn, &row.seller_id, &actor.sub)? {
                return Ok(Err(CommerceError::Forbidden(
                    "four-eyes rule: a member of the product's seller cannot review it".into(),
                )));
            }
        } else if let Err(e) = may_edit(conn, actor, &row.seller_id)? {
            return Ok(Err(e));
        }
        let from = status_of(row);
        let (to, kind) = match lifecycle::transition(from, action) {
            Ok(next) => next,
            Err(refused) => {
                return Ok(Err(CommerceError::TransitionRefused {
                    current: refused.current,
                    action: refused.action,
                }));
            }
        };
        row.status = to.as_str().to_owned();
        Ok(Ok((kind, Some(from), reason)))
    })
    .await
}

/// Options and combinations change only before review.
fn options_editable(row: &ProductRow) -> Result<(), CommerceError> {
    match status_of(row) {
        Status::Planning | Status::Development => Ok(()),
        other => Err(CommerceError::Conflict(format!(
            "options change only in PLANNING or DEVELOPMENT; the product is {}",
            other.as_str()
        ))),
    }
}

pub async fn add_option_group(
    db: &Db,
    actor: &Principal,
    id: String,
    expected: Option<i64>,
    new: NewOptionGroup,
    now: i64,
) -> Result<ProductView, CommerceError> {
    let name = text("name", &new.name, 100)?;
    if new.options.is_empty() {
        return Err(CommerceError::Invalid(
            "an option group needs at least one option".into(),
        ));
    }
    let mut names = BTreeSet::new();
    let mut options = Vec::new();
    let group_id = uuid::Uuid::now_v7().to_string();
    for option in new.options {
        let option_name = text("options[].name", &option.name, 100)?;
        if !names.insert(option_name.clone()) {
            return Err(CommerceError::Invalid(format!("option `{option_name}` appears twice")));
        }
        options.push(OptionRow {
            id: uuid::Uuid::now_v7().to_string(),
            group_id: group_id.clone(),
            name: option_name,
            price_delta: option.price_delta,
        });
    }
    edit(db, actor, id, expected, now, move |conn, row, actor| {
        if let Err(e) = may_edit(conn, actor, &row.seller_id)?.and_then(|_| options_editable(row)) {
            return Ok(Err(e));
        }
        if !store::combinations_of(conn, &row.id)?.is_empty() {
            return Ok(Err(CommerceError::Conflict(
                "the product has combinations already; a new group would leave them incomplete".into(),
            )));
        }
        let group = OptionGroupRow {
            id: group_id,
            product_id: row.id.clone(),
            name,
        };
        if store::groups_of(conn, &row.id)?
            .iter()
            .any(|(g, _)| g.name == group.name)
        {
            return Ok(Err(CommerceError::Conflict(format!(
                "option group `{}` exists",
                group.name
            ))));
        }
        store::insert_group(conn, &group, &options)?;
        Ok(Ok((EventKind::Updated, None, None)))
    })
    .await
}

pub async fn add_combination(
    db: &Db,
    actor: &Principal,
    id: String,
    expected: Option<i64>,
    new: NewCombination,
    now: i64,
) -> Result<ProductView, CommerceError> {
    let sku = text("sku", &new.sku, 64)?;
    edit(db, actor, id, expected, now, move |conn, row, actor| {
        if let Err(e) = may_edit(conn, actor, &row.seller_id)?.and_then(|_| options_editable(row)) {
            return Ok(Err(e));
        }
        let groups = store::groups_of(conn, &row.id)?;
        let option_ids = match combination_key(&groups, &new.option_ids) {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        };
        let existing = store::combinations_of(conn, &row.id)?;
        if existing.iter().any(|c| c.sku == sku) {
            return Ok(Err(CommerceError::Conflict(format!("SKU `{sku}` exists"))));
        }
        if existing.iter().any(|c| c.option_ids == option_ids) {
            return Ok(Err(CommerceError::Conflict(
                "this combination of options exists".into(),
            )));
        }
        store::insert_combination(
            conn,
            &CombinationRow {
                id: uuid::Uuid::now_v7().to_string(),
                product_id: row.id.clone(),
                sku,
                option_ids,
                price_delta: new.price_delta,
                available: new.available,
            },
        )?;
        Ok(Ok((EventKind::Updated, None, None)))
    })
    .await
}

/// A combination names exactly one option of each of the product's groups; its key
/// is the sorted option ids, comma-separated.
pub fn combination_key(
    groups: &[(OptionGroupRow, Vec<OptionRow>)],
    chosen: &[String],
) -> Result<String, CommerceError> {
    if groups.is_empty() {
        return Err(CommerceError::Invalid("the product has no option groups".into()));
    }
    let mut per_group: BTreeMap<&str, &str> = BTreeMap::new();
    for id in chosen {
        let Some((group, _)) = groups.iter().find(|(_, options)| options.iter().any(|o| &o.id == id)) else {
            return Err(CommerceError::Invalid(format!(
                "option `{id}` is not an option of this product"
            )));
        };
        if per_group.insert(&group.id, id).is_some() {
            return Err(CommerceError::Invalid(format!(
                "two options of group `{}`: a combination names one option per group",
                group.name
            )));
        }
    }
    if let Some((missing, _)) = groups.iter().find(|(g, _)| !per_group.contains_key(g.id.as_str())) {
        return Err(CommerceError::Invalid(format!(
            "no option of group `{}`: a combination names one option per group",
            missing.name
        )));
    }
    let mut ids: Vec<&str> = per_group.into_values().collect();
    ids.sort_unstable();
    Ok(ids.join(","))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub kind: String,
    pub actor: String,
    pub at: i64,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
}

pub async fn events(
    db: &Db,
    id: String,
    after: Option<String>,
    limit: Limit,
) -> Result<Page<EventView>, CommerceError> {
    let after = cursor::decode(after.as_deref())?;
    let rows = db
        .run(move |conn| {
            if store::find_product(conn, &id)?.is_none() {
                return Ok(Err(CommerceError::NotFound("product")));
            }
            Ok(Ok(store::events_of(conn, &id, &after, limit.get() + 1)?))
        })
        .await??;
    Ok(page(
        rows,
        limit,
        |r| r.id.clone(),
        |r| EventView {
            kind: r.kind,
            actor: r.actor,
            at: r.at,
            from_status: r.from_status,
            to_status: r.to_status,
            reason: r.reason,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<(OptionGroupRow, Vec<OptionRow>)> {
        let g = |id: &str, name: &str, options: &[&str]| {
            (
                OptionGroupRow {
                    id: id.into(),
                    product_id: "p".into(),
                    name: name.into(),
                },
                options
                    .iter()
                    .map(|o| OptionRow {
                        id: (*o).into(),
                        group_id: id.into(),
                        name: (*o).into(),
                        price_delta: 0,
                    })
                    .collect(),
            )
        };
        vec![g("g1", "Colour", &["red", "blue"]), g("g2", "Size", &["m", "l"])]
    }

    #[test]
    fn a_combination_names_one_option_per_group() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(combination_key(&groups(), &ids(&["m", "red"])).unwrap(), "m,red");
        for bad in [&["red"][..], &["red", "blue", "m"], &["red", "xl"], &[]] {
            assert!(
                matches!(combination_key(&groups(), &ids(bad)), Err(CommerceError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
