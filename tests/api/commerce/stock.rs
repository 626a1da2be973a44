//! Stock through the real servers: sellers adjust their own stock (audited,
//! never below zero, capacity per date for RESERVABLE products), concurrent
//! adjustments lose nothing, and the database CHECK refuses negative stock.
//! `Market` is the fixture the reservation and idempotency tests share.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{CommerceTest, challenge, commerce_client, spawn_commerce, token_of};
use crate::helpers::{TestApp, spawn_app};

pub const WRITE: &str = "commerce:products:write";
pub const APPROVE: &str = "commerce:products:approve";
pub const ADMIN: &str = "commerce:sellers:admin";
pub const INVENTORY: &str = "commerce:inventory:write";

/// A seller with a member who may write products and stock, a reviewer, an
/// outsider holding inventory:write, and two buyers (no permissions).
pub struct Market {
    pub commerce: CommerceTest,
    pub idp: TestApp,
    pub admin: String,
    pub dev: String,
    pub dev_sub: String,
    pub reviewer: String,
    pub outsider: String,
    pub buyer: String,
    pub buyer_sub: String,
    pub other_buyer: String,
    pub seller_id: String,
    buyer_client: crate::helpers::TestClient,
}

pub async fn market(customize: impl FnOnce(&mut oxidp::config::Config)) -> Market {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, customize).await;
    let admin_client = commerce_client(&idp, "commerce-admin", &[ADMIN, WRITE]).await;
    let dev_client = commerce_client(&idp, "seller-dev", &[WRITE, INVENTORY]).await;
    let reviewer_client = commerce_client(&idp, "reviewer", &[APPROVE]).await;
    let outsider_client = commerce_client(&idp, "outsider", &[WRITE, INVENTORY]).await;
    let buyer_client = commerce_client(&idp, "buyer", &[]).await;
    let other_buyer_client = commerce_client(&idp, "buyer-2", &[]).await;
    let admin = token_of(&idp, &admin_client).await;
    let created = commerce
        .send(
            Method::POST,
            "/v1/sellers",
            &admin,
            None,
            json!({"name": "Harbour Hotel", "kind": "EXTERNAL", "contact": {"email": "desk@harbour.example"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let seller_id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = commerce
        .send(
            Method::PUT,
            &format!("/v1/sellers/{seller_id}/members/{}", dev_client.id),
            &admin,
            None,
            json!({}),
        )
        .await;
    assert_eq!(added.status(), 200);
    Market {
        dev: token_of(&idp, &dev_client).await,
        dev_sub: dev_client.id.clone(),
        reviewer: token_of(&idp, &reviewer_client).await,
        outsider: token_of(&idp, &outsider_client).await,
        buyer: token_of(&idp, &buyer_client).await,
        buyer_sub: buyer_client.id.clone(),
        other_buyer: token_of(&idp, &other_buyer_client).await,
        buyer_client,
        commerce,
        idp,
        admin,
        seller_id,
    }
}

/// A product and its one combination.
pub struct Item {
    pub product: String,
    pub combination: String,
}

impl Market {
    /// A product of `kind` (REALTIME or RESERVABLE) with one combination, moved to
    /// SALES when `on_sale`.
    pub async fn item(&self, kind: &str, on_sale: bool) -> Item {
        let c = &self.commerce;
        let created = c
            .send(
                Method::POST,
                "/v1/products",
                &self.dev,
                None,
                json!({"seller_id": self.seller_id, "name": "Sea view room", "category": "rooms",
                       "type": kind, "price": {"amount_minor": 12_000, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(created.status(), 201);
        let mut tag = etag(&created);
        let product = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let group = c
            .send(
                Method::POST,
                &format!("/v1/products/{product}/option-groups"),
                &self.dev,
                Some(&tag),
                json!({"name": "Size", "options": [{"name": "M"}]}),
            )
            .await;
        assert_eq!(group.status(), 200);
        tag = etag(&group);
        let view: Value = group.json().await.unwrap();
        let option = view["option_groups"][0]["options"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let combination = c
            .send(
                Method::POST,
                &format!("/v1/products/{product}/combinations"),
                &self.dev,
                Some(&tag),
                json!({"sku": "ROOM-M", "option_ids": [option]}),
            )
            .await;
        assert_eq!(combination.status(), 200);
        tag = etag(&combination);
        let view: Value = combination.json().await.unwrap();
        let combination = view["combinations"][0]["id"].as_str().unwrap().to_owned();
        if on_sale {
            for (token, action) in [
                (&self.dev, "start_development"),
                (&self.dev, "submit_for_review"),
                (&self.reviewer, "approve"),
                (&self.dev, "launch"),
                (&self.dev, "start_sales"),
            ] {
                let moved = c
                    .send(
                        Method::POST,
                        &format!("/v1/products/{product}/transitions"),
                        token,
                        Some(&tag),
                        json!({"action": action}),
                    )
                    .await;
                assert_eq!(moved.status(), 200, "{action}");
                tag = etag(&moved);
            }
        }
        Item { product, combination }
    }

    pub async fn adjust(&self, token: &str, product: &str, body: Value) -> reqwest::Response {
        self.commerce
            .send(
                Method::POST,
                &format!("/v1/products/{product}/stock"),
                token,
                None,
                body,
            )
            .await
    }

    /// Sets the stock (or, with a date, the capacity) of `item`.
    pub async fn stock_up(&self, item: &Item, date: Option<&str>, units: i64) {
        let r = self
            .adjust(
                &self.dev,
                &item.product,
                json!({"combination_id": item.combination, "date": date, "set": units}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// What is left of `item` (on `date`), read over the API.
    pub async fn available(&self, item: &Item, date: Option<&str>) -> i64 {
        let path = match date {
            Some(d) => format!("/v1/products/{}/stock?date={d}", item.product),
            None => format!("/v1/products/{}/stock", item.product),
        };
        let r = self.commerce.get(&path, Some(&self.buyer)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["combination_id"] == item.combination.as_str())
            .map_or(0, |s| s["available"].as_i64().unwrap())
    }

    /// `POST /v1/reservations` on `commerce` with `key`.
    pub async fn reserve_on(
        commerce: &CommerceTest,
        token: &str,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(commerce.url("/v1/reservations"))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", format!("\"{key}\""));
        }
        request.send().await.unwrap()
    }

    pub async fn reserve(&self, key: &str, body: &Value) -> reqwest::Response {
        Self::reserve_on(&self.commerce, &self.buyer, Some(key), body).await
    }

    /// Polls the reservation until it leaves PENDING (at most 60 s).
    pub async fn outcome(&self, token: &str, id: &str) -> Value {
        for _ in 0..600 {
            let r = self.commerce.get(&format!("/v1/reservations/{id}"), Some(token)).await;
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            if body["status"] != "PENDING" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("reservation {id} still PENDING after 60 s");
    }

    /// Waits until no reservation is PENDING and the queue is empty (at most 120 s).
    pub async fn drained(&self) {
        for _ in 0..1200 {
            let pending = self
                .commerce
                .count("SELECT COUNT(*) AS n FROM reservations WHERE status = 'PENDING'")
                .await;
            let queued = self.commerce.count("SELECT COUNT(*) AS n FROM outbox").await;
            if pending == 0 && queued == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the reservation queue did not drain in 120 s");
    }

    /// A fresh buyer token (after the clock moved past the old one's expiry).
    pub async fn fresh_buyer(&mut self) {
        self.buyer = token_of(&self.idp, &self.buyer_client).await;
    }
}

pub fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

pub fn is_problem(response: &reqwest::Response) -> bool {
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json")
}

#[tokio::test]
async fn sellers_adjust_their_own_stock_audited_and_never_below_zero() {
    let m = market(|_| {}).await;
    let item = m.item("REALTIME", false).await;
    let body = |v: Value| {
        let mut b = json!({"combination_id": item.combination});
        b.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        b
    };

    // Seller scope: inventory:write alone is not enough, membership is required.
    let r = m.adjust(&m.outsider, &item.product, body(json!({"set": 5}))).await;
    assert_eq!(r.status(), 403);
    assert!(is_problem(&r));
    // The administrator has no inventory:write: an RFC 6750 insufficient_scope.
    let r = m.adjust(&m.admin, &item.product, body(json!({"set": 5}))).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("insufficient_scope"), "{}", challenge(&r));
    let r = m.adjust(&m.buyer, &item.product, body(json!({"set": 5}))).await;
    assert_eq!(r.status(), 403);

    let r = m
        .adjust(&m.dev, &item.product, body(json!({"set": 10, "reason": "delivery"})))
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        (view["available"].as_i64(), view["version"].as_i64()),
        (Some(10), Some(1))
    );
    let r = m.adjust(&m.dev, &item.product, body(json!({"delta": -3}))).await;
    assert_eq!(r.json::<Value>().await.unwrap()["available"], 7);
    // Never below zero: refused, and nothing changed.
    let r = m.adjust(&m.dev, &item.product, body(json!({"delta": -8}))).await;
    assert_eq!(r.status(), 409);
    assert!(is_problem(&r));
    assert_eq!(m.available(&item, None).await, 7);

    // Bad inputs are problem+json.
    for (bad, status) in [
        (body(json!({"set": 1, "delta": 1})), 422),
        (body(json!({})), 422),
        (body(json!({"set": -1})), 422),
        (body(json!({"delta": 0})), 422),
        (body(json!({"set": 1, "date": "2026-12-24"})), 422),
        (json!({"combination_id": "nope", "set": 1}), 422),
        (body(json!({"set": 1, "colour": "red"})), 400),
        (body(json!({"set": "many"})), 400),
    ] {
        let r = m.adjust(&m.dev, &item.product, bad.clone()).await;
        assert_eq!(r.status(), status, "{bad}");
        assert!(is_problem(&r), "{bad}");
    }
    let r = m.adjust(&m.dev, "no-such-product", body(json!({"set": 1}))).await;
    assert_eq!(r.status(), 404);
    let r = m.adjust(&m.dev, &item.product, body(json!({"set": 1}))).await;
    assert_eq!(r.status(), 200);

    // The audit: who, when, how much, why.
    let r = m
        .commerce
        .get(
            &format!("/v1/products/{}/stock/adjustments", item.product),
            Some(&m.dev),
        )
        .await;
    assert_eq!(r.status(), 200);
    let audit: Value = r.json().await.unwrap();
    let entries = audit["items"].as_array().unwrap();
    let deltas: Vec<i64> = entries.iter().map(|e| e["delta"].as_i64().unwrap()).collect();
    assert_eq!(deltas, [10, -3, -6]);
    assert!(entries.iter().all(|e| e["actor"] == m.dev_sub.as_str()));
    assert_eq!(entries[0]["reason"], "delivery");
    assert_eq!(entries[2]["available_after"], 1);
    let r = m
        .commerce
        .get(
            &format!("/v1/products/{}/stock/adjustments", item.product),
            Some(&m.outsider),
        )
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn reservable_products_have_capacity_per_date() {
    let m = market(|_| {}).await;
    let item = m.item("RESERVABLE", false).await;
    m.stock_up(&item, Some("2026-12-24"), 3).await;
    m.stock_up(&item, Some("2026-12-25"), 5).await;
    assert_eq!(m.available(&item, Some("2026-12-24")).await, 3);
    assert_eq!(m.available(&item, Some("2026-12-25")).await, 5);
    assert_eq!(m.available(&item, Some("2026-12-26")).await, 0);
    for date in [None, Some("2026-02-30"), Some("24.12.2026")] {
        let r = m
            .adjust(
                &m.dev,
                &item.product,
                json!({"combination_id": item.combination, "date": date, "set": 1}),
            )
            .await;
        assert_eq!(r.status(), 422, "{date:?}");
    }
    let r = m
        .commerce
        .get(
            &format!("/v1/products/{}/stock?date=someday", item.product),
            Some(&m.buyer),
        )
        .await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn concurrent_adjustments_lose_no_update() {
    let m = market(|_| {}).await;
    let item = m.item("REALTIME", false).await;
    m.stock_up(&item, None, 0).await;
    let adds = (0..20).map(|_| {
        m.adjust(
            &m.dev,
            &item.product,
            json!({"combination_id": item.combination, "delta": 1}),
        )
    });
    let statuses: Vec<u16> = futures_util::future::join_all(adds)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    // Each accepted adjustment landed: none was overwritten by a concurrent one.
    assert!(
        ok >= 1 && statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(m.available(&item, None).await, ok);
}

#[tokio::test]
async fn the_database_refuses_negative_stock() {
    let m = market(|_| {}).await;
    let item = m.item("REALTIME", false).await;
    m.stock_up(&item, None, 2).await;
    let db = m.commerce.config.commerce_database_url();
    let outcome = oxidp::db::Db::connect(
        &db,
        &oxidp::db::PoolSettings {
            max_size: 1,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_cache_kib: 1024,
        },
    )
    .unwrap()
    .run(|conn| {
        use diesel::RunQueryDsl;
        Ok(diesel::sql_query("UPDATE stock SET available = available - 3").execute(conn)?)
    })
    .await;
    assert!(outcome.is_err(), "the CHECK (available >= 0) must refuse: {outcome:?}");
    assert_eq!(m.available(&item, None).await, 2);
}
