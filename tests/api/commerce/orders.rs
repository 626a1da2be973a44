//! Marketplace orders through the real servers: the Idempotency-Key under a burst
//! of identical requests, server-side pricing, the saga (payment success, failure,
//! timeout, duplicate, repeated and mismatched payment events), orders made of
//! reservations, the state machine's
//! refusals, sellers' and buyers' views, and a `kill -9` of a real `oxidp
//! commerce` process under load with the invariants checked after a restart.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxidp::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use super::stock::{INVENTORY, Item, Market, WRITE, etag, is_problem, market};
use super::{AUDIENCE, CommerceTest, challenge, commerce_client, token_of};
use crate::helpers::{KES, PEPPER};

const FULFIL: &str = "commerce:orders:fulfil";
const PAYMENTS: &str = "commerce:payments:write";

/// A market with two sellers: A (the `Market`'s, selling rooms at 120.00 EUR) and
/// B (selling lamps at 30.00 + 2.50 option + 0.50 combination = 33.00 EUR), a
/// fulfilment member for each, a payment provider and a coupon administrator.
struct Shop {
    m: Market,
    fulfil_a: String,
    fulfil_b: String,
    seller_b: String,
    psp: String,
    coupon_admin: String,
    room: Item,
    lamp: Item,
}

const ROOM: i64 = 12_000;
const LAMP: i64 = 3_300;

async fn product(c: &CommerceTest, dev: &str, reviewer: &str, seller: &str, price: i64, deltas: (i64, i64)) -> Item {
    let created = c
        .send(
            Method::POST,
            "/v1/products",
            dev,
            None,
            json!({"seller_id": seller, "name": "Desk lamp", "category": "home", "type": "REALTIME",
                   "price": {"amount_minor": price, "currency": "EUR"}}),
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
            dev,
            Some(&tag),
            json!({"name": "Colour", "options": [{"name": "Brass", "price_delta": deltas.0}]}),
        )
        .await;
    assert_eq!(group.status(), 200);
    tag = etag(&group);
    let option = group.json::<Value>().await.unwrap()["option_groups"][0]["options"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let combination = c
        .send(
            Method::POST,
            &format!("/v1/products/{product}/combinations"),
            dev,
            Some(&tag),
            json!({"sku": "LAMP-B", "option_ids": [option], "price_delta": deltas.1}),
        )
        .await;
    assert_eq!(combination.status(), 200);
    tag = etag(&combination);
    let combination = combination.json::<Value>().await.unwrap()["combinations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, action) in [
        (dev, "start_development"),
        (dev, "submit_for_review"),
        (reviewer, "approve"),
        (dev, "launch"),
        (dev, "start_sales"),
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
    Item { product, combination }
}

async fn shop(customize: impl FnOnce(&mut oxidp::config::Config)) -> Shop {
    let m = market(customize).await;
    let c = &m.commerce;
    let created = c
        .send(
            Method::POST,
            "/v1/sellers",
            &m.admin,
            None,
            json!({"name": "Lamp Works", "kind": "INTERNAL", "contact": {"email": "ops@lamps.example"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let seller_b = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fulfil_a_client = commerce_client(&m.idp, "fulfil-a", &[FULFIL]).await;
    let b_client = commerce_client(&m.idp, "seller-b", &[WRITE, INVENTORY, FULFIL]).await;
    for (seller, sub) in [(&m.seller_id, &fulfil_a_client.id), (&seller_b, &b_client.id)] {
        let added = c
            .send(
                Method::PUT,
                &format!("/v1/sellers/{seller}/members/{sub}"),
                &m.admin,
                None,
                json!({}),
            )
            .await;
        assert_eq!(added.status(), 200);
    }
    let fulfil_b = token_of(&m.idp, &b_client).await;
    let room = m.item("REALTIME", true).await;
    let lamp = product(c, &fulfil_b, &m.reviewer, &seller_b, 3_000, (250, 50)).await;
    m.stock_up(&room, None, 10).await;
    let r = m
        .adjust(
            &fulfil_b,
            &lamp.product,
            json!({"combination_id": lamp.combination, "set": 10}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let psp_client = commerce_client(&m.idp, "payment-provider", &[PAYMENTS]).await;
    let coupon_client = commerce_client(&m.idp, "coupon-admin", &["commerce:coupons:write"]).await;
    Shop {
        fulfil_a: token_of(&m.idp, &fulfil_a_client).await,
        psp: token_of(&m.idp, &psp_client).await,
        coupon_admin: token_of(&m.idp, &coupon_client).await,
        fulfil_b,
        seller_b,
        room,
        lamp,
        m,
    }
}

fn line(item: &Item, quantity: i64) -> Value {
    json!({"product_id": item.product, "combination_id": item.combination, "quantity": quantity})
}

async fn post_order(c: &CommerceTest, token: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(c.url("/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", format!("\"{key}\""))
        .json(body)
        .send()
        .await
        .unwrap()
}

impl Shop {
    fn c(&self) -> &CommerceTest {
        &self.m.commerce
    }

    /// Places an order (a fresh key) and waits until the saga left PENDING.
    async fn place(&self, token: &str, body: Value) -> Value {
        let r = post_order(self.c(), token, &uuid::Uuid::new_v4().to_string(), &body).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let view: Value = r.json().await.unwrap();
        self.settled(token, view["id"].as_str().unwrap(), &["PENDING"]).await
    }

    async fn order(&self, token: &str, id: &str) -> Value {
        let r = self.c().get(&format!("/v1/orders/{id}"), Some(token)).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Polls the order until its status is none of `passing` (at most 90 s).
    async fn settled(&self, token: &str, id: &str, passing: &[&str]) -> Value {
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let view = self.order(token, id).await;
            if !passing.contains(&view["status"].as_str().unwrap()) {
                return view;
            }
            assert!(Instant::now() < until, "order {id} still {} after 90 s", view["status"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pay(&self, token: &str, event_id: &str, kind: &str, order: &Value, amount: i64) -> reqwest::Response {
        let body = json!({"event_id": event_id, "type": kind, "order_id": order["id"],
                          "amount": {"amount_minor": amount, "currency": "EUR"}});
        self.c()
            .send(Method::POST, "/v1/payments/events", token, None, body)
            .await
    }

    /// A campaign (`basis_points` off, reissuing returned coupons or not) and the
    /// buyer's coupon of it.
    async fn coupon(&self, basis_points: i64, reissue: bool) -> String {
        let now = self.c().clock.now();
        let campaign = self
            .c()
            .send(
                Method::POST,
                "/v1/coupon-campaigns",
                &self.coupon_admin,
                None,
                json!({"name": "Opening", "discount": {"kind": "PERCENT", "basis_points": basis_points},
                       "limit": 100, "starts_at": now - 10, "ends_at": now + 3600, "reissue_returned": reissue}),
            )
            .await;
        assert_eq!(campaign.status(), 201);
        let campaign = campaign.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let claimed = reqwest::Client::new()
            .post(self.c().url(&format!("/v1/coupon-campaigns/{campaign}/claims")))
            .bearer_auth(&self.m.buyer)
            .header("idempotency-key", format!("\"{}\"", uuid::Uuid::new_v4()))
            .send()
            .await
            .unwrap();
        assert_eq!(claimed.status(), 201);
        claimed.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn coupon_status(&self, id: &str) -> String {
        for status in ["ISSUED", "REDEEMED", "RETURNED"] {
            let n = self
                .c()
                .count(&format!(
                    "SELECT COUNT(*) AS n FROM coupons WHERE id = '{id}' AND status = '{status}'"
                ))
                .await;
            if n == 1 {
                return status.to_owned();
            }
        }
        panic!("coupon {id} not found");
    }
}

#[tokio::test]
async fn fifty_identical_requests_with_one_key_make_one_order() {
    let s = shop(|c| c.database.connect_timeout_secs = 20).await;
    let body = json!({"items": [line(&s.room, 2)]});
    let answers = futures_util::future::join_all((0..50).map(|_| {
        let (c, token, body) = (s.c(), s.m.buyer.clone(), body.clone());
        async move {
            // RFC draft: 409 while the first is still running; the client retries.
            let until = Instant::now() + Duration::from_secs(90);
            loop {
                let r = post_order(c, &token, "one-key", &body).await;
                if r.status() == 409 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let replayed = r.headers().contains_key("idempotent-replayed");
                return (r.status().as_u16(), r.text().await.unwrap(), replayed);
            }
        }
    }))
    .await;
    assert!(answers.iter().all(|(status, _, _)| *status == 201), "{answers:?}");
    let bodies: HashSet<&String> = answers.iter().map(|(_, b, _)| b).collect();
    assert_eq!(bodies.len(), 1, "every answer is the first response");
    assert_eq!(answers.iter().filter(|(_, _, replayed)| !replayed).count(), 1);
    assert_eq!(s.c().count("SELECT COUNT(*) AS n FROM orders").await, 1);
    let first: Value = serde_json::from_str(answers[0].1.as_str()).unwrap();
    let id = first["id"].as_str().unwrap();
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["total"]["amount_minor"], 2 * ROOM);
    let placed = s.settled(&s.m.buyer, id, &["PENDING"]).await;
    assert_eq!(placed["status"], "PENDING_PAYMENT");
    assert_eq!(s.m.available(&s.room, None).await, 8, "stock taken once");

    // After completion: the same response again; another body under the key: 422.
    let again = post_order(s.c(), &s.m.buyer, "one-key", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.headers()["location"].to_str().unwrap(),
        format!("/v1/orders/{id}")
    );
    assert_eq!(&again.text().await.unwrap(), *bodies.iter().next().unwrap());
    let other = post_order(s.c(), &s.m.buyer, "one-key", &json!({"items": [line(&s.room, 3)]})).await;
    assert_eq!(other.status(), 422);
    assert!(is_problem(&other));
    // The key is the buyer's: another buyer with the same key gets its own order.
    let theirs = post_order(s.c(), &s.m.other_buyer, "one-key", &body).await;
    assert_eq!(theirs.status(), 201);
    assert_eq!(s.c().count("SELECT COUNT(*) AS n FROM orders").await, 2);
    // No key: 400.
    let r = s.c().send(Method::POST, "/v1/orders", &s.m.buyer, None, body).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn prices_come_from_the_catalog_and_a_payment_pays_the_order() {
    let s = shop(|_| {}).await;
    let coupon = s.coupon(1_000, false).await;
    // Client prices are not part of the request: refused, never used.
    let r = post_order(
        s.c(),
        &s.m.buyer,
        "priced",
        &json!({"items": [{"product_id": s.room.product, "combination_id": s.room.combination, "unit_price": 1}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    // The wrong currency is refused.
    let r = post_order(
        s.c(),
        &s.m.buyer,
        "usd",
        &json!({"items": [line(&s.room, 1)], "currency": "USD"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    // More than there is: 409 sold out, and no order.
    let r = post_order(s.c(), &s.m.buyer, "too-many", &json!({"items": [line(&s.room, 11)]})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(s.c().count("SELECT COUNT(*) AS n FROM orders").await, 0);

    let order = s
        .place(
            &s.m.buyer,
            json!({"items": [line(&s.room, 1), line(&s.lamp, 2)], "coupon_id": coupon, "currency": "EUR"}),
        )
        .await;
    assert_eq!(order["status"], "PENDING_PAYMENT", "{order}");
    let subtotal = ROOM + 2 * LAMP;
    assert_eq!(order["subtotal"]["amount_minor"], subtotal);
    assert_eq!(order["discount"]["amount_minor"], subtotal / 10);
    let total = subtotal - subtotal / 10;
    assert_eq!(order["total"], json!({"amount_minor": total, "currency": "EUR"}));
    assert_eq!(order["items"][0]["seller_id"], s.m.seller_id.as_str());
    assert_eq!(order["items"][1]["seller_id"], s.seller_b.as_str());
    assert_eq!(order["items"][1]["unit_price"]["amount_minor"], LAMP);
    assert_eq!(order["items"][1]["quantity"], 2);
    assert!(order["pay_by"].as_i64().unwrap() > s.c().clock.now());
    assert_eq!(s.coupon_status(&coupon).await, "REDEEMED");
    // The coupon cannot serve a second order meanwhile.
    let r = post_order(
        s.c(),
        &s.m.buyer,
        "coupon-again",
        &json!({"items": [line(&s.room, 1)], "coupon_id": coupon}),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(s.m.available(&s.room, None).await, 9);

    // A wrong amount is refused and recorded; nothing moves.
    let r = s.pay(&s.psp, "evt-short", "payment.succeeded", &order, total - 1).await;
    assert_eq!(r.status(), 422);
    assert!(is_problem(&r));
    assert_eq!(
        s.c()
            .count("SELECT COUNT(*) AS n FROM payment_events WHERE outcome = 'amount_mismatch'")
            .await,
        1
    );
    assert_eq!(
        s.order(&s.m.buyer, order["id"].as_str().unwrap()).await["status"],
        "PENDING_PAYMENT"
    );

    let r = s.pay(&s.psp, "evt-ok", "payment.succeeded", &order, total).await;
    assert_eq!(r.status(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(
        (receipt["outcome"].as_str(), receipt["duplicate"].as_bool()),
        (Some("applied"), Some(false))
    );
    assert_eq!(receipt["order_status"], "PAID");
    let paid = s.order(&s.m.buyer, order["id"].as_str().unwrap()).await;
    assert_eq!(paid["status"], "PAID");
    assert_eq!(s.m.available(&s.room, None).await, 9);
    assert_eq!(s.m.available(&s.lamp, None).await, 8);
    assert_eq!(s.coupon_status(&coupon).await, "REDEEMED");
    // A late failure for a paid order changes nothing.
    let r = s.pay(&s.psp, "evt-late-fail", "payment.failed", &order, total).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "ignored");
    assert_eq!(
        s.order(&s.m.buyer, order["id"].as_str().unwrap()).await["status"],
        "PAID"
    );
}

#[tokio::test]
async fn a_failed_payment_compensates_in_reverse_order() {
    let s = shop(|_| {}).await;
    let coupon = s.coupon(5_000, true).await;
    let order = s
        .place(
            &s.m.buyer,
            json!({"items": [line(&s.room, 3), line(&s.lamp, 1)], "coupon_id": coupon}),
        )
        .await;
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(
        (s.m.available(&s.room, None).await, s.m.available(&s.lamp, None).await),
        (7, 9)
    );
    let total = order["total"]["amount_minor"].as_i64().unwrap();
    let r = s.pay(&s.psp, "evt-declined", "payment.failed", &order, total).await;
    assert_eq!(r.status(), 200);
    let id = order["id"].as_str().unwrap();
    let cancelled = s.settled(&s.m.buyer, id, &["PENDING_PAYMENT"]).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["cancel_reason"], "payment_failed");
    assert!(cancelled.get("refund").is_none(), "never paid, nothing to refund");
    assert_eq!(
        (s.m.available(&s.room, None).await, s.m.available(&s.lamp, None).await),
        (10, 10)
    );
    assert_eq!(s.coupon_status(&coupon).await, "ISSUED", "reissued to its holder");
    // The log holds each compensation once, the coupon's before the stock's.
    let steps = |step: &str| format!("SELECT COUNT(*) AS n FROM saga_log WHERE order_id = '{id}' AND step = '{step}'");
    for step in [
        "reserve:0",
        "reserve:1",
        "coupon",
        "placed",
        "coupon_returned",
        "release:1",
        "release:0",
        "cancelled",
    ] {
        assert_eq!(s.c().count(&steps(step)).await, 1, "{step}");
    }
    // Money arriving after the cancellation is refunded, not applied.
    let r = s.pay(&s.psp, "evt-after", "payment.succeeded", &order, total).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "refunded");
    let view = s.order(&s.m.buyer, id).await;
    assert_eq!(view["status"], "CANCELLED");
    assert_eq!(view["refund"]["amount_minor"], total);
}

#[tokio::test]
async fn an_unpaid_order_times_out_and_is_compensated() {
    let s = shop(|c| c.commerce.payment_timeout_secs = 1).await;
    let coupon = s.coupon(2_000, false).await;
    let order = s
        .place(&s.m.buyer, json!({"items": [line(&s.lamp, 4)], "coupon_id": coupon}))
        .await;
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(s.m.available(&s.lamp, None).await, 6);
    s.c().clock.advance(5);
    let cancelled = s
        .settled(&s.m.buyer, order["id"].as_str().unwrap(), &["PENDING_PAYMENT"])
        .await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["cancel_reason"], "payment_timeout");
    assert_eq!(s.m.available(&s.lamp, None).await, 10);
    assert_eq!(
        s.coupon_status(&coupon).await,
        "RETURNED",
        "spent: the campaign does not reissue"
    );
}

#[tokio::test]
async fn duplicate_payment_events_change_the_order_once() {
    let s = shop(|_| {}).await;
    let order = s.place(&s.m.buyer, json!({"items": [line(&s.room, 1)]})).await;
    let total = order["total"]["amount_minor"].as_i64().unwrap();
    let receipts = futures_util::future::join_all(
        (0..20).map(|_| async { s.pay(&s.psp, "evt-dup", "payment.succeeded", &order, total).await }),
    )
    .await;
    let mut fresh = 0;
    for r in receipts {
        assert_eq!(r.status(), 200);
        let receipt: Value = r.json().await.unwrap();
        assert_eq!(receipt["outcome"], "applied");
        assert_eq!(receipt["order_status"], "PAID");
        fresh += usize::from(receipt["duplicate"] == false);
    }
    assert_eq!(fresh, 1, "exactly one delivery was applied");
    let id = order["id"].as_str().unwrap();
    assert_eq!(s.c().count("SELECT COUNT(*) AS n FROM payment_events").await, 1);
    assert_eq!(
        s.c()
            .count(&format!(
                "SELECT COUNT(*) AS n FROM saga_log WHERE order_id = '{id}' AND step = 'paid'"
            ))
            .await,
        1
    );
    // The same event id for another order is refused.
    let other = s.place(&s.m.buyer, json!({"items": [line(&s.room, 1)]})).await;
    let r = s.pay(&s.psp, "evt-dup", "payment.succeeded", &other, total).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        s.order(&s.m.buyer, other["id"].as_str().unwrap()).await["status"],
        "PENDING_PAYMENT"
    );

    // A second charge (another event id) of the paid order: that money goes back,
    // once per event, and the order stays PAID.
    assert!(s.order(&s.m.buyer, id).await.get("refund").is_none());
    for (event, refunded) in [("evt-twice", 1), ("evt-twice", 1), ("evt-thrice", 2)] {
        let r = s.pay(&s.psp, event, "payment.succeeded", &order, total).await;
        assert_eq!(r.status(), 200);
        let receipt: Value = r.json().await.unwrap();
        assert_eq!(
            (receipt["outcome"].as_str(), receipt["order_status"].as_str()),
            (Some("refunded"), Some("PAID"))
        );
        assert_eq!(
            s.order(&s.m.buyer, id).await["refund"]["amount_minor"],
            refunded * total,
            "{event}"
        );
    }
    // Paid twice after its cancellation: both payments go back.
    let cancelled = act(
        s.c(),
        &s.m.buyer,
        &format!("/v1/orders/{}/cancel", other["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(cancelled.1["status"], "CANCELLED", "{cancelled:?}");
    assert!(cancelled.1.get("refund").is_none(), "nothing was paid");
    for event in ["evt-late-1", "evt-late-2"] {
        let r = s.pay(&s.psp, event, "payment.succeeded", &other, total).await;
        assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "refunded");
    }
    let view = s.order(&s.m.buyer, other["id"].as_str().unwrap()).await;
    assert_eq!(
        (view["status"].as_str(), &view["refund"]["amount_minor"]),
        (Some("CANCELLED"), &json!(2 * total))
    );
    assert_eq!(s.c().count("SELECT COUNT(*) AS n FROM refunds").await, 4);
}

#[tokio::test]
async fn payment_events_need_the_payments_permission() {
    let s = shop(|_| {}).await;
    let order = s.place(&s.m.buyer, json!({"items": [line(&s.room, 1)]})).await;
    let total = order["total"]["amount_minor"].as_i64().unwrap();
    for token in [&s.m.buyer, &s.fulfil_a] {
        let r = s.pay(token, "evt-forged", "payment.succeeded", &order, total).await;
        assert_eq!(r.status(), 403);
        let c = challenge(&r);
        assert!(c.contains("error=\"insufficient_scope\""), "{c}");
        assert!(c.contains("scope=\"commerce:payments:write\""), "{c}");
    }
    let r = reqwest::Client::new()
        .post(s.c().url("/v1/payments/events"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(s.c().count("SELECT COUNT(*) AS n FROM payment_events").await, 0);
    assert_eq!(
        s.order(&s.m.buyer, order["id"].as_str().unwrap()).await["status"],
        "PENDING_PAYMENT"
    );
}

/// POSTs `path` with no body content, answers (status, body).
async fn act(c: &CommerceTest, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = c.send(Method::POST, path, token, None, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn refused_in(answer: &(u16, Value), current: &str) {
    assert_eq!(answer.0, 409, "{answer:?}");
    assert_eq!(answer.1["current_status"], current, "{answer:?}");
}

#[tokio::test]
async fn the_order_lifecycle_and_its_illegal_transitions() {
    let s = shop(|_| {}).await;
    let c = s.c();
    let order = s
        .place(&s.m.buyer, json!({"items": [line(&s.room, 1), line(&s.lamp, 1)]}))
        .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let (room_item, lamp_item) = (
        order["items"][0]["id"].as_str().unwrap().to_owned(),
        order["items"][1]["id"].as_str().unwrap().to_owned(),
    );
    let ship = |item: &str| format!("/v1/seller/orders/{id}/items/{item}/shipment");
    // Before payment: no shipping, no completing, no returning.
    refused_in(
        &act(
            c,
            &s.fulfil_a,
            &ship(&room_item),
            json!({"status": "SHIPPED", "tracking_number": "T1"}),
        )
        .await,
        "PENDING_PAYMENT",
    );
    refused_in(
        &act(c, &s.m.buyer, &format!("/v1/orders/{id}/complete"), json!({})).await,
        "PENDING_PAYMENT",
    );
    refused_in(
        &act(c, &s.m.buyer, &format!("/v1/orders/{id}/return"), json!({})).await,
        "PENDING_PAYMENT",
    );
    let total = order["total"]["amount_minor"].as_i64().unwrap();
    assert_eq!(
        s.pay(&s.psp, "evt-life", "payment.succeeded", &order, total)
            .await
            .status(),
        200
    );

    // Sellers move their own items only; the order follows its items.
    let r = act(
        c,
        &s.fulfil_a,
        &ship(&lamp_item),
        json!({"status": "SHIPPED", "tracking_number": "T9"}),
    )
    .await;
    assert_eq!(r.0, 403, "{r:?}");
    refused_in(
        &act(c, &s.fulfil_a, &ship(&room_item), json!({"status": "DELIVERED"})).await,
        "PENDING",
    );
    let r = act(c, &s.fulfil_a, &ship(&room_item), json!({"status": "SHIPPED"})).await;
    assert_eq!(r.0, 422, "a shipment needs a tracking number");
    let r = act(
        c,
        &s.fulfil_a,
        &ship(&room_item),
        json!({"status": "SHIPPED", "tracking_number": "RM-1"}),
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["status"], "PREPARING");
    assert_eq!(
        r.1["items"].as_array().unwrap().len(),
        1,
        "a seller sees its own items only"
    );
    assert_eq!(r.1["items"][0]["tracking_number"], "RM-1");
    // Once something shipped, the buyer can no longer cancel.
    refused_in(
        &act(c, &s.m.buyer, &format!("/v1/orders/{id}/cancel"), json!({})).await,
        "PREPARING",
    );
    let r = act(
        c,
        &s.fulfil_b,
        &ship(&lamp_item),
        json!({"status": "SHIPPED", "tracking_number": "LP-1"}),
    )
    .await;
    assert_eq!(r.1["status"], "SHIPPED", "{r:?}");
    for (token, item) in [(&s.fulfil_a, &room_item), (&s.fulfil_b, &lamp_item)] {
        assert_eq!(act(c, token, &ship(item), json!({"status": "DELIVERED"})).await.0, 200);
    }
    refused_in(
        &act(c, &s.fulfil_b, &ship(&lamp_item), json!({"status": "DELIVERED"})).await,
        "DELIVERED",
    );
    assert_eq!(s.order(&s.m.buyer, &id).await["status"], "DELIVERED");
    let r = act(c, &s.m.buyer, &format!("/v1/orders/{id}/return"), json!({})).await;
    assert_eq!(r.1["status"], "RETURN_REQUESTED", "{r:?}");
    refused_in(
        &act(c, &s.m.buyer, &format!("/v1/orders/{id}/complete"), json!({})).await,
        "RETURN_REQUESTED",
    );
    let r = act(
        c,
        &s.fulfil_b,
        &format!("/v1/seller/orders/{id}/return-received"),
        json!({}),
    )
    .await;
    assert_eq!(r.1["status"], "RETURNED", "{r:?}");
    assert_eq!(r.1["refund"]["amount_minor"], total, "the refund owed is recorded");
    refused_in(
        &act(
            c,
            &s.fulfil_a,
            &format!("/v1/seller/orders/{id}/return-received"),
            json!({}),
        )
        .await,
        "RETURNED",
    );
    // The provider reports the refund paid: REFUNDED, once; a wrong amount changes nothing.
    let r = s
        .pay(&s.psp, "evt-refund-short", "refund.succeeded", &order, total - 1)
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(s.order(&s.m.buyer, &id).await["status"], "RETURNED");
    let r = s.pay(&s.psp, "evt-refund", "refund.succeeded", &order, total).await;
    assert_eq!(r.status(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(
        (receipt["outcome"].as_str(), receipt["order_status"].as_str()),
        (Some("applied"), Some("REFUNDED"))
    );
    let r = s.pay(&s.psp, "evt-refund", "refund.succeeded", &order, total).await;
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    let r = s.pay(&s.psp, "evt-refund-2", "refund.succeeded", &order, total).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["outcome"],
        "ignored",
        "an order is refunded once"
    );
    assert_eq!(s.order(&s.m.buyer, &id).await["status"], "REFUNDED");
    refused_in(
        &act(
            c,
            &s.fulfil_a,
            &format!("/v1/seller/orders/{id}/return-received"),
            json!({}),
        )
        .await,
        "REFUNDED",
    );

    // Delivered, then completed by the buyer.
    let done = s.place(&s.m.buyer, json!({"items": [line(&s.room, 1)]})).await;
    let done_id = done["id"].as_str().unwrap().to_owned();
    let item = done["items"][0]["id"].as_str().unwrap().to_owned();
    s.pay(&s.psp, "evt-done", "payment.succeeded", &done, ROOM).await;
    let path = format!("/v1/seller/orders/{done_id}/items/{item}/shipment");
    act(
        c,
        &s.fulfil_a,
        &path,
        json!({"status": "SHIPPED", "tracking_number": "X"}),
    )
    .await;
    act(c, &s.fulfil_a, &path, json!({"status": "DELIVERED"})).await;
    let r = act(c, &s.m.buyer, &format!("/v1/orders/{done_id}/complete"), json!({})).await;
    assert_eq!(r.1["status"], "COMPLETED", "{r:?}");

    // A paid order cancelled before shipping: stock back and a refund record.
    let before = s.m.available(&s.room, None).await;
    let paid = s.place(&s.m.buyer, json!({"items": [line(&s.room, 2)]})).await;
    s.pay(&s.psp, "evt-paid", "payment.succeeded", &paid, 2 * ROOM).await;
    assert_eq!(s.m.available(&s.room, None).await, before - 2);
    let r = act(
        c,
        &s.m.buyer,
        &format!("/v1/orders/{}/cancel", paid["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(
        (r.1["status"].as_str(), r.1["cancel_reason"].as_str()),
        (Some("CANCELLED"), Some("buyer_cancelled"))
    );
    assert_eq!(r.1["refund"]["amount_minor"], 2 * ROOM);
    assert_eq!(s.m.available(&s.room, None).await, before);
    refused_in(
        &act(
            c,
            &s.m.buyer,
            &format!("/v1/orders/{}/cancel", paid["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        "CANCELLED",
    );
}

async fn reservation(s: &Shop, token: &str, item: &Item, quantity: i64) -> Value {
    let body = json!({"product_id": item.product, "combination_id": item.combination, "quantity": quantity});
    let key = uuid::Uuid::new_v4().to_string();
    let r = Market::reserve_on(s.c(), token, Some(&key), &body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let outcome = s.m.outcome(token, &id).await;
    assert_eq!(outcome["status"], "CONFIRMED", "{outcome}");
    outcome
}

fn from_reservation(reservation: &Value) -> Value {
    json!({"items": [{"reservation_id": reservation["id"]}]})
}

#[tokio::test]
async fn a_confirmed_reservation_becomes_an_order_that_keeps_its_hold() {
    let mut s = shop(|c| c.commerce.hold_secs = 60).await;
    let c = s.c();
    let held = reservation(&s, &s.m.buyer, &s.room, 2).await;
    let witness = reservation(&s, &s.m.buyer, &s.room, 1).await;
    assert_eq!(s.m.available(&s.room, None).await, 7);

    // The order takes the reservation's product, quantity and held units: none taken twice.
    let order = s.place(&s.m.buyer, from_reservation(&held)).await;
    assert_eq!(order["status"], "PENDING_PAYMENT", "{order}");
    assert_eq!(order["items"][0]["reservation_id"], held["id"]);
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["total"]["amount_minor"], 2 * ROOM);
    assert_eq!(s.m.available(&s.room, None).await, 7);
    let view = s.m.outcome(&s.m.buyer, held["id"].as_str().unwrap()).await;
    assert_eq!(
        (view["status"].as_str(), &view["order_id"]),
        (Some("ORDERED"), &order["id"])
    );
    // A reservation makes one order only.
    let r = post_order(c, &s.m.buyer, "again", &from_reservation(&held)).await;
    assert_eq!(r.status(), 409);
    assert!(is_problem(&r));

    // The hold's time runs out: the sweeper releases the witness, not the ordered units.
    s.c().clock.advance(61);
    s.m.fresh_buyer().await;
    let witness_id = witness["id"].as_str().unwrap();
    for _ in 0..100 {
        if s.m.outcome(&s.m.buyer, witness_id).await["status"] == "EXPIRED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.m.outcome(&s.m.buyer, witness_id).await["reason"], "hold_expired");
    assert_eq!(
        s.m.outcome(&s.m.buyer, held["id"].as_str().unwrap()).await["status"],
        "ORDERED"
    );
    assert_eq!(s.m.available(&s.room, None).await, 8);
    let r = s.pay(&s.psp, "evt-held", "payment.succeeded", &order, 2 * ROOM).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.order(&s.m.buyer, order["id"].as_str().unwrap()).await["status"],
        "PAID"
    );
    assert_eq!(s.m.available(&s.room, None).await, 8);

    // An order placed with a reservation and then cancelled gives the units back once
    // and ends the reservation.
    let c = s.c();
    let cancelled_hold = reservation(&s, &s.m.buyer, &s.room, 1).await;
    assert_eq!(s.m.available(&s.room, None).await, 7);
    let second = s.place(&s.m.buyer, from_reservation(&cancelled_hold)).await;
    let r = act(
        c,
        &s.m.buyer,
        &format!("/v1/orders/{}/cancel", second["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(r.1["status"], "CANCELLED", "{r:?}");
    assert_eq!(s.m.available(&s.room, None).await, 8);
    let view = s.m.outcome(&s.m.buyer, cancelled_hold["id"].as_str().unwrap()).await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str(), &view["order_id"]),
        (Some("EXPIRED"), Some("order_cancelled"), &second["id"])
    );
    let r = post_order(c, &s.m.buyer, "after-cancel", &from_reservation(&cancelled_hold)).await;
    assert_eq!(r.status(), 409, "an ended reservation orders nothing");

    // A hold that ran out cannot be ordered, whether or not the sweeper got to it yet.
    let late = reservation(&s, &s.m.buyer, &s.room, 1).await;
    s.c().clock.advance(61);
    s.m.fresh_buyer().await;
    let r = post_order(s.c(), &s.m.buyer, "late", &from_reservation(&late)).await;
    assert_eq!(r.status(), 409);
    // Another buyer's reservation, and malformed items, are refused.
    let theirs = reservation(&s, &s.m.other_buyer, &s.room, 1).await;
    let r = post_order(s.c(), &s.m.buyer, "theirs", &from_reservation(&theirs)).await;
    assert_eq!(r.status(), 422);
    assert!(is_problem(&r));
    for body in [
        json!({"items": [{"reservation_id": theirs["id"], "quantity": 1}]}),
        json!({"items": [{"quantity": 1}]}),
        json!({"items": [{"reservation_id": theirs["id"]}, {"reservation_id": theirs["id"]}]}),
    ] {
        let r = post_order(s.c(), &s.m.buyer, &uuid::Uuid::new_v4().to_string(), &body).await;
        assert_eq!(r.status(), 422, "{body}");
    }
    assert_eq!(
        s.c()
            .count("SELECT COUNT(*) AS n FROM orders WHERE status <> 'CANCELLED'")
            .await,
        1,
        "only the first order stands"
    );
}

#[tokio::test]
async fn sellers_and_buyers_see_only_their_own() {
    let s = shop(|_| {}).await;
    let c = s.c();
    let mut mine = Vec::new();
    for _ in 0..3 {
        let o = s
            .place(&s.m.buyer, json!({"items": [line(&s.room, 1), line(&s.lamp, 1)]}))
            .await;
        mine.push(o["id"].as_str().unwrap().to_owned());
    }
    let theirs = s.place(&s.m.other_buyer, json!({"items": [line(&s.lamp, 1)]})).await;
    let theirs_id = theirs["id"].as_str().unwrap();

    // Buyers: another buyer's order is "not found"; lists page with a cursor.
    assert_eq!(
        c.get(&format!("/v1/orders/{theirs_id}"), Some(&s.m.buyer))
            .await
            .status(),
        404
    );
    let r = act(c, &s.m.buyer, &format!("/v1/orders/{theirs_id}/cancel"), json!({})).await;
    assert_eq!(r.0, 404);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/v1/me/orders?limit=2&cursor={cur}"),
            None => "/v1/me/orders?limit=2".to_owned(),
        };
        let page: Value = c.get(&path, Some(&s.m.buyer)).await.json().await.unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, mine);

    // Sellers: only orders holding their items, and only those items.
    let page: Value = c
        .get(
            &format!("/v1/seller/orders?seller_id={}", s.m.seller_id),
            Some(&s.fulfil_a),
        )
        .await
        .json()
        .await
        .unwrap();
    let orders = page["items"].as_array().unwrap();
    assert_eq!(orders.len(), 3, "{page}");
    for o in orders {
        let items = o["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["seller_id"], s.m.seller_id.as_str());
    }
    let page: Value = c
        .get(
            &format!("/v1/seller/orders?seller_id={}", s.seller_b),
            Some(&s.fulfil_b),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    // Not a member of the seller: 403; no fulfil permission: insufficient_scope.
    let r = c
        .get(
            &format!("/v1/seller/orders?seller_id={}", s.seller_b),
            Some(&s.fulfil_a),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).is_empty(), "a membership refusal, not a scope one");
    let r = c
        .get(
            &format!("/v1/seller/orders?seller_id={}", s.m.seller_id),
            Some(&s.m.dev),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("insufficient_scope"), "{}", challenge(&r));
}

#[tokio::test]
async fn concurrent_orders_for_the_last_units_sell_exactly_the_stock() {
    let s = shop(|c| c.database.connect_timeout_secs = 20).await;
    s.m.stock_up(&s.room, None, 3).await;
    let answers = futures_util::future::join_all((0..12).map(|i| {
        let (c, token) = (s.c(), s.m.buyer.clone());
        let body = json!({"items": [line(&s.room, 1)]});
        async move { post_order(c, &token, &format!("last-{i}"), &body).await }
    }))
    .await;
    let mut ids = Vec::new();
    for r in answers {
        match r.status().as_u16() {
            201 => ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()),
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    let mut placed = 0;
    for id in &ids {
        let view = s.settled(&s.m.buyer, id, &["PENDING"]).await;
        match (view["status"].as_str().unwrap(), view["cancel_reason"].as_str()) {
            ("PENDING_PAYMENT", None) => placed += 1,
            ("CANCELLED", Some("sold_out")) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(placed, 3);
    assert_eq!(s.m.available(&s.room, None).await, 0);
}

#[tokio::test]
async fn reservable_products_are_ordered_for_a_date() {
    let s = shop(|_| {}).await;
    let hotel = s.m.item("RESERVABLE", true).await;
    s.m.stock_up(&hotel, Some("2026-12-24"), 2).await;
    let night = |date: Option<&str>| json!({"items": [{"product_id": hotel.product, "combination_id": hotel.combination, "date": date}]});
    let r = post_order(s.c(), &s.m.buyer, "no-date", &night(None)).await;
    assert_eq!(r.status(), 422, "a RESERVABLE product needs a date");
    let r = post_order(s.c(), &s.m.buyer, "not-offered", &night(Some("2026-12-25"))).await;
    assert_eq!(r.status(), 409, "no capacity that night");
    let order = s.place(&s.m.buyer, night(Some("2026-12-24"))).await;
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(order["items"][0]["date"], "2026-12-24");
    assert_eq!(s.m.available(&hotel, Some("2026-12-24")).await, 1);
    let r = s.pay(&s.psp, "evt-night", "payment.failed", &order, ROOM).await;
    assert_eq!(r.status(), 200);
    let cancelled = s
        .settled(&s.m.buyer, order["id"].as_str().unwrap(), &["PENDING_PAYMENT"])
        .await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(s.m.available(&hotel, Some("2026-12-24")).await, 2);
}

// ---------------------------------------------------------------- kill -9

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real `oxidp commerce serve` on `database_url`, trusting the test IdP.
fn start_commerce(s: &Shop, port: u16, dir: &std::path::Path) -> Child {
    let config = &s.c().config;
    Command::new(env!("CARGO_BIN_EXE_oxidp"))
        .args(["commerce", "serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OXIDP_DATA_DIR", dir)
        .env("OXIDP_PEPPER", PEPPER)
        .env("OXIDP_KEY_ENCRYPTION_SECRET", KES)
        .env("OXIDP_ADMIN__BOOTSTRAP", "false")
        .env("OXIDP_METRICS__BIND", "off")
        .env("OXIDP_HTTP__WORKERS", "2")
        .env("OXIDP_LOG__LEVEL", "warn")
        .env("OXIDP_ISSUER", s.m.idp.config.issuer.clone())
        .env("OXIDP_COMMERCE__ISSUER", s.m.idp.config.issuer.clone())
        .env("OXIDP_COMMERCE__AUDIENCE", AUDIENCE)
        .env("OXIDP_COMMERCE__DATABASE_URL", config.commerce_database_url())
        .env("OXIDP_COMMERCE__BIND", format!("127.0.0.1:{port}"))
        .env("OXIDP_COMMERCE__PUBLIC_URL", format!("http://localhost:{port}"))
        .env("OXIDP_COMMERCE__INTROSPECTION", "off")
        .env("OXIDP_COMMERCE__PAYMENT_TIMEOUT_SECS", "2")
        .env("OXIDP_DATABASE__CONNECT_TIMEOUT_SECS", "20")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start oxidp commerce")
}

struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn ready(base: &str) {
    let until = Instant::now() + Duration::from_secs(90);
    while Instant::now() < until {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not come up");
}

/// Buyers keep ordering (some with the one reusable coupon) and the provider
/// keeps paying some orders on `base` until `stop`; answers the order ids seen.
async fn load(
    base: String,
    buyer: String,
    psp: String,
    coupon: String,
    lines: Vec<Value>,
    stop: Instant,
) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    let mut n = 0u32;
    while Instant::now() < stop {
        n += 1;
        let mut body = json!({"items": [lines[n as usize % lines.len()].clone()]});
        if n.is_multiple_of(3) {
            body["coupon_id"] = json!(coupon);
        }
        let Ok(r) = http
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&buyer)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if r.status() != 201 {
            continue;
        }
        let Ok(view) = r.json::<Value>().await else { continue };
        let id = view["id"].as_str().unwrap().to_owned();
        ids.push(id.clone());
        if n.is_multiple_of(2) {
            let kind = if n.is_multiple_of(4) {
                "payment.failed"
            } else {
                "payment.succeeded"
            };
            let _ = http
                .post(format!("{base}/v1/payments/events"))
                .bearer_auth(&psp)
                .json(&json!({"event_id": format!("evt-{id}"), "type": kind, "order_id": id,
                               "amount": view["total"]}))
                .send()
                .await;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commerce_process_killed_mid_saga_is_caught_up_by_other_instances() {
    let s = shop(|c| c.database.connect_timeout_secs = 20).await;
    s.m.stock_up(&s.room, None, 40).await;
    let r =
        s.m.adjust(
            &s.fulfil_b,
            &s.lamp.product,
            json!({"combination_id": s.lamp.combination, "set": 40}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let coupon = s.coupon(1_000, true).await;
    // Only the real processes drive sagas from here on.
    s.c().stop().await;
    let dir = tempfile::tempdir().unwrap();
    let lines = vec![line(&s.room, 1), line(&s.lamp, 2), line(&s.room, 2)];

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = Running(Some(start_commerce(&s, port, dir.path())));
    ready(&base).await;
    let stop = Instant::now() + Duration::from_secs(8);
    let loaders: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(load(
                base.clone(),
                s.m.buyer.clone(),
                s.psp.clone(),
                coupon.clone(),
                lines.clone(),
                stop,
            ))
        })
        .collect();
    // Kill -9 while orders are being placed, paid, failed and compensated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut child = first.0.take().unwrap();
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let mut ids: Vec<String> = Vec::new();
    for l in loaders {
        ids.extend(l.await.unwrap());
    }
    assert!(!ids.is_empty(), "the load placed orders before the kill");
    // What the dead process left: sagas not done (awaiting a payment that will not
    // come in time, or cut between steps) and leases it held.
    let open = s
        .c()
        .count("SELECT COUNT(*) AS n FROM orders WHERE saga <> 'DONE'")
        .await;
    let leased = s
        .c()
        .count("SELECT COUNT(*) AS n FROM orders WHERE lease_owner IS NOT NULL")
        .await;
    eprintln!(
        "after kill -9: {} orders, {open} sagas unfinished, {leased} leases held",
        ids.len()
    );
    assert!(open > 0, "the kill left work for the next instance");

    // Two other processes on the same database (new ports: other instances); their
    // saga runners share the leftovers (PostgreSQL: FOR UPDATE SKIP LOCKED).
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _second = Running(Some(start_commerce(&s, port, dir.path())));
    let third_port = free_port();
    let _third = Running(Some(start_commerce(&s, third_port, dir.path())));
    ready(&base).await;
    ready(&format!("http://127.0.0.1:{third_port}")).await;
    let more = load(
        base.clone(),
        s.m.buyer.clone(),
        s.psp.clone(),
        coupon.clone(),
        lines.clone(),
        Instant::now() + Duration::from_secs(2),
    )
    .await;
    assert!(!more.is_empty());

    // The runner catches up: no saga left unfinished (leases of the dead process
    // run out; unpaid orders time out after 2 s).
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let open = s
            .c()
            .count("SELECT COUNT(*) AS n FROM orders WHERE saga <> 'DONE'")
            .await;
        if open == 0 {
            break;
        }
        assert!(Instant::now() < until, "{open} sagas still unfinished after 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let c = s.c();
    let total = c.count("SELECT COUNT(*) AS n FROM orders").await;
    let paid = c.count("SELECT COUNT(*) AS n FROM orders WHERE status = 'PAID'").await;
    let cancelled = c
        .count("SELECT COUNT(*) AS n FROM orders WHERE status = 'CANCELLED'")
        .await;
    assert_eq!(paid + cancelled, total, "every order ends PAID or CANCELLED");
    assert!(paid > 0 && cancelled > 0, "paid {paid}, cancelled {cancelled}");
    // Paid orders hold every item's stock; cancelled ones none.
    let unreserved_paid = c
        .count(
            "SELECT COUNT(*) AS n FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'PAID' \
             AND (NOT EXISTS (SELECT 1 FROM saga_log l WHERE l.order_id = i.order_id AND l.step = 'reserve:' || i.position) \
              OR EXISTS (SELECT 1 FROM saga_log l WHERE l.order_id = i.order_id AND l.step = 'release:' || i.position))",
        )
        .await;
    assert_eq!(unreserved_paid, 0);
    let held_cancelled = c
        .count(
            "SELECT COUNT(*) AS n FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'CANCELLED' \
             AND EXISTS (SELECT 1 FROM saga_log l WHERE l.order_id = i.order_id AND l.step = 'reserve:' || i.position) \
             AND NOT EXISTS (SELECT 1 FROM saga_log l WHERE l.order_id = i.order_id AND l.step = 'release:' || i.position)",
        )
        .await;
    assert_eq!(held_cancelled, 0);
    // Stock is conserved: what is left plus what paid orders hold is what there was.
    for (item, initial) in [(&s.room, 40), (&s.lamp, 40)] {
        let left = c
            .count(&format!(
                "SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) AS n FROM stock WHERE combination_id = '{}'",
                item.combination
            ))
            .await;
        let sold = c
            .count(&format!(
                "SELECT CAST(COALESCE(SUM(i.quantity), 0) AS BIGINT) AS n FROM order_items i JOIN orders o ON o.id = i.order_id \
                 WHERE o.status = 'PAID' AND i.combination_id = '{}'",
                item.combination
            ))
            .await;
        assert_eq!(left + sold, initial, "stock of {} conserved", item.product);
    }
    // The one coupon: at most one live order holds it, and its state agrees.
    let holding = c
        .count(&format!(
            "SELECT COUNT(*) AS n FROM orders WHERE coupon_id = '{coupon}' AND status = 'PAID' AND EXISTS \
             (SELECT 1 FROM saga_log l WHERE l.order_id = orders.id AND l.step = 'coupon')"
        ))
        .await;
    assert!(holding <= 1, "the coupon serves {holding} paid orders");
    let redeemed = c
        .count(&format!(
            "SELECT COUNT(*) AS n FROM coupons WHERE id = '{coupon}' AND status = 'REDEEMED'"
        ))
        .await;
    assert_eq!(
        redeemed, holding,
        "the coupon is REDEEMED exactly when a paid order holds it"
    );
    let unreturned = c
        .count(&format!(
            "SELECT COUNT(*) AS n FROM orders WHERE coupon_id = '{coupon}' AND status = 'CANCELLED' \
             AND EXISTS (SELECT 1 FROM saga_log l WHERE l.order_id = orders.id AND l.step = 'coupon') \
             AND NOT EXISTS (SELECT 1 FROM saga_log l WHERE l.order_id = orders.id AND l.step = 'coupon_returned')"
        ))
        .await;
    assert_eq!(unreturned, 0);
}
