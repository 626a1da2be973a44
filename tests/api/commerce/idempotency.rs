//! Idempotency keys (IETF httpapi draft) on `POST /v1/reservations`: replay of
//! the first response, 422 for a different body, 409 while the first runs, a
//! race of identical requests, per-subject scope, takeover of an abandoned key,
//! and the 24-hour retention with its purge.

use std::collections::HashSet;
use std::time::Duration;

use oxidp::clock::Clock;
use serde_json::{Value, json};

use super::stock::{Market, is_problem, market};

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_response() {
    let m = market(|_| {}).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 10).await;
    let body = json!({"product_id": item.product, "combination_id": item.combination});

    let first = m.reserve("k-1", &body).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();
    let id = serde_json::from_str::<Value>(&first_body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(m.outcome(&m.buyer, &id).await["status"], "CONFIRMED");

    // After completion: the very same response (PENDING, as first answered).
    let again = m.reserve("k-1", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.headers()["retry-after"], "1");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert!(
        again.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(again.text().await.unwrap(), first_body);

    // Same key, different body: refused, nothing created.
    let other = json!({"product_id": item.product, "combination_id": item.combination, "quantity": 2});
    let r = m.reserve("k-1", &other).await;
    assert_eq!(r.status(), 422);
    assert!(is_problem(&r));
    // Keys belong to their subject: another buyer's identical key is their own.
    let theirs = Market::reserve_on(&m.commerce, &m.other_buyer, Some("k-1"), &body).await;
    assert_eq!(theirs.status(), 202);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let their_id = theirs.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_ne!(their_id, id);
    m.drained().await;
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM reservations").await, 2);
    assert_eq!(m.available(&item, None).await, 8);
}

#[tokio::test]
async fn fifty_identical_requests_racing_with_one_key_make_one_reservation() {
    let m = market(|c| c.database.connect_timeout_secs = 20).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 100).await;
    let body = json!({"product_id": item.product, "combination_id": item.combination});
    let racing = (0..50).map(|_| m.reserve("one-key", &body));
    let responses = futures_util::future::join_all(racing).await;
    let mut ids = HashSet::new();
    let (mut accepted, mut in_flight) = (0, 0);
    for r in responses {
        match r.status().as_u16() {
            202 => {
                accepted += 1;
                ids.insert(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
            }
            409 => {
                assert!(is_problem(&r));
                in_flight += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(accepted >= 1, "{accepted} accepted, {in_flight} in flight");
    assert_eq!(ids.len(), 1, "one key made several reservations");
    m.drained().await;
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM reservations").await, 1);
    assert_eq!(m.available(&item, None).await, 99);
}

#[tokio::test]
async fn a_key_in_flight_is_409_until_its_owner_is_presumed_dead() {
    let mut m = market(|_| {}).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 10).await;
    let body = json!({"product_id": item.product, "combination_id": item.combination});
    let raw = serde_json::to_vec(&body).unwrap();
    let fingerprint = oxidp::commerce::domain::idempotency::fingerprint("POST", "/v1/reservations", &raw);
    let now = m.commerce.clock.now();
    // Another process took the key and has not answered (yet).
    m.commerce
        .sql(&format!(
            "INSERT INTO idempotency_keys (subject, idem_key, fingerprint, created_at, locked_until, expires_at) \
             VALUES ('{}', 'busy', '{fingerprint}', {now}, {}, {})",
            m.buyer_sub,
            now + 60,
            now + 86_400
        ))
        .await;
    let r = m.reserve("busy", &body).await;
    assert_eq!(r.status(), 409);
    assert!(is_problem(&r));
    // A different body is still a different body.
    let r = m
        .reserve(
            "busy",
            &json!({"product_id": item.product, "combination_id": item.combination, "quantity": 2}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM reservations").await, 0);
    // Its owner never finished: after the lock the key is taken over and runs once.
    m.commerce.clock.advance(61);
    m.fresh_buyer().await;
    let r = m.reserve("busy", &body).await;
    assert_eq!(r.status(), 202);
    let replay = m.reserve("busy", &body).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    m.drained().await;
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM reservations").await, 1);
}

#[tokio::test]
async fn keys_are_kept_a_day_then_purged() {
    let mut m = market(|_| {}).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 10).await;
    let body = json!({"product_id": item.product, "combination_id": item.combination});
    assert_eq!(m.reserve("daily", &body).await.status(), 202);
    m.drained().await;

    m.commerce.clock.advance(23 * 3600);
    m.fresh_buyer().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM idempotency_keys").await, 1);
    assert_eq!(m.reserve("daily", &body).await.headers()["idempotent-replayed"], "true");

    m.commerce.clock.advance(3600);
    m.fresh_buyer().await;
    let mut purged = false;
    for _ in 0..50 {
        if m.commerce.count("SELECT COUNT(*) AS n FROM idempotency_keys").await == 0 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(purged, "the purge task did not remove a key older than 24 h");
    // Forgotten: the key is new again, even with another body.
    let other = json!({"product_id": item.product, "combination_id": item.combination, "quantity": 2});
    let r = m.reserve("daily", &other).await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("idempotent-replayed").is_none());
}
