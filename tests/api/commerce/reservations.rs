//! Asynchronous reservations through the real servers: exactness under a burst
//! (one instance and two on one database), duplicate deliveries, a worker dying
//! before its ack, hold expiry, polling and the SSE push channel, bad inputs.

use std::collections::HashSet;
use std::time::Duration;

use oxidp::clock::Clock;
use serde_json::{Value, json};

use super::stock::{Item, Market, is_problem, market};

fn body(item: &Item, date: Option<&str>) -> Value {
    json!({"product_id": item.product, "combination_id": item.combination, "date": date})
}

/// 200 concurrent requests for 50 units spread over `instances`: every request
/// is accepted, exactly 50 are confirmed, 150 fail sold_out, the stock is 0.
pub(super) async fn burst(m: &Market, instances: &[&super::CommerceTest], item: &Item, date: Option<&str>) {
    let requests = (0..200).map(|i| {
        let commerce = instances[i % instances.len()];
        let body = body(item, date);
        let token = m.buyer.clone();
        async move { Market::reserve_on(commerce, &token, Some(&format!("burst-{i}")), &body).await }
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 202);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["status"], "PENDING");
        assert_eq!(location, format!("/v1/reservations/{}", view["id"].as_str().unwrap()));
        ids.push(view["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200);
    m.drained().await;
    let (mut confirmed, mut sold_out) = (0, 0);
    for id in &ids {
        let outcome = m.outcome(&m.buyer, id).await;
        match (outcome["status"].as_str().unwrap(), outcome["reason"].as_str()) {
            ("CONFIRMED", None) => confirmed += 1,
            ("FAILED", Some("sold_out")) => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((confirmed, sold_out), (50, 150));
    assert_eq!(m.available(item, date).await, 0);
}

#[tokio::test]
async fn two_hundred_requests_for_fifty_units_confirm_exactly_fifty() {
    let m = market(|c| c.database.connect_timeout_secs = 20).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 50).await;
    burst(&m, &[&m.commerce], &item, None).await;
}

#[tokio::test]
async fn two_instances_on_one_database_share_the_queue_exactly() {
    let m = market(|c| c.database.connect_timeout_secs = 20).await;
    let second = m.commerce.another(|_| {}).await;
    let item = m.item("RESERVABLE", true).await;
    m.stock_up(&item, Some("2026-12-31"), 50).await;
    burst(&m, &[&m.commerce, &second], &item, Some("2026-12-31")).await;
    second.stop().await;
}

#[tokio::test]
async fn failures_name_their_reason() {
    let m = market(|_| {}).await;
    let planned = m.item("REALTIME", false).await;
    m.stock_up(&planned, None, 5).await;
    let hotel = m.item("RESERVABLE", true).await;
    m.stock_up(&hotel, Some("2026-12-24"), 2).await;
    let cases = [
        (body(&planned, None), "product_not_on_sale"),
        (body(&hotel, Some("2026-12-25")), "date_not_offered"),
        (
            json!({"product_id": hotel.product, "combination_id": hotel.combination, "date": "2026-12-24", "quantity": 3}),
            "sold_out",
        ),
    ];
    for (i, (request, reason)) in cases.iter().enumerate() {
        let r = m.reserve(&format!("reason-{i}"), request).await;
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let outcome = m.outcome(&m.buyer, &id).await;
        assert_eq!(outcome["status"], "FAILED");
        assert_eq!(outcome["reason"], *reason);
    }
    let two =
        json!({"product_id": hotel.product, "combination_id": hotel.combination, "date": "2026-12-24", "quantity": 2});
    let r = m.reserve("two", &two).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let outcome = m.outcome(&m.buyer, &id).await;
    assert_eq!(outcome["status"], "CONFIRMED");
    assert_eq!(outcome["quantity"], 2);
    assert!(outcome["hold_until"].as_i64().unwrap() > 0);
    assert_eq!(m.available(&hotel, Some("2026-12-24")).await, 0);
    assert_eq!(m.available(&planned, None).await, 5);
}

#[tokio::test]
async fn a_message_delivered_twice_changes_nothing_twice() {
    let m = market(|_| {}).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 5).await;
    let r = m.reserve("once", &body(&item, None)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let first = m.outcome(&m.buyer, &id).await;
    assert_eq!(first["status"], "CONFIRMED");
    m.drained().await;
    assert_eq!(m.available(&item, None).await, 4);

    // The same message again, twice (as an at-least-once broker may deliver it).
    for n in 0..2 {
        m.commerce
            .sql(&format!(
                "INSERT INTO outbox (id, topic, payload, available_at, attempts, created_at) \
                 VALUES ('again-{n}', 'reservation.requested', '{id}', 0, 0, 0)"
            ))
            .await;
    }
    m.drained().await;
    assert_eq!(m.available(&item, None).await, 4);
    let again = m.outcome(&m.buyer, &id).await;
    assert_eq!(again, first, "the duplicate changed the reservation");
}

#[tokio::test]
async fn a_worker_dying_before_its_ack_is_covered_by_the_lease() {
    // This instance accepts but does not process, so the test decides who works.
    let mut m = market(|c| {
        c.commerce.reservation_workers = 0;
        c.commerce.reservation_lease_secs = 30;
    })
    .await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 5).await;
    let now = m.commerce.clock.now();

    // A dead worker claimed the message and never processed it.
    let r = m.reserve("claimed-then-died", &body(&item, None)).await;
    let pending = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let leased = m
        .commerce
        .sql(&format!(
            "UPDATE outbox SET claimed_by = 'dead/0', lease_until = {}, attempts = 1",
            now + 30
        ))
        .await;
    assert_eq!(leased, 1);
    let workers = m.commerce.another(|c| c.commerce.reservation_workers = 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = m
        .commerce
        .get(&format!("/v1/reservations/{pending}"), Some(&m.buyer))
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["status"],
        "PENDING",
        "the lease was not honoured"
    );
    m.commerce.clock.advance(31);
    m.fresh_buyer().await;
    assert_eq!(m.outcome(&m.buyer, &pending).await["status"], "CONFIRMED");
    m.drained().await;
    assert_eq!(m.available(&item, None).await, 4);

    // A dead worker processed (the hold committed) but died before the ack: the
    // message comes back after the lease and is only acknowledged.
    let now = m.commerce.clock.now();
    m.commerce
        .sql(&format!(
            "INSERT INTO outbox (id, topic, payload, available_at, claimed_by, lease_until, attempts, created_at) \
             VALUES ('unacked', 'reservation.requested', '{pending}', {now}, 'dead/1', {}, 1, {now})",
            now + 30
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM outbox").await, 1);
    m.commerce.clock.advance(31);
    m.drained().await;
    assert_eq!(m.available(&item, None).await, 4, "a redelivery held stock twice");
    workers.stop().await;
}

#[tokio::test]
async fn unpaid_holds_expire_and_their_stock_returns_exactly_once() {
    let mut m = market(|c| c.commerce.hold_secs = 60).await;
    // A second instance: two sweepers race for every expired hold.
    let second = m.commerce.another(|_| {}).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 3).await;
    let mut held = Vec::new();
    for i in 0..4 {
        let r = m.reserve(&format!("hold-{i}"), &body(&item, None)).await;
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        held.push((id.clone(), m.outcome(&m.buyer, &id).await));
    }
    let confirmed: Vec<&String> = held
        .iter()
        .filter(|(_, o)| o["status"] == "CONFIRMED")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(confirmed.len(), 3);
    assert_eq!(m.available(&item, None).await, 0);

    // Not yet: a second before the hold ends nothing moves.
    m.commerce.clock.advance(59);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(m.available(&item, None).await, 0);
    m.commerce.clock.advance(2);
    m.fresh_buyer().await;
    for _ in 0..100 {
        let expired = m
            .commerce
            .count("SELECT COUNT(*) AS n FROM reservations WHERE status = 'EXPIRED'")
            .await;
        if expired == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &confirmed {
        let r = m.commerce.get(&format!("/v1/reservations/{id}"), Some(&m.buyer)).await;
        let view: Value = r.json().await.unwrap();
        assert_eq!(
            (view["status"].as_str(), view["reason"].as_str()),
            (Some("EXPIRED"), Some("hold_expired"))
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        m.available(&item, None).await,
        3,
        "stock returned other than exactly once"
    );
    let r = m.reserve("after-expiry", &body(&item, None)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(m.outcome(&m.buyer, &id).await["status"], "CONFIRMED");
    second.stop().await;
}

#[tokio::test]
async fn owners_poll_with_retry_after_or_listen_to_server_sent_events() {
    let m = market(|c| c.commerce.reservation_workers = 0).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 1).await;
    let r = m.reserve("sse", &body(&item, None)).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["retry-after"], "1");
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/reservations/{id}");

    let r = m.commerce.get(&path, Some(&m.buyer)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "PENDING");
    // Someone else's reservation does not exist for them; no token, no answer.
    assert_eq!(m.commerce.get(&path, Some(&m.other_buyer)).await.status(), 404);
    assert_eq!(m.commerce.get(&path, None).await.status(), 401);
    let events = format!("{path}/events");
    assert_eq!(m.commerce.get(&events, Some(&m.other_buyer)).await.status(), 404);
    assert_eq!(m.commerce.get(&events, None).await.status(), 401);
    // A token in the URL is not a way in.
    let r = m
        .commerce
        .get(&format!("{events}?access_token={}", m.buyer), None)
        .await;
    assert_eq!(r.status(), 401);

    // The stream opens with PENDING; a worker starts elsewhere; the stream sends
    // the final status and closes.
    let stream = m.commerce.get(&events, Some(&m.buyer)).await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let workers = m.commerce.another(|c| c.commerce.reservation_workers = 1).await;
    let text = tokio::time::timeout(Duration::from_secs(30), stream.text())
        .await
        .expect("the stream closes after the final status")
        .unwrap();
    let statuses: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{text}");
    assert_eq!(statuses[0]["status"], "PENDING");
    assert_eq!(statuses[1]["status"], "CONFIRMED");
    assert!(text.starts_with("event: status\n"), "{text}");

    let r = m.commerce.get(&path, Some(&m.buyer)).await;
    assert!(r.headers().get("retry-after").is_none());
    // A stream on a settled reservation sends the status at once and closes.
    let text = m.commerce.get(&events, Some(&m.buyer)).await.text().await.unwrap();
    assert_eq!(text.matches("event: status").count(), 1);
    assert!(text.contains("CONFIRMED"));
    workers.stop().await;
}

#[tokio::test]
async fn bad_reservation_requests_are_problems() {
    let m = market(|_| {}).await;
    let item = m.item("REALTIME", true).await;
    let hotel = m.item("RESERVABLE", true).await;
    let other = m.item("REALTIME", true).await;
    let url = m.commerce.url("/v1/reservations");

    let r = Market::reserve_on(&m.commerce, &m.buyer, None, &body(&item, None)).await;
    assert_eq!(r.status(), 400);
    assert!(is_problem(&r));
    assert!(r.text().await.unwrap().contains("Idempotency-Key"));
    for key in ["", "\"\"", "a\\\\b", "a\"b"] {
        let r = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&m.buyer)
            .header("idempotency-key", key)
            .json(&body(&item, None))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{key:?}");
    }
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&m.buyer)
        .header("idempotency-key", "\"raw\"")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(is_problem(&r));
    let cases = [
        (
            json!({"product_id": item.product, "combination_id": item.combination, "colour": "red"}),
            400,
        ),
        (json!({"product_id": item.product}), 400),
        (
            json!({"product_id": item.product, "combination_id": item.combination, "quantity": 0}),
            422,
        ),
        (
            json!({"product_id": item.product, "combination_id": item.combination, "quantity": 101}),
            422,
        ),
        (json!({"product_id": "nope", "combination_id": item.combination}), 422),
        (
            json!({"product_id": item.product, "combination_id": other.combination}),
            422,
        ),
        (body(&item, Some("2026-12-24")), 422),
        (body(&hotel, None), 422),
        (body(&hotel, Some("2026-13-01")), 422),
    ];
    for (i, (request, status)) in cases.iter().enumerate() {
        let r = m.reserve(&format!("bad-{i}"), request).await;
        assert_eq!(r.status(), *status, "{request}");
        assert!(is_problem(&r), "{request}");
    }
    let r = reqwest::Client::new()
        .post(&url)
        .header("idempotency-key", "\"anon\"")
        .json(&body(&item, None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // None of these left a reservation behind.
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM reservations").await, 0);
}
