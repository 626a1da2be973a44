//! The commerce domain: sellers, products, options and combinations, the product
//! lifecycle, and the resource-level rules (seller scope, four-eyes). No actix and
//! no diesel types here; storage is reached through `crate::commerce::storage`.

pub mod catalog;
pub mod coupons;
pub mod lifecycle;
// stock, idempotency keys, reservations (reserve lane)
pub mod idempotency;
pub mod reservations;
pub mod stock;
// marketplace orders and their saga (orders lane)
pub mod fulfilment;
pub mod orders;
pub mod payments;
pub mod saga;

use serde::{Deserialize, Serialize};

use crate::db::DbError;
pub use lifecycle::{Action, EventKind, Status};

/// Permissions the commerce API checks (from the token's `permissions` or `scope`).
pub mod permissions {
    pub const PRODUCTS_WRITE: &str = "commerce:products:write";
    pub const PRODUCTS_APPROVE: &str = "commerce:products:approve";
    pub const SELLERS_ADMIN: &str = "commerce:sellers:admin";
    /// Adjust the stock of one's own seller's products.
    pub const INVENTORY_WRITE: &str = "commerce:inventory:write";
    /// Sellers: see and ship the items of their own seller's orders.
    pub const ORDERS_FULFIL: &str = "commerce:orders:fulfil";
    /// Payment providers (client_credentials): report payment events.
    pub const PAYMENTS_WRITE: &str = "commerce:payments:write";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SellerKind {
    /// Our own stock and shipping.
    Internal,
    /// A marketplace partner.
    External,
}

impl SellerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SellerKind::Internal => "INTERNAL",
            SellerKind::External => "EXTERNAL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductType {
    /// Booked for a date (hotel, ticket).
    Reservable,
    /// Bought now from stock.
    Realtime,
}

impl ProductType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductType::Reservable => "RESERVABLE",
            ProductType::Realtime => "REALTIME",
        }
    }
}

/// An ISO 4217 alphabetic code (three upper-case letters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Currency(String);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, CommerceError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code.to_owned()))
        } else {
            Err(CommerceError::Invalid(format!(
                "currency `{code}` is not an ISO 4217 code such as EUR or USD"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A price: integer minor units (cents) and a currency; never floating point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Errors of the commerce domain; the HTTP layer maps each to a status and problem+json.
#[derive(Debug, thiserror::Error)]
pub enum CommerceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request is well-formed JSON but breaks a rule (422).
    #[error("{0}")]
    Invalid(String),
    /// RFC 6750 §3.1 insufficient_scope: the token lacks this permission.
    #[error("the token lacks the permission {0}")]
    MissingPermission(&'static str),
    /// A resource-level rule (seller scope, four-eyes) refuses the caller (403).
    #[error("{0}")]
    Forbidden(String),
    /// The lifecycle does not allow the action in the current state (409).
    #[error("action {action:?} is not allowed while the product is {}", current.as_str())]
    TransitionRefused { current: Status, action: Action },
    /// The order state machine does not allow the action in the order's current
    /// state (409, naming it).
    #[error("cannot {action} an order that is {current}")]
    OrderState {
        current: &'static str,
        action: &'static str,
    },
    /// A unique constraint refused the write (409).
    #[error("{0}")]
    Conflict(String),
    /// RFC 9110 §13.1.1: If-Match names a version that is no longer current (412).
    #[error("the product changed since it was read; fetch it again")]
    PreconditionFailed,
    /// RFC 6585 §3: updates must say which version they change (428).
    #[error("send If-Match with the product's ETag")]
    PreconditionRequired,
    #[error("the commerce database is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for CommerceError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => CommerceError::Unavailable,
            DbError::NotFound => CommerceError::NotFound("record"),
            DbError::Conflict(what) => CommerceError::Conflict(format!("already exists ({what})")),
            other => CommerceError::Internal(other.to_string()),
        }
    }
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Page size: default 20, at most 100.
#[derive(Debug, Clone, Copy)]
pub struct Limit(i64);

impl Limit {
    pub fn parse(value: Option<i64>) -> Result<Self, CommerceError> {
        match value {
            None => Ok(Self(20)),
            Some(n) if (1..=100).contains(&n) => Ok(Self(n)),
            Some(_) => Err(CommerceError::Invalid("limit must be between 1 and 100".into())),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// An opaque cursor: the base64url of the last item's key.
pub mod cursor {
    use base64::Engine;

    use super::CommerceError;

    pub fn encode(key: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    }

    pub fn decode(cursor: Option<&str>) -> Result<String, CommerceError> {
        let Some(cursor) = cursor else {
            return Ok(String::new());
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| CommerceError::Invalid("cursor is not one this API issued".into()))
    }
}

/// Cuts `rows` (fetched with `limit + 1`) to a page.
pub fn page<R, T>(mut rows: Vec<R>, limit: Limit, key: impl Fn(&R) -> String, view: impl FnMut(R) -> T) -> Page<T> {
    let more = rows.len() as i64 > limit.get();
    rows.truncate(limit.get() as usize);
    let next_cursor = if more {
        rows.last().map(|r| cursor::encode(&key(r)))
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(view).collect(),
        next_cursor,
    }
}
